// The credential store chosen by `cli_auth_credentials_store` (docs/keyring.md#plan-for-the-store):
// `file` (auth.json), `keyring` (the entry Codex keeps in the Secret Service), `auto` (the keyring,
// else the file: one composition of the two), `ephemeral` (nothing the daemon can see). Each is
// read, re-read and committed through one interface; commits reuse commitAuth's sequence under
// Codex's two locks (store/authstore.ts commitWith), so every writer (refresh, journal, login,
// logout) gets the keyring by asking the store.
import { lstat, realpath, unlink } from 'node:fs/promises'
import type { CredentialsStore, Problem } from '../types.js'
import {
  authPath,
  commitAuth,
  commitWith,
  fileBacking,
  readAuth,
  readAuthAfterWriters,
  stillSameFile,
  type AuthRead,
  type AuthTarget,
  type CommitBacking,
  type CommitOptions,
  type CommitResult,
  type OwnWrite,
} from './authstore.js'
import { KeyringError, type KeyringBackend } from './keyring-backend.js'
import { KEYRING_PLACE, keyringAccount, keyringPayload, keyringUnreachable, parseKeyringValue } from './keyring-entry.js'
import { StoreError } from './errors.js'
import { EPHEMERAL_MESSAGE } from '../codex/config.js'

/** What a load found: the read (as auth.json's; `store: 'keyring'` when from the entry), and what to report beside it. */
export interface Loaded {
  read: AuthRead
  problems: Problem[]
}

export interface CredentialStore {
  readonly kind: CredentialsStore
  /** Loads the keyring binding and talks to the Secret Service (watch its signals). */
  readonly usesKeyring: boolean
  /** Without a lock, as Codex reads. `ownWrite`: what this process last wrote (no second parse). */
  load(ownWrite?: OwnWrite | null): Promise<Loaded>
  /**
   * The credential as it is now, before a refresh decision: `last` when provably unchanged (the
   * file's identity); the keyring is always asked again (a replacement emits no signal).
   */
  reread(last: AuthRead): Promise<AuthRead>
  /** A read once auth.lock could be had (at most `timeoutMs`): a writer's result, not the state before it. */
  readAfterWriters(timeoutMs: number): Promise<AuthRead>
  /** commitAuth's compare-and-write under Codex's locks, into this store. */
  commit(opts: CommitOptions): Promise<CommitResult>
}

export function fileStore(home: string): CredentialStore {
  return {
    kind: 'file',
    usesKeyring: false,
    load: async (ownWrite) => ({ read: await readAuth(home, ownWrite ?? null), problems: [] }),
    reread: async (last) => (stillSameFile(home, last) ? last : readAuth(home)),
    readAfterWriters: (timeoutMs) => readAuthAfterWriters(home, timeoutMs),
    commit: (opts) => commitAuth(home, opts),
  }
}

/** The entry's account for `home` (its canonical path, as Codex computes it). */
async function accountOf(home: string): Promise<string> {
  let canonical = home
  try {
    canonical = await realpath(home)
  } catch {
    // Codex hashes the raw path when canonicalize fails.
  }
  return keyringAccount(canonical)
}

/** Reads the entry; throws KeyringError when the keyring cannot be asked. */
async function readEntry(keyring: KeyringBackend, home: string, ownWrite: OwnWrite | null): Promise<AuthRead> {
  const account = await accountOf(home)
  const value = await keyring.get(account)
  if (value === null) return { state: 'absent' }
  // Our own last write, unchanged: the same read (a pending refresh it settles is recognised by it).
  if (ownWrite !== null && ownWrite.read.store === 'keyring' && ownWrite.read.text === value) return ownWrite.read
  const parsed = parseKeyringValue(value, account)
  if (!parsed.ok) return { state: 'unreadable', problem: parsed.problem }
  return { state: 'ok', auth: parsed.auth, text: value, mode: 0o600, targetPath: KEYRING_PLACE, isSymlink: false, store: 'keyring' }
}

/** The entry as a commit's place: written, then auth.json unlinked, as Codex saves (docs/keyring.md#files-and-locks). */
function entryBacking(keyring: KeyringBackend, home: string, target: AuthTarget): CommitBacking {
  // Codex removes auth.json after the entry is saved or deleted; a failure is only logged there.
  const unlinkFile = (): Promise<boolean> =>
    unlink(target.linkPath).then(
      () => true,
      () => false,
    )
  return {
    read: () => readEntry(keyring, home, null),
    async write(next, beforeVisible) {
      const value = keyringPayload(next)
      const written: OwnWrite = {
        read: { state: 'ok', auth: next, text: value, mode: 0o600, targetPath: KEYRING_PLACE, isSymlink: false, store: 'keyring' },
        identity: value,
      }
      beforeVisible(written)
      await keyring.set(await accountOf(home), value)
      await unlinkFile()
      return written
    },
    async remove() {
      const existed = await keyring.delete(await accountOf(home))
      return (await unlinkFile()) || existed
    },
  }
}

/** auth.json is there beside a keyring store that ignores it (Codex ignores it too). */
async function ignoredFile(home: string): Promise<Problem[]> {
  const file = authPath(home)
  try {
    await lstat(file)
  } catch {
    return []
  }
  return [
    {
      code: 'auth_file_ignored',
      message: `${file} is ignored: cli_auth_credentials_store = "keyring" reads only the keyring entry, as Codex does; remove the file, or set the store to "file" or "auto" to use it`,
      file,
      line: null,
      column: null,
    },
  ]
}

function unreachable(e: KeyringError, fallback: boolean): Problem {
  return keyringUnreachable(e.keyringCause, e.detail, fallback)
}

/**
 * The reads of a store whose credential may be in the entry (keyring, auto): a replaced secret
 * sends no signal, so a re-read always asks the keyring again (docs/keyring.md#what-is-built).
 */
function entryReads(home: string, load: (ownWrite: OwnWrite | null) => Promise<Loaded>): Pick<CredentialStore, 'load' | 'reread' | 'readAfterWriters'> {
  return {
    load: (ownWrite) => load(ownWrite ?? null),
    reread: async () => (await load(null)).read,
    readAfterWriters: (timeoutMs) => readAuthAfterWriters(home, timeoutMs, async () => (await load(null)).read),
  }
}

export function keyringStore(home: string, keyring: KeyringBackend): CredentialStore {
  const load = async (ownWrite: OwnWrite | null): Promise<Loaded> => {
    const ignored = await ignoredFile(home)
    try {
      const read = await readEntry(keyring, home, ownWrite)
      return { read, problems: ignored }
    } catch (e) {
      if (!(e instanceof KeyringError)) throw e
      const problem = unreachable(e, false)
      return { read: { state: 'unreadable', problem }, problems: ignored }
    }
  }
  return {
    kind: 'keyring',
    usesKeyring: true,
    ...entryReads(home, load),
    commit: (opts) => commitWith(home, (target) => entryBacking(keyring, home, target), opts),
  }
}

/**
 * Whether `auto` uses the file after a keyring call failed: on an error, as Codex does; never on a
 * timeout (Codex hangs there, and a file it will not read once its keyring answers would be a
 * login it never sees).
 */
export function autoFallsBack(e: unknown): e is KeyringError {
  return e instanceof KeyringError && e.keyringCause !== 'timeout'
}

/**
 * Codex's auto load: the entry; the file when the entry is absent, unreadable or the keyring
 * errs (with the reason as a problem). A timeout is not an error: it is reported, no fallback.
 */
async function autoRead(entry: () => Promise<AuthRead>, file: () => Promise<AuthRead>): Promise<{ read: AuthRead; problems: Problem[] }> {
  let problems: Problem[] = []
  try {
    const read = await entry()
    if (read.state === 'ok') return { read, problems }
    if (read.state === 'unreadable') problems = [read.problem]
  } catch (e) {
    if (!autoFallsBack(e)) throw e
    problems = [unreachable(e, true)]
  }
  return { read: await file(), problems }
}

/** The keyring's backing, with the file's where Codex's auto store falls back (autoFallsBack). */
function autoBacking(entry: CommitBacking, file: CommitBacking): CommitBacking {
  const orFile = async <T>(first: () => Promise<T>, second: () => Promise<T>): Promise<T> => {
    try {
      return await first()
    } catch (e) {
      if (!autoFallsBack(e)) throw e
      return second()
    }
  }
  return {
    read: async () => (await autoRead(entry.read, file.read)).read,
    write: (next, beforeVisible) => orFile(() => entry.write(next, beforeVisible), () => file.write(next, beforeVisible)),
    remove: () => orFile(entry.remove, file.remove),
  }
}

export function autoStore(home: string, keyring: KeyringBackend): CredentialStore {
  const load = async (ownWrite: OwnWrite | null): Promise<Loaded> => {
    let r: Awaited<ReturnType<typeof autoRead>>
    try {
      r = await autoRead(
        () => readEntry(keyring, home, ownWrite),
        () => readAuth(home, ownWrite),
      )
    } catch (e) {
      if (!(e instanceof KeyringError)) throw e
      return { read: { state: 'unreadable', problem: unreachable(e, false) }, problems: [] }
    }
    return { read: r.read, problems: r.problems }
  }
  return {
    kind: 'auto',
    usesKeyring: true,
    ...entryReads(home, load),
    commit: (opts) => commitWith(home, (target) => autoBacking(entryBacking(keyring, home, target), fileBacking(target)), opts),
  }
}

/** `ephemeral`: the credentials live only inside a Codex process; nothing here can read or write them. */
export function ephemeralStore(): CredentialStore {
  const refuse = (): never => {
    throw new StoreError('unsupported', EPHEMERAL_MESSAGE, { file: null, line: null, column: null }, 'store_ephemeral')
  }
  return {
    kind: 'ephemeral',
    usesKeyring: false,
    load: async () => ({ read: { state: 'absent' }, problems: [] }),
    reread: async () => ({ state: 'absent' }),
    readAfterWriters: async () => ({ state: 'absent' }),
    commit: async () => refuse(),
  }
}
