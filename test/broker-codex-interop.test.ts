// Issue 14 with the REAL Codex CLI 0.171.0: Codex runs through `codex-auth exec` (the broker listener
// inside Codex's loopback-only namespace, forwarding to the daemon's socket), against a backend
// stand-in that answers 401 to the access tokens the test marks, so Codex takes its 401 path
// (`unauthorized_recovery`, docs/codex-compat.md#refresh-triggers). The token endpoint is the harness
// provider: rotating refresh tokens, and reuse revokes the whole grant, so any double spend shows up
// as REUSED and a dead login. No token is ever printed. (A backend that rejects every token:
// broker-codex-reject.test.ts.)
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { DAEMON_UA, endedByItself, requireCodex } from './support/codex.js'
import { EXEC, fileTokens, isRefresh, shown, startBrokerCodex, type BrokerCodex } from './support/broker-codex.js'
import { until } from './support/until.js'

await requireCodex()

let x: BrokerCodex
t.before(async () => {
  x = await startBrokerCodex()
})
t.teardown(() => x?.close())

t.test('three Codex processes hitting 401 together: one token-endpoint call, auth.json holds the daemon\'s token', async (t) => {
  const { home, minted, c, wrap, d } = await x.rejectedLogin(t)
  const runs = await Promise.all([1, 2, 3].map(() => x.world.codex(home, EXEC, { wrap })))
  for (const r of runs) t.ok(endedByItself(r), `codex ended by itself (${r.ms} ms)`, { output: shown(r) })
  const st = (await c.call('status')).result
  t.comment(`broker requests ${JSON.stringify(st.counters.broker.requestsByReason)}; answers ${JSON.stringify(st.counters.broker.answers)}`)
  // Not necessarily all three: a process whose re-read after its first 401 comes after the daemon's
  // commit retries with the new token and has nothing to recover (seen on a loaded machine).
  t.ok((st.counters.broker.requestsByReason['refresh:unauthorized_recovery'] ?? 0) >= 1, 'the recoveries went to the broker', { calls: x.callSummary(), output: runs.map(shown).join('\n') })
  t.equal(x.refreshes(), 1, 'one token-endpoint call', { calls: x.callSummary() })
  t.equal(x.codexRefreshes(), 0, 'none of them from Codex itself')
  t.equal(x.reused(), 0, 'no refresh token spent twice')
  t.same(st.counters.refreshTokenSpends, { unauthorized_recovery: 1 })
  await until('the rotation in auth.json', () => fileTokens(home).refreshToken !== minted.refreshToken)
  const g = (await c.call('getAuth')).result
  t.ok(g?.token === fileTokens(home).accessToken, 'auth.json holds the daemon\'s tokens')
  t.ok(x.provider.calls.filter(isRefresh).every((call) => DAEMON_UA.test(call.userAgent)), 'the one spend was the daemon\'s')
  t.same(d.secretsInOutput(), [])
})

t.test('a refresh RPC 0–2.5 s after Codex\'s 401: no double spend', async (t) => {
  const offsets = [0, 1250, 2500] // a handful, not dozens: each is one Codex run (~8 s)
  for (const offset of offsets) {
    const { home, c, wrap, d } = await x.rejectedLogin(t)
    let fired: Promise<unknown> | null = null
    x.world.stub.on401 = () => {
      x.world.stub.on401 = null
      fired = new Promise((r) => setTimeout(r, offset)).then(() => c.call('refresh'))
    }
    const r = await x.world.codex(home, EXEC, { wrap })
    x.world.stub.on401 = null
    const rpc = (await fired) as { error?: unknown } | null
    t.ok(endedByItself(r), `offset ${offset} ms: codex ended by itself (${r.ms} ms)`, { output: shown(r) })
    t.ok(rpc !== null, `offset ${offset} ms: the 401 came and the refresh RPC ran`)
    t.equal(x.reused(), 0, `offset ${offset} ms: no refresh token spent twice`, { calls: x.callSummary() })
    t.equal(x.codexRefreshes(), 0, `offset ${offset} ms: Codex spent nothing itself`)
    const g = (await c.call('getAuth')).result
    await until('the daemon\'s latest in auth.json', () => fileTokens(home).accessToken === g?.token)
    t.comment(`offset ${offset} ms: ${x.refreshes()} spend(s); codex ${r.ms} ms; answers ${JSON.stringify((await c.call('status')).result.counters.broker.answers)}`)
    await d.stop()
  }
})

t.test('codex logout through the broker: revoked upstream once, file gone, daemon logged out', async (t) => {
  const { home, c, wrap } = await x.rejectedLogin(t)
  const r = await x.world.codex(home, ['logout'], { wrap })
  t.equal(r.code, 0, 'codex logout exits 0', { output: shown(r) })
  t.match(r.stderr + r.stdout, /Successfully logged out/, 'in Codex\'s own words (it removed the file itself)')
  t.equal(x.provider.countCalls({ endpoint: 'revoke' }), 1, 'revoked upstream once', { calls: x.callSummary() })
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'auth.json is gone')
  const st = (await c.call('status')).result
  t.equal(st.loggedIn, false, 'the daemon is logged out')
  t.equal(st.counters.broker.answers.revoked, 1, 'through the broker')
})
