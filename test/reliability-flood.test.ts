// Floods (issue 7, docs/contract.md#framing-and-limits): a burst of 1,000 connections, readers that never read, clients that
// send half a line and stall, more connections than the limit. The daemon stays up, its memory
// stays bounded (RSS from /proc/<pid>/status), limits answer with clear errors, and a normal
// client keeps being served meanwhile. The API key is fake and is never printed.
import t, { type Test } from 'tap'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { startDaemon, stopAtTeardown, type RunningDaemon } from './support/daemon.js'
import { onLines } from './support/lines.js'
import { STALLERS, STALLER_PART, Wire, fdCount, latencyProbe, limitLogs as countLimitLogs, memoryOf, reliabilityComment, startStallers, waitIdle } from './support/reliability.js'
import { until } from './support/until.js'

const API_KEY = `sk-fake-flood-${randomBytes(12).toString('hex')}`
const MAX_LINE = 1024 * 1024
const MAX_BUFFERED = 64 * 1024 * 1024
/** The memory bound asserted for the daemon (RSS, MiB); it idles at ~90 MiB here. */
const RSS_BOUND_MB = 150
/** Slow readers: 8 x 4 MiB of held answers plus the garbage of serializing them. */
const SLOW_READER_BOUND_MB = 200
/** Stalled half lines: the 64 MiB global cap is held by design. */
const STALL_BOUND_MB = 250

async function daemon(t: Test, env: Record<string, string> = {}): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: API_KEY, ...env } }))
}

const limitLogs = (d: RunningDaemon, kind: string): number => countLimitLogs(d.logs, kind)

t.test('1,000 concurrent connections, each with a status call: all answered', async (t) => {
  const d = await daemon(t)
  const before = memoryOf(d.pid)
  const N = 1000
  const t0 = Date.now()
  const conns: Wire[] = []
  t.teardown(() => conns.forEach((c) => c.close()))
  let refused = 0
  const results = await Promise.all(
    Array.from({ length: N }, async () => {
      let c: Wire
      try {
        c = await Wire.connect(d.socket)
      } catch {
        refused++
        return false
      }
      conns.push(c)
      try {
        const r = await c.call('status', undefined, 20_000)
        return r.result?.loggedIn === true && r.result?.mode === 'apikey'
      } catch {
        return false
      }
    }),
  )
  const ms = Date.now() - t0
  const ok = results.filter(Boolean).length
  t.equal(refused, 0, 'no connect refused (the backlog absorbs the burst)')
  t.equal(ok, N, `all ${N} status calls answered`)
  t.equal(conns.filter((c) => !c.isClosed).length, N, 'all connections held open at once')
  const peak = memoryOf(d.pid)
  conns.forEach((c) => c.close())
  const c = await Wire.connect(d.socket)
  t.teardown(() => c.close())
  t.ok((await c.call('getAuth')).result?.token === API_KEY, 'served normally afterwards')
  t.equal(d.proc.exitCode, null, 'daemon still running')
  t.ok(peak.peakMB < RSS_BOUND_MB, `peak RSS ${peak.peakMB} MiB < ${RSS_BOUND_MB} MiB`)
  reliabilityComment(t, {
    file: 'reliability-flood',
    case: 'burst-1000',
    cases: N,
    failures: N - ok,
    timeMs: ms,
    rssBeforeMB: before.rssMB,
    rssAfterMB: peak.rssMB,
    peakRssMB: peak.peakMB,
  })
})

t.test('connections over the limit (1024) are closed at accept; the others keep being served', async (t) => {
  const d = await daemon(t)
  const baseFds = fdCount(d.pid)
  const held: Wire[] = []
  t.teardown(() => held.forEach((c) => c.close()))
  // 1024 idle connections: the limit.
  for (let i = 0; i < 1024; i += 128) {
    held.push(...(await Promise.all(Array.from({ length: 128 }, () => Wire.connect(d.socket)))))
  }
  await until('1024 connections accepted', () => fdCount(d.pid) >= baseFds + 1024)
  const extra = await Promise.all(Array.from({ length: 20 }, () => Wire.connect(d.socket)))
  t.teardown(() => extra.forEach((c) => c.close()))
  await Promise.all(extra.map((c) => c.closed))
  t.pass('20 connections over the limit were closed')
  t.ok(limitLogs(d, 'max_connections') >= 20, 'each logged as max_connections')
  const first = held[0]!
  t.ok((await first.call('status')).result?.loggedIn, 'a held connection is still served')
  held.splice(0, 10).forEach((c) => c.close())
  const again = await until('a new connection to be served once some closed', async () => {
    const c = await Wire.connect(d.socket)
    const e = await c.call('getAuth', undefined, 2_000).catch(() => null)
    c.close()
    return e?.result?.token === API_KEY ? true : undefined
  })
  t.ok(again, 'a new client is served once connections free up')
  reliabilityComment(t, { file: 'reliability-flood', case: 'max-connections', cases: 1044, failures: 0, dropped: limitLogs(d, 'max_connections') })
})

t.test('readers that never read are dropped at their output cap; memory stays bounded', async (t) => {
  const d = await daemon(t)
  const before = memoryOf(d.pid)
  const probe = latencyProbe(t, d, API_KEY)
  // Unbounded, these would hold 8 x 200 x ~200 KiB = ~320 MiB of answers; the cap holds 4 MiB each.
  const READERS = 8
  const LINES = 200
  const BATCH = 256
  // One line: a batch of 256 status calls (~200 KiB of answers for ~12 KiB of request).
  const line = JSON.stringify(Array.from({ length: BATCH }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'status' }))) + '\n'
  const t0 = Date.now()
  const readers = await Promise.all(
    Array.from({ length: READERS }, async () => {
      const s = net.connect(d.socket)
      await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j))
      s.pause() // never read
      s.on('error', () => {})
      const closed = new Promise<void>((r) => s.once('close', () => r()))
      t.teardown(() => s.destroy())
      for (let i = 0; i < LINES && !s.destroyed; i++) s.write(line)
      return { s, closed }
    }),
  )
  await until(`${READERS} slow readers dropped`, () => limitLogs(d, 'slow_reader') >= READERS, 30_000)
  const dropMs = Date.now() - t0
  const during = memoryOf(d.pid)
  // Now read what they were sent: less than they asked for, then the end.
  let received = 0
  await Promise.all(
    readers.map(async ({ s, closed }) => {
      onLines(s, () => received++)
      s.resume()
      await closed
    }),
  )
  const sent = READERS * LINES
  t.ok(received < sent, `dropped before all answers were sent (${received} of ${sent} batch answers)`)
  const latency = await probe.finish()
  t.same(probe.errors, [], 'the normal client got every getAuth right meanwhile')
  const after = memoryOf(d.pid)
  t.ok(after.peakMB < SLOW_READER_BOUND_MB, `peak RSS ${after.peakMB} MiB < ${SLOW_READER_BOUND_MB} MiB (before: ${before.rssMB} MiB)`)
  // While eight clients each make it build and serialize ~200 KiB per line as fast as it can, the
  // daemon is saturated: a normal call waits for a round of their work, but is never starved (the
  // probe's 5 s per call). The latency is reported, not asserted: a busy CI machine moves it.
  t.comment(`normal client's getAuth during the flood: p50 ${latency.p50Ms} ms, max ${latency.maxMs} ms`)
  t.equal(d.proc.exitCode, null, 'daemon still running')
  reliabilityComment(t, {
    file: 'reliability-flood',
    case: 'slow-readers',
    cases: READERS,
    failures: READERS - Math.min(READERS, limitLogs(d, 'slow_reader')),
    timeMs: dropMs,
    batchAnswersReceived: received,
    batchAnswersAsked: sent,
    rssBeforeMB: before.rssMB,
    rssDuringMB: during.rssMB,
    rssAfterMB: after.rssMB,
    peakRssMB: during.peakMB,
    getAuthLatency: latency,
  })
})

t.test('half lines that stall: the global buffer cap and the idle timeout apply; others are served', async (t) => {
  const IDLE_MS = 1500
  const d = await daemon(t, { CODEX_AUTHD_IDLE_TIMEOUT_MS: String(IDLE_MS) })
  const baseFds = fdCount(d.pid)
  const before = memoryOf(d.pid)
  const ingestProbe = latencyProbe(t, d, API_KEY)
  // 80 clients x 900 KB of one unfinished line = 72 MB, over the 64 MiB cap. Half of them never
  // close their side (allowHalfOpen): the idle timeout must close them all the same.
  const t0 = Date.now()
  const stallers = await startStallers(t, d.socket, { halfOpen: (i) => i % 2 === 1 })
  // Written means handed to our kernel: wait until the daemon has read enough to refuse those over
  // the cap (an event; the daemon's CPU going quiet is not one on a loaded machine, where it may
  // just not be scheduled), then let it settle before measuring the stall itself.
  const overCap = Math.ceil((STALLERS * STALLER_PART - MAX_BUFFERED) / STALLER_PART)
  await until(`${overCap} stallers refused at the buffer cap`, () => limitLogs(d, 'buffer_cap') >= overCap, 60_000)
  await waitIdle(d.pid)
  const ingest = await ingestProbe.finish()
  const probe = latencyProbe(t, d, API_KEY)
  // Those over the cap are told so at once and closed; the rest are held until idle.
  const busy = limitLogs(d, 'buffer_cap')
  const during = memoryOf(d.pid)
  t.ok(busy >= overCap, `${busy} stallers refused at the global cap`)
  const busyAnswers = await Promise.all(
    stallers.map(async (w) => {
      const e = await w.next(IDLE_MS * 4)
      return e.type === 'msg' ? e.msg : null
    }),
  )
  const refused = busyAnswers.filter((m) => m !== null)
  t.equal(refused.length, busy, 'each refused staller got an answer')
  t.ok(
    refused.every((m) => m.error?.code === -32600 && m.id === null && /Server busy: more than 67108864 bytes buffered/.test(m.error.message)),
    'the answer is -32600 naming the buffer limit',
  )
  // Every connection, refused or held, half-open or not, is gone after the idle timeout.
  await until('every staller closed by the daemon', () => fdCount(d.pid) <= baseFds + 1)
  const closeMs = Date.now() - t0
  t.ok(closeMs >= IDLE_MS, `held until the idle timeout (${closeMs} ms >= ${IDLE_MS} ms)`)
  // A half-open staller that finishes its line now gets nothing: the connection is gone.
  const late = stallers.find((w, i) => i % 2 === 1 && busyAnswers[i] === null)
  if (late) {
    await late.write('"}}\n')
    const e = await late.next(2_000)
    t.not(e.type, 'msg', 'a line finished after the idle close is not answered')
  }
  const latency = await probe.finish()
  t.same([...ingestProbe.errors, ...probe.errors], [], 'the normal client got every getAuth right meanwhile')
  // Never starved (the probe's 5 s per call); the latency is reported, not asserted: a busy CI
  // machine moves it (the README's reliability table quotes a quiet run).
  t.comment(`getAuth while they stall: p50 ${latency.p50Ms} ms, p99 ${latency.p99Ms} ms, max ${latency.maxMs} ms (${latency.calls} calls); while 72 MB arrive: max ${ingest.maxMs} ms`)
  const after = memoryOf(d.pid)
  t.ok(during.peakMB < STALL_BOUND_MB, `peak RSS ${during.peakMB} MiB < ${STALL_BOUND_MB} MiB with 64 MiB of partial lines held`)
  t.equal(d.proc.exitCode, null, 'daemon still running')
  reliabilityComment(t, {
    file: 'reliability-flood',
    case: 'half-line-stall',
    cases: STALLERS,
    failures: 0,
    refusedAtCap: busy,
    closedAfterMs: closeMs,
    idleTimeoutMs: IDLE_MS,
    rssBeforeMB: before.rssMB,
    rssDuringMB: during.rssMB,
    rssAfterMB: after.rssMB,
    peakRssMB: during.peakMB,
    getAuthLatency: latency,
    getAuthLatencyWhileIngesting: ingest,
  })
})

t.test('clients trickling a line one byte per write: memory stays proportional to the bytes held', async (t) => {
  // A fixed young generation: newer V8s (Node 26) grow it under allocation pressure, RSS that this
  // test would count as held; Node 20 grows by under 1 MiB.
  const d = await daemon(t, { NODE_OPTIONS: '--max-semi-space-size=1' })
  const before = memoryOf(d.pid)
  // 8 x 60,000 bytes of unfinished lines, each byte its own write and (mostly) its own read on
  // the daemon's side. Kept as a list of chunks, this cost ~60 bytes of heap per byte (+49 MiB
  // for 8 x 100,000 in a scratch run); in one growing buffer it costs about what it holds.
  const CLIENTS = 8
  const BYTES = 60_000
  const head = '{"jsonrpc":"2.0","id":"trickle","method":"status","params":{"pad":"'
  const t0 = Date.now()
  const wires = await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      const w = await Wire.connect(d.socket)
      t.teardown(() => w.close())
      await w.write(head)
      const one = Buffer.from('x')
      for (let i = 0; i < BYTES; i++) {
        w.socket.write(one)
        await new Promise((r) => setImmediate(r))
      }
      return w
    }),
  )
  const held = memoryOf(d.pid)
  const grew = Math.round((held.rssMB - before.rssMB) * 10) / 10
  // Measured: Node 20 about 0 MiB, Node 26 10.7-15.2 MiB (with the cap above: 10.7). A list of
  // chunks costs ~60 bytes of heap per byte held: ~29 MiB more for these 480 kB, so 22 MiB still
  // tells the two apart on every Node version.
  t.ok(grew < 22, `RSS grew ${grew} MiB for ${(CLIENTS * BYTES) / 1e6} MB of partial lines`)
  // The trickled lines are intact: finished, each is answered.
  const answers = await Promise.all(
    wires.map(async (w) => {
      await w.write('"}}\n')
      const e = await w.next(10_000)
      return e.type === 'msg' && e.msg.id === 'trickle' && e.msg.result?.loggedIn === true
    }),
  )
  t.equal(answers.filter(Boolean).length, CLIENTS, 'every trickled line answered once finished')
  reliabilityComment(t, {
    file: 'reliability-flood',
    case: 'trickle',
    cases: CLIENTS,
    failures: CLIENTS - answers.filter(Boolean).length,
    timeMs: Date.now() - t0,
    bytesHeld: CLIENTS * BYTES,
    rssBeforeMB: before.rssMB,
    rssHoldingMB: held.rssMB,
    rssGrowthMB: grew,
  })
})

t.test('a line over the limit: -32600 naming the limit, then the connection closes', async (t) => {
  const d = await daemon(t)
  const w = await Wire.connect(d.socket)
  t.teardown(() => w.close())
  await w.write(Buffer.alloc(MAX_LINE + 1, 0x20))
  const e = await w.next(10_000)
  t.equal(e.type, 'msg', 'answered')
  if (e.type === 'msg') {
    t.equal(e.msg.error?.code, -32600)
    t.equal(e.msg.id, null)
    t.match(e.msg.error?.message, /line longer than 1048576 bytes/, 'the message names the limit')
  }
  await w.closed
  t.pass('closed')
  t.equal(limitLogs(d, 'line_too_long'), 1, 'logged once')
  const c = await Wire.connect(d.socket)
  t.teardown(() => c.close())
  t.equal((await c.call('getAuth')).result?.token, API_KEY, 'others still served')
})
