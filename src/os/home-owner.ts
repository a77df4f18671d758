// Whether a codex-authd owns a CODEX_HOME: it holds `$CODEX_HOME/authd.lock` (an exclusive flock) for
// its lifetime (docs/contract.md#ownership). The `exec` listener asks when the daemon's socket
// cannot be reached (docs/broker.md#the-listener).
import fs from 'node:fs'
import path from 'node:path'
import { acquireLock } from './flock.js'

/**
 * true: a daemon holds the home's owner lock; false: none does (or there is no lock file). The
 * probe takes the lock for an instant and drops it: a daemon starting in that instant would find
 * it held, so this is asked only when the daemon is unreachable anyway.
 */
export async function homeOwned(home: string): Promise<boolean> {
  const lock = path.join(home, 'authd.lock')
  if (!fs.existsSync(lock)) return false
  try {
    const held = await acquireLock(lock, { timeoutMs: 0 })
    await held.release()
    return false
  } catch (e) {
    if ((e as { code?: string }).code === 'lock_timeout') return true
    // Cannot even open it (not ours, unreadable): say owned, so nothing is passed around the daemon.
    return true
  }
}
