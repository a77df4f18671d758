// Issue 14 with the REAL Codex CLI 0.171.0: the daemon stopped (and restarted) in the middle of a
// Codex session run through `codex-auth exec`. Codex keeps working either way: a restarted daemon on
// the same socket answers the listener's next request; with no daemon owning the home, the listener
// passes Codex's refresh through to the real endpoint (docs/broker.md#the-listener). Set-up as
// broker-codex-interop.test.ts; the stand-in holds Codex's 401 answer while the test stops and
// starts daemons, so each step happens at a known point of Codex's session, not after a sleep.
// No token is ever printed.
import t from 'tap'
import { codexDaemon, CODEX_UA, endedByItself, requireCodex, tokenId } from './support/codex.js'
import { EXEC, fileTokens, isRefresh, shown, startBrokerCodex, type BrokerCodex } from './support/broker-codex.js'
import { connect } from './support/daemon.js'
import { until } from './support/until.js'

await requireCodex()

let x: BrokerCodex
t.before(async () => {
  x = await startBrokerCodex()
})
t.teardown(() => x?.close())
t.afterEach(() => {
  x.world.stub.hold401 = null
})

/** Holds the login's 401 answers until `step` has run once (started by the first of them). */
function holdFirst401(accessToken: string, step: () => Promise<void>): () => boolean {
  const id = tokenId(accessToken)
  let done: Promise<void> | null = null
  x.world.stub.hold401 = (r) => (r.bearerId === id ? (done ??= step()) : Promise.resolve())
  return () => done !== null
}

t.test('the daemon restarted while Codex waits on its 401: Codex\'s recovery goes to the new daemon', async (t) => {
  const { home, minted, d, wrap } = await x.rejectedLogin(t)
  let second: Awaited<ReturnType<typeof codexDaemon>> | null = null
  const happened = holdFirst401(minted.accessToken, async () => {
    await d.stop()
    second = await codexDaemon(t, x.world, home, d.socket)
  })
  const r = await x.world.codex(home, EXEC, { wrap })
  t.ok(happened(), 'Codex got its 401 and the daemon was restarted meanwhile')
  t.ok(endedByItself(r), `codex ended by itself (${r.ms} ms)`, { output: shown(r) })
  t.notMatch(r.stderr, /sign in again|log out/i, 'Codex was not logged out', { output: shown(r) })
  const c = await connect(t, second!)
  const st = (await c.call('status')).result
  t.comment(`new daemon: spends ${JSON.stringify(st.counters.refreshTokenSpends)}; broker ${JSON.stringify(st.counters.broker.requestsByReason)} -> ${JSON.stringify(st.counters.broker.answers)}; codex ${r.ms} ms`)
  t.equal(st.counters.broker.answers.spent, 1, 'Codex\'s recovery reached the new daemon, which spent')
  t.equal(x.refreshes(), 1, 'one spend', { calls: x.callSummary() })
  t.equal(x.codexRefreshes(), 0, 'none of it Codex\'s own')
  t.equal(x.reused(), 0, 'no refresh token spent twice')
  await until('the new daemon\'s tokens in auth.json', async () => {
    const f = fileTokens(home)
    return f.refreshToken !== minted.refreshToken && f.accessToken === (await c.call('getAuth')).result?.token
  })
  const again = await c.call('refresh')
  t.ok(again.result !== undefined && again.error === undefined, 'the file\'s refresh token is the daemon\'s live one', { error: again.error })
  t.equal(x.reused(), 0)
  t.same(second!.secretsInOutput(), [])
})

t.test('the daemon stopped while Codex waits on its 401, started after: Codex refreshes as without us, the new daemon takes over its tokens', async (t) => {
  const { home, minted, d, wrap } = await x.rejectedLogin(t)
  const happened = holdFirst401(minted.accessToken, async () => {
    await d.stop()
  })
  const r = await x.world.codex(home, EXEC, { wrap })
  t.ok(happened(), 'Codex got its 401 and the daemon was stopped meanwhile')
  t.ok(endedByItself(r), `codex ended by itself (${r.ms} ms)`, { output: shown(r) })
  t.match(r.stderr, /codex-authd is not reachable; the refresh request went to/, 'exec told the user it passed the refresh through')
  // Codex's own recoveries, as many as it makes without us (0.171 sent two, one after the other).
  t.comment(`passed through: ${x.refreshes()} refresh(es); codex ${r.ms} ms`)
  t.ok(x.refreshes() >= 1, 'Codex refreshed', { calls: x.callSummary() })
  t.ok(x.provider.calls.filter(isRefresh).every((call) => CODEX_UA.test(call.userAgent)), 'Codex\'s own, passed through: nobody owned the home')
  t.equal(x.reused(), 0)
  await until('Codex\'s rotation in auth.json', () => fileTokens(home).refreshToken !== minted.refreshToken)

  const second = await codexDaemon(t, x.world, home, d.socket)
  const c = await connect(t, second)
  t.ok((await c.call('getAuth')).result?.token === fileTokens(home).accessToken, 'the new daemon serves the tokens Codex wrote')
  const again = await c.call('refresh')
  t.ok(again.result !== undefined && again.error === undefined, 'and can spend their refresh token: it is live', { error: again.error })
  t.equal(x.reused(), 0, 'no refresh token spent twice', { calls: x.callSummary() })
  t.same(second.secretsInOutput(), [])
})
