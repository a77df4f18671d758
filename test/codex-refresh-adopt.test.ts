// Adopt instead of failing, with the REAL Codex CLI 0.171.0 (docs/refresh.md#adopting-another-writers-refresh,
// docs/codex-compat.md#refresh-triggers): the backend answers Codex's access token with 401, so
// Codex reloads auth.json, retries, and on the second 401 refreshes on its own (refresh_reason
// unauthorized_recovery), just before the daemon's callers need a refresh. The daemon's spend of
// the same refresh token is answered refresh_token_reused; it waits for Codex's commit, adopts
// Codex's tokens, and no caller is told to sign in again.
//
// To make "just before" deterministic rather than a race, the test holds auth.lock (flock(1), as
// another Codex would) from before Codex starts: Codex's refresh request goes out (Codex spends
// outside the lock) and its commit waits for the lock. The getAuth callers arrive once Codex's
// answer is in; the lock is released once the daemon's spend has been rejected. The harness
// provider rotates refresh tokens and detects reuse; Codex runs in a loopback-only namespace
// (test/support/codex.ts). No token is ever printed.
import t from 'tap'
import path from 'node:path'
import { connect } from './support/daemon.js'
import { holdWithFlock } from './support/flock.js'
import { mintTokens, startProvider, type TestProvider, type TokenCall } from './support/provider.js'
import { authFileFor, CODEX_UA, codexDaemon, codexHome, DAEMON_UA, requireCodex, startCodexWorld, tokenId, writeAuthJson, type CodexWorld } from './support/codex.js'
import { fileTokens } from './support/refresh.js'
import { until } from './support/until.js'

await requireCodex()

let provider: TestProvider
let world: CodexWorld
t.before(async () => {
  provider = await startProvider({ ttl: { refreshToken: 3600 } })
  world = await startCodexWorld(provider)
})
t.teardown(async () => {
  await world?.close()
  await provider?.stop()
})

const isRefresh = (c: TokenCall): boolean => c.endpoint === 'token' && c.grantType === 'refresh_token'
const codexRefresh = (): TokenCall | undefined => provider.calls.find((c) => isRefresh(c) && CODEX_UA.test(c.userAgent))
const daemonRefresh = (): TokenCall | undefined => provider.calls.find((c) => isRefresh(c) && DAEMON_UA.test(c.userAgent))

/** What the provider saw, for failure messages: user agents, reasons, statuses; never tokens. */
const callSummary = (): string =>
  provider.calls
    .map((c) => `${c.endpoint} ${c.grantType ?? ''} ${c.userAgent.split(' ')[0]} ${c.refreshReason ?? ''} -> ${c.status}${c.error ? ` ${c.error}` : ''}${c.refreshTokenReuse ? ' REUSED' : ''}`)
    .join('\n')

t.test('Codex refreshes on its 401 path just before the daemon: the daemon adopts, no caller is told to sign in again', async (t) => {
  const home = await codexHome(world)
  // A 15-minute token: not due by the clock (exp − 10 min is 5 minutes away) and outside Codex's
  // own 300 s window, so only the 401 makes Codex refresh, and only callers asking for 20 minutes
  // of validity make the daemon refresh.
  provider.setTtl({ authorizationCode: 900 })
  t.teardown(() => provider.setTtl({ authorizationCode: 3600 }))
  const minted = await mintTokens(provider)
  // The backend stand-in answers this access token with 401.
  world.stub.rejected.add(tokenId(minted.accessToken))
  writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) }))
  provider.resetCalls()

  const d = await codexDaemon(t, world, home)
  const c = await connect(t, d)
  const lock = await holdWithFlock(t, path.join(home, 'auth.lock'))
  const exec = world.codex(home, ['exec', '--skip-git-repo-check', 'hi'])

  await until('Codex refreshed on its 401 path (answered)', () => codexRefresh()?.done === true && codexRefresh()?.status === 200, 60_000)
  t.equal(codexRefresh()?.refreshReason, 'unauthorized_recovery', 'Codex refreshed because of the 401')
  t.equal((await fileTokens(home)).refreshToken === minted.refreshToken, true, 'Codex has not committed yet (auth.lock is held)')

  // Callers that need more validity than the old token has left: the daemon must refresh.
  const callers = Array.from({ length: 5 }, () => c.call('getAuth', { minValiditySeconds: 1200 }))
  await until('the daemon spent the same refresh token and was answered', () => daemonRefresh()?.done === true, 30_000)
  const spend = daemonRefresh()!
  t.equal(spend.status, 401, 'the daemon’s spend was rejected', { calls: callSummary() })
  t.equal(spend.error, 'refresh_token_reused', 'as refresh_token_reused')
  await lock.release() // Codex commits now

  const answers = await Promise.all(callers)
  const r = await exec
  const file = await fileTokens(home)
  t.ok(file.refreshToken !== minted.refreshToken, `Codex wrote its rotated tokens (codex exec exit ${r.code})`)
  t.same(
    answers.map((a) => (a.error ? `error ${a.error.code}` : a.result?.token === file.accessToken ? 'Codex’s token' : 'another token')),
    answers.map(() => 'Codex’s token'),
    'every caller was answered with the token Codex wrote, none with -32002',
  )
  const st = (await c.call('status')).result
  t.equal(st.refresh.lastError, null, 'status.refresh.lastError is null')
  t.equal(st.refresh.state, 'idle', 'no failure recorded')
  t.equal(st.loggedIn, true, 'logged in')
  t.equal(provider.calls.filter((c) => isRefresh(c) && DAEMON_UA.test(c.userAgent)).length, 1, 'the daemon spent once', { calls: callSummary() })
  // Informational: the provider revokes the whole grant on a reuse (Codex's new tokens too), and
  // a Codex task still holding the old token may take its 401 path once more.
  t.comment(`token endpoint calls:\n${callSummary()}`)
  t.ok(d.logs.some((l) => l.includes('adopted its tokens')), 'the daemon logged the adoption')
  const g = await c.call('getAuth')
  t.ok(g.result?.token === file.accessToken, 'getAuth keeps serving Codex’s token')
})
