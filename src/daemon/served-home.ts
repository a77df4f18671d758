// What the daemon serves for one home directory (a symlinked CODEX_HOME's current target): its two
// owner locks, the state (cache + watches), the refresher and the logins, opened and closed as one
// (docs/architecture.md#a-relinked-home). A relink closes the old one and opens another, so nothing
// of the old target (its snapshot, its pending tokens, an in-flight refresh) can reach the new one.
import fs from 'node:fs'
import path from 'node:path'
import { resolveSettings } from '../codex/config.js'
import type { Logger } from '../log.js'
import { LoginManager } from '../login/manager.js'
import type { IssuerConfig } from '../net/issuer.js'
import { Refresher, type BrokerState, type RefresherOptions, type RefreshStatus } from '../refresh/refresher.js'
import { AuthState, type Snapshot } from '../state/cache.js'
import { resolveAuthTarget } from '../store/authstore.js'
import type { LockHandle } from '../os/flock.js'
import { credentialLockPath, OwnedElsewhereError, takeCredentialLock, takeHomeLock } from '../store/ownership.js'
import type { Problem } from '../types.js'
import { keyringRereadFromEnv, keyringTimeoutFromEnv, type DaemonOptions } from './options.js'
import { NotServedError } from './views.js'

/** A lock could not be taken for a reason other than another daemon holding it. */
export class HomeLockError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'HomeLockError'
  }
}

/** What every served home is built with (the daemon's context extends it). */
export interface HomeContext {
  env: NodeJS.ProcessEnv
  version: string
  log: Logger
  /** Test and tuning knobs of the refresher (lock and HTTP timeouts, backoff scale). */
  refresh?: Partial<Pick<RefresherOptions, 'lockTimeoutMs' | 'httpTimeoutMs' | 'getAuthWaitMs' | 'backoffScale'>>
  /** Test knobs of the logins (CODEX_AUTHD_LOGIN_TIMEOUT_MS, CODEX_AUTHD_DEVICE_INTERVAL_MS). */
  login?: { loginTimeoutMs?: number; deviceIntervalMs?: number }
}

export interface HomeDeps {
  options: DaemonOptions
  ctx: HomeContext
  issuer: IssuerConfig
  /** The note written into authd.lock: our socket. */
  lockNote: string
  /** Where refresh answers are journaled when the home's disk is full (docs/refresh.md#the-journal). */
  journalFallbackDir: string | null
  broadcast(method: 'loginCompleted', params: unknown): void
  /** The state of this home changed (the daemon forwards it only while this home is the served one). */
  onChange(home: ServedHome, snap: Snapshot): void
  onError(what: string, e: unknown): void
}

/** The face the method table sees: a served home, or one that is not served and says why. */
export interface HomeView {
  /** Where the home leads (null: nowhere usable). */
  readonly target: string | null
  /** false: nothing is served (another daemon owns `target`, or there is none); the problem says why. */
  readonly serving: boolean
  snapshot(): Snapshot
  /** Resolves once the refresher runs: a refresh must not start before the previous home's has stopped. */
  readonly ready: Promise<void>
  /** `ready` has resolved. */
  readonly refresherStarted: boolean
  readonly refresher: Pick<Refresher, 'ensureFresh' | 'forceRefresh' | 'status' | 'brokerState' | 'brokerSpend' | 'spendsByReason' | 'rereadIfStale'>
  readonly logins: Pick<LoginManager, 'start' | 'wait' | 'cancel' | 'logout'>
  reload(): Promise<void>
  /** Stop serving; `keep` is a lock handed to the next home, not to be released. */
  close(keep?: LockHandle | null): Promise<void>
}

export class ServedHome implements HomeView {
  readonly serving = true
  readonly ready: Promise<void>
  refresherStarted = false
  private markReady!: () => void
  private closed = false
  /** The recreation in progress: two homeGone in a row must not race for one lock file. */
  private recreating: Promise<void> = Promise.resolve()

  private constructor(
    readonly target: string,
    private homeLock: LockHandle,
    /** The credential-file lock (null: auth.json dangles into a missing directory). */
    public credentialLock: LockHandle | null,
    private readonly state: AuthState,
    readonly refresher: Refresher,
    readonly logins: LoginManager,
    private readonly deps: HomeDeps,
  ) {
    this.ready = new Promise<void>((resolve) => {
      this.markReady = () => {
        this.refresherStarted = true
        resolve()
      }
    })
  }

  /**
   * Take the home's locks (OwnedElsewhereError: another daemon has one of them), then load the
   * files. `handover`: the previous home's credential lock, reused when both homes lead to the
   * same credential file (a second flock of ours on it would conflict with the first).
   */
  static async open(target: string, deps: HomeDeps, handover: LockHandle | null = null): Promise<ServedHome> {
    const { ctx, options } = deps
    let homeLock: LockHandle
    try {
      homeLock = await takeHomeLock(target, deps.lockNote)
    } catch (e) {
      if (e instanceof OwnedElsewhereError) throw e
      throw new HomeLockError(`cannot lock ${target}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)
    }
    let credentialLock: LockHandle | null
    try {
      credentialLock = await takeOwnCredential(target, handover)
    } catch (e) {
      await homeLock.release()
      if (e instanceof OwnedElsewhereError) throw e
      throw new HomeLockError(`cannot lock the credential file of ${target}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)
    }
    const envApiKey = ctx.env.OPENAI_API_KEY?.trim() ? ctx.env.OPENAI_API_KEY : null
    const state = new AuthState({
      home: target,
      envApiKey,
      overrides: options.overrides,
      keyringTimeoutMs: keyringTimeoutFromEnv(ctx.env),
      keyringRereadMs: keyringRereadFromEnv(ctx.env),
      busAddress: ctx.env.DBUS_SESSION_BUS_ADDRESS,
    })
    const refresher = new Refresher({
      home: target,
      state,
      issuer: deps.issuer,
      env: ctx.env,
      log: ctx.log,
      userAgent: `codex-authd/${ctx.version}`,
      journalFallbackDir: deps.journalFallbackDir,
      ...ctx.refresh,
    })
    const logins = new LoginManager({
      home: target,
      state,
      issuer: deps.issuer,
      env: ctx.env,
      log: ctx.log,
      loginPorts: options.loginPorts,
      broadcast: (method, params) => deps.broadcast(method, params),
      ...ctx.login,
    })
    const home = new ServedHome(target, homeLock, credentialLock, state, refresher, logins, deps)
    state.on('change', (snap) => deps.onChange(home, snap))
    state.on('error', (e) => deps.onError('watcher error', e))
    state.on('homeGone', () => void home.recreate())
    try {
      await state.start()
    } catch (e) {
      await home.close(handover)
      throw e
    }
    return home
  }

  snapshot(): Snapshot {
    return this.state.current
  }

  /** Start refreshing (after the previous home, if any, has closed). */
  async activate(): Promise<void> {
    if (this.closed) return
    await this.refresher.start()
    this.markReady()
  }

  reload(): Promise<void> {
    return this.state.reload()
  }

  async close(keep: LockHandle | null = null): Promise<void> {
    if (this.closed) return
    this.closed = true
    // The refresher first: it waits for a refresh in flight and commits (or parks) it into this
    // home, whose locks are still ours until the end.
    for (const [what, close] of [
      ['logins', () => this.logins.stop()],
      ['refresher', () => this.refresher.stop()],
      ['state', () => this.state.stop()],
      ['credential lock', () => (this.credentialLock === keep ? undefined : this.credentialLock?.release())],
      ['home lock', () => this.homeLock.release()],
    ] as const) {
      try {
        await close()
      } catch (e) {
        this.deps.onError(`could not close the ${what}`, e)
      }
    }
    this.markReady() // nobody waits for a refresher that will never run
  }

  /** docs/contract.md#ownership: CODEX_HOME removed while served: recreate it (0700) and retake its locks. */
  private recreate(): Promise<void> {
    this.recreating = this.recreating.then(() => this.recreateOnce())
    return this.recreating
  }

  private async recreateOnce(): Promise<void> {
    if (this.closed) return
    const { log } = this.deps.ctx
    try {
      fs.mkdirSync(this.target, { recursive: true, mode: 0o700 })
      const old = this.homeLock
      this.homeLock = await takeHomeLock(this.target, this.deps.lockNote)
      await old.release()
      // The old credential lock went with the home when auth.json lived there. Released first:
      // a second flock of ours on a surviving lock file would conflict with our own.
      await this.credentialLock?.release()
      this.credentialLock = await takeOwnCredential(this.target, null)
      log.warn({ home: this.target }, 'CODEX_HOME was removed; recreated it')
    } catch (e) {
      this.deps.onError('CODEX_HOME was removed and could not be recreated', e)
    }
  }
}

async function takeOwnCredential(home: string, handover: LockHandle | null): Promise<LockHandle | null> {
  const file = (await resolveAuthTarget(home)).targetPath
  if (handover !== null && handover.path === credentialLockPath(file)) return handover
  return takeCredentialLock(file, home)
}

/**
 * The home leads nowhere usable, or to a directory another daemon owns: nothing is served, and
 * status says why (the problem). Logins and logouts are refused with the same words.
 */
export class UnservedHome implements HomeView {
  readonly serving = false
  readonly ready = Promise.resolve()
  readonly refresherStarted = true
  private readonly snap: Snapshot
  readonly refresher = {
    ensureFresh: async (): Promise<void> => {},
    rereadIfStale: (): null => null,
    forceRefresh: async (): Promise<void> => {},
    status: (): RefreshStatus => ({ state: 'idle', lastError: null, nextAttemptAt: null, nextRefreshAt: null }),
    // Nothing to spend: the broker answers every token 401 after its re-read (docs/broker.md).
    brokerState: (): BrokerState => ({ current: null, spends: new Map(), permanentKind: null, backoffUntil: null, loopGuardUntil: null }),
    brokerSpend: async (): Promise<void> => {},
    spendsByReason: (): Record<string, number> => ({}),
  }
  readonly logins: HomeView['logins']

  constructor(
    readonly target: string | null,
    readonly problem: Problem,
  ) {
    const file = path.join(target ?? '.', 'config.toml')
    this.snap = {
      generation: 0,
      read: { state: 'absent' },
      served: null,
      settings: resolveSettings(null, file, []).settings,
      resolved: { kind: 'none' },
      problems: [problem],
      pending: null,
    }
    const refuse = (): never => {
      throw new NotServedError('not_logged_in', problem.message)
    }
    this.logins = { start: refuse, logout: refuse, wait: () => null, cancel: () => false }
  }

  snapshot(): Snapshot {
    return this.snap
  }

  async reload(): Promise<void> {}

  async close(): Promise<void> {}
}
