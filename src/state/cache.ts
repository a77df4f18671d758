// The cache: a change seen (watcher.ts) -> read -> resolve -> notify. Never stale for longer than
// one read after a change, and never replaces a good credential with a half-written file
// (docs/architecture.md, docs/watching.md). New tokens a refresh could not write yet are served
// from here until they are committed or the file moves on without them.
import path from 'node:path'
import { EventEmitter } from 'node:events'
import { resolveSettings, type ConfigOverride } from '../codex/config.js'
import { resolveAuth } from '../codex/resolve.js'
import { stillHolds, type AuthRead, type OwnWrite } from '../store/authstore.js'
import { autoStore, ephemeralStore, fileStore, keyringStore, type CredentialStore } from '../store/credential-store.js'
import { WorkerKeyring, type KeyringBackend } from '../store/keyring-backend.js'
import { SECRET_SERVICE_RULES, SignalWatch, sessionBusPath } from '../os/dbus-signals.js'
import { danglingLinkTarget, readSmallTextFile } from '../store/textfile.js'
import { homeExposure } from './exposure.js'
import { HomeWatcher } from './watcher.js'
import type { AuthFile, CredentialSource, CredentialsStore, Problem, Resolved, Settings } from '../types.js'
import { CoalescedTask } from '../coalesce.js'

export const CONFIG_MAX_BYTES = 1024 * 1024
/** getAuth re-reads a keyring entry read longer ago than this (docs/keyring.md#what-is-built). */
export const DEFAULT_KEYRING_REREAD_MS = 5000

/** New tokens a refresh obtained but could not write yet (docs/refresh.md#pending-tokens). */
export interface PendingTokens {
  /**
   * The refresh token auth.json must still hold for them to land (the one spent, or the one
   * before it when a refresh of pending tokens was made), and its account.
   */
  fileRefreshToken: string
  accountId: string | null
  /** The whole file as it should be once committed. */
  auth: AuthFile
  /** A commit was tried and failed: reported as the `refresh_pending` problem. */
  stuck: boolean
  /** Their journal (docs/refresh.md#the-journal); 'failed': only in memory, also a `refresh_pending` problem. */
  journal: PendingJournal
}

export type PendingJournal = { state: 'writing' } | { state: 'written'; path: string } | { state: 'failed' }

export interface Snapshot {
  /** Bumped on every change that subscribers are told about. */
  generation: number
  /** What the last read of auth.json gave. */
  read: AuthRead
  /** The file the credential was resolved from: the last good one while auth.json is unreadable. */
  served: AuthFile | null
  settings: Settings
  resolved: Resolved
  problems: Problem[]
  pending: PendingTokens | null
}

export interface StateOptions {
  home: string
  envApiKey: string | null
  overrides: ConfigOverride[]
  /** Wait before believing an unparsable auth.json (older writers wrote in place). */
  settleMs?: number
  /**
   * Second read after the last event: a read can overlap a write that the kernel reported as one
   * coalesced event (and with chokidar, a change within 50 ms of the previous was dropped).
   */
  trailingMs?: number
  /** Deadline of each keyring call (CODEX_AUTHD_KEYRING_TIMEOUT_MS). */
  keyringTimeoutMs?: number
  /** How old a keyring read may be for getAuth (CODEX_AUTHD_KEYRING_REREAD_MS; default 5 s). */
  keyringRereadMs?: number
  /** DBUS_SESSION_BUS_ADDRESS, for the Secret Service's signals (unset: not watched). */
  busAddress?: string
  /** The keyring calls (tests may pass their own); default a worker thread over @napi-rs/keyring. */
  keyring?: KeyringBackend
}

export interface StateEvents {
  change: [Snapshot]
  /** CODEX_HOME itself disappeared; the owner recreates it. */
  homeGone: []
  /** Pending tokens were dropped because the file changed under them. */
  pendingDropped: [PendingTokens]
  error: [unknown]
}

export class AuthState extends EventEmitter<StateEvents> {
  readonly home: string
  private readonly opts: { settleMs: number; trailingMs: number }
  private readonly keyringTimeoutMs: number | undefined
  private readonly keyringRereadMs: number
  private readonly busAddress: string | undefined
  /** Made on first use of a keyring store: the file store never loads the binding. */
  private keyring: KeyringBackend | null
  private readonly stores = new Map<CredentialsStore, CredentialStore>()
  /** The Secret Service's signals, while a keyring store is configured (reconnected on the next read once lost). */
  private busWatch: SignalWatch | null = null
  private readonly envApiKey: string | null
  private readonly overrides: ConfigOverride[]
  private readonly watcher: HomeWatcher
  private snap: Snapshot
  private fingerprint = ''
  private reads = 0
  /** performance.now() when the store was last read (a keyring entry's replacement is silent). */
  private loadedAt = -Infinity
  /** Reads that read and parsed auth.json's bytes (not recognised as our own write). */
  private authParses = 0
  /**
   * What this process last wrote to auth.json (a refresh's commit): a read that finds that very
   * version (by fileIdentity) takes it from here instead of parsing the file again, so that the
   * watcher's event for our own write costs a stat, not a read (docs/watching.md).
   */
  private ownWrite: (OwnWrite & { settles: PendingTokens | null }) | null = null
  /** Bumped by expectOwnWrite() and wrote(): a read that overlapped either may be stale and is done again. */
  private ownWrites = 0
  /** Re-reads, coalesced: one asked for while one runs makes one more run. */
  private readonly rereads = new CoalescedTask(() => this.readAndResolve(), () => !this.stopped)
  private trailing: NodeJS.Timeout | null = null
  private settling = false
  private stopped = false
  /** The last read, kept so that setPending can resolve again without I/O. */
  private inputs: {
    read: AuthRead
    fileAuth: AuthFile | null
    source: CredentialSource
    storeKind: CredentialsStore
    settings: Settings
    configProblems: Problem[]
  } | null = null

  constructor(options: StateOptions) {
    super()
    this.home = options.home
    this.envApiKey = options.envApiKey
    this.overrides = options.overrides
    this.opts = { settleMs: options.settleMs ?? 50, trailingMs: options.trailingMs ?? 60 }
    this.keyringTimeoutMs = options.keyringTimeoutMs
    this.keyringRereadMs = options.keyringRereadMs ?? DEFAULT_KEYRING_REREAD_MS
    this.busAddress = options.busAddress
    this.keyring = options.keyring ?? null
    this.watcher = new HomeWatcher(this.home)
    this.watcher.on('change', () => this.schedule())
    // Synchronous, as the watcher emits it: the owner may recreate the home before the watcher looks again.
    this.watcher.on('homeGone', () => this.emit('homeGone'))
    this.watcher.on('error', (e) => this.reportError(e))
    const settings = resolveSettings(null, path.join(this.home, 'config.toml'), []).settings
    this.snap = {
      generation: 0,
      read: { state: 'absent' },
      served: null,
      settings,
      resolved: { kind: 'none' },
      problems: [],
      pending: null,
    }
  }

  get current(): Snapshot {
    return this.snap
  }

  /** Watch, then load once (before the daemon listens). */
  async start(): Promise<void> {
    // Every read first brings the watches in line (watcher.sync): nothing written after is missed.
    await this.reload()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.trailing) clearTimeout(this.trailing)
    this.watcher.close()
    this.busWatch?.close()
    await this.rereads.current?.catch(() => {})
    this.keyring?.close()
  }

  /**
   * The configured credential store (docs/keyring.md): where the refresher and the logins read
   * and commit. Follows config.toml as last read.
   */
  get store(): CredentialStore {
    return this.storeFor(this.snap.settings.credentialsStore)
  }

  private storeFor(kind: CredentialsStore): CredentialStore {
    let store = this.stores.get(kind)
    if (store === undefined) {
      const keyring = (): KeyringBackend => (this.keyring ??= new WorkerKeyring(this.keyringTimeoutMs))
      store =
        kind === 'file'
          ? fileStore(this.home)
          : kind === 'keyring'
            ? keyringStore(this.home, keyring())
            : kind === 'auto'
              ? autoStore(this.home, keyring())
              : ephemeralStore()
      this.stores.set(kind, store)
    }
    return store
  }

  /**
   * Listen to the Secret Service while a keyring store is configured: an entry created or deleted
   * (a Codex login or logout) re-reads at once. A replacement emits nothing, so the refresher and
   * getAuth re-read too (docs/keyring.md#signals-what-can-be-watched). No bus: nothing to listen to.
   */
  private watchKeyring(wanted: boolean): void {
    if (!wanted || this.stopped) {
      this.busWatch?.close()
      return
    }
    if (this.busWatch !== null) return
    const socketPath = sessionBusPath(this.busAddress)
    if (socketPath === null || process.getuid === undefined) return
    const watch = new SignalWatch(socketPath, SECRET_SERVICE_RULES, process.getuid())
    this.busWatch = watch
    watch.on('signal', () => this.schedule())
    // A change between our read and the match rules being in place would be missed: read once more.
    watch.on('subscribed', () => this.schedule())
    watch.on('closed', () => {
      if (this.busWatch === watch) this.busWatch = null
    })
  }

  /**
   * getAuth under a keyring store: read the store again when its last read is older than
   * keyringRereadMs, since a Codex that replaced the entry (SetSecret: a re-login, a refresh) sent
   * no signal. Driven by callers, never a timer; one keyring read per window however many callers.
   */
  rereadIfStale(): Promise<void> | null {
    // null (not a resolved promise) when there is nothing to do: getAuth's hot path then awaits nothing.
    return this.store.usesKeyring && performance.now() - this.loadedAt > this.keyringRereadMs ? this.reload() : null
  }

  /** What is watched right now (for tests and diagnostics). */
  get watchedPaths(): string[] {
    return this.watcher.watchedPaths
  }

  /**
   * Wake-up accounting, for tests and benchmarks (never reset): fs.watch callbacks (each one a
   * wake-up), those dropped by name, and reads of auth.json and config.toml.
   */
  get watchStats(): { callbacks: number; ignored: number; reads: number; authParses: number } {
    return { ...this.watcher.stats, reads: this.reads, authParses: this.authParses }
  }

  /** Re-read now (coalesced: a reload asked for while one runs makes one more run). */
  reload(): Promise<void> {
    return this.rereads.run()
  }

  /**
   * Our commit is about to rename `written` into place (docs/refresh.md#the-sequence): a read that
   * finds that version (the watcher's, for our own rename) takes it from here instead of parsing
   * the file, and `settles` (the pending tokens it commits) then stops being pending without
   * counting as dropped. Anyone writing after us changes the file's identity and is read as usual.
   */
  expectOwnWrite(written: OwnWrite, settles: PendingTokens | null): void {
    this.ownWrite = { ...written, settles }
    this.ownWrites++
    this.rereads.invalidate() // a read under way may show the file before our write
  }

  /** Our commit landed: what was written is the file's content now, without reading it back. */
  wrote(written: OwnWrite, settles: PendingTokens | null): Promise<void> {
    if (this.ownWrite?.read !== written.read) this.expectOwnWrite(written, settles)
    this.ownWrites++
    this.rereads.invalidate()
    // Not loaded yet (a journal committed at start): the first read finds our version.
    if (this.inputs === null) return this.reload()
    this.inputs = { ...this.inputs, read: written.read, fileAuth: written.read.auth, source: sourceOf(written.read, this.inputs.source) }
    this.recompute()
    return Promise.resolve()
  }

  /** The refresher holds new tokens it could not write yet; they are served until committed. */
  setPending(pending: PendingTokens | null): void {
    this.snap = { ...this.snap, pending }
    this.recompute()
  }

  /**
   * A reload started from a watcher callback or a timer: nobody awaits it, so a failure is
   * reported (logged by the daemon) rather than left as an unhandled rejection, which would end
   * the process. The last snapshot stays; the next event or timer reads again.
   */
  private reloadInBackground(): Promise<void> {
    return this.reload().catch((e) => this.reportError(e))
  }

  private schedule(): void {
    if (this.stopped) return
    void this.reloadInBackground()
    if (this.trailing) clearTimeout(this.trailing)
    this.trailing = setTimeout(() => {
      this.trailing = null
      void this.reloadInBackground()
    }, this.opts.trailingMs)
    this.trailing.unref()
  }

  private async readAndResolve(): Promise<void> {
    this.reads++
    this.watcher.sync()
    const configFile = path.join(this.home, 'config.toml')
    const ownWrites = this.ownWrites
    // config.toml first: it says which store to read (cli_auth_credentials_store).
    const [configText, exposure] = await Promise.all([readSmallTextFile(configFile, CONFIG_MAX_BYTES), homeExposure(this.home)])
    const configProblems: Problem[] = [...exposure]
    let text: string | null = null
    if (configText.state === 'ok') text = configText.text
    else if (configText.state === 'error') {
      configProblems.push({
        code: 'config_invalid',
        message: `cannot read ${configFile}: ${configText.reason}; using defaults`,
        file: configFile,
        line: null,
        column: null,
      })
    }
    const settingsResult = resolveSettings(text, configFile, this.overrides)
    configProblems.push(...settingsResult.problems)
    const store = this.storeFor(settingsResult.settings.credentialsStore)
    this.watchKeyring(store.usesKeyring)
    const loaded = await store.load(this.ownWrite)
    this.loadedAt = performance.now()
    const read = loaded.read
    configProblems.push(...loaded.problems)
    if (read.state !== 'absent' && read !== this.ownWrite?.read) this.authParses++
    if (ownWrites !== this.ownWrites) {
      // We wrote the credential while this read ran: it may show it before our write. Once more.
      this.rereads.invalidate()
      return
    }
    // A dangling symlink reads as absent (as in Codex), but the user should hear why.
    if (configText.state === 'absent') {
      const to = await danglingLinkTarget(configFile)
      if (to !== null) configProblems.push(fileProblem('config_invalid', configFile, `${configFile} is a symlink to ${to}, which does not exist; using defaults`))
    }
    if (read.state === 'absent' && store.kind !== 'keyring') {
      const authFile = path.join(this.home, 'auth.json')
      const to = await danglingLinkTarget(authFile)
      if (to !== null) {
        configProblems.push(fileProblem('auth_unreadable', authFile, `${authFile} is a symlink to ${to}, which does not exist: not logged in (a login writes through the link)`))
      }
    }

    let served: AuthFile | null
    if (read.state === 'ok') served = read.auth
    else if (read.state === 'absent') served = null
    else {
      // Unparsable: maybe a writer is half-way through. Look again once before believing it (a
      // keyring that cannot be reached is not half-way through anything).
      if (read.problem.code === 'auth_unreadable' && this.snap.read.state === 'ok' && !this.settling) {
        this.settling = true
        setTimeout(() => {
          void this.reloadInBackground().finally(() => {
            this.settling = false
          })
        }, this.opts.settleMs).unref()
        return
      }
      // The last good credential, as long as it came from this same store (not a store switched away from).
      served = this.inputs?.storeKind === store.kind ? this.snap.served : null
    }
    // A watch armed after the read may have missed a change: read once more.
    if (read.state !== 'unreadable' && (await this.watcher.followTarget())) this.rereads.invalidate()
    this.inputs = {
      read,
      fileAuth: served,
      source: sourceOf(read, this.inputs?.source ?? 'auth.json'),
      storeKind: store.kind,
      settings: settingsResult.settings,
      configProblems,
    }
    this.recompute()
  }

  private recompute(): void {
    if (this.inputs === null) return
    const { read, fileAuth, source, settings, configProblems } = this.inputs
    let pending = this.snap.pending
    let served = fileAuth
    if (pending !== null && pending === this.ownWrite?.settles && read === this.ownWrite.read) {
      // Our own commit of them is the file now: settled, not dropped.
      pending = null
    } else if (pending !== null) {
      if (read.state === 'unreadable') {
        // Keep serving the pending tokens: the file may be mid-write by someone else.
        served = pending.auth
      } else if (stillHolds(read, { refreshToken: pending.fileRefreshToken, accountId: pending.accountId })) {
        served = pending.auth
      } else {
        this.emit('pendingDropped', pending)
        pending = null
      }
    }
    const problems = [...configProblems]
    if (read.state === 'unreadable') problems.push(read.problem)
    if (read.state === 'ok' && read.store !== 'keyring' && (read.mode & 0o044) !== 0) {
      problems.push({
        code: 'auth_permissions',
        message: `${read.targetPath} is readable by group or other (mode ${read.mode.toString(8)}); run: chmod 600 ${read.targetPath}`,
        file: read.targetPath,
        line: null,
        column: null,
      })
    }
    if (pending !== null && (pending.stuck || pending.journal.state === 'failed')) {
      problems.push({
        code: 'refresh_pending',
        message:
          pending.journal.state === 'failed'
            ? 'refreshed tokens are held only in memory (they could not be journaled) until auth.json can be written'
            : pending.journal.state === 'written'
              ? `refreshed tokens are held in memory and journaled in ${pending.journal.path} until auth.json can be written`
              : 'refreshed tokens are held in memory until auth.json can be written',
        file: path.join(this.home, 'auth.json'),
        line: null,
        column: null,
      })
    }
    const { resolved, problems: resolveProblems } = resolveAuth({ envApiKey: this.envApiKey, settings, auth: served, source })
    problems.push(...resolveProblems)
    const next: Snapshot = { generation: this.snap.generation, read, served, settings, resolved, problems, pending }
    const fp = fingerprintOf(next)
    if (fp !== this.fingerprint) {
      this.fingerprint = fp
      next.generation++
      this.snap = next
      this.emit('change', next)
    } else {
      this.snap = next
    }
  }

  /**
   * A failed background read or watch (e.g. ELOOP from a symlink loop planted as auth.json) is
   * reported, never thrown: emitting 'error' with no listener throws, and during start() the
   * daemon has not subscribed yet. The file itself is reported by the read (auth_unreadable).
   */
  private reportError(e: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', e)
  }
}

/** What subscribers see changing: the credential served, its account, settings and problems. */
function fingerprintOf(s: Snapshot): string {
  const r = s.resolved
  const cred =
    r.kind === 'apikey'
      ? ['apikey', r.source, r.apiKey]
      : r.kind === 'chatgpt'
        ? ['chatgpt', r.source, r.tokens.accessToken, r.tokens.accountId, r.idClaims.email, r.idClaims.planType]
        : r.kind === 'forbidden'
          ? ['forbidden', r.message]
          : r.kind === 'unsupported'
            ? ['unsupported', r.mode]
            : ['none']
  return JSON.stringify([cred, s.settings, s.problems.map((p) => [p.code, p.message, p.line, p.column])])
}

/** Where a read's credential came from; for anything but a good read, where the last good one did. */
function sourceOf(read: AuthRead, last: CredentialSource): CredentialSource {
  if (read.state !== 'ok') return last
  return read.store === 'keyring' ? 'keyring' : 'auth.json'
}

function fileProblem(code: Problem['code'], file: string, message: string): Problem {
  return { code, message, file, line: null, column: null }
}
