// One daemon per credential file (docs/contract.md#ownership). The home's authd.lock keeps two
// daemons off one CODEX_HOME; this keeps two homes off one auth.json: two homes whose auth.json are
// symlinks to one file would otherwise both spend its single-use refresh token.
import fs from 'node:fs'
import { acquireLock, type LockHandle } from './flock.js'

export class CredentialOwnedError extends Error {
  readonly code = 'credential_owned'
  constructor(
    message: string,
    /** The home of the daemon that holds the lock, when its note could be read. */
    readonly ownerHome: string | null,
  ) {
    super(message)
    this.name = 'CredentialOwnedError'
  }
}

/** The owner lock's file name beside a credential file: `auth.json` -> `auth.json.authd.lock`. */
export function credentialLockPath(credentialFile: string): string {
  return `${credentialFile}.authd.lock`
}

/**
 * A non-blocking exclusive flock beside the *resolved* credential file, held for the daemon's
 * lifetime. Beside it, because a path's device and inode change with every atomic rename and so
 * cannot name the file; a file of our own, because Codex's auth.json.lock must stay free (Codex
 * gives up on it after about 5 s and loses the tokens it received: docs/codex-compat.md#locks). One lock
 * per credential file leaves room for a daemon that serves several. Returns null when the file's
 * directory does not exist (a dangling link): nobody can write that credential until it does.
 */
export async function takeCredentialLock(credentialFile: string, ownerHome: string): Promise<LockHandle | null> {
  const lockPath = credentialLockPath(credentialFile)
  let handle: LockHandle
  try {
    handle = await acquireLock(lockPath, { timeoutMs: 0, mode: 0o600 })
  } catch (e) {
    const code = (e as { code?: string }).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return null
    if (code !== 'lock_timeout') throw e
    let other: string | null = null
    try {
      other = fs.readFileSync(lockPath, 'utf8').split('\n')[0]!.trim() || null
    } catch {
      // unreadable: say less
    }
    const who = other !== null && other !== ownerHome ? `the codex-authd of ${other}` : 'another codex-authd'
    throw new CredentialOwnedError(`${who} already owns ${credentialFile}, the credential file of ${ownerHome}`, other)
  }
  try {
    // Truncating by path keeps the flock on our descriptor; the note names us in a refusal.
    fs.writeFileSync(lockPath, ownerHome + '\n', { mode: 0o600 })
  } catch {
    // a courtesy only; the lock is what matters
  }
  return handle
}
