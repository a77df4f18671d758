// Table tests of the broker's pure decisions (docs/broker.md#decisions): one row per situation a
// refresh request can meet. The clock is a value; nothing here sleeps.
import t from 'tap'
import {
  CODEX_WINDOW_MS,
  HANDOUT_MARGIN_MS,
  RECOVERY_RUN_MS,
  classify,
  emptyGuard,
  noteRecoverySpend,
  recoveryDelayMs,
  refreshReason,
  type BrokerView,
  type Decision,
  type IssuedTokens,
  type RecoveryGuard,
  type Request,
  type SpendRecord,
} from '../src/broker/classify.js'

const NOW = Date.UTC(2026, 10, 29, 12, 0, 0)
const HOUR = 3_600_000

const tok = (n: number, expIn: number | null = HOUR): IssuedTokens => ({
  idToken: `id-${n}`,
  accessToken: `at-${n}`,
  refreshToken: `rt-${n}`,
  accessExpMs: expIn === null ? null : NOW + expIn,
})

const view = (over: Partial<BrokerView> = {}): BrokerView => ({
  current: tok(2),
  spends: new Map(),
  permanentKind: null,
  backoffUntil: null,
  loopGuardUntil: null,
  now: NOW,
  ...over,
})
const req = (refreshToken: string, reason: Request['reason'] = 'unauthorized_recovery', reread = false): Request => ({ refreshToken, reason, reread })
const spends = (...e: Array<[string, SpendRecord]>): Map<string, SpendRecord> => new Map(e)

interface Row {
  name: string
  req: Request
  view: BrokerView
  guard?: RecoveryGuard
  want: Decision
}

const justUnderWindow = CODEX_WINDOW_MS + HANDOUT_MARGIN_MS - 1

const rows: Row[] = [
  // -- the token the file holds now
  { name: 'current token, 401 recovery: spend', req: req('rt-2'), view: view(), want: { kind: 'spend' } },
  { name: 'current token, proactive, access still fresh: answer current, nothing spent', req: req('rt-2', 'proactive_expiry'), view: view(), want: { kind: 'answer', tokens: tok(2), from: 'current' } },
  { name: 'current token, no exp at all: answer current', req: req('rt-2', 'scheduled'), view: view({ current: tok(2, null) }), want: { kind: 'answer', tokens: tok(2, null), from: 'current' } },
  { name: 'current token, proactive, within Codex window: spend', req: req('rt-2', 'proactive_expiry'), view: view({ current: tok(2, justUnderWindow) }), want: { kind: 'spend' } },
  { name: 'current token, unknown reason, expired: spend', req: req('rt-2', 'other'), view: view({ current: tok(2, -1000) }), want: { kind: 'spend' } },
  { name: 'current token being spent: await that spend', req: req('rt-2'), view: view({ spends: spends(['rt-2', { state: 'in_flight' }]) }), want: { kind: 'await', spent: 'rt-2' } },
  { name: 'current token, permanent failure known: 401 with its code', req: req('rt-2'), view: view({ permanentKind: 'reused' }), want: { kind: 'denied', code: 'refresh_token_reused', why: 'failed' } },
  { name: 'current token, permanent rejected: 401 invalid_grant', req: req('rt-2'), view: view({ permanentKind: 'rejected' }), want: { kind: 'denied', code: 'invalid_grant', why: 'failed' } },
  { name: 'current token, refresher backing off: 5xx', req: req('rt-2'), view: view({ backoffUntil: NOW + 1 }), want: { kind: 'unavailable', why: 'backoff' } },
  { name: 'current token, backoff over: spend', req: req('rt-2'), view: view({ backoffUntil: NOW }), want: { kind: 'spend' } },
  { name: 'current token, expiring, backing off: 5xx', req: req('rt-2', 'proactive_expiry'), view: view({ current: tok(2, 1000), backoffUntil: NOW + 5000 }), want: { kind: 'unavailable', why: 'backoff' } },
  { name: 'current token near expiry, refreshed moments ago (loop guard): 5xx', req: req('rt-2', 'proactive_expiry'), view: view({ current: tok(2, 1000), loopGuardUntil: NOW + 1 }), want: { kind: 'unavailable', why: 'not_fresh' } },
  { name: 'a recovery just after a spend (loop guard): its fresh tokens, once, nothing spent', req: req('rt-2'), view: view({ loopGuardUntil: NOW + 1 }), want: { kind: 'answer', tokens: tok(2), from: 'current', restated: true } },
  { name: 'a second recovery for those tokens is not held back by the loop guard: spend', req: req('rt-2'), view: view({ loopGuardUntil: NOW + 1 }), guard: { ...emptyGuard(), restated: ['at-2'] }, want: { kind: 'spend' } },
  { name: 'a recovery just after a spend whose tokens are not fresh: spend', req: req('rt-2'), view: view({ current: tok(2, justUnderWindow), loopGuardUntil: NOW + 1 }), want: { kind: 'spend' } },
  // -- the recovery guard
  { name: 'recovery for an access token that already had its spend: 5xx', req: req('rt-2'), view: view(), guard: { recovered: ['at-2'], run: 1, lastSpendMs: NOW - HOUR, restated: [] }, want: { kind: 'unavailable', why: 'recovery_used' } },
  { name: 'recovery right after a recovery spend (a run): 5xx', req: req('rt-2'), view: view(), guard: { recovered: ['at-1'], run: 1, lastSpendMs: NOW - 1000, restated: [] }, want: { kind: 'unavailable', why: 'recovery_backoff' } },
  { name: 'recovery once the run delay has passed: spend', req: req('rt-2'), view: view(), guard: { recovered: ['at-1'], run: 1, lastSpendMs: NOW - recoveryDelayMs(1), restated: [] }, want: { kind: 'spend' } },
  { name: 'recovery long after the last one (no run): spend', req: req('rt-2'), view: view(), guard: { recovered: ['at-1'], run: 5, lastSpendMs: NOW - recoveryDelayMs(5) - RECOVERY_RUN_MS, restated: [] }, want: { kind: 'spend' } },
  { name: 'proactive request is not held back by the recovery guard', req: req('rt-2', 'proactive_expiry'), view: view({ current: tok(2, 1000) }), guard: { recovered: ['at-2'], run: 3, lastSpendMs: NOW - 1, restated: [] }, want: { kind: 'spend' } },
  // -- tokens the daemon spent
  { name: 'a token whose spend is in flight: await it', req: req('rt-1'), view: view({ spends: spends(['rt-1', { state: 'in_flight' }]) }), want: { kind: 'await', spent: 'rt-1' } },
  { name: 'a spent token whose result is current: answer that result', req: req('rt-1'), view: view({ spends: spends(['rt-1', { state: 'done', result: tok(2) }]) }), want: { kind: 'answer', tokens: tok(2), from: 'spend' } },
  { name: 'second recovery for the same token: the same answer, nothing spent', req: req('rt-1'), view: view({ spends: spends(['rt-1', { state: 'done', result: tok(2) }]) }), guard: { recovered: ['at-1'], run: 1, lastSpendMs: NOW - 10, restated: [] }, want: { kind: 'answer', tokens: tok(2), from: 'spend' } },
  { name: 'a spent token whose result is current but near expiry: as the current token', req: req('rt-1', 'proactive_expiry'), view: view({ current: tok(2, 1000), spends: spends(['rt-1', { state: 'done', result: tok(2, 1000) }]) }), want: { kind: 'spend' } },
  { name: 'an older, settled token (a backup): 401 reused, never revived', req: req('rt-0'), view: view({ current: tok(3), spends: spends(['rt-0', { state: 'done', result: tok(1) }], ['rt-1', { state: 'done', result: tok(2) }], ['rt-2', { state: 'done', result: tok(3) }]) }), want: { kind: 'denied', code: 'refresh_token_reused', why: 'superseded' } },
  { name: 'a spent token after a logout: 401 reused', req: req('rt-1'), view: view({ current: null, spends: spends(['rt-1', { state: 'done', result: tok(2) }]) }), want: { kind: 'denied', code: 'refresh_token_reused', why: 'superseded' } },
  { name: 'a token whose spend failed for good: 401 with its code', req: req('rt-1'), view: view({ spends: spends(['rt-1', { state: 'failed', permanent: true, kind: 'revoked' }]) }), want: { kind: 'denied', code: 'refresh_token_invalidated', why: 'failed' } },
  { name: 'a token whose spend failed for now: 5xx', req: req('rt-1'), view: view({ spends: spends(['rt-1', { state: 'failed', permanent: false, kind: 'transient' }]) }), want: { kind: 'unavailable', why: 'spend_failed' } },
  // -- anything else
  { name: 'unknown token: re-read first', req: req('rt-x'), view: view(), want: { kind: 'reread' } },
  { name: 'unknown token after the re-read: 401 invalidated', req: req('rt-x', 'unauthorized_recovery', true), view: view(), want: { kind: 'denied', code: 'refresh_token_invalidated', why: 'unknown' } },
  { name: 'no tokens at all, after the re-read: 401', req: req('rt-x', 'proactive_expiry', true), view: view({ current: null }), want: { kind: 'denied', code: 'refresh_token_invalidated', why: 'unknown' } },
  { name: 'empty token: re-read, never matched', req: req(''), view: view(), want: { kind: 'reread' } },
]

for (const r of rows) {
  t.test(r.name, async (t) => {
    t.same(classify(r.req, r.view, r.guard ?? emptyGuard()), r.want)
  })
}

t.test('the recovery guard: one spend per access token, then spaced-out runs', async (t) => {
  let g = emptyGuard()
  let now = NOW
  // A backend that rejects every token: each recovery spend issues at-n+1, which is rejected again.
  const spendsAt: number[] = []
  for (let n = 1; n <= 400; n++) {
    const cur = { ...tok(n), accessExpMs: now + HOUR }
    const d = classify(req(cur.refreshToken), view({ current: cur, now }), g)
    if (d.kind === 'spend') {
      spendsAt.push(now)
      g = noteRecoverySpend(g, cur.accessToken, now)
      // the same access token again (another Codex process): no second spend
      t.same(classify(req(cur.refreshToken), view({ current: cur, now }), g), { kind: 'unavailable', why: 'recovery_used' })
    } else n-- // the same token is presented again later
    now += 5_000 // Codex retries every few seconds
    if (now > NOW + 4 * HOUR) break
  }
  // 30 s, 60 s, 120 s … spacing, capped at an hour: about a dozen spends in 4 hours, not one every 30 s.
  t.ok(spendsAt.length <= 14, `spends in 4 h: ${spendsAt.length}`)
  t.ok(spendsAt.length >= 5, `still recovers: ${spendsAt.length}`)
  for (let i = 2; i < spendsAt.length; i++) t.ok(spendsAt[i]! - spendsAt[i - 1]! >= spendsAt[i - 1]! - spendsAt[i - 2]!, 'gaps never shrink')
})

t.test('a run ends after a quiet period', async (t) => {
  const g1 = noteRecoverySpend(emptyGuard(), 'at-1', NOW)
  t.equal(g1.run, 1)
  const g2 = noteRecoverySpend(g1, 'at-2', NOW + 1000)
  t.equal(g2.run, 2)
  const g3 = noteRecoverySpend(g2, 'at-3', NOW + 1000 + recoveryDelayMs(2) + RECOVERY_RUN_MS)
  t.equal(g3.run, 1)
  t.same(g3.recovered, ['at-1', 'at-2', 'at-3'])
  let g = g3
  for (let i = 0; i < 100; i++) g = noteRecoverySpend(g, `x-${i}`, NOW)
  t.equal(g.recovered.length, 32, 'bounded')
})

t.test('refresh reasons', async (t) => {
  for (const r of ['proactive_expiry', 'scheduled', 'unauthorized_recovery'] as const) t.equal(refreshReason(r), r)
  for (const r of [undefined, null, 3, 'x', '']) t.equal(refreshReason(r), 'other')
})
