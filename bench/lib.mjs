// Shared helpers for the benchmark scripts: a daemon on a temp CODEX_HOME and socket, a minimal
// NDJSON JSON-RPC client, fake credentials and small statistics. Plain Node ESM against dist/.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { fakeAuth, renameInto } from '../test/support/auth-files.mjs'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const DAEMON_BIN = path.join(ROOT, 'dist', 'codex-authd.cjs')
export const CLI_BIN = path.join(ROOT, 'dist', 'codex-auth.cjs')
export const ECHO_SERVER = path.join(ROOT, 'bench', 'echo-server.mjs')

const cleanup = new Set()
process.on('exit', () => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true })
})

/** A fresh 0700 temp directory, removed at exit. Short, so socket paths stay under 107 bytes. */
export function tempDir(prefix = 'cab-') {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)))
  fs.chmodSync(dir, 0o700)
  cleanup.add(dir)
  return dir
}

// Fake credentials and the rename-into-place write, shared with the tests (plain ESM, no TypeScript).
export { fakeAuth, renameInto, unsignedJwt as fakeJwt } from '../test/support/auth-files.mjs'

/** Start dist/codex-authd.cjs on a temp home (with a fake login) and socket; resolves when it listens. */
export async function startDaemon({ env = {}, withAuth = true } = {}) {
  // CODEX_HOME inside a private directory, so that no other process touches its neighbours.
  const home = path.join(tempDir('cab-h-'), 'codex-home')
  fs.mkdirSync(home, { mode: 0o700 })
  const socket = path.join(tempDir('cab-s-'), 's.sock')
  if (withAuth) renameInto(path.join(home, 'auth.json'), fakeAuth('bench-0').text)
  return launchDaemon({ home, socket, env })
}

/**
 * Spawn dist/codex-authd.cjs (--log-level warn) on `home` and `socket` with extra `args`; resolves
 * once the socket answers, or throws when the daemon exits or `waitMs` passes first.
 */
export async function launchDaemon({ home, socket, args = [], env = {}, waitMs = 15_000 }) {
  if (!fs.existsSync(DAEMON_BIN)) throw new Error(`${DAEMON_BIN} is missing: run npm run build`)
  const proc = spawn(process.execPath, [DAEMON_BIN, '--codex-home', home, '--socket', socket, ...args, '--log-level', 'warn'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.dirname(home), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
  let err = ''
  proc.stderr.setEncoding('utf8').on('data', (d) => (err += d))
  proc.stdout.resume()
  // --log-level warn hides the "started" line: wait until the socket answers instead.
  const deadline = Date.now() + waitMs
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`daemon exited ${proc.exitCode}: ${err}`)
    try {
      const c = await connect(socket)
      c.close()
      break
    } catch {
      if (Date.now() > deadline) throw new Error('daemon did not start listening')
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  return {
    home,
    socket,
    pid: proc.pid,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      return exited
    },
  }
}

/** Start the bare NDJSON echo server (the floor) in a child process, answering with `result`. */
export async function startEcho(result) {
  const socket = path.join(tempDir('cab-e-'), 'e.sock')
  const proc = spawn(process.execPath, [ECHO_SERVER, socket], {
    env: { PATH: process.env.PATH ?? '', ECHO_RESULT: JSON.stringify(result) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise((resolve, reject) => {
    proc.stdout.setEncoding('utf8').once('data', () => resolve())
    proc.once('exit', (code) => reject(new Error(`echo server exited ${code}`)))
  })
  return {
    socket,
    pid: proc.pid,
    stop: () =>
      new Promise((resolve) => {
        proc.once('exit', () => resolve())
        proc.kill('SIGTERM')
      }),
  }
}

/** A minimal NDJSON JSON-RPC client: id-matched calls, notifications to `onNotify`. */
export function connect(socketPath) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath)
    const pending = new Map()
    let nextId = 1
    let buf = ''
    const client = {
      onNotify: null,
      call(method, params) {
        const id = nextId++
        const msg = params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params }
        return new Promise((res, rej) => {
          pending.set(id, { res, rej })
          sock.write(JSON.stringify(msg) + '\n')
        })
      },
      close: () => sock.destroy(),
    }
    sock.setEncoding('utf8')
    sock.on('data', (d) => {
      buf += d
      let i
      while ((i = buf.indexOf('\n')) !== -1) {
        const m = JSON.parse(buf.slice(0, i))
        buf = buf.slice(i + 1)
        if (m.id !== undefined && pending.has(m.id)) {
          const p = pending.get(m.id)
          pending.delete(m.id)
          p.res(m)
        } else if (m.method && client.onNotify) client.onNotify(m)
      }
    })
    sock.on('close', () => {
      for (const p of pending.values()) p.rej(new Error('connection closed'))
      pending.clear()
    })
    sock.once('connect', () => {
      sock.removeListener('error', reject)
      sock.on('error', () => {})
      resolve(client)
    })
    sock.once('error', reject)
  })
}

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}
export const median = (xs) => percentile([...xs].sort((a, b) => a - b), 50)

/** Fields of /proc/<pid>/status (kB values as numbers), or null off Linux. */
export function procStatus(pid) {
  try {
    const out = {}
    for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const m = /^(\w+):\s+(\d+)/.exec(line)
      if (m) out[m[1]] = Number(m[2])
    }
    return out
  } catch {
    return null
  }
}

/** Context switches summed over every thread of the process (the main thread alone misses libuv/V8 workers). */
export function ctxtSwitches(pid) {
  let voluntary = 0
  let nonvoluntary = 0
  let threads = 0
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')
      voluntary += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0)
      nonvoluntary += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0)
      threads++
    } catch {
      // thread ended
    }
  }
  return { voluntary, nonvoluntary, threads }
}

/** Print rows as an aligned table. */
export function printTable(title, header, rows) {
  const all = [header, ...rows].map((r) => r.map((c) => String(c)))
  const w = header.map((_, i) => Math.max(...all.map((r) => r[i].length)))
  console.log(`\n${title}`)
  all.forEach((r, j) => {
    console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  '))
    if (j === 0) console.log(w.map((n) => '-'.repeat(n)).join('  '))
  })
}

export const fmt = (x, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : String(x))
export const verdict = (ok) => (ok ? 'met' : 'MISSED')

/**
 * Wall time of whole commands, `runs` times each, taken in turn (each round starts one further
 * along, so background load hits all alike) after 3 warm-up runs each (the page cache).
 * `commands`: name -> [file, args]. Returns name -> {median, p10, p90, runs} in ms.
 */
export function timeCommandsInTurn(commands, { env, runs }) {
  const keys = Object.keys(commands)
  const times = Object.fromEntries(keys.map((k) => [k, []]))
  const run = (k) => {
    const [cmd, args] = commands[k]
    const t0 = nowMs()
    const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    const ms = nowMs() - t0
    if (r.status !== 0) throw new Error(`${k} exited ${r.status}: ${r.stderr}`)
    return ms
  }
  for (const k of keys) for (let i = 0; i < 3; i++) run(k)
  for (let i = 0; i < runs; i++) for (let j = 0; j < keys.length; j++) times[keys[(i + j) % keys.length]].push(run(keys[(i + j) % keys.length]))
  const summary = {}
  for (const [k, xs] of Object.entries(times)) {
    const sorted = [...xs].sort((a, b) => a - b)
    summary[k] = { median: median(xs), p10: percentile(sorted, 10), p90: percentile(sorted, 90), runs: xs.length }
  }
  return summary
}
