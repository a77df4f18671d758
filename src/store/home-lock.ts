// One daemon per CODEX_HOME: the ownership lock, and who holds it.
import fs from 'node:fs'
import path from 'node:path'
import { acquireLock, type LockHandle } from './flock.js'

export class HomeOwnedError extends Error {
  readonly code = 'home_owned'
  constructor(message: string) {
    super(message)
    this.name = 'HomeOwnedError'
  }
}

/** The file a running daemon writes its socket path into, so a second one can name it. */
const OWNER_FILE = 'authd.lock'

/**
 * One daemon per CODEX_HOME: a non-blocking exclusive flock on `$CODEX_HOME/authd.lock`, held for
 * the daemon's lifetime. The lock file also records the holder's socket for the refusal message.
 */
export async function takeHomeLock(home: string, socketPath: string): Promise<LockHandle> {
  const lockPath = path.join(home, OWNER_FILE)
  let handle: LockHandle
  try {
    handle = await acquireLock(lockPath, { timeoutMs: 0, mode: 0o600 })
  } catch (e) {
    if ((e as { code?: string }).code === 'lock_timeout') {
      let holder = ''
      try {
        holder = fs.readFileSync(lockPath, 'utf8').trim()
      } catch {
        // unreadable: say less
      }
      const where = holder ? ` (its socket: ${holder})` : ''
      throw new HomeOwnedError(`another codex-authd already owns ${home}${where}`)
    }
    throw e
  }
  try {
    // Truncating and writing by path leaves the flock on our open descriptor intact.
    fs.writeFileSync(lockPath, socketPath + '\n', { mode: 0o600 })
  } catch {
    // The socket note is a courtesy; the lock is what matters.
  }
  return handle
}
