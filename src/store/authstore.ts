// The auth.json file store: reads hostile files safely and commits under Codex's two flock locks
// in Codex's order (docs/codex-compat.md#locks, #atomic-write; docs/refresh.md#the-sequence;
// docs/watching.md#files-the-daemon-cannot-use).
import { createHash } from 'node:crypto'
import { statSync, type Stats } from 'node:fs'
import { lstat, readlink, unlink } from 'node:fs/promises'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { parseAuthFile, serializeAuthFile } from '../codex/authfile.js'
import type { AuthFile, Problem } from '../types.js'
import { acquireLock, LockTimeoutError, type LockHandle } from '../os/flock.js'
import type { LockHolder } from '../os/lockholder.js'
import { writeFileAtomic, type AtomicWriteOptions } from './atomic-write.js'
import { KeyringError } from './keyring-backend.js'
import { keyringUnreachable } from './keyring-entry.js'
import { errCode, errText, fileIdentity, readSmallTextFileUnless } from './textfile.js'

/** Files larger than this are reported, never read whole (real auth.json files are ~4 KiB). */
export const MAX_AUTH_BYTES = 1024 * 1024
export const DEFAULT_LOCK_TIMEOUT_MS = 5000
/** Codex's symlink hop limit is the kernel's; 40 matches Linux MAXSYMLINKS. */
const MAX_SYMLINK_HOPS = 40

export type AuthRead =
  | { state: 'absent' }
  | {
      state: 'ok'
      auth: AuthFile
      text: string
      /** permission bits (st_mode & 0o7777) of the target, for `auth_permissions` */
      mode: number
      targetPath: string
      isSymlink: boolean
      /** The version read (fileIdentity of the target); absent when not known. */
      identity?: string
      /** Read from the keyring entry, not from a file (`text` is the entry's value; docs/keyring.md). */
      store?: 'keyring'
    }
  | { state: 'unreadable'; problem: Problem }

export interface AuthTarget {
  /** `$home/auth.json` */
  linkPath: string
  /** The file Codex actually reads and renames onto: the end of the symlink chain. */
  targetPath: string
  isSymlink: boolean
}

export interface CommitOptions {
  /** Bound for each of the two locks; Codex gives auth.json.lock ≈5 s. */
  lockTimeoutMs?: number
  /**
   * Checked on the re-read under auth.lock (false: auth.json.lock is never taken, as Codex does)
   * and again on the merge base under both locks. An unreadable file is reported as 'unreadable'
   * before the precondition is asked (unless overwriteUnreadable).
   */
  precondition?: (current: AuthRead) => boolean
  /** Only an explicit login/logout sets this: it replaces or removes a file we cannot read. */
  overwriteUnreadable?: boolean
  /** Must be quick and synchronous: it runs while both locks are held. null = delete. */
  update: (current: AuthFile | null) => AuthFile | null
  signal?: AbortSignal
  /** Told what is about to be renamed into place (before the rename: a watcher may see it at once). */
  onWrite?: (written: OwnWrite) => void
}

/** auth.json as this process last wrote it, and that version's fileIdentity. */
export interface OwnWrite {
  read: AuthRead & { state: 'ok' }
  identity: string
}

export type CommitResult =
  | { outcome: 'written'; auth: AuthFile; written: OwnWrite }
  | { outcome: 'deleted'; existed: boolean }
  | { outcome: 'precondition_failed'; current: AuthRead }
  | { outcome: 'unreadable'; problem: Problem }
  | { outcome: 'lock_timeout'; lock: 'auth.lock' | 'auth.json.lock'; holder: LockHolder | null }
  /** The keyring could not be used (keyring_unreachable): nothing was written. */
  | { outcome: 'keyring_failed'; problem: Problem }

/**
 * Where a commit reads the current credential and puts the next one: auth.json (fileBacking), or
 * a keyring entry (store/credential-store.ts). A KeyringError thrown by one ends the commit as
 * `keyring_failed`, with the locks released.
 */
export interface CommitBacking {
  read(): Promise<AuthRead>
  /** Puts `next`; `beforeVisible` is told what a read will find, before anyone can see it. */
  write(next: AuthFile, beforeVisible: (written: OwnWrite) => void): Promise<OwnWrite>
  /** Removes the credential; true when there was one. */
  remove(): Promise<boolean>
}

/** An I/O failure while writing or deleting; names the path and errno, never contents. */
export class AuthWriteError extends Error {
  readonly code = 'auth_write_failed'
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`cannot write ${path}: ${errText(cause)}`, { cause })
    this.name = 'AuthWriteError'
  }
}

export function authPath(home: string): string {
  return join(home, 'auth.json')
}

/** A refresh token auth.json is expected to hold, by value or (in a journal) by its SHA-256. */
export type HeldToken = { refreshToken: string; accountId: string | null } | { refreshTokenSha256: string; accountId: string | null }

/**
 * The one predicate "auth.json still holds this refresh token and this account": a refresh
 * result lands only then; otherwise someone else refreshed, logged in or out, and their file wins
 * (docs/refresh.md#the-sequence).
 */
export function stillHolds(read: AuthRead, held: HeldToken): boolean {
  if (read.state !== 'ok' || read.auth.tokens === null) return false
  const t = read.auth.tokens
  if (t.accountId !== held.accountId) return false
  return 'refreshToken' in held ? t.refreshToken === held.refreshToken : sha256Hex(t.refreshToken) === held.refreshTokenSha256
}

/**
 * Follows a symlinked auth.json to its final target, hop by hop, like Codex's lstat/readlink, so
 * that a dangling link still names the file a write would create. Does not require the target to
 * exist. Loops end at MAX_SYMLINK_HOPS; the read then reports ELOOP.
 */
export async function resolveAuthTarget(home: string): Promise<AuthTarget> {
  const linkPath = authPath(home)
  let current = linkPath
  let isSymlink = false
  for (let hop = 0; hop < MAX_SYMLINK_HOPS; hop++) {
    let st: Stats
    try {
      st = await lstat(current)
    } catch {
      break // missing (dangling link) or unreachable: the open reports it
    }
    if (!st.isSymbolicLink()) break
    isSymlink = true
    let to: string
    try {
      to = await readlink(current)
    } catch {
      // Replaced (EINVAL: no longer a link) or removed (ENOENT) since the lstat, e.g. by a rename
      // over it: stop here; the open reports what is there now. Never throw: a reload runs from
      // a watcher callback, where a rejection would be unhandled and end the daemon.
      break
    }
    current = isAbsolute(to) ? to : resolve(dirname(current), to)
  }
  return { linkPath, targetPath: current, isSymlink }
}

/**
 * Reads auth.json without a lock (Codex readers take none). A missing file, including the target
 * of a dangling symlink, is 'absent': Codex reads it as "not logged in" and a write creates the
 * target through the link. When the file is still the version `ownWrite` wrote (same target,
 * same fileIdentity), that read is returned without reading or parsing the file again.
 */
export async function readAuth(home: string, ownWrite: OwnWrite | null = null): Promise<AuthRead> {
  return readTarget(await resolveAuthTarget(home), ownWrite)
}

async function readTarget(target: AuthTarget, ownWrite: OwnWrite | null = null): Promise<AuthRead> {
  const { linkPath, targetPath, isSymlink } = target
  const name = isSymlink ? `${linkPath} (symlink to ${targetPath})` : linkPath
  const bad = (reason: string): AuthRead => ({
    state: 'unreadable',
    problem: {
      code: 'auth_unreadable',
      message: `cannot read ${name}: ${reason}`,
      file: targetPath,
      line: null,
      column: null,
    },
  })

  const known = ownWrite !== null && ownWrite.read.targetPath === targetPath && ownWrite.read.isSymlink === isSymlink ? ownWrite.identity : null
  const file = await readSmallTextFileUnless(targetPath, MAX_AUTH_BYTES, known)
  if (file.state === 'unchanged') return ownWrite!.read
  if (file.state === 'absent') return { state: 'absent' }
  if (file.state === 'error') return bad(file.reason)
  const parsed = parseAuthFile(file.text, targetPath)
  if (!parsed.ok) return { state: 'unreadable', problem: parsed.problem }
  return { state: 'ok', auth: parsed.auth, text: file.text, mode: file.mode, targetPath, isSymlink, identity: file.identity }
}

/**
 * Whether auth.json (through its symlinks) is still the version `read` saw: one synchronous
 * stat, no read. False when unknown (the read has no identity, the file is gone or unreachable).
 */
export function stillSameFile(home: string, read: AuthRead): boolean {
  if (read.state !== 'ok' || read.identity === undefined || read.identity === '') return false
  try {
    return fileIdentity(statSync(authPath(home), { bigint: true })) === read.identity
  } catch {
    return false
  }
}

/**
 * Reads auth.json once auth.lock could be had (at most `timeoutMs`): a writer that follows
 * Codex's protocol holds auth.lock while it writes, so this read sees its result, not the file
 * before it. Past the bound it reads without the lock.
 */
export async function readAuthAfterWriters(home: string, timeoutMs: number, read: () => Promise<AuthRead> = () => readAuth(home)): Promise<AuthRead> {
  let lock: LockHandle | null = null
  try {
    lock = await acquireLock(join(home, 'auth.lock'), { timeoutMs, mode: 0o666 })
  } catch (err) {
    if (!(err instanceof LockTimeoutError)) throw err
  }
  try {
    return await read()
  } finally {
    await lock?.release().catch(() => {})
  }
}

/** auth.json (through its symlinks) as the place a commit reads and writes. */
export function fileBacking(target: AuthTarget): CommitBacking {
  return {
    read: () => readTarget(target),
    async write(next, beforeVisible) {
      const text = serializeAuthFile(next)
      // What a read of the file gives once it is in place, without reading it (we know what we wrote).
      const writtenAs = (identity: string): OwnWrite => ({
        read: { state: 'ok', auth: next, text, mode: 0o600, targetPath: target.targetPath, isSymlink: target.isSymlink, identity },
        identity,
      })
      let written: OwnWrite | null = null
      // The directory is synced too: a refresh journal is deleted once this write is settled.
      const identity = await writePrivateFileAtomic(target.targetPath, text, {
        tempPrefix: '.auth-',
        syncDir: true,
        beforeRename: (id) => {
          written = writtenAs(id)
          beforeVisible(written)
        },
      })
      return written ?? writtenAs(identity)
    },
    async remove() {
      try {
        await unlink(target.targetPath)
        return true
      } catch (err) {
        if (errCode(err) === 'ENOENT') return false
        throw new AuthWriteError(target.targetPath, err)
      }
    },
  }
}

/**
 * The compare-and-write of Codex 0.171: auth.lock (in CODEX_HOME), re-read, auth.json.lock (beside
 * the symlink target), re-read as the merge base, then temp file 0600 + fsync + rename, or unlink.
 * Locks are polled with LOCK_NB and bounded; on lock_timeout, 'unreadable' or
 * 'precondition_failed' the file is untouched. Locks are released in Codex's order: temp fd,
 * auth.json.lock, auth.lock. I/O errors throw AuthWriteError after cleanup.
 */
export function commitAuth(home: string, opts: CommitOptions): Promise<CommitResult> {
  return commitWith(home, fileBacking, opts)
}

/**
 * commitAuth's sequence with the credential read and put through `backing` (made once auth.lock
 * is held and auth.json's target is known): the keyring stores commit under the same locks in the
 * same order (docs/keyring.md#files-and-locks).
 */
export async function commitWith(home: string, backingFor: (target: AuthTarget) => CommitBacking, opts: CommitOptions): Promise<CommitResult> {
  try {
    return await commitLocked(home, backingFor, opts)
  } catch (e) {
    if (e instanceof KeyringError) return { outcome: 'keyring_failed', problem: keyringUnreachable(e.keyringCause, e.detail, false) }
    throw e
  }
}

async function commitLocked(home: string, backingFor: (target: AuthTarget) => CommitBacking, opts: CommitOptions): Promise<CommitResult> {
  const timeoutMs = opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS
  const held: LockHandle[] = []
  try {
    try {
      // 0o666 like Codex (umask applies), so a Codex run as this user can always open it.
      held.push(await acquireLock(join(home, 'auth.lock'), { timeoutMs, mode: 0o666, signal: opts.signal }))
    } catch (err) {
      if (err instanceof LockTimeoutError) return { outcome: 'lock_timeout', lock: 'auth.lock', holder: err.holder }
      throw err
    }

    const target = await resolveAuthTarget(home)
    const backing = backingFor(target)
    const first = await backing.read()
    // 'unreadable' before the precondition: a refresh keeps its tokens pending for an unreadable
    // file (docs/refresh.md#the-sequence, step 6) but drops them when the precondition fails.
    if (first.state === 'unreadable' && !opts.overwriteUnreadable) return { outcome: 'unreadable', problem: first.problem }
    // Codex drops out here, before auth.json.lock, when the file changed under it.
    if (opts.precondition && !opts.precondition(first)) return { outcome: 'precondition_failed', current: first }

    const jsonLock = join(dirname(target.targetPath), 'auth.json.lock')
    try {
      held.push(await acquireLock(jsonLock, { timeoutMs, mode: 0o600, signal: opts.signal }))
    } catch (err) {
      if (err instanceof LockTimeoutError) return { outcome: 'lock_timeout', lock: 'auth.json.lock', holder: err.holder }
      throw err
    }

    const base = await backing.read()
    if (base.state === 'unreadable' && !opts.overwriteUnreadable) return { outcome: 'unreadable', problem: base.problem }
    if (opts.precondition && !opts.precondition(base)) return { outcome: 'precondition_failed', current: base }

    const next = opts.update(base.state === 'ok' ? base.auth : null)
    if (next === null) return { outcome: 'deleted', existed: await backing.remove() }
    const written = await backing.write(next, (w) => opts.onWrite?.(w))
    return { outcome: 'written', auth: next, written }
  } finally {
    // Newest first: auth.json.lock, then auth.lock (the temp fd is closed inside the write).
    for (const lock of held.reverse()) await lock.release().catch(() => {})
  }
}

/**
 * writeFileAtomic with mode 0600 (see there): the new file's fileIdentity. On any error the temp
 * file is removed and AuthWriteError is thrown; `path` is then untouched.
 */
export async function writePrivateFileAtomic(path: string, text: string, opts: Omit<AtomicWriteOptions, 'mode'> = {}): Promise<string> {
  try {
    return await writeFileAtomic(path, text, { mode: 0o600, ...opts })
  } catch (err) {
    throw new AuthWriteError(path, err)
  }
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex')
}
