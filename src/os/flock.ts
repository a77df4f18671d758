// flock(2) locks shared with the Codex CLI and util-linux flock(1) (docs/codex-compat.md#locks).
// fcntl/OFD record locks would not interoperate: on Linux they are a different lock, and Codex
// uses flock. libc's flock() is called through koffi (os/libc.ts).
import { constants as fsc } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { errnoError, libc } from './libc.js'
import { describeHolder, flockHolder, type LockHolder } from './lockholder.js'

const DEFAULT_INTERVAL_MS = 10

export class LockTimeoutError extends Error {
  readonly code = 'lock_timeout'
  constructor(
    readonly path: string,
    readonly timeoutMs: number,
    /** Who held it when we gave up, where the platform tells (Linux /proc/locks); else null. */
    readonly holder: LockHolder | null = null,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for the lock on ${path}${holder !== null ? `, held by ${describeHolder(holder)}` : ''}`)
    this.name = 'LockTimeoutError'
  }
}

export interface LockOptions {
  /** Give up after this long (the first attempt is always made). */
  timeoutMs: number
  /** Poll interval; Codex polls auth.json.lock about every 10 ms. */
  intervalMs?: number
  /** Mode for a newly created lock file (before umask); 0o600 unless told. */
  mode?: number
  signal?: AbortSignal
}

export interface LockHandle {
  readonly path: string
  /** Closes the fd, which drops the lock (Codex never calls LOCK_UN). Idempotent. */
  release(): Promise<void>
}

// <sys/file.h>: the same values on Linux, macOS and the BSDs.
const LOCK_EX = 2
const LOCK_NB = 4

/** One non-blocking exclusive attempt: true when taken, false when someone else holds it. */
type TryLock = (fd: number) => boolean

let tryLockExclusive: TryLock | undefined

/** Binds flock(2) on first use (os/libc.ts loads koffi lazily). */
function flockBinding(): TryLock {
  if (tryLockExclusive) return tryLockExclusive
  const { koffi, lib, name } = libc()
  let flock: (fd: number, op: number) => number
  try {
    flock = lib.func('int flock(int fd, int operation)') as (fd: number, op: number) => number
  } catch (e) {
    throw new Error(`cannot bind flock(2) from ${name}: ${(e as Error).message}`)
  }
  // Held elsewhere (EWOULDBLOCK, the same as EAGAIN on Linux), or a signal cut the call short
  // (EINTR): either way the next poll tries again. Anything else is a real error.
  const busy = new Set([koffi.os.errno.EWOULDBLOCK, koffi.os.errno.EAGAIN, koffi.os.errno.EINTR])
  tryLockExclusive = (fd) => {
    if (flock(fd, LOCK_EX | LOCK_NB) === 0) return true
    // koffi.errno() reads this thread's errno as flock() left it: read it first, with no other
    // call in between that could overwrite it.
    const errno = koffi.errno()
    if (busy.has(errno)) return false
    throw errnoError(errno, 'flock')
  }
  return tryLockExclusive
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof Error) return reason
  const err = new Error('lock wait aborted')
  err.name = 'AbortError'
  return Object.assign(err, { code: 'ABORT_ERR' })
}

/**
 * Takes an exclusive flock on `path` (created if missing, never deleted). Only LOCK_NB attempts
 * are made, on the main thread, with setTimeout between them, so no libuv worker thread ever sits
 * in a blocking flock() and the event loop keeps running while we wait.
 */
export async function acquireLock(path: string, opts: LockOptions): Promise<LockHandle> {
  const interval = Math.max(1, opts.intervalMs ?? DEFAULT_INTERVAL_MS)
  const signal = opts.signal
  if (signal?.aborted) throw abortError(signal)
  const deadline = Date.now() + Math.max(0, opts.timeoutMs)
  const fh = await open(path, fsc.O_RDWR | fsc.O_CREAT, opts.mode ?? 0o600)
  try {
    for (;;) {
      if (flockBinding()(fh.fd)) return makeHandle(path, fh)
      const left = deadline - Date.now()
      if (left <= 0) throw new LockTimeoutError(path, opts.timeoutMs, flockHolder(fh.fd))
      // Only an abort rejects the sleep: report it as the check before the first attempt does.
      await sleep(Math.min(interval, left), undefined, { signal }).catch(() => {
        throw abortError(signal!)
      })
    }
  } catch (err) {
    await fh.close().catch(() => {})
    throw err
  }
}

function makeHandle(path: string, fh: FileHandle): LockHandle {
  let closing: Promise<void> | null = null
  return {
    path,
    release() {
      closing ??= fh.close()
      return closing
    },
  }
}
