// Runs the real daemon bundle (dist/codex-authd.cjs) on a temp CODEX_HOME and socket, and the real
// CLI bundle against it. Built by `npm run build` (the test command builds first).
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { onLines } from './lines.js'
import { rawConnect, type RawConnection } from './rpc.js'
import { SecretLeakError, findSecrets, recordLeak, registerAuthJsonSecrets, registerSecret, type Leak } from './secrets.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const DAEMON_BIN = path.join(ROOT, 'dist', 'codex-authd.cjs')
export const CLI_BIN = path.join(ROOT, 'dist', 'codex-auth.cjs')

/** A fresh temp directory, 0700, removed at process exit. Short, so socket paths fit in 107 bytes. */
export function tempDir(prefix = 'cad-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.chmodSync(dir, 0o700)
  cleanup.add(dir)
  return dir
}

const cleanup = new Set<string>()
process.on('exit', () => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true })
})

/** A temp CODEX_HOME (0700). */
export async function makeHome(): Promise<string> {
  const dir = tempDir('cad-home-')
  return fs.realpathSync(dir)
}

export interface StartOptions {
  home?: string
  /** Socket path; default: a fresh 0700 temp directory's `s.sock`; null: none given, the daemon computes it (read from its start-up line). */
  socket?: string | null
  args?: string[]
  /** Extra environment for the daemon (HOME, XDG_RUNTIME_DIR and OPENAI_API_KEY are cleared). */
  env?: Record<string, string>
  /** Keep Codex's 1455,1457 (only the one test of those defaults sets this). */
  defaultLoginPorts?: boolean
  /** Wait for the "started" line (default true). */
  waitReady?: boolean
  /**
   * Scan stdout and stderr for registered secrets when the daemon exits (default true): a leak
   * makes stop() throw, and fails the test file at exit if nobody stopped it. Opt out only for a
   * daemon that is meant to print one.
   */
  scanSecrets?: boolean
}

export interface RunningDaemon {
  home: string
  socket: string
  pid: number
  proc: ChildProcess
  /** Every stdout line (pino JSON) so far. */
  logs: string[]
  stderr: string[]
  /** Resolves when the process exits. */
  exited: Promise<{ code: number | null; signal: string | null }>
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: string | null }>
  /** Resolves with the first log record (parsed) that matches. */
  waitForLog(pred: (rec: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>
  /** Labels of the registered secrets in everything the daemon printed so far (never the values). */
  secretsInOutput(): string[]
  /** Throws SecretLeakError if the output so far holds a registered secret. */
  assertNoSecrets(): void
}

/** The environment the daemon runs with: nothing from the developer's own session leaks in. */
export function isolatedEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const k of ['PATH', 'LANG', 'TZ', 'SYSTEMROOT', 'TMPDIR']) {
    const v = process.env[k]
    if (v !== undefined) env[k] = v
  }
  env.HOME = path.dirname(home)
  return { ...env, ...extra }
}

/** Registers the secrets a daemon is given: auth.json's tokens and key, API keys in its environment. */
function registerDaemonInputs(home: string, env: Record<string, string> | undefined): void {
  for (const [k, v] of Object.entries(env ?? {})) if (/API_KEY|TOKEN$/.test(k)) registerSecret(v, `${k} (environment)`)
  try {
    // Hostile-file tests plant FIFOs and huge files here: read only a plain file of sane size.
    const file = path.join(home, 'auth.json')
    const st = fs.statSync(file)
    if (st.isFile() && st.size <= 1024 * 1024) registerAuthJsonSecrets(fs.readFileSync(file, 'utf8'))
  } catch {
    // no auth.json (or not readable): nothing to register
  }
}

/** Discard port: connections are refused at once. */
export const DEAD_ISSUER = 'http://127.0.0.1:9'

/**
 * Tests never reach the real issuer or Codex's fixed ports: unless a test names its own, the
 * daemon gets a dead loopback issuer (kind openai) and two free login ports.
 */
async function safeDefaults(opts: StartOptions): Promise<string[]> {
  const given = opts.args ?? []
  const out: string[] = []
  if (!given.includes('--issuer')) out.push('--issuer', DEAD_ISSUER, '--issuer-kind', 'openai')
  if (!given.includes('--login-ports') && !opts.defaultLoginPorts) out.push('--login-ports', (await freePorts(2)).join(','))
  return out
}

/** Loopback TCP ports (two by default, for --login-ports) that were free a moment ago: bound on 0 together, then released. */
export async function freePorts(n = 2): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const srv = net.createServer()
      srv.once('error', reject)
      srv.listen(0, '127.0.0.1', () => resolve(srv))
    })),
  )
  const ports = servers.map((srv) => (srv.address() as net.AddressInfo).port)
  await Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))))
  return ports
}

export async function startDaemon(opts: StartOptions = {}): Promise<RunningDaemon> {
  const home = opts.home ?? (await makeHome())
  registerDaemonInputs(home, opts.env)
  const socket = opts.socket === null ? '' : (opts.socket ?? path.join(tempDir('cad-s-'), 's.sock'))
  const socketArgs = opts.socket === null ? [] : ['--socket', socket]
  const args = [DAEMON_BIN, '--codex-home', home, ...socketArgs, ...(await safeDefaults(opts)), ...(opts.args ?? [])]
  const proc = spawn(process.execPath, args, {
    env: isolatedEnv(home, opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: string[] = []
  const stderr: string[] = []
  const waiters: Array<{ pred: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }> = []
  const onRecord = (line: string): void => {
    logs.push(line)
    let rec: Record<string, unknown>
    try {
      rec = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!
      if (w.pred(rec)) {
        waiters.splice(i, 1)
        w.resolve(rec)
      }
    }
  }
  onLines(proc.stdout!, onRecord, { flushAtEnd: true })
  onLines(proc.stderr!, (l) => stderr.push(l), { flushAtEnd: true })
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    // 'close', not 'exit': by then every line the daemon wrote has been read, so reports are complete.
    proc.once('close', (code, signal) => resolve({ code, signal }))
  })
  // Secret scan: once stdout and stderr are drained ('close'), whoever stopped the daemon or not.
  const scan = opts.scanSecrets !== false
  const secretsInOutput = (): string[] => findSecrets(logs.join('\n') + '\n' + stderr.join('\n'))
  const where = `daemon pid ${proc.pid} (home ${home}) stdout/stderr`
  let leak: Leak | null = null
  const closed = new Promise<void>((resolve) => {
    proc.once('close', () => {
      if (scan) {
        registerDaemonInputs(home, undefined)
        const labels = secretsInOutput()
        if (labels.length > 0) leak = recordLeak(where, labels, false)
      }
      resolve()
    })
  })
  const waitForLog = (pred: (rec: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    for (const l of logs) {
      try {
        const rec = JSON.parse(l) as Record<string, unknown>
        if (pred(rec)) return Promise.resolve(rec)
      } catch {
        // not JSON
      }
    }
    return new Promise((resolve, reject) => {
      waiters.push({ pred, resolve })
      void exited.then(({ code, signal }) =>
        reject(new Error(`daemon exited (code ${code}, signal ${signal}) before the expected log line; stderr: ${stderr.join('\n')}`)),
      )
    })
  }
  const running: RunningDaemon = {
    home,
    socket,
    pid: proc.pid!,
    proc,
    logs,
    stderr,
    exited,
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      const r = await exited
      await closed
      const l = leak as Leak | null
      if (l !== null && !l.reported) {
        l.reported = true
        throw new SecretLeakError(l.where, l.labels)
      }
      return r
    },
    secretsInOutput,
    assertNoSecrets() {
      const labels = secretsInOutput()
      if (labels.length > 0) {
        recordLeak(where, labels, true)
        throw new SecretLeakError(where, labels)
      }
    },
  }
  running.exited.then(() => {}, () => {})
  if (opts.waitReady !== false) {
    const started = await waitForLog((r) => r.msg === 'codex-authd started')
    if (opts.socket === null) running.socket = String(started.socket)
  }
  return running
}

/** Stop every daemon a test started, even when the test failed. */
export function stopAtTeardown(t: { teardown(fn: () => unknown): void }, d: RunningDaemon): RunningDaemon {
  t.teardown(() => d.stop('SIGKILL'))
  return d
}

/** A raw connection to `d`'s socket, closed at teardown. */
export async function connect(t: { teardown(fn: () => unknown): void }, d: RunningDaemon): Promise<RawConnection> {
  const c = await rawConnect(d.socket)
  t.teardown(() => c.close())
  return c
}

/** A connection (closed at teardown) that has subscribed to authChanged notifications. */
export async function subscribe(t: { teardown(fn: () => unknown): void }, d: RunningDaemon): Promise<RawConnection> {
  const c = await connect(t, d)
  c.send({ jsonrpc: '2.0', id: 0, method: 'subscribe' })
  const r = await c.next()
  if (r.result?.subscribed !== true) throw new Error('subscribe failed')
  return c
}

/** The next authChanged on a subscribed connection whose Status satisfies `pred`; throws naming `what` after `timeoutMs`. */
export async function nextAuthChanged(sub: RawConnection, pred: (status: any) => boolean, what: string, timeoutMs = 20_000): Promise<any> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for authChanged: ${what}`)), timeoutMs)
  })
  const wait = (async () => {
    for (;;) {
      const m = await sub.next()
      if (m.method === 'authChanged' && pred(m.params)) return m.params
    }
  })()
  try {
    return await Promise.race([wait, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export interface CliResult {
  code: number | null
  signal: string | null
  stdout: string
  stderr: string
}

export interface CliOptions {
  socket?: string
  env?: Record<string, string>
  input?: string
  cwd?: string
  /**
   * The output is scanned for registered secrets and the call rejects with SecretLeakError when
   * it holds one: stderr always, stdout except for `token`, `env` and `exec` (whose job is to
   * print a credential or run a child that may). `true` skips the scan for this one call;
   * 'stdout' / 'stderr' skip only that stream.
   */
  allowSecrets?: boolean | 'stdout' | 'stderr'
}

/** codex-auth's subcommand: the first argument that is not a global flag (or its value). */
export function cliCommand(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--socket' || a === '--codex-home') {
      i++
      continue
    }
    if (a.startsWith('-')) continue
    return a
  }
  return undefined
}

/** Commands whose stdout is a credential (or a child's output) by design. */
export const CREDENTIAL_COMMANDS: ReadonlySet<string> = new Set(['token', 'env', 'exec'])

function scanOutput(r: CliResult, label: string, stdout: boolean, stderrToo: boolean): CliResult {
  for (const [stream, on, text] of [['stdout', stdout, r.stdout], ['stderr', stderrToo, r.stderr]] as const) {
    if (!on) continue
    const labels = findSecrets(text)
    if (labels.length > 0) {
      const where = `${label} ${stream}`
      recordLeak(where, labels, true)
      throw new SecretLeakError(where, labels)
    }
  }
  return r
}

function registerInputs(args: string[], opts: { env?: Record<string, string>; input?: string }): void {
  for (const [k, v] of Object.entries(opts.env ?? {})) if (/API_KEY|TOKEN$/.test(k)) registerSecret(v, `${k} (environment)`)
  if (args.includes('--with-api-key') && opts.input !== undefined) registerSecret(opts.input.trim(), 'API key (login --with-api-key stdin)')
}

export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const full = opts.socket !== undefined ? ['--socket', opts.socket, ...args] : args
  registerInputs(args, opts)
  const r = await runNode(CLI_BIN, full, opts)
  const cmd = cliCommand(args) ?? ''
  const allow = opts.allowSecrets ?? false
  return scanOutput(r, `codex-auth ${cmd}`.trim(), allow !== true && allow !== 'stdout' && !CREDENTIAL_COMMANDS.has(cmd), allow !== true && allow !== 'stderr')
}

export async function runDaemonCommand(args: string[], opts: { env?: Record<string, string>; input?: string; allowSecrets?: boolean } = {}): Promise<CliResult> {
  registerInputs(args, opts)
  const r = await runNode(DAEMON_BIN, args, opts)
  return opts.allowSecrets === true ? r : scanOutput(r, `codex-authd ${args.join(' ')}`.slice(0, 80), true, true)
}

function runNode(bin: string, args: string[], opts: { env?: Record<string, string>; input?: string; cwd?: string }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [bin, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: opts.cwd,
    })
    let stdout = ''
    let stderr = ''
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    p.on('error', reject)
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
    p.stdin.on('error', () => {})
    p.stdin.end(opts.input ?? '')
  })
}
