// Locks held by another process, as Codex (or anyone using flock(1)) holds them, and small probes
// for code that waits on a lock: the store tests and the refresh end-to-end tests share these.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import { flockHolderIn } from '../../src/os/lockholder.js'

export interface FlockHolder {
  proc: ChildProcess
  /** Ends the holder (a line on its stdin) and resolves once it has exited. */
  release(): Promise<void>
}

/** util-linux `flock FILE -c 'echo locked; read x'`: resolves once the lock is held; killed at teardown. */
export async function holdWithFlock(t: { teardown(fn: () => unknown): void }, file: string): Promise<FlockHolder> {
  const proc = spawn('flock', [file, '-c', 'echo locked; read x'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((r) => proc.once('exit', () => r()))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s
      if (out.includes('locked')) resolve()
    })
    proc.once('error', reject)
    proc.once('exit', (code) => reject(new Error(`flock exited ${code} before taking the lock`)))
  })
  return {
    proc,
    release: async () => {
      proc.stdin!.end('\n')
      await exited
    },
  }
}

/**
 * true when some process holds a flock on `file` now, read from /proc/locks. A probe that takes
 * the lock itself (`flock -n file true`) would, for that moment, hold the very lock a daemon may be
 * retaking, and create the file when it is missing: it can make the daemon's own attempt fail.
 */
export function lockHeld(file: string): boolean {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch {
    return false
  }
  return flockHolderIn(fs.readFileSync('/proc/locks', 'utf8'), st.dev, st.ino) !== null
}

/** Exit code of `flock -n path true`: 1 when someone else holds the lock. */
export function flockN(path: string): Promise<number> {
  return new Promise((resolve) => {
    execFile('flock', ['-n', path, 'true'], (err) => {
      resolve(err ? Number((err as { code?: unknown }).code) : 0)
    })
  })
}

/** Resolves after the event loop has fired `n` interval ticks: proves it was never blocked. */
export function ticks(n: number, everyMs = 5): { count: () => number; reached: Promise<void>; stop: () => void } {
  let count = 0
  let done!: () => void
  const reached = new Promise<void>((r) => (done = r))
  const timer = setInterval(() => {
    if (++count === n) done()
  }, everyMs)
  return { count: () => count, reached, stop: () => clearInterval(timer) }
}

/** Wraps a promise so a test can ask whether it has settled yet. */
export function track<T>(p: Promise<T>): { settled: () => boolean; promise: Promise<T> } {
  let settled = false
  const promise = p.finally(() => {
    settled = true
  })
  return { settled: () => settled, promise }
}
