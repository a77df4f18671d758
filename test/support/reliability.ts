// Helpers for the reliability suite (issue 7): a seeded PRNG, a raw NDJSON wire with per-message
// deadlines, daemon memory from /proc, polling with a deadline, and running things as an
// unprivileged user (CI runs as root, where permission checks prove nothing: docs/testing.md#running-as-root).
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { DAEMON_BIN, CLI_BIN, ROOT, freePorts, isolatedEnv, tempDir } from './daemon.js'
import { onLines } from './lines.js'
import { until } from './until.js'

export { freePorts }
export { mulberry32 } from './prng.js'

/** `# reliability: {...}` in the TAP stream: the figures the README table quotes. */
export function reliabilityComment(t: { comment(...args: unknown[]): void }, figures: Record<string, unknown>): void {
  t.comment(`reliability: ${JSON.stringify(figures)}`)
}

export interface Memory {
  /** VmRSS, MiB */
  rssMB: number
  /** VmHWM (peak RSS since start), MiB */
  peakMB: number
}

export function memoryOf(pid: number): Memory {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN)
  return { rssMB: Math.round(kb('VmRSS') / 102.4) / 10, peakMB: Math.round(kb('VmHWM') / 102.4) / 10 }
}

/** CPU time (user + system) a process has used, in ms (from /proc/<pid>/stat; 100 ticks/s). */
export function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Waits (bounded) until a process uses less than `busyMs` of CPU per `windowMs`: it is idle. */
export async function waitIdle(pid: number, { windowMs = 200, busyMs = 20, timeoutMs = 10_000 } = {}): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  let last = cpuMs(pid)
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, windowMs))
    const now = cpuMs(pid)
    if (now - last < busyMs) return true
    last = now
  }
  return false
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length
}

export type WireEvent = { type: 'msg'; msg: any; raw: string } | { type: 'closed' } | { type: 'timeout' }

/**
 * A raw NDJSON connection: writes bytes as given, parses each line the daemon sends, and answers
 * `next()` with a deadline so that a missing answer is a failure, not a hang.
 */
export class Wire {
  readonly socket: net.Socket
  private parts: Buffer[] = []
  private queue: WireEvent[] = []
  private waiters: Array<(e: WireEvent) => void> = []
  private ended = false
  /** Notifications (no id, a method) are set aside here, not returned by next(). */
  readonly notifications: any[] = []
  readonly closed: Promise<void>

  private constructor(socket: net.Socket) {
    this.socket = socket
    this.closed = new Promise((r) => socket.once('close', () => r()))
    socket.on('data', (d: Buffer) => this.onData(d))
    socket.on('error', () => {})
    // 'end' as well as 'close': a half-open client (allowHalfOpen) gets no 'close' when the
    // daemon goes away, yet nothing more can arrive.
    const ended = (): void => {
      this.ended = true
      for (const w of this.waiters.splice(0)) w({ type: 'closed' })
    }
    socket.on('end', ended)
    socket.on('close', ended)
  }

  static connect(socketPath: string, opts: { allowHalfOpen?: boolean } = {}): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path: socketPath, allowHalfOpen: opts.allowHalfOpen ?? false })
      s.once('connect', () => {
        s.off('error', reject)
        resolve(new Wire(s))
      })
      s.once('error', reject)
    })
  }

  get isClosed(): boolean {
    return this.ended
  }

  private onData(d: Buffer): void {
    let start = 0
    for (;;) {
      const nl = d.indexOf(10, start)
      if (nl === -1) break
      this.parts.push(d.subarray(start, nl))
      const raw = Buffer.concat(this.parts).toString('utf8')
      this.parts = []
      start = nl + 1
      let msg: any
      try {
        msg = JSON.parse(raw)
      } catch {
        msg = { __unparsable: true }
      }
      if (msg !== null && typeof msg === 'object' && !Array.isArray(msg) && 'method' in msg && !('id' in msg)) {
        this.notifications.push(msg)
        continue
      }
      const e: WireEvent = { type: 'msg', msg, raw }
      const w = this.waiters.shift()
      if (w) w(e)
      else this.queue.push(e)
    }
    if (start < d.length) this.parts.push(Buffer.from(d.subarray(start)))
  }

  /** Resolves once the bytes are handed to the kernel (or the socket failed). */
  write(data: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || !this.socket.writable) return resolve()
      this.socket.write(data, () => resolve())
    })
  }

  next(timeoutMs = 10_000): Promise<WireEvent> {
    const q = this.queue.shift()
    if (q) return Promise.resolve(q)
    if (this.ended) return Promise.resolve({ type: 'closed' })
    return new Promise((resolve) => {
      const waiter = (e: WireEvent): void => {
        clearTimeout(timer)
        resolve(e)
      }
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter)
        if (i !== -1) this.waiters.splice(i, 1)
        resolve({ type: 'timeout' })
      }, timeoutMs)
      this.waiters.push(waiter)
    })
  }

  /** One request, its answer (matched by id; other answers are dropped). */
  async call(method: string, params?: unknown, timeoutMs = 10_000): Promise<any> {
    const id = `c-${Math.random().toString(36).slice(2)}`
    await this.write(JSON.stringify(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params }) + '\n')
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const e = await this.next(Math.max(1, deadline - Date.now()))
      if (e.type !== 'msg') throw new Error(`no answer to ${method}: ${e.type}`)
      if (e.msg?.id === id) return e.msg
    }
  }

  close(): void {
    this.socket.destroy()
  }
}

// ------------------------------------------------------------------------------------------------
// Running as an unprivileged user

export const TEST_USER = 'codexauthd-test'

export interface TestUser {
  name: string
  uid: number
  gid: number
}

/**
 * The unprivileged test user, created if missing (idempotent). null when we are not root (then
 * we already are unprivileged and cannot switch users) or when the user cannot be created.
 */
export function ensureTestUser(): TestUser | null {
  if (process.getuid?.() !== 0) return null
  const lookup = (): TestUser | null => {
    try {
      const uid = Number(execFileSync('id', ['-u', TEST_USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
      const gid = Number(execFileSync('id', ['-g', TEST_USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
      return Number.isInteger(uid) && Number.isInteger(gid) ? { name: TEST_USER, uid, gid } : null
    } catch {
      return null
    }
  }
  // Test files run in parallel: another may be creating the user (useradd then fails on the
  // existing name or on /etc/passwd's lock), so look again a few times.
  for (let attempt = 0; attempt < 10; attempt++) {
    const found = lookup()
    if (found) return found
    try {
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER], { stdio: 'ignore' })
    } catch {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)
    }
  }
  return lookup()
}

const staged: { dir: string | null } = { dir: null }
process.on('exit', () => {
  if (staged.dir) fs.rmSync(staged.dir, { recursive: true, force: true })
})

export interface StagedBundle {
  /** world-readable (0755) directory holding dist/ and node_modules/koffi (+ its prebuilt binary) */
  dir: string
  daemon: string
  cli: string
}

/**
 * Copies the two bundles and the daemon's one run-time dependency (koffi, with the package that
 * holds its prebuilt binaries, @koromix/koffi-<platform>) into a 0755 directory under /tmp, so
 * that another user can run them whatever the permissions of the checkout.
 */
export function stageBundle(): StagedBundle {
  if (staged.dir === null) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cad-rel-bin-'))
    fs.chmodSync(dir, 0o755)
    const copy = (rel: string, to = rel): void => {
      const dst = path.join(dir, to)
      fs.mkdirSync(path.dirname(dst), { recursive: true, mode: 0o755 })
      fs.copyFileSync(path.join(ROOT, rel), dst)
      fs.chmodSync(dst, 0o644)
    }
    copy(path.relative(ROOT, DAEMON_BIN))
    copy(path.relative(ROOT, CLI_BIN))
    for (const pkg of ['koffi', '@koromix']) fs.cpSync(path.join(ROOT, 'node_modules', pkg), path.join(dir, 'node_modules', pkg), { recursive: true })
    // mkdirSync's mode is masked by the umask: make every directory on the way traversable.
    const walk = (d: string): void => {
      fs.chmodSync(d, 0o755)
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name))
    }
    walk(dir)
    staged.dir = dir
  }
  return {
    dir: staged.dir,
    daemon: path.join(staged.dir, path.relative(ROOT, DAEMON_BIN)),
    cli: path.join(staged.dir, path.relative(ROOT, CLI_BIN)),
  }
}

/** A world-traversable temp directory (0755) holding things the test user will own. */
export function publicTempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.chmodSync(dir, 0o755)
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** `source` written as `name` (0644) in a fresh publicTempDir: a script another user can run. */
export function publicScript(prefix: string, name: string, source: string): string {
  const file = path.join(publicTempDir(prefix), name)
  fs.writeFileSync(file, source)
  fs.chmodSync(file, 0o644)
  return file
}

/**
 * argv prefix that runs a command as `user` with no supplementary groups. NODE_OPTIONS is dropped:
 * tap's process-info hook puts its loader there for every child, and that loader writes to
 * .tap/ in the checkout, which the user cannot (the child would then exit 1 at its end).
 * setpriv and env both exec, so the child's pid is the command's.
 */
export function asUser(user: TestUser): string[] {
  return ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--', '/usr/bin/env', '-u', 'NODE_OPTIONS']
}

export interface Ran {
  code: number | null
  signal: string | null
  stdout: string
  stderr: string
}

/** Runs `node <args>` as `user` (null: as ourselves), with a minimal environment, and collects its output. */
export function runNodeAs(user: TestUser | null, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = user ? [...asUser(user), process.execPath] : [process.execPath]
    const p = spawn(cmd!, [...pre, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: '/',
    })
    let stdout = ''
    let stderr = ''
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 15_000)
    p.on('error', reject)
    p.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

// ------------------------------------------------------------------------------------------------
// A daemon started directly

export interface LaunchedDaemon {
  home: string
  socket: string
  pid: number
  alive(): boolean
  logs: string[]
  stderr: string[]
  sighup(): void
  exited: Promise<{ code: number | null; signal: string | null }>
  stop(): Promise<{ code: number | null; signal: string | null }>
}

/**
 * Starts the daemon bundle on `home` (as `as` when given, from the world-readable staged copy).
 * Not test/support/daemon.ts's startDaemon: the hostile-file homes hold FIFOs and 8 GiB files that
 * the test process itself must never open (a FIFO would block it), and `umask` must apply to the
 * spawn itself (set and restored around it, synchronously).
 */
export async function launchDaemon(
  t: { teardown(fn: () => unknown): void },
  home: string,
  opts: { as?: TestUser; socket?: string; waitReady?: boolean; env?: Record<string, string>; umask?: number } = {},
): Promise<LaunchedDaemon> {
  const socket = opts.socket ?? path.join(tempDir('cad-s-'), 's.sock')
  const bin = opts.as ? stageBundle().daemon : DAEMON_BIN
  // Never a real issuer nor Codex's fixed login ports: a closed loopback port and free ones.
  const argv = [bin, '--codex-home', home, '--socket', socket, '--issuer', 'http://127.0.0.1:9', '--issuer-kind', 'openai', '--login-ports', (await freePorts(2)).join(',')]
  const env = isolatedEnv(home, opts.env)
  const [cmd, ...args] = opts.as ? [...asUser(opts.as), process.execPath, ...argv] : [process.execPath, ...argv]
  const oldMask = opts.umask !== undefined ? process.umask(opts.umask) : null
  let p: ReturnType<typeof spawn>
  try {
    p = spawn(cmd!, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' })
  } finally {
    if (oldMask !== null) process.umask(oldMask)
  }
  const logs: string[] = []
  const stderr: string[] = []
  onLines(p.stdout!, (l) => logs.push(l))
  p.stderr!.setEncoding('utf8').on('data', (x: string) => stderr.push(x))
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => p.once('exit', (code, signal) => r({ code, signal })))
  t.teardown(() => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
  })
  if (opts.waitReady !== false) {
    await until(
      'the daemon to start',
      () => {
        if (p.exitCode !== null) throw new Error(`daemon exited ${p.exitCode}: ${stderr.join('')}`)
        return logs.some((l) => l.includes('"codex-authd started"'))
      },
      15_000,
    )
  }
  return {
    home,
    socket,
    pid: p.pid!,
    alive: () => p.exitCode === null && p.signalCode === null,
    logs,
    stderr,
    sighup: () => void p.kill('SIGHUP'),
    exited,
    stop: async () => {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM')
      return exited
    },
  }
}

// ------------------------------------------------------------------------------------------------
// A normal client during an attack

export interface Latency {
  calls: number
  p50Ms: number
  p99Ms: number
  maxMs: number
}

export interface LatencyProbe {
  samples: number[]
  /** What went wrong for the normal client (a wrong answer, no answer, its connection closed). */
  errors: string[]
  /** Stops the loop; the latencies of its calls. */
  finish(): Promise<Latency>
}

/**
 * A normal client calling getAuth on `socket` in a loop until finished, expecting `token`; its
 * latencies in ms. Stops at its first failure (recorded in `errors`).
 */
export function latencyProbe(t: { teardown(fn: () => unknown): void }, d: { socket: string }, token: string, timeoutMs = 5_000): LatencyProbe {
  const samples: number[] = []
  const errors: string[] = []
  let stop = false
  const done = (async () => {
    let c: Wire
    try {
      c = await Wire.connect(d.socket)
    } catch (e) {
      errors.push(`connect: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)
      return
    }
    t.teardown(() => c.close())
    while (!stop) {
      const t0 = performance.now()
      try {
        const r = await c.call('getAuth', { minValiditySeconds: 60 }, timeoutMs)
        if (r.result?.token !== token) errors.push(`getAuth answered ${r.error?.code ?? 'another token'}`)
      } catch (e) {
        errors.push((e as Error).message)
        break
      }
      samples.push(performance.now() - t0)
      await new Promise((r) => setTimeout(r, 5))
    }
    c.close()
  })()
  return {
    samples,
    errors,
    async finish() {
      stop = true
      await done
      return latencyOf(samples)
    },
  }
}

/** p50, p99 and max of latencies in ms, to 0.1 ms. */
export function latencyOf(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number): number => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN) * 10) / 10
  return { calls: samples.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) }
}

/** `connection limit reached` log lines of `kind` so far. */
/** Half-line stallers: each connects and writes one unfinished `status` line of `part` bytes, then waits. */
export const STALLERS = 80
export const STALLER_PART = 900_000

/** The unfinished line one staller writes. */
export function stallerLine(): string {
  const head = '{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"'
  return head + 'x'.repeat(STALLER_PART - head.length)
}

export async function startStallers(t: { teardown(fn: () => unknown): void }, socket: string, opts: { halfOpen?: (i: number) => boolean } = {}): Promise<Wire[]> {
  const chunk = stallerLine()
  return Promise.all(
    Array.from({ length: STALLERS }, async (_, i) => {
      const w = await Wire.connect(socket, { allowHalfOpen: opts.halfOpen?.(i) ?? false })
      t.teardown(() => w.close())
      await w.write(chunk)
      return w
    }),
  )
}

export function limitLogs(logs: string[], kind: string): number {
  return logs.filter((l) => l.includes('"connection limit reached"') && l.includes(`"kind":"${kind}"`)).length
}
