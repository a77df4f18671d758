// Runs the real daemon bundle (dist/codex-authd.cjs) on a temp CODEX_HOME and socket, and the real
// CLI bundle against it. Built by `npm run build` (the test command builds first).
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

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
  /** Socket path; default: a fresh 0700 temp directory's `s.sock`. */
  socket?: string
  args?: string[]
  /** Extra environment for the daemon (HOME, XDG_RUNTIME_DIR and OPENAI_API_KEY are cleared). */
  env?: Record<string, string>
  /** Wait for the "started" line (default true). */
  waitReady?: boolean
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

export async function startDaemon(opts: StartOptions = {}): Promise<RunningDaemon> {
  const home = opts.home ?? (await makeHome())
  const socket = opts.socket ?? path.join(tempDir('cad-s-'), 's.sock')
  const args = [DAEMON_BIN, '--codex-home', home, '--socket', socket, ...(opts.args ?? [])]
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
  lines(proc.stdout!, onRecord)
  lines(proc.stderr!, (l) => stderr.push(l))
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }))
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
      return exited
    },
  }
  running.exited.then(() => {}, () => {})
  if (opts.waitReady !== false) await waitForLog((r) => r.msg === 'codex-authd started')
  return running
}

/** Stop every daemon a test started, even when the test failed. */
export function stopAtTeardown(t: { teardown(fn: () => unknown): void }, d: RunningDaemon): RunningDaemon {
  t.teardown(() => d.stop('SIGKILL'))
  return d
}

export interface CliResult {
  code: number | null
  signal: string | null
  stdout: string
  stderr: string
}

export function runCli(args: string[], opts: { socket?: string; env?: Record<string, string>; input?: string; cwd?: string } = {}): Promise<CliResult> {
  const full = opts.socket !== undefined ? ['--socket', opts.socket, ...args] : args
  return runNode(CLI_BIN, full, opts)
}

export function runDaemonCommand(args: string[], opts: { env?: Record<string, string>; input?: string } = {}): Promise<CliResult> {
  return runNode(DAEMON_BIN, args, opts)
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

function lines(stream: NodeJS.ReadableStream, onLine: (l: string) => void): void {
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (d: string) => {
    buf += d
    let i: number
    while ((i = buf.indexOf('\n')) !== -1) {
      onLine(buf.slice(0, i))
      buf = buf.slice(i + 1)
    }
  })
  stream.on('end', () => {
    if (buf) onLine(buf)
  })
}
