// Who owns what (docs/contract.md#ownership): one daemon per CODEX_HOME (authd.lock) and one per
// credential file (a lock beside the resolved auth.json). Each is a non-blocking exclusive flock
// held for the daemon's lifetime; the lock file carries a note naming the holder, for the refusal.
import fs from 'node:fs'
import path from 'node:path'
import { acquireLock, type LockHandle } from '../os/flock.js'

/** Another daemon already owns this home or this credential file (the daemon exits 3). */
export class OwnedElsewhereError extends Error {
  readonly code = 'owned_elsewhere'
  constructor(message: string) {
    super(message)
    this.name = 'OwnedElsewhereError'
  }
}

/**
 * Takes the lock at `lockPath` at once or not at all, then writes `note` into it (truncating by
 * path keeps the flock on our descriptor). Held elsewhere: `refusal(the holder's note)`.
 */
async function takeOwnerLock(lockPath: string, note: string, refusal: (holderNote: string) => string): Promise<LockHandle> {
  let handle: LockHandle
  try {
    handle = await acquireLock(lockPath, { timeoutMs: 0, mode: 0o600 })
  } catch (e) {
    if ((e as { code?: string }).code !== 'lock_timeout') throw e
    let holder = ''
    try {
      holder = fs.readFileSync(lockPath, 'utf8').trim()
    } catch {
      // unreadable: say less
    }
    throw new OwnedElsewhereError(refusal(holder))
  }
  try {
    fs.writeFileSync(lockPath, note + '\n', { mode: 0o600 })
  } catch {
    // The note is a courtesy; the lock is what matters.
  }
  return handle
}

/** One daemon per CODEX_HOME: `$CODEX_HOME/authd.lock`, its note the holder's socket. */
export function takeHomeLock(home: string, socketPath: string): Promise<LockHandle> {
  return takeOwnerLock(path.join(home, 'authd.lock'), socketPath, (socket) =>
    `another codex-authd already owns ${home}${socket ? ` (its socket: ${socket})` : ''}`,
  )
}

/** The owner lock's file name beside a credential file: `auth.json` -> `auth.json.authd.lock`. */
export function credentialLockPath(credentialFile: string): string {
  return `${credentialFile}.authd.lock`
}

/**
 * One daemon per credential file, whichever home reaches it: two homes whose auth.json are
 * symlinks to one file would otherwise both spend its single-use refresh token. The lock sits
 * beside the *resolved* file (a path's device and inode change with every atomic rename, so they
 * cannot name it) and is a file of our own: Codex's auth.json.lock must stay free, since Codex gives
 * up on it after about 5 s and loses the tokens it received (docs/codex-compat.md#locks). One lock
 * per credential file leaves room for a daemon that serves several. Its note is the owner's home.
 * Returns null when the file's directory does not exist (a dangling link): nothing can be written
 * there either until it does.
 */
export async function takeCredentialLock(credentialFile: string, ownerHome: string): Promise<LockHandle | null> {
  try {
    return await takeOwnerLock(credentialLockPath(credentialFile), ownerHome, (other) => {
      const who = other && other !== ownerHome ? `the codex-authd of ${other}` : 'another codex-authd'
      return `${who} already owns ${credentialFile}, the credential file of ${ownerHome}`
    })
  } catch (e) {
    const code = (e as { code?: string }).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return null
    throw e
  }
}
