// Issue 14 with the REAL Codex CLI 0.171.0: the daemon's own due time around Codex's 401, the race
// that spent a refresh token twice in 3 of 9 trials before the broker. Set-up as
// broker-codex-interop.test.ts (Codex through `codex-auth exec`, the listener inside its
// namespace; a token endpoint that revokes the whole grant on reuse, so a double spend shows up as
// REUSED and a dead login). No token is ever printed.
//
// Placing the due time without sleeping an hour: the access token is minted with a lifetime of
// 10 min + LEAD, so the daemon's due time is `exp − 10 min` (docs/refresh.md#when-a-refresh-is-due),
// LEAD seconds after the mint, and status.tokens.nextRefreshAt names it. Codex's 401 is the event
// that places the offset: the stand-in holds its first 401 answer (a slow backend) until
// `due − offset`, so Codex goes on to its recovery refresh `offset` ms before (offset < 0: after)
// the daemon's scheduled spend. Offsets are a seeded stratified spread over −2 s…+1 s, one per
// stratum, so every run covers the window and the runs together cover it densely. The trials run
// side by side (one home, daemon and Codex each) so the file waits for LEAD once.
import t from 'tap'
import { endedByItself, requireCodex, tokenId } from './support/codex.js'
import { EXEC, fileTokens, shown, startBrokerCodex, type BrokerCodex } from './support/broker-codex.js'
import { mulberry32 } from './support/prng.js'
import { until } from './support/until.js'

await requireCodex()

const SEED = Number(process.env.BROKER_DUE_SEED ?? Math.floor(Math.random() * 2 ** 31))
const WINDOW = { from: -2000, to: 1000 }
const TRIALS = 5
/** Seconds from the mint to the daemon's due time: Codex must reach its first 401 before `due − 1 s`. */
const LEAD = 20

let x: BrokerCodex
t.before(async () => {
  x = await startBrokerCodex()
})
t.teardown(() => x?.close())

/** One offset in each of `n` equal strata of the window, placed by the seeded PRNG. */
function stratifiedOffsets(n: number, seed: number): number[] {
  const rnd = mulberry32(seed)
  const width = (WINDOW.to - WINDOW.from) / n
  return Array.from({ length: n }, (_, i) => Math.round(WINDOW.from + width * (i + rnd())))
}

t.test('the daemon due −2 s…+1 s around Codex\'s 401: no double spend, auth.json holds the daemon\'s token', async (t) => {
  const offsets = stratifiedOffsets(TRIALS, SEED)
  t.comment(`seed ${SEED} (BROKER_DUE_SEED=${SEED} reproduces the offsets): ${offsets.join(', ')} ms`)
  x.provider.resetCalls()
  const holds = new Map<string, (r: { at: number }) => Promise<void>>()
  x.world.stub.hold401 = (r) => holds.get(r.bearerId ?? '')?.(r) ?? Promise.resolve()
  t.teardown(() => {
    x.world.stub.hold401 = null
  })

  const trials = []
  for (const offset of offsets) {
    const login = await x.rejectedLogin(t, { accessTtlSec: 600 + LEAD })
    const before = (await login.c.call('status')).result
    const due = Date.parse(before.tokens.nextRefreshAt)
    let heldAt: number | null = null
    let releasedAt: number | null = null
    let release: Promise<void> | null = null
    // Every 401 for this token until `due − offset` (Codex sends some requests side by side), the
    // retry after Codex's re-read of auth.json then at once.
    holds.set(tokenId(login.minted.accessToken), (r) => {
      heldAt ??= r.at
      release ??= new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, due - offset - Date.now()))).then(() => {
        releasedAt = Date.now()
      })
      return release
    })
    trials.push({ offset, due, login, run: x.world.codex(login.home, EXEC, { wrap: login.wrap }), heldAt: () => heldAt, releasedAt: () => releasedAt })
  }

  for (const tr of trials) {
    const { home, minted, c, d } = tr.login
    const r = await tr.run
    const label = `offset ${tr.offset} ms`
    t.ok(endedByItself(r), `${label}: codex ended by itself (${r.ms} ms)`, { output: shown(r) })
    t.ok(tr.heldAt() !== null, `${label}: Codex got its 401`)
    const st = (await c.call('status')).result
    const spends = Object.values(st.counters.refreshTokenSpends as Record<string, number>).reduce((a, b) => a + b, 0)
    t.equal(spends, 1, `${label}: one spend of the home's refresh token`, { spends: st.counters.refreshTokenSpends })
    await until(`${label}: the daemon's tokens in auth.json`, async () => {
      const f = fileTokens(home)
      return f.refreshToken !== minted.refreshToken && f.accessToken === (await c.call('getAuth')).result?.token
    })
    // Measured, not asserted: a loaded machine can deliver the first 401 after its release time,
    // or fire the daemon's timer late; the invariants above hold whatever the real offset.
    const held = tr.heldAt()
    const released = tr.releasedAt()
    const spentAt = st.tokens.lastRefresh === null ? NaN : Date.parse(st.tokens.lastRefresh)
    t.comment(
      `${label}: 401 ${held === null ? '-' : held - tr.due} ms from due, released ${released === null ? '-' : released - tr.due} ms from due; ` +
        `daemon spend ${JSON.stringify(st.counters.refreshTokenSpends)} at ${spentAt - tr.due} ms from due; broker ${JSON.stringify(st.counters.broker.requestsByReason)} -> ${JSON.stringify(st.counters.broker.answers)}; codex ${r.ms} ms`,
    )
    // The token the file holds is the live one: the daemon can spend it, and nobody spent it before.
    const again = await c.call('refresh')
    t.ok(again.result !== undefined && again.error === undefined, `${label}: the file's refresh token is the daemon's live one`, { error: again.error })
    t.same(d.secretsInOutput(), [])
    await d.stop()
  }
  t.equal(x.reused(), 0, 'no refresh token spent twice, in any trial', { calls: x.callSummary() })
  t.equal(x.codexRefreshes(), 0, 'Codex spent nothing itself')
  t.equal(x.refreshes(), 2 * TRIALS, 'per trial: one spend around the 401, one by the final refresh RPC', { calls: x.callSummary() })
})
