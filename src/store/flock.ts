// flock(2) locks shared with the Codex CLI and util-linux flock(1) (docs/codex-compat.md#locks).
// fcntl record locks would not interoperate: Codex uses flock.
import { constants as fsc } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import fsExt from 'fs-ext'

const DEFAULT_INTERVAL_MS = 10

export class LockTimeoutError extends Error {
  readonly code = 'lock_timeout'
  constructor(
    readonly path: string,
    readonly timeoutMs: number,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for the lock on ${path}`)
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

function isBusy(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return code === 'EAGAIN' || code === 'EWOULDBLOCK'
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
      try {
        fsExt.flockSync(fh.fd, 'exnb')
        return makeHandle(path, fh)
      } catch (err) {
        if (!isBusy(err)) throw err
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new LockTimeoutError(path, opts.timeoutMs)
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
