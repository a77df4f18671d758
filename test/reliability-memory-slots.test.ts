// Slots and turns (issue 13, finding 3 and the fairness of 9; docs/contract.md#framing-and-limits):
// subscribers, exempt from the idle timeout, can never hold every connection slot (a separate
// cap of 512: a subscribe over it is answered -32007 and closed, first come keeps its slot), and
// one connection sending as fast as it can does not starve the others (lines are taken in turn).
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { runCli, startDaemon, stopAtTeardown, type RunningDaemon } from './support/daemon.js'
import { Wire, fdCount, latencyOf, latencyProbe, limitLogs, memoryOf, reliabilityComment } from './support/reliability.js'
import { until } from './support/until.js'

const API_KEY = `sk-fake-slots-${randomBytes(12).toString('hex')}`
const SMALL_HEAP = '--max-old-space-size=64'
const MAX_CONNECTIONS = 1024
const MAX_SUBSCRIBERS = 512

async function daemon(t: Test): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: API_KEY, NODE_OPTIONS: SMALL_HEAP } }))
}

/** Opens `n` connections, 128 at a time, each closed at teardown. */
async function open(t: Test, d: RunningDaemon, n: number): Promise<Wire[]> {
  const out: Wire[] = []
  for (let i = 0; i < n; i += 128) {
    const batch = await Promise.all(Array.from({ length: Math.min(128, n - i) }, () => Wire.connect(d.socket)))
    for (const w of batch) t.teardown(() => w.close())
    out.push(...batch)
  }
  return out
}

t.test('1,100 connections all subscribing: 512 are subscribed, the rest told so and closed; new clients are served', async (t) => {
  const d = await daemon(t)
  const baseFds = fdCount(d.pid)
  const before = memoryOf(d.pid)
  const ATTEMPTS = 1100
  const conns = await open(t, d, ATTEMPTS)
  // The first message on each: the answer to subscribe, or the refusal at accept (id null).
  const answers = await Promise.all(
    conns.map(async (w) => {
      await w.write('{"jsonrpc":"2.0","id":"sub","method":"subscribe"}\n')
      const e = await w.next(30_000)
      return e.type === 'msg' ? e.msg : { [e.type]: true }
    }),
  )
  const subscribed = answers.filter((a) => a.result?.subscribed === true).length
  const busy = answers.filter((a) => a.error?.code === -32007 && a.error?.data?.reason === 'server_busy').length
  t.equal(subscribed, MAX_SUBSCRIBERS, `${MAX_SUBSCRIBERS} subscribed`)
  t.equal(busy, ATTEMPTS - MAX_SUBSCRIBERS, `the other ${ATTEMPTS - MAX_SUBSCRIBERS} answered -32007 server_busy (those over ${MAX_CONNECTIONS} connections at accept)`)
  t.equal(limitLogs(d.logs, 'subscriber_cap') + limitLogs(d.logs, 'max_connections'), busy, 'each refusal logged')
  // The refused are closed: the subscribers hold half the slots, not all of them.
  await until('the refused connections closed by the daemon', () => fdCount(d.pid) <= baseFds + MAX_SUBSCRIBERS, 20_000)
  const held = conns.filter((w) => !w.isClosed)
  t.equal(held.length, MAX_SUBSCRIBERS, 'the subscribers keep their connections')
  // New clients: each connects, asks once and leaves.
  const samples: number[] = []
  let ok = 0
  for (let i = 0; i < 10; i++) {
    const w = await Wire.connect(d.socket)
    const t0 = performance.now()
    const r = await w.call('getAuth', undefined, 10_000).catch(() => null)
    samples.push(performance.now() - t0)
    if (r?.result?.token === API_KEY) ok++
    w.close()
  }
  t.equal(ok, 10, 'a new client gets getAuth 10 times of 10 while the subscribers are held')
  // The CLI too, with what it says about the limit when the slots are full.
  const cli = await runCli(['token'], { socket: d.socket })
  t.equal(cli.code, 0, 'codex-auth token works meanwhile')
  t.equal(cli.stdout.trim(), API_KEY)
  // Subscribers still get their notifications.
  const notified = held.slice(0, 5)
  const login = await Wire.connect(d.socket)
  t.teardown(() => login.close())
  const other = `sk-fake-slots-login-${randomBytes(12).toString('hex')}`
  t.equal((await login.call('login', { method: 'apikey', apiKey: other }, 20_000)).result?.status, 'succeeded', 'an API-key login')
  await until('loginCompleted at the subscribers', () => notified.every((w) => w.notifications.some((n) => n.method === 'loginCompleted')), 20_000)
  t.pass('subscribers are notified')
  // Every slot taken (the subscribers and plain connections): the CLI says why it was refused.
  const fill = await open(t, d, MAX_CONNECTIONS - MAX_SUBSCRIBERS - 1)
  await until('every slot taken', () => fdCount(d.pid) >= baseFds + MAX_CONNECTIONS - 1, 20_000)
  const full = await runCli(['token'], { socket: d.socket })
  t.not(full.code, 0, 'codex-auth token fails with every slot taken')
  t.match(full.stderr, /Server busy: 1024 connections open/, 'and says the daemon is busy, not EPIPE')
  t.notMatch(full.stderr, /EPIPE/)
  fill.forEach((w) => w.close())
  const after = memoryOf(d.pid)
  reliabilityComment(t, {
    file: 'reliability-memory-slots',
    case: 'subscribers',
    cases: ATTEMPTS,
    failures: 10 - ok,
    heap: SMALL_HEAP,
    subscribed,
    refusedBusy: busy,
    rssBeforeMB: before.rssMB,
    peakRssMB: after.peakMB,
    newClientGetAuthLatency: latencyOf(samples),
  })
})

t.test('one connection flooding requests: the others are served in turn', async (t) => {
  const d = await daemon(t)
  const baseline = latencyProbe(t, d, API_KEY, 10_000)
  await until('baseline samples', () => baseline.samples.length >= 50, 20_000)
  const quiet = await baseline.finish()
  // The flooder pipelines batches of 256 status calls, reading its answers, as fast as the daemon takes them.
  const flooder = await Wire.connect(d.socket)
  t.teardown(() => flooder.close())
  const batch = JSON.stringify(Array.from({ length: 256 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'status' }))) + '\n'
  let stop = false
  let answered = 0
  const flood = (async () => {
    // 8 lines in flight at all times.
    for (let i = 0; i < 8; i++) await flooder.write(batch)
    while (!stop) {
      const e = await flooder.next(20_000)
      if (e.type !== 'msg') break
      answered++
      await flooder.write(batch)
    }
  })()
  await until('the flood to be under way', () => answered >= 4, 20_000)
  const probe = latencyProbe(t, d, API_KEY, 10_000)
  await until('samples during the flood', () => probe.samples.length >= 30 || probe.errors.length > 0, 40_000)
  const during = await probe.finish()
  stop = true
  flooder.close()
  await flood
  t.same(probe.errors, [], 'the other client got every getAuth right during the flood')
  t.ok(answered > 4, `the flooder was served too (${answered} batches of 256)`)
  reliabilityComment(t, {
    file: 'reliability-memory-slots',
    case: 'fairness',
    cases: during.calls,
    failures: probe.errors.length,
    flooderBatches: answered,
    getAuthLatencyQuiet: quiet,
    getAuthLatencyDuringFlood: during,
  })
})
