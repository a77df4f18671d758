// Pending calls die with their connection (issue 13, finding 1; docs/contract.md#framing-and-limits):
// an `awaitLogin` bomb — rounds of 250 connections, each sending 256 `awaitLogin` calls for one
// pending browser login and closing as soon as the daemon has registered them — against a daemon with a 64 MiB heap, where waits
// kept after their connection closed would crash it within a round. Then the cap on calls running
// across connections: the connections running the most are dropped, a normal client is not.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { startDaemon, stopAtTeardown, type RunningDaemon } from './support/daemon.js'
import { Wire, fdCount, latencyProbe, limitLogs, memoryOf, reliabilityComment } from './support/reliability.js'
import { until } from './support/until.js'

const API_KEY = `sk-fake-pending-${randomBytes(12).toString('hex')}`
/** A small heap: a missing bound is a crash in seconds, not gigabytes on the CI machine. */
const SMALL_HEAP = '--max-old-space-size=64'
const RSS_BOUND_MB = 200

async function daemon(t: Test): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: API_KEY, NODE_OPTIONS: SMALL_HEAP } }))
}

/** A browser login left pending (the issuer is a dead port: it never completes). */
async function pendingLogin(t: Test, d: RunningDaemon): Promise<string> {
  const w = await Wire.connect(d.socket)
  t.teardown(() => w.close())
  const r = await w.call('login', { method: 'browser' })
  if (typeof r.result?.loginId !== 'string') throw new Error(`login did not start: ${JSON.stringify(r.error)}`)
  return r.result.loginId
}

/**
 * `n` awaitLogin requests then a `status` marker, as one write. Lines are taken in order: once
 * the marker is answered, every wait before it is registered.
 */
function awaitLines(loginId: string, n: number): Buffer {
  const line = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'awaitLogin', params: { loginId, timeoutSeconds: 86_400 } }) + '\n'
  return Buffer.from(line.repeat(n) + JSON.stringify({ jsonrpc: '2.0', id: 'marker', method: 'status' }) + '\n')
}

/** Sends the bomb on a new connection; resolves once the daemon has registered its waits (or closed it). */
async function holdWaits(t: Test, socketPath: string, bomb: Buffer): Promise<Wire> {
  const w = await Wire.connect(socketPath)
  t.teardown(() => w.close())
  await w.write(bomb)
  for (;;) {
    const e = await w.next(30_000)
    if (e.type !== 'msg') return w
    if (e.msg.id === 'marker') return w
  }
}

t.test('awaitLogin bomb: the waits of closed connections are freed, memory stays bounded', async (t) => {
  const d = await daemon(t)
  const loginId = await pendingLogin(t, d)
  const baseFds = fdCount(d.pid)
  const before = memoryOf(d.pid)
  const probe = latencyProbe(t, d, API_KEY, 10_000)
  // 65,280 waits; kept after their connections close (~3.6 kB each), they exhaust the heap in the first round.
  const ROUNDS = 2
  const CONNS = 128
  // 16 at a time: 4,080 waits, under the cap on calls running across connections (next test), so
  // that only their connections' closing frees them.
  const WAVE = 16
  // 255 waits and the marker: the 256 a connection may have running.
  const CALLS = 255
  const bomb = awaitLines(loginId, CALLS)
  const rss: number[] = []
  const t0 = Date.now()
  for (let round = 0; round < ROUNDS && d.proc.exitCode === null; round++) {
    // Each connection closes as soon as its waits are registered.
    for (let i = 0; i < CONNS; i += WAVE) {
      await Promise.all(Array.from({ length: WAVE }, async () => (await holdWaits(t, d.socket, bomb)).close()))
    }
    await until(`round ${round + 1}'s connections closed by the daemon`, () => d.proc.exitCode !== null || fdCount(d.pid) <= baseFds + 2, 30_000)
    rss.push(memoryOf(d.pid).rssMB)
  }
  const ms = Date.now() - t0
  t.equal(d.proc.exitCode, null, `daemon still running after ${ROUNDS} x ${CONNS} x ${CALLS} awaitLogin calls`)
  t.equal(limitLogs(d.logs, 'pending_cap'), 0, 'no connection was dropped for the cap: closing freed the waits')
  const latency = await probe.finish()
  t.same(probe.errors, [], 'the normal client got every getAuth right meanwhile')
  const after = memoryOf(d.pid)
  t.ok(after.peakMB < RSS_BOUND_MB, `peak RSS ${after.peakMB} MiB < ${RSS_BOUND_MB} MiB (before ${before.rssMB}, after each round ${rss.join(', ')})`)
  // The login itself is untouched: a live caller still waits on it and can cancel it.
  const w = await Wire.connect(d.socket)
  t.teardown(() => w.close())
  t.equal((await w.call('awaitLogin', { loginId, timeoutSeconds: 0 })).result?.status, 'pending', 'the login is still pending')
  t.equal((await w.call('cancelLogin', { loginId })).result?.cancelled, true, 'and can be cancelled')
  reliabilityComment(t, {
    file: 'reliability-memory-pending',
    case: 'awaitlogin-bomb',
    cases: ROUNDS * CONNS * CALLS,
    failures: probe.errors.length,
    timeMs: ms,
    heap: SMALL_HEAP,
    rssBeforeMB: before.rssMB,
    rssAfterRoundsMB: rss,
    peakRssMB: after.peakMB,
    getAuthLatency: latency,
  })
})

t.test('calls running across connections are capped: those running the most are dropped, not a normal client', async (t) => {
  const d = await daemon(t)
  const loginId = await pendingLogin(t, d)
  const probe = latencyProbe(t, d, API_KEY, 10_000)
  // 24 x 255 = 6,120 waits held by open connections, over the 4,096 cap.
  const HOLDERS = 24
  const CALLS = 255
  const bomb = awaitLines(loginId, CALLS)
  // Each one's waits registered, or the connection dropped.
  const holders = await Promise.all(Array.from({ length: HOLDERS }, () => holdWaits(t, d.socket, bomb)))
  await until('the dropped holders closed', () => holders.filter((w) => w.isClosed).length >= limitLogs(d.logs, 'pending_cap'))
  const dropped = holders.filter((w) => w.isClosed).length
  t.ok(dropped >= Math.ceil((HOLDERS * CALLS - 4096) / CALLS), `${dropped} of ${HOLDERS} holders dropped at the 4,096 cap`)
  t.ok(dropped < HOLDERS, 'the others keep their waits')
  // A held wait is still answered when the login ends.
  const kept = holders.find((w) => !w.isClosed)!
  const c = await Wire.connect(d.socket)
  t.teardown(() => c.close())
  t.equal((await c.call('cancelLogin', { loginId })).result?.cancelled, true, 'login cancelled')
  const e = await kept.next(10_000)
  t.equal(e.type === 'msg' ? e.msg.result?.status : e.type, 'cancelled', 'a kept wait is answered with the end of the login')
  const latency = await probe.finish()
  t.same(probe.errors, [], 'the normal client got every getAuth right meanwhile')
  const log = d.logs.find((l) => l.includes('"kind":"pending_cap"'))
  t.match(log === undefined ? null : JSON.parse(log), { level: 40, kind: 'pending_cap', held: Number }, 'the limit event names the kind and what the connection held')
  t.equal(d.proc.exitCode, null, 'daemon still running')
  reliabilityComment(t, {
    file: 'reliability-memory-pending',
    case: 'pending-cap',
    cases: HOLDERS,
    failures: probe.errors.length,
    dropped,
    peakRssMB: memoryOf(d.pid).peakMB,
    getAuthLatency: latency,
  })
})
