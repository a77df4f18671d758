// The global buffer cap counts replies as well as partial lines, and sheds the offenders, never the
// innocent (issue 13, findings 2 and 8, and the split requests of 9; docs/contract.md#framing-and-limits).
// Against a daemon with a 64 MiB heap: clients sending whole lines and never reading would make it
// hold their replies until it crashed; clients stalling half lines hold the cap while a normal
// client, its requests split across writes, keeps being answered.
import t, { type Test } from 'tap'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { startDaemon, stopAtTeardown, type RunningDaemon } from './support/daemon.js'
import { Wire, latencyOf, latencyProbe, limitLogs, memoryOf, reliabilityComment, stallerLine, startStallers } from './support/reliability.js'
import { until } from './support/until.js'

const API_KEY = `sk-fake-buffers-${randomBytes(12).toString('hex')}`
const SMALL_HEAP = '--max-old-space-size=64'
const MAX_BUFFERED = 64 * 1024 * 1024
/** 64 MiB of replies or partial lines held off the heap, plus the heap itself. */
const RSS_BOUND_MB = 260

async function daemon(t: Test, env: Record<string, string> = {}): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: API_KEY, NODE_OPTIONS: SMALL_HEAP, ...env } }))
}

t.test('clients sending whole lines and never reading: the largest holders are dropped at the global cap', async (t) => {
  const d = await daemon(t)
  const before = memoryOf(d.pid)
  const probe = latencyProbe(t, d, API_KEY, 10_000)
  // One line: a batch of 256 status calls, ~125 kB of answers. 40 readers x 28 lines ask for
  // ~140 MB of answers, each under its own 4 MiB cap: only the global cap holds them. Kept on the
  // heap (as strings) they crash a 64 MiB heap.
  const READERS = 40
  const LINES = 28
  const line = JSON.stringify(Array.from({ length: 256 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'status' }))) + '\n'
  const t0 = Date.now()
  await Promise.all(
    Array.from({ length: READERS }, async () => {
      const s = net.connect(d.socket)
      await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j))
      s.pause() // never read
      s.on('error', () => {})
      t.teardown(() => s.destroy())
      s.write(line.repeat(LINES))
    }),
  )
  await until('the global cap to drop a reader', () => d.proc.exitCode !== null || limitLogs(d.logs, 'buffer_cap') > 0, 40_000)
  const during = memoryOf(d.pid)
  t.equal(d.proc.exitCode, null, 'daemon still running')
  const dropped = limitLogs(d.logs, 'buffer_cap')
  const dropMs = Date.now() - t0
  t.equal(limitLogs(d.logs, 'slow_reader'), 0, 'no reader reached its own 4 MiB cap: the global cap did the work')
  const latency = await probe.finish()
  t.same(probe.errors, [], 'the normal client, which reads its replies, got every getAuth right meanwhile')
  const record = JSON.parse(d.logs.find((l) => l.includes('"kind":"buffer_cap"')) ?? 'null')
  t.match(record, { level: 40, msg: 'connection limit reached', kind: 'buffer_cap', held: Number }, 'the drop is logged with what the connection held')
  t.ok(record === null || record.held > MAX_BUFFERED / READERS, `the dropped connection was a large holder (${record?.held} bytes)`)
  const after = memoryOf(d.pid)
  t.ok(after.peakMB < RSS_BOUND_MB, `peak RSS ${after.peakMB} MiB < ${RSS_BOUND_MB} MiB (before ${before.rssMB} MiB)`)
  reliabilityComment(t, {
    file: 'reliability-memory-buffers',
    case: 'never-reading-whole-lines',
    cases: READERS,
    failures: probe.errors.length,
    heap: SMALL_HEAP,
    droppedAtGlobalCap: dropped,
    timeMs: dropMs,
    rssBeforeMB: before.rssMB,
    rssDuringMB: during.rssMB,
    peakRssMB: after.peakMB,
    getAuthLatency: latency,
  })
})

t.test('half-line stallers hold the global cap: a normal client splitting its requests is served, the stallers are shed', async (t) => {
  const d = await daemon(t, { CODEX_AUTHD_IDLE_TIMEOUT_MS: '20000' })
  const before = memoryOf(d.pid)
  // 80 clients x 900 KB of one unfinished line = 72 MB, over the 64 MiB cap.
  const stallers = await startStallers(t, d.socket)
  await until('the buffer cap to be reached', () => limitLogs(d.logs, 'buffer_cap') > 0, 20_000)
  const shedBefore = limitLogs(d.logs, 'buffer_cap')
  // The normal client: each getAuth in two writes, the second after the first has been taken in
  // (the daemon holds its half line while the cap is full of others' half lines).
  const c = await Wire.connect(d.socket)
  t.teardown(() => c.close())
  const CALLS = 40
  const samples: number[] = []
  const failures: string[] = []
  for (let i = 0; i < CALLS; i++) {
    // A staller refills what was shed, so the cap stays full.
    const refill = await Wire.connect(d.socket)
    t.teardown(() => refill.close())
    await refill.write(stallerLine())
    const t0 = performance.now()
    const req = JSON.stringify({ jsonrpc: '2.0', id: `split-${i}`, method: 'getAuth' }) + '\n'
    await c.write(req.slice(0, 20))
    await new Promise((r) => setTimeout(r, 5))
    await c.write(req.slice(20))
    const e = await c.next(10_000)
    if (e.type !== 'msg') {
      failures.push(`call ${i}: ${e.type}`)
      break
    }
    if (e.msg.id !== `split-${i}` || e.msg.result?.token !== API_KEY) failures.push(`call ${i}: ${JSON.stringify(e.msg.error ?? e.msg.id)}`)
    samples.push(performance.now() - t0)
  }
  t.same(failures, [], `every split getAuth answered while the cap was full (${CALLS} calls)`)
  const shed = limitLogs(d.logs, 'buffer_cap')
  t.ok(shed > shedBefore, `stallers were shed to make room (${shed} in all)`)
  const answered = await Promise.all(stallers.map(async (w) => ((await w.next(100)).type === 'msg' ? 1 : 0)))
  t.ok(answered.reduce<number>((a, b) => a + b, 0) >= shedBefore, 'each shed staller was told why')
  const after = memoryOf(d.pid)
  t.ok(after.peakMB < RSS_BOUND_MB, `peak RSS ${after.peakMB} MiB < ${RSS_BOUND_MB} MiB`)
  t.equal(d.proc.exitCode, null, 'daemon still running')
  reliabilityComment(t, {
    file: 'reliability-memory-buffers',
    case: 'innocent-during-half-line-stall',
    cases: CALLS,
    failures: failures.length,
    heap: SMALL_HEAP,
    stallersShed: shed,
    rssBeforeMB: before.rssMB,
    peakRssMB: after.peakMB,
    splitGetAuthLatency: latencyOf(samples),
  })
})
