// The refresher's failures end to end (docs/refresh.md; docs/codex-compat.md#refresh-errors): every way a token
// endpoint can refuse, classified as Codex does; the backoff of transient failures; and Codex's
// locks held by flock(1) while the daemon commits. The real daemon bundle, the harness's real
// oidc-provider, tokens minted with a real authorization-code flow.
//
// Nothing here waits on the daemon's real 5 s lock bound or 1 s backoff: the daemon's hidden knobs
// CODEX_AUTHD_LOCK_TIMEOUT_MS and CODEX_AUTHD_BACKOFF_SCALE (read once at start) shorten them, or
// lengthen the first backoff far beyond anything a loaded machine could outrun, where a test must
// look inside it. No token is ever printed: comparisons use t.ok(a === b), never t.equal.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, makeHome } from './support/daemon.js'
import { holdWithFlock } from './support/flock.js'
import { codexRefresh, decodeJwtPayload, FAILURES, mintTokens, type FailAnswer, type ProviderOptions, type TestProvider, type TokenSet } from './support/provider.js'
import { authFileFor, daemon, fileTokens, loggedIn, provider, refreshAnswers, refreshCalls, rotatedInFile, shape, status, writeAuthFile } from './support/refresh.js'
import { until } from './support/until.js'

/** The first backoff while a test looks inside it: 30 s ±20%, far longer than any step below takes. */
const LONG_BACKOFF = { CODEX_AUTHD_BACKOFF_SCALE: '30' }
const LONG_FIRST_MS = 30_000
/** A quick schedule for the tests that wait for the retries: 250 ms, 500 ms, 1 s (±20%). */
const QUICK_BACKOFF = { CODEX_AUTHD_BACKOFF_SCALE: '0.25' }
/** The lock bound, 1 s instead of Codex's 5 s, for the tests that hold a lock on purpose. */
const QUICK_LOCKS = { CODEX_AUTHD_LOCK_TIMEOUT_MS: '1000', ...QUICK_BACKOFF }

interface FailureCase {
  name: string
  answer?: FailAnswer
  /** instead of an injected answer: make the real provider refuse */
  prepare?: (p: TestProvider, minted: TokenSet) => Promise<void>
  ttl?: ProviderOptions['ttl']
  kind: 'expired' | 'reused' | 'revoked' | 'rejected' | 'transient'
}

const failureCases: FailureCase[] = [
  { name: '401 refresh_token_reused', answer: FAILURES.reused, kind: 'reused' },
  { name: '401 refresh_token_expired', answer: FAILURES.expired, kind: 'expired' },
  { name: '401 refresh_token_invalidated', answer: FAILURES.invalidated, kind: 'revoked' },
  { name: '400 invalid_grant', answer: FAILURES.invalidGrant, kind: 'rejected' },
  { name: '400 error.code refresh_token_reused', answer: FAILURES.reused400, kind: 'reused' },
  { name: '401 unauthorized', answer: FAILURES.unauthorized, kind: 'rejected' },
  {
    name: 'real reuse: the refresh token was already spent by someone else',
    prepare: async (p, minted) => {
      const r = await codexRefresh(p, minted.refreshToken)
      if (r.status !== 200) throw new Error(`setup refresh answered ${r.status}`)
    },
    kind: 'reused',
  },
  {
    name: 'real expiry: the refresh token outlived its lifetime',
    ttl: { refreshTokenLifetime: 1 },
    kind: 'expired',
  },
  { name: '400 unsupported_grant_type', answer: FAILURES.unsupportedGrantType, kind: 'transient' },
  { name: '403', answer: FAILURES.forbidden, kind: 'transient' },
  { name: '429', answer: FAILURES.rateLimited, kind: 'transient' },
  { name: '500', answer: FAILURES.serverError, kind: 'transient' },
  { name: '200 non-JSON', answer: FAILURES.nonJson, kind: 'transient' },
  { name: '200 {} (no tokens)', answer: FAILURES.emptyJson, kind: 'transient' },
  { name: 'network error (connection reset)', answer: FAILURES.network, kind: 'transient' },
]

t.test('failures: -32002 with data.kind, status, file untouched, no retry storm', async (t) => {
  // The cases are independent (a provider, home and daemon each): four at a time.
  // Every case has its own provider and home. Access tokens are minted with a 1-second lifetime,
  // all at once, then the test waits once until all of them have expired.
  const prepared = await Promise.all(
    failureCases.map(async (fc) => {
      const w = await provider(t, { ttl: { authorizationCode: 1, refreshToken: 3600, ...fc.ttl } })
      const minted = await mintTokens(w.provider)
      return { fc, w, minted, exp: decodeJwtPayload(minted.accessToken).exp as number }
    }),
  )
  const lastExp = Math.max(...prepared.map((x) => x.exp))
  t.ok(prepared.every((x) => x.exp - (decodeJwtPayload(x.minted.accessToken).iat as number) === 1), 'minted with a 1 s lifetime')
  await until('the minted access tokens to expire', () => Date.now() > lastExp * 1000 + 50, 5000)

  t.jobs = 4
  for (const { fc, w, minted } of prepared) {
    t.test(fc.name, async (t) => {
      const p = w.provider
      const permanent = fc.kind !== 'transient'
      if (fc.prepare) await fc.prepare(p, minted)
      if (fc.answer) p.failNext(1, fc.answer)
      const callsBefore = refreshCalls(p)
      const home = await makeHome()
      const bytes = writeAuthFile(home, authFileFor(minted))
      const d = await daemon(t, home, p, { env: LONG_BACKOFF })
      const c = await connect(t, d)

      const res = await c.call('getAuth')
      t.equal(res.error?.code, -32002, `getAuth on the expired token: ${shape(res)}`)
      t.equal(res.error?.data?.reason, 'refresh_failed')
      t.equal(res.error?.data?.kind, fc.kind, 'data.kind')
      t.notOk(JSON.stringify(res).includes(minted.refreshToken), 'no refresh token in the error')

      const st = await status(c)
      const statusAt = Date.now()
      t.equal(refreshCalls(p) - callsBefore, 1, 'one attempt so far')
      t.equal(st.refresh.state, permanent ? 'failed' : 'backoff', 'status.refresh.state')
      t.equal(st.refresh.lastError?.reason, fc.kind, 'status.refresh.lastError.reason')
      t.type(st.refresh.lastError?.message, 'string')
      t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'auth.json byte-for-byte untouched')
      t.equal(st.loggedIn, true, 'still logged in (the file is never deleted for a failure)')

      if (permanent) {
        t.equal(st.refresh.nextAttemptAt, null, 'no next attempt')
        t.equal(st.tokens.nextRefreshAt, null, 'nothing scheduled')
        // getAuth and even a forced refresh make no call for a refresh token known to be dead.
        for (let i = 0; i < 3; i++) {
          const again = await c.call('getAuth', { minValiditySeconds: 0 })
          t.equal(again.error?.data?.kind, fc.kind, `getAuth again (${i + 1})`)
        }
        const forced = await c.call('refresh')
        t.equal(forced.error?.code, -32002, 'a forced refresh answers -32002 too')
        t.equal(forced.error?.data?.kind, fc.kind)
        t.equal(refreshCalls(p) - callsBefore, 1, 'no further calls')
        t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'auth.json still untouched')
        // Until the file changes: a new login (due at once) is refreshed again.
        p.setTtl({ authorizationCode: 500, refreshTokenLifetime: 30 * 86400 })
        const relogin = await mintTokens(p)
        writeAuthFile(home, authFileFor(relogin))
        const ok = await until('a refresh of the new login', async () => {
          const r = await c.call('getAuth')
          return r.result && r.result.token !== relogin.accessToken ? r : null
        })
        t.ok(ok.result.token !== minted.accessToken, 'served a refreshed token of the new login')
        t.equal(refreshCalls(p) - callsBefore, 2, 'exactly one more call, with the new refresh token')
        const st2 = await status(c)
        t.equal(st2.refresh.state, 'idle')
        t.equal(st2.refresh.lastError, null, 'the error is cleared')
      } else {
        const nextAttemptAt = Date.parse(st.refresh.nextAttemptAt)
        t.ok(Number.isFinite(nextAttemptAt), 'nextAttemptAt is set')
        // The first backoff, 30 s ±20% here (1 s unscaled): no earlier than that after the failed
        // call reached the provider, no later than that after status answered (the daemon
        // computed it in between).
        const failedAt = p.calls.filter((x) => x.grantType === 'refresh_token').at(-1)!.at
        t.ok(nextAttemptAt - failedAt >= 0.8 * LONG_FIRST_MS, `the first backoff is at least 0.8 x ${LONG_FIRST_MS} ms (${nextAttemptAt - failedAt} ms after the failed call)`)
        t.ok(nextAttemptAt - statusAt <= 1.2 * LONG_FIRST_MS, `and at most 1.2 x ${LONG_FIRST_MS} ms (${nextAttemptAt - statusAt} ms after status answered)`)
        // getAuth during the backoff does not start another attempt early.
        for (let i = 0; i < 3; i++) {
          const again = await c.call('getAuth')
          t.equal(again.error?.data?.kind, 'transient', `getAuth during the backoff (${i + 1})`)
        }
        t.ok(Date.now() < nextAttemptAt, 'still inside the backoff')
        t.equal(refreshCalls(p) - callsBefore, 1, 'no early attempt')
        // A forced refresh skips the backoff and succeeds (the answer is real); the retry that
        // comes on its own is the next test's subject, on a quick schedule.
        const forced = await c.call('refresh')
        t.notOk(forced.error, shape(forced))
        const tk = await rotatedInFile('the forced refresh to land in auth.json', home, minted.refreshToken)
        t.ok(tk.refreshToken === refreshAnswers(w).at(-1)?.refresh_token, 'the rotated refresh token is saved')
        t.ok(forced.result?.token === tk.accessToken, 'the forced refresh serves it')
        const ok = await c.call('getAuth')
        t.ok(ok.result?.token === tk.accessToken, 'getAuth serves it')
        const st2 = await status(c)
        t.equal(st2.refresh.state, 'idle')
        t.equal(st2.refresh.nextAttemptAt, null, 'the backoff is cleared')
        t.equal(st2.refresh.lastError, null, 'and the error')
        t.equal(refreshCalls(p) - callsBefore, 2, 'two calls in all')
      }
      t.equal(d.logs.filter((l) => l.includes(minted.refreshToken) || l.includes(minted.accessToken)).length, 0, 'no token in the logs')
    })
  }
})

t.test('transient failures back off 1 s, 2 s, ... (scaled to 250 ms, 500 ms, ...) and recover on their own', async (t) => {
  const { p, minted, home, bytes } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  p.failNext(3, FAILURES.serverError)
  const d = await daemon(t, home, p, { env: QUICK_BACKOFF })
  const c = await connect(t, d)
  const seen: Array<{ attempt: number; next: number }> = []
  // Each time a new failure is recorded, nextAttemptAt moves; the next call never precedes it.
  await until(
    'three failed attempts and a success',
    async () => {
      const st = await status(c)
      const n = refreshCalls(p)
      if (st.refresh.state === 'backoff' && st.refresh.nextAttemptAt && !seen.some((s) => s.attempt === n)) {
        if (refreshCalls(p) === n) seen.push({ attempt: n, next: Date.parse(st.refresh.nextAttemptAt) })
      }
      return n >= 4 && (await fileTokens(home)).refreshToken !== minted.refreshToken
    },
    20_000,
  )
  const calls = p.calls.filter((x) => x.grantType === 'refresh_token')
  t.equal(calls.length, 4, 'three failures, then one success')
  for (const s of seen) {
    const nextCall = calls[s.attempt]!
    t.ok(nextCall.at >= s.next, `attempt ${s.attempt + 1} was not made before nextAttemptAt`)
  }
  const gaps = calls.slice(1).map((x, i) => x.at - calls[i]!.at)
  t.comment(`gaps between attempts: ${gaps.join(', ')} ms`)
  // Lower bounds only (a loaded machine makes gaps longer, never shorter); a backoff that did not
  // double would miss the second and third.
  t.ok(gaps[0]! >= 200 && gaps[1]! >= 400 && gaps[2]! >= 800, 'doubling from 250 ms (±20%)')
  t.notOk(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'written once it worked')
})

// ---------------------------------------------------------------- locks held by flock(1)

t.test('auth.json.lock held by flock(1) during our commit: tokens pending and journaled, then committed; after SIGTERM the journal is committed at the next start', async (t) => {
  const { w, p, minted, home, bytes } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  const holder = await holdWithFlock(t, path.join(home, 'auth.json.lock'))
  const d = await daemon(t, home, p, { env: QUICK_LOCKS })
  const c = await connect(t, d)

  // The refresh happens (no lock is needed for the HTTP call) and its token is served at once.
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  t.ok(res.result.token !== minted.accessToken, 'getAuth serves the NEW token while it is pending')
  t.equal(refreshCalls(p), 1)
  const answer = refreshAnswers(w)[0]!
  t.ok(res.result.token === answer.access_token)
  // After the lock bound (1 s here, Codex's 5 s by default): refresh_pending.
  const st = await until('refresh_pending', async () => {
    const s = await status(c)
    return s.problems.some((x: any) => x.code === 'refresh_pending') ? s : null
  }, 12_000)
  t.ok(st.loggedIn, 'still logged in')
  t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'auth.json still holds the old tokens, untouched')
  t.ok((await c.call('getAuth')).result.token === answer.access_token, 'still serving the pending token')
  const journal = path.join(home, 'authd.pending.json')
  t.ok(fs.existsSync(journal), 'the answer is journaled while it waits for the lock')
  t.match(st.problems.find((x: any) => x.code === 'refresh_pending').message, `journaled in ${journal}`)

  // Release: the commit (retried with backoff) lands.
  await holder.release()
  const landed = await rotatedInFile('the pending tokens in auth.json', home, minted.refreshToken, 20_000)
  t.ok(landed.refreshToken === answer.refresh_token && landed.accessToken === answer.access_token, 'the refreshed tokens were written')
  await until('refresh_pending to clear', async () => !(await status(c)).problems.some((x: any) => x.code === 'refresh_pending'))
  await until('the journal to be deleted once written', () => !fs.existsSync(journal))
  t.equal(refreshCalls(p), 1, 'one refresh call in all: the commit retries, the refresh is not repeated')

  // Again, and this time SIGTERM while the tokens are pending: the journal stays for the next start.
  const holder2 = await holdWithFlock(t, path.join(home, 'auth.json.lock'))
  const forced = await c.call('refresh')
  t.notOk(forced.error, shape(forced))
  t.equal(refreshCalls(p), 2)
  const answer2 = refreshAnswers(w)[1]!
  t.ok(forced.result.token === answer2.access_token, 'the forced refresh serves its token')
  const fileBefore = fs.readFileSync(path.join(home, 'auth.json'))
  const stopped = Date.now()
  const exit = await d.stop('SIGTERM')
  t.comment(`SIGTERM took ${Date.now() - stopped} ms (it tries the commit once more)`)
  t.same(exit, { code: 0, signal: null }, 'clean exit')
  const park = journal
  t.ok(fs.existsSync(park), 'authd.pending.json journaled')
  t.equal(fs.statSync(park).mode & 0o777, 0o600, 'journaled 0600')
  t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(fileBefore), 'auth.json untouched while locked')
  t.notOk(fs.readFileSync(park, 'utf8').includes(landed.refreshToken), 'the journal names the spent token only by its hash')

  // The next start (lock released) commits the journaled tokens and deletes the journal.
  await holder2.release()
  const d2 = await daemon(t, home, p, { env: QUICK_LOCKS })
  t.notOk(fs.existsSync(park), 'the journal is deleted')
  t.ok(d2.logs.some((l) => l.includes('journaled refresh result handled') && l.includes('"outcome":"written"')), 'committed at start')
  const tk = await fileTokens(home)
  t.ok(tk.refreshToken === answer2.refresh_token && tk.accessToken === answer2.access_token, 'auth.json holds the parked refresh')
  const c2 = await connect(t, d2)
  t.ok((await c2.call('getAuth')).result.token === answer2.access_token, 'and the next daemon serves it')
  t.equal(refreshCalls(p), 2, 'no refresh was needed for it')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was spent twice')
})

t.test('a journaled result whose lock is still held at the next start is kept pending, not lost', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  const holder = await holdWithFlock(t, path.join(home, 'auth.json.lock'))
  const d = await daemon(t, home, p, { env: QUICK_LOCKS })
  const c = await connect(t, d)
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  const answer = refreshAnswers(w)[0]!
  t.same(await d.stop('SIGTERM'), { code: 0, signal: null })
  t.ok(fs.existsSync(path.join(home, 'authd.pending.json')), 'journaled')
  // Still locked when the next daemon starts: it cannot commit within the lock bound.
  const d2 = await daemon(t, home, p, { env: QUICK_LOCKS })
  const c2 = await connect(t, d2)
  const g = await c2.call('getAuth')
  t.ok(g.result?.token === answer.access_token, 'the next daemon serves the parked token')
  t.ok((await status(c2)).problems.some((x: any) => x.code === 'refresh_pending'), 'reported as refresh_pending')
  await holder.release()
  const tk = await rotatedInFile('the parked tokens in auth.json', home, minted.refreshToken, 20_000)
  t.ok(tk.refreshToken === answer.refresh_token, 'committed once the lock was free')
  t.equal(refreshCalls(p), 1, 'no second refresh')
  await until('the journal to be deleted once written', () => !fs.existsSync(path.join(home, 'authd.pending.json')))
})
