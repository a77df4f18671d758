// Issue 14 with the REAL Codex CLI 0.171.0: a backend that rejects every access token. Codex's 401 path
// asks for a refresh on every 401; through the broker the daemon spends once per access token it
// issued and spaces out a run of them (docs/broker.md#a-backend-that-rejects-every-token), so the
// rest are answered 503 (Codex retries, and keeps its login) rather than a spend per 401. Set-up as
// broker-codex-interop.test.ts. No token is ever printed.
import t from 'tap'
import { endedByItself, requireCodex } from './support/codex.js'
import { EXEC, fileTokens, shown, startBrokerCodex, type BrokerCodex } from './support/broker-codex.js'
import { until } from './support/until.js'

await requireCodex()

let x: BrokerCodex
t.before(async () => {
  x = await startBrokerCodex()
})
t.teardown(() => x?.close())

t.test('a backend that rejects every token: one spend, then transient answers, not a spend per 401', async (t) => {
  const { home, c, wrap } = await x.rejectedLogin(t)
  x.world.stub.rejectAll = true
  t.teardown(() => {
    x.world.stub.rejectAll = false
  })
  const r = await x.world.codex(home, EXEC, { wrap })
  t.ok(endedByItself(r), `codex ended by itself (${r.ms} ms)`, { output: shown(r) })
  const st = (await c.call('status')).result
  t.comment(`401s answered: ${x.world.stub.requests.filter((q) => q.status === 401).length}; broker answers ${JSON.stringify(st.counters.broker.answers)}`)
  t.equal(x.refreshes(), 1, 'one spend for the rejected access token; none for the one it issued, within the recovery delay', { calls: x.callSummary() })
  t.equal(x.reused(), 0)
  t.ok((st.counters.broker.answers.unavailable ?? 0) >= 1, 'the next recoveries were answered 503', { answers: st.counters.broker.answers })
  t.equal(st.loggedIn, true, 'still logged in')
  await until('the daemon\'s token in auth.json', async () => fileTokens(home).accessToken === (await c.call('getAuth')).result?.token)
})
