// Pure unit tests of the refresh policy (docs/refresh.md, docs/codex-compat.md#refresh-errors): when a refresh is due, how
// timers are chunked, how long to back off, and how every answer of the token endpoint is read.
// The clock is a value: nothing here sleeps or reads Date.now().
import t from 'tap'
import {
  BACKOFF_MAX_MS,
  BACKOFF_MIN_MS,
  DAY,
  LOOP_GUARD_MS,
  MINUTE,
  NO_EXP_MAX_AGE_MS,
  REFRESH_MARGIN_MS,
  SECOND,
  TIMER_CHUNK_MS,
  answerCode,
  backoffDelay,
  classifyFailure,
  refreshDueAt,
  timerDelay,
  type DueInput,
  type TokenAnswer,
} from '../src/refresh/policy.js'
import { mulberry32 as rng } from './support/prng.js'

/** Node's setTimeout limit: 2^31 - 1 ms (≈ 24.8 days); anything larger fires after 1 ms. */
const NODE_TIMER_MAX = 2 ** 31 - 1

/** A fake clock: 2026-11-26T12:00:00Z, whole seconds so that exp/iat are exact. */
const NOW = Date.UTC(2026, 10, 26, 12, 0, 0)
const NOW_S = NOW / 1000

function input(over: Partial<DueInput>): DueInput {
  return { exp: null, iat: null, lastRefreshMs: null, firstSeenMs: NOW, lastRefreshDoneMs: null, jitter: 0, ...over }
}

t.test('constants are the ones docs/refresh.md names', async (t) => {
  t.equal(REFRESH_MARGIN_MS, 10 * MINUTE)
  t.equal(LOOP_GUARD_MS, 30 * SECOND)
  t.equal(NO_EXP_MAX_AGE_MS, 7 * DAY)
  t.equal(TIMER_CHUNK_MS, 10 * MINUTE)
  t.equal(BACKOFF_MIN_MS, 1 * SECOND)
  t.equal(BACKOFF_MAX_MS, 5 * MINUTE)
})

t.test('refreshDueAt: lifetime from iat', async (t) => {
  // 1 h token issued now: 2/3 = 40 min, exp - 10 min = 50 min -> 40 min.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 3600 })), NOW + 40 * MINUTE)
  // 30-day token (OpenAI's real lifetime): 20 days, far outside Codex's 300 s window.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 30 * 86400 })), NOW + 20 * DAY)
  // iat wins over last_refresh and first-seen.
  t.equal(
    refreshDueAt(input({ iat: NOW_S - 600, exp: NOW_S - 600 + 3600, lastRefreshMs: NOW - 5 * DAY, firstSeenMs: NOW + DAY })),
    NOW - 600 * SECOND + 40 * MINUTE,
  )
  // Already past: due in the past (the caller refreshes at once).
  t.equal(refreshDueAt(input({ iat: NOW_S - 7200, exp: NOW_S - 3600 })), NOW - 7200 * SECOND + 40 * MINUTE)
})

t.test('refreshDueAt: without iat, the lifetime starts at last_refresh', async (t) => {
  const lastRefreshMs = NOW - 10 * MINUTE
  // exp 50 min after last_refresh: lifetime 60 min -> 40 min after last_refresh.
  t.equal(refreshDueAt(input({ exp: NOW_S + 50 * 60, lastRefreshMs, firstSeenMs: NOW })), lastRefreshMs + 40 * MINUTE)
})

t.test('refreshDueAt: without iat and last_refresh, the lifetime starts when first seen', async (t) => {
  const firstSeenMs = NOW - 30 * MINUTE
  // exp 3 h after first seen: 2/3 = 2 h, exp - 10 min = 2h50 -> 2 h after first seen.
  t.equal(refreshDueAt(input({ exp: firstSeenMs / 1000 + 3 * 3600, firstSeenMs })), firstSeenMs + 2 * 60 * MINUTE)
  // Seen for the first time after exp: lifetime 0 -> due at once (exp - 10 min, in the past).
  t.equal(refreshDueAt(input({ exp: NOW_S - 60, firstSeenMs: NOW })), NOW - 60 * SECOND - 10 * MINUTE)
})

t.test('refreshDueAt: 2/3 of the lifetime versus exp - 10 min', async (t) => {
  // 15-minute token (the tests' shortest): 2/3 = 10 min, exp - 10 min = 5 min -> 5 min wins.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 900 })), NOW + 5 * MINUTE)
  // 30 min: both are 20 min.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 1800 })), NOW + 20 * MINUTE)
  // 2 h: 2/3 = 80 min beats 110 min.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 7200 })), NOW + 80 * MINUTE)
  // A token shorter than the 10-minute margin is due before it was even issued.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 500 })), NOW + 500 * SECOND - 10 * MINUTE)
  // Whatever the jitter, never later than exp - 10 min.
  for (const jitter of [-1, -0.5, 0, 0.5, 1]) {
    for (const life of [900, 1800, 1900, 3600, 86400, 30 * 86400]) {
      const due = refreshDueAt(input({ iat: NOW_S, exp: NOW_S + life, jitter }))!
      t.ok(due <= NOW + life * SECOND - REFRESH_MARGIN_MS, `life ${life}s jitter ${jitter}: not after exp - 10 min`)
    }
  }
})

t.test('refreshDueAt: jitter is ±5% of the lifetime, at most ±2 min, clamped to [-1, 1]', async (t) => {
  // 1 h: 5% = 3 min, capped at 2 min.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 3600, jitter: 1 })), NOW + 40 * MINUTE + 2 * MINUTE)
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 3600, jitter: -1 })), NOW + 40 * MINUTE - 2 * MINUTE)
  // 30 min: 5% = 90 s. Positive jitter is cut by exp - 10 min; negative moves it earlier.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 1800, jitter: 1 })), NOW + 20 * MINUTE)
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 1800, jitter: -1 })), NOW + 20 * MINUTE - 90 * SECOND)
  // Out-of-range jitter is clamped, NaN-free.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 3600, jitter: 7 })), NOW + 42 * MINUTE)
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 3600, jitter: -7 })), NOW + 38 * MINUTE)
  // A sweep of random jitters stays inside the bounds for several lifetimes.
  const r = rng(0x5eed)
  let checked = 0
  for (const life of [3600, 4 * 3600, 86400, 10 * 86400]) {
    const center = NOW + (2 / 3) * life * SECOND
    const spread = Math.min(2 * MINUTE, 0.05 * life * SECOND)
    for (let i = 0; i < 500; i++) {
      const jitter = r() * 2 - 1
      const due = refreshDueAt(input({ iat: NOW_S, exp: NOW_S + life, jitter }))!
      if (due < center - spread || due > center + spread) t.fail(`life ${life}s jitter ${jitter}: ${due - center} ms off`)
      checked++
    }
  }
  t.equal(checked, 2000, 'every random jitter stayed within ±min(5%, 2 min)')
})

t.test('refreshDueAt: the 30 s loop guard', async (t) => {
  // A token due long ago, but someone refreshed 10 s ago: not before 30 s after that refresh.
  t.equal(refreshDueAt(input({ iat: NOW_S - 7200, exp: NOW_S - 3600, lastRefreshDoneMs: NOW - 10 * SECOND })), NOW + 20 * SECOND)
  // A server handing out 60-second tokens: never more than one refresh per 30 s.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 60, lastRefreshDoneMs: NOW })), NOW + LOOP_GUARD_MS)
  // The guard never makes a later due time earlier.
  t.equal(refreshDueAt(input({ iat: NOW_S, exp: NOW_S + 3600, lastRefreshDoneMs: NOW })), NOW + 40 * MINUTE)
  // It applies to the no-exp rule too.
  t.equal(refreshDueAt(input({ lastRefreshMs: NOW - 8 * DAY, lastRefreshDoneMs: NOW - 5 * SECOND })), NOW + 25 * SECOND)
})

t.test('refreshDueAt: no exp', async (t) => {
  // 7 days after last_refresh: a day before Codex's own 8-day rule.
  t.equal(refreshDueAt(input({ lastRefreshMs: NOW - DAY })), NOW + 6 * DAY)
  t.equal(refreshDueAt(input({ lastRefreshMs: NOW - 9 * DAY })), NOW - 2 * DAY)
  t.ok(refreshDueAt(input({ lastRefreshMs: NOW }))! < NOW + 8 * DAY, 'before Codex would refresh by itself')
  // iat alone does not help without exp (Codex ignores it too).
  t.equal(refreshDueAt(input({ iat: NOW_S - 9 * 86400, lastRefreshMs: NOW - DAY })), NOW + 6 * DAY)
  // No exp and no last_refresh: never (only a forced refresh or a 401 would).
  t.equal(refreshDueAt(input({})), null)
  t.equal(refreshDueAt(input({ iat: NOW_S, firstSeenMs: NOW - 30 * DAY })), null)
  t.equal(refreshDueAt(input({ lastRefreshDoneMs: NOW })), null, 'the loop guard does not invent a due time')
})

t.test('timerDelay: chunks of at most 10 minutes, never past Node’s 24.8-day limit', async (t) => {
  t.equal(timerDelay(NOW + 5 * SECOND, NOW), 5 * SECOND)
  t.equal(timerDelay(NOW + 10 * MINUTE, NOW), 10 * MINUTE)
  t.equal(timerDelay(NOW + 10 * MINUTE + 1, NOW), 10 * MINUTE)
  t.equal(timerDelay(NOW - 1, NOW), 0, 'overdue: at once')
  t.equal(timerDelay(NOW - 30 * DAY, NOW), 0)
  for (const ahead of [20 * DAY, 24.8 * DAY, 25 * DAY, 30 * DAY, 365 * DAY, 1e15, Number.MAX_SAFE_INTEGER]) {
    const d = timerDelay(NOW + ahead, NOW)
    t.ok(d <= TIMER_CHUNK_MS && d <= NODE_TIMER_MAX && d >= 0, `due in ${ahead} ms -> a chunk of ${d} ms`)
  }
  t.equal(timerDelay(Infinity, NOW), TIMER_CHUNK_MS, 'an absurd exp still gives a bounded chunk')
  // A laptop that slept: the next wake-up (at most 10 min later) sees the overdue time and fires.
  let now = NOW
  const due = NOW + 25 * DAY
  let wakes = 0
  while (timerDelay(due, now) > 0) {
    now += timerDelay(due, now)
    wakes++
    if (wakes === 3) now += 24 * DAY // slept through most of it
  }
  t.ok(now >= due && now - due < 10 * MINUTE, 'reaches the due time, re-checking the clock at each wake-up')
})

t.test('backoffDelay: 1 s doubling to 5 min, ±20% jitter, staying at 5 min', async (t) => {
  t.equal(backoffDelay(1, 0), 1000)
  t.equal(backoffDelay(2, 0), 2000)
  t.equal(backoffDelay(3, 0), 4000)
  t.equal(backoffDelay(4, 0), 8000)
  t.equal(backoffDelay(8, 0), 128_000)
  t.equal(backoffDelay(9, 0), 256_000)
  t.equal(backoffDelay(10, 0), BACKOFF_MAX_MS, '512 s is capped at 5 min')
  t.equal(backoffDelay(1000, 0), BACKOFF_MAX_MS, 'keeps 5 min (the daemon recovers when the network returns)')
  t.equal(backoffDelay(Number.MAX_SAFE_INTEGER, 0), BACKOFF_MAX_MS, 'no overflow to Infinity or NaN')
  t.equal(backoffDelay(0, 0), 1000, 'attempt 0 is treated as the first')
  t.equal(backoffDelay(-3, 0), 1000)
  t.equal(backoffDelay(2, 1), 2400, '+20%')
  t.equal(backoffDelay(2, -1), 1600, '-20%')
  t.equal(backoffDelay(2, 5), 2400, 'jitter is clamped')
  t.equal(backoffDelay(1, -1), BACKOFF_MIN_MS, 'never below 1 s')
  t.equal(backoffDelay(20, 1), BACKOFF_MAX_MS, 'never above 5 min')
  t.equal(backoffDelay(20, -1), 240_000, 'at the cap the jitter only moves it earlier')
  const r = rng(42)
  for (let attempt = 1; attempt <= 15; attempt++) {
    const base = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** (attempt - 1))
    let bad = 0
    let lo = Infinity
    let hi = -Infinity
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(attempt, r() * 2 - 1)
      lo = Math.min(lo, d)
      hi = Math.max(hi, d)
      if (!Number.isInteger(d) || d < base * 0.8 - 0.5 || d > base * 1.2 + 0.5 || d < BACKOFF_MIN_MS || d > BACKOFF_MAX_MS) bad++
    }
    t.equal(bad, 0, `attempt ${attempt}: 200 jittered delays in [${lo}, ${hi}] around ${base}`)
  }
  // Non-decreasing without jitter.
  let prev = 0
  for (let attempt = 1; attempt <= 30; attempt++) {
    const d = backoffDelay(attempt, 0)
    if (d < prev) t.fail(`attempt ${attempt} shorter than the one before`)
    prev = d
  }
})

// docs/codex-compat.md#refresh-errors: every row, with the class Codex gives it.
const openai = (code: string) => ({ error: { message: 'm', type: 'invalid_request_error', param: null, code } })
const rows: Array<{ name: string; answer: TokenAnswer; kind: string; permanent: boolean }> = [
  { name: '401 refresh_token_reused', answer: { type: 'http', status: 401, body: openai('refresh_token_reused') }, kind: 'reused', permanent: true },
  { name: '401 refresh_token_expired', answer: { type: 'http', status: 401, body: openai('refresh_token_expired') }, kind: 'expired', permanent: true },
  { name: '401 refresh_token_invalidated', answer: { type: 'http', status: 401, body: openai('refresh_token_invalidated') }, kind: 'revoked', permanent: true },
  { name: '400 invalid_grant', answer: { type: 'http', status: 400, body: { error: 'invalid_grant', error_description: 'grant request is invalid' } }, kind: 'rejected', permanent: true },
  { name: '400 error.code refresh_token_reused', answer: { type: 'http', status: 400, body: { error: { code: 'refresh_token_reused' } } }, kind: 'reused', permanent: true },
  { name: '401 unauthorized', answer: { type: 'http', status: 401, body: { error: 'unauthorized' } }, kind: 'rejected', permanent: true },
  { name: '401 without a body', answer: { type: 'http', status: 401, body: null }, kind: 'rejected', permanent: true },
  { name: '400 unsupported_grant_type', answer: { type: 'http', status: 400, body: { error: 'unsupported_grant_type' } }, kind: 'transient', permanent: false },
  { name: '400 without a body', answer: { type: 'http', status: 400, body: null }, kind: 'transient', permanent: false },
  { name: '403', answer: { type: 'http', status: 403, body: { error: 'forbidden' } }, kind: 'transient', permanent: false },
  { name: '429', answer: { type: 'http', status: 429, body: { error: 'rate_limited' } }, kind: 'transient', permanent: false },
  { name: '500', answer: { type: 'http', status: 500, body: { error: 'server_error' } }, kind: 'transient', permanent: false },
  { name: '502 empty', answer: { type: 'http', status: 502, body: null }, kind: 'transient', permanent: false },
  { name: 'network error', answer: { type: 'network', code: 'ECONNREFUSED' }, kind: 'transient', permanent: false },
  { name: 'timeout', answer: { type: 'timeout' }, kind: 'transient', permanent: false },
  { name: '200 non-JSON', answer: { type: 'unparsable', status: 200 }, kind: 'transient', permanent: false },
  { name: '500 non-JSON', answer: { type: 'unparsable', status: 500 }, kind: 'transient', permanent: false },
]

t.test('classifyFailure: every row of docs/codex-compat.md#refresh-errors', async (t) => {
  for (const row of rows) {
    const f = classifyFailure(row.answer)
    t.equal(f.kind, row.kind, `${row.name}: kind`)
    t.equal(f.permanent, row.permanent, `${row.name}: ${row.permanent ? 'permanent' : 'transient'}`)
    t.type(f.message, 'string')
    t.ok(f.message.length > 0, `${row.name}: has a message`)
    t.equal(f.status, row.answer.type === 'http' || row.answer.type === 'unparsable' ? row.answer.status : null, `${row.name}: status`)
  }
})

t.test('classifyFailure: Codex’s words, never the server’s', async (t) => {
  t.match(classifyFailure(rows[0]!.answer).message, /refresh token was already used/)
  t.match(classifyFailure(rows[1]!.answer).message, /refresh token has expired/)
  t.match(classifyFailure(rows[2]!.answer).message, /refresh token was revoked/)
  t.match(classifyFailure(rows[3]!.answer).message, /^Your access token could not be refreshed\. Please log out and sign in again\.$/)
  const hostile = classifyFailure({ type: 'http', status: 500, body: { error: 'server_error', error_description: 'rt-SECRET-VALUE leaked' } })
  t.notMatch(hostile.message, /SECRET/, 'server text never reaches the message')
  const hostile401 = classifyFailure({ type: 'http', status: 401, body: { error: { code: 'refresh_token_reused', message: 'rt-SECRET' } } })
  t.notMatch(hostile401.message, /SECRET/)
})

t.test('classifyFailure: codes are matched without regard to case, known codes win over status', async (t) => {
  t.same(
    [classifyFailure({ type: 'http', status: 401, body: { error: { code: 'REFRESH_TOKEN_EXPIRED' } } }).kind, classifyFailure({ type: 'http', status: 400, body: { error: 'INVALID_GRANT' } }).kind],
    ['expired', 'rejected'],
  )
  t.equal(classifyFailure({ type: 'http', status: 403, body: { error: { code: 'refresh_token_invalidated' } } }).kind, 'revoked')
  t.equal(classifyFailure({ type: 'http', status: 400, body: { code: 'invalid_grant' } }).kind, 'rejected', 'a top-level code too')
  t.equal(classifyFailure({ type: 'http', status: 500, body: { error: 'invalid_grant' } }).permanent, false, 'invalid_grant only counts on a 400')
})

t.test('answerCode', async (t) => {
  t.equal(answerCode(null), null)
  t.equal(answerCode('text'), null)
  t.equal(answerCode({ error: { code: 'A' } }), 'a')
  t.equal(answerCode({ error: 'B' }), 'b')
  t.equal(answerCode({ code: 'C' }), 'c')
  t.equal(answerCode({ error: { message: 'no code' } }), null)
  t.equal(answerCode({ error: 42 }), null)
})
