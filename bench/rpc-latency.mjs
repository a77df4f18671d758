// getAuth round trip (one client, sequential) and throughput (64 concurrent clients) against the
// daemon, each compared with a bare NDJSON echo server in a child process on the same kind of Unix
// socket (the floor). Blocks of calls alternate between the two servers so background load is
// shared evenly.
// Usage: node bench/rpc-latency.mjs [--calls 20000] [--clients 64] [--per-client 500]
import { parseArgs } from 'node:util'
import { connect, fmt, nowMs, percentile, printTable, procStatus, startDaemon, startEcho, verdict } from './lib.mjs'

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '20000' },
    clients: { type: 'string', default: '64' },
    'per-client': { type: 'string', default: '500' },
    blocks: { type: 'string', default: '4' },
  },
})
const CALLS = Number(values.calls)
const CLIENTS = Number(values.clients)
const PER_CLIENT = Number(values['per-client'])
const BLOCKS = Number(values.blocks)

const daemon = await startDaemon()
try {
  const probe = await connect(daemon.socket)
  const grant = await probe.call('getAuth')
  probe.close()
  if (!grant.result) throw new Error(`getAuth failed: ${JSON.stringify(grant.error)}`)
  const echo = await startEcho(grant.result)

  const targets = {
    floor: { socket: echo.socket, method: 'getAuth' },
    daemon: { socket: daemon.socket, method: 'getAuth' },
  }

  // --- latency: one connection per target, sequential calls, alternating blocks ---
  const lat = { floor: [], daemon: [] }
  const conns = {}
  for (const [k, v] of Object.entries(targets)) conns[k] = await connect(v.socket)
  for (const k of Object.keys(targets)) for (let i = 0; i < 2000; i++) await conns[k].call('getAuth') // warm-up
  const perBlock = Math.ceil(CALLS / BLOCKS)
  for (let b = 0; b < BLOCKS; b++) {
    for (const k of b % 2 === 0 ? ['floor', 'daemon'] : ['daemon', 'floor']) {
      const c = conns[k]
      for (let i = 0; i < perBlock; i++) {
        const t0 = nowMs()
        const r = await c.call('getAuth')
        lat[k].push(nowMs() - t0)
        if (!r.result) throw new Error(`${k}: getAuth failed`)
      }
    }
  }
  for (const c of Object.values(conns)) c.close()
  const stats = {}
  for (const k of Object.keys(lat)) {
    const s = lat[k].sort((a, b) => a - b)
    stats[k] = { p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1], n: s.length }
  }

  // --- throughput: CLIENTS connections, each PER_CLIENT sequential calls, all at once ---
  async function throughput(socket) {
    const cs = await Promise.all(Array.from({ length: CLIENTS }, () => connect(socket)))
    await Promise.all(cs.map(async (c) => { for (let i = 0; i < 50; i++) await c.call('getAuth') })) // warm-up
    const t0 = nowMs()
    await Promise.all(cs.map(async (c) => { for (let i = 0; i < PER_CLIENT; i++) await c.call('getAuth') }))
    const ms = nowMs() - t0
    for (const c of cs) c.close()
    return (CLIENTS * PER_CLIENT) / (ms / 1000)
  }
  const tput = { floor: [], daemon: [] }
  for (let r = 0; r < 3; r++) {
    for (const k of r % 2 === 0 ? ['floor', 'daemon'] : ['daemon', 'floor']) tput[k].push(await throughput(targets[k].socket))
  }
  const tp = { floor: tput.floor.sort((a, b) => a - b)[1], daemon: tput.daemon.sort((a, b) => a - b)[1] }
  const rssAfterLoadMB = (procStatus(daemon.pid)?.VmRSS ?? NaN) / 1024
  await echo.stop()

  const ratioP50 = stats.daemon.p50 / stats.floor.p50
  const ratioTp = tp.daemon / tp.floor
  printTable(`getAuth round trip, 1 client, ${stats.daemon.n} calls (ms)`, ['server', 'p50', 'p90', 'p99', 'max'], [
    ['echo floor', fmt(stats.floor.p50), fmt(stats.floor.p90), fmt(stats.floor.p99), fmt(stats.floor.max)],
    ['codex-authd', fmt(stats.daemon.p50), fmt(stats.daemon.p90), fmt(stats.daemon.p99), fmt(stats.daemon.max)],
    ['ratio', fmt(ratioP50, 2), fmt(stats.daemon.p90 / stats.floor.p90, 2), fmt(stats.daemon.p99 / stats.floor.p99, 2), ''],
  ])
  printTable(`throughput, ${CLIENTS} clients x ${PER_CLIENT} sequential calls (median of 3 runs, calls/s)`, ['server', 'calls/s'], [
    ['echo floor', Math.round(tp.floor)],
    ['codex-authd', Math.round(tp.daemon)],
    ['ratio', fmt(ratioTp, 2)],
  ])
  const targetsMet = {
    p50WithinOneAndHalfFloor: ratioP50 <= 1.5,
    p99UnderOneMs: stats.daemon.p99 < 1,
    throughputAtLeast60PctFloor: ratioTp >= 0.6,
  }
  printTable('targets', ['target', 'value', 'verdict'], [
    ['p50 <= 1.5x floor', `${fmt(ratioP50, 2)}x`, verdict(targetsMet.p50WithinOneAndHalfFloor)],
    ['p99 < 1 ms', `${fmt(stats.daemon.p99)} ms`, verdict(targetsMet.p99UnderOneMs)],
    ['throughput >= 0.6x floor', `${fmt(ratioTp, 2)}x`, verdict(targetsMet.throughputAtLeast60PctFloor)],
  ])
  console.log(`daemon RSS after the runs: ${fmt(rssAfterLoadMB, 1)} MB`)
  console.log(
    JSON.stringify({
      bench: 'rpc-latency',
      latencyMs: stats,
      ratioP50,
      throughput: { floor: tp.floor, daemon: tp.daemon, ratio: ratioTp, clients: CLIENTS, perClient: PER_CLIENT },
      rssAfterLoadMB,
      targetsMet,
    }),
  )
} finally {
  await daemon.stop()
}
