// Sinks (docs/remote.md#sinks): files kept fresh from the daemon, as Vault Agent keeps its sinks.
// A token file (the bearer token and a newline, 0600, replaced atomically) and a Codex auth.json
// whose refresh token is a placeholder (remote-home.ts). One Keeper serves `codex-auth sink` and
// `codex-auth exec --remote` (whose auth.json is a sink for the child's lifetime). It follows
// authChanged and renews on its own schedule before expiry; when the socket goes away (the daemon
// restarted, the ssh forward was cut) it says so, keeps the files as they are and reconnects with
// a bounded backoff. Never a token in a message.
import * as os from 'node:os'
import { writeFileAtomic } from '../store/atomic-write.js'
import {
  AuthdError,
  ConnectionClosedError,
  DaemonUnreachableError,
  ErrorCode,
  SocketTrustError,
  type AuthdClient,
  type AuthGrant,
  type PlaceholderIssueResult,
} from './index.js'
import { authFileFromWire, firstLook, writePlaceholderAuth } from './remote-home.js'

/**
 * How long before expiry a sink renews: the auth.json well before Codex's own 5-minute window
 * (docs/codex-compat.md#refresh-triggers; a Codex started without exec would send the
 * placeholder to the real endpoint), the token file before its readers could be handed a dying
 * token. Never more than half the token's life, so a short-lived token cannot make a loop.
 */
export const RENEW_MARGIN_S = { authJson: 600, tokenFile: 300 } as const
/** A placeholder is re-issued (the old one replaced) once this share of its life has passed. */
const PLACEHOLDER_RENEW_SHARE = 0.75
const RETRY_MIN_MS = 250
const RETRY_MAX_MS = 5_000

export interface Renewal {
  /** ms from now */
  inMs: number
  /** getAuth's minValiditySeconds then: the daemon refreshes first when the token has less left */
  minValiditySeconds: number
}

/**
 * When to renew a token that expires at `expiresAtMs`, obtained at `obtainedAtMs` (pure): at
 * `margin` before expiry, or half its life when that is shorter. null: it never expires (an API key).
 */
export function tokenRenewal(nowMs: number, obtainedAtMs: number, expiresAtMs: number | null, marginS: number): Renewal | null {
  if (expiresAtMs === null) return null
  const lifeS = Math.max(0, (expiresAtMs - obtainedAtMs) / 1000)
  const leadS = Math.max(1, Math.min(marginS, Math.floor(lifeS / 2)))
  return { inMs: Math.max(0, expiresAtMs - leadS * 1000 - nowMs), minValiditySeconds: Math.min(3600, leadS + 1) }
}

/** When to re-issue a placeholder issued at `issuedAtMs`, expiring at `expiresAtMs` (pure): ms from now. */
export function placeholderRenewal(nowMs: number, issuedAtMs: number, expiresAtMs: number): number {
  return Math.max(0, issuedAtMs + (expiresAtMs - issuedAtMs) * PLACEHOLDER_RENEW_SHARE - nowMs)
}

/** The delay before connection attempt `n` (0-based) while the source is gone: bounded, pure. */
export function retryDelay(n: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(n, 10))
}

export interface KeeperOptions {
  /** Opens a client on the daemon's socket (reconnecting, so that the subscription follows restarts). */
  open(): Promise<AuthdClient>
  /** The socket, for messages. */
  socket: string
  tokenFile: string | null
  /** The CODEX_HOME whose auth.json to keep. */
  codexHome: string | null
  /** placeholderIssue's label (≤ 80 characters). */
  label: string
  /** Replace a login of the home's own. */
  force: boolean
  /** One line for the user, on stderr. */
  note(message: string): void
  /** Who speaks: `codex-auth sink`, `codex-auth exec`. */
  speaker: string
}

/** The home holds a real login and --force was not given: nothing was written. */
export class LoginPresentError extends Error {
  readonly code = 'login_present' as const
  constructor(
    readonly file: string,
    holds: string,
    flagHint: string,
  ) {
    super(`${file} holds ${holds}; it was not replaced. Give ${flagHint} to replace it (that login is then gone from this machine), or use another CODEX_HOME.`)
    this.name = 'LoginPresentError'
  }
}

/** The label the daemon lists a placeholder under (`placeholders`): who and where, cut to 80 characters. */
export function placeholderLabel(kind: string): string {
  let user = 'unknown'
  try {
    user = os.userInfo().username
  } catch {
    // no passwd entry (a container's arbitrary uid)
  }
  return `${kind}:${user}@${os.hostname()}`.slice(0, 80)
}

export class Keeper {
  private client: AuthdClient | null = null
  private timer: NodeJS.Timeout | null = null
  private stopped = false
  private running: Promise<void> | null = null
  private again = false
  private sourceGone = false
  /** What the files hold now. */
  private tokenWritten: string | null = null
  private authAccess: string | null = null
  private issued: { current: PlaceholderIssueResult; issuedAtMs: number; previousId: string | null } | null = null
  private grant: { g: AuthGrant; atMs: number } | null = null
  private notLoggedInSaid = false
  private apiKeySaid = false

  constructor(private readonly o: KeeperOptions) {}

  /** The grant the files were last written from. */
  get lastGrant(): AuthGrant | null {
    return this.grant?.g ?? null
  }

  /**
   * Connects, subscribes and writes the files once. `waitForSource`: keep trying while the socket
   * is unreachable (the sink); otherwise the first failure throws (exec must not run Codex unprepared).
   */
  async start(waitForSource: boolean): Promise<void> {
    if (this.o.codexHome !== null && !this.o.force) {
      const look = await firstLook(this.o.codexHome)
      if (!look.ok) throw new LoginPresentError(`${this.o.codexHome}/auth.json`, look.holds, '--force')
    }
    for (let attempt = 0; ; attempt++) {
      try {
        this.client = await this.o.open()
        break
      } catch (e) {
        if (!waitForSource || !(e instanceof DaemonUnreachableError)) throw e
        if (attempt === 0) this.o.note(`${this.o.speaker}: cannot reach codex-authd at ${this.o.socket} (${e.errno ?? 'no answer'}); waiting for it`)
        await new Promise((r) => setTimeout(r, retryDelay(attempt)))
        if (this.stopped) return
      }
    }
    if (this.stopped) return this.client.close()
    if (waitForSource) this.o.note(`${this.o.speaker}: connected to codex-authd at ${this.o.socket}`)
    await this.client.subscribe({
      authChanged: () => void this.kick(),
      disconnected: (why) => {
        if (this.stopped || this.sourceGone) return
        this.sourceGone = true
        this.o.note(`${this.o.speaker}: lost codex-authd at ${this.o.socket} (${why}); ${this.keptLine()}; reconnecting`)
      },
      resubscribed: () => {
        if (this.stopped) return
        if (this.sourceGone) this.o.note(`${this.o.speaker}: codex-authd at ${this.o.socket} is back; renewing`)
        this.sourceGone = false
        void this.kick()
      },
    })
    await this.kick(waitForSource)
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.client?.close()
  }

  private keptLine(): string {
    const files = [this.o.tokenFile, this.o.codexHome !== null ? `${this.o.codexHome}/auth.json` : null].filter((f) => f !== null)
    const until = this.grant?.g.expiresAt ? ` (the token there is valid until ${this.grant.g.expiresAt})` : ''
    return `${files.join(' and ')} ${files.length > 1 ? 'are kept as they are' : 'is kept as it is'}${until}`
  }

  /** A sync now, or right after the one running (one at a time). `quiet`: see sync. */
  private kick(quiet = true): Promise<void> {
    if (this.stopped) return Promise.resolve()
    if (this.running) {
      this.again = true
      return this.running
    }
    const run = this.sync(quiet).finally(() => {
      this.running = null
      if (this.again) {
        this.again = false
        void this.kick()
      }
    })
    this.running = run.catch(() => {})
    return run
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    if (this.timer) clearTimeout(this.timer)
    // setTimeout's limit is 2^31-1 ms; a later renewal is rescheduled on the way.
    this.timer = setTimeout(() => {
      this.timer = null
      void this.kick()
    }, Math.min(ms, 2 ** 31 - 1))
  }

  /** Brings the files up to date. `quiet`: failures are told, not thrown (the loop goes on). */
  private async sync(quiet: boolean): Promise<void> {
    const client = this.client
    if (client === null || this.stopped) return
    try {
      const due = this.dueRenewal()
      const g = await client.getAuth({ minValiditySeconds: due?.minValiditySeconds ?? 60 })
      const now = Date.now()
      if (this.grant === null || this.grant.g.token !== g.token) this.grant = { g, atMs: now }
      this.notLoggedInSaid = false
      if (this.o.tokenFile !== null && this.tokenWritten !== g.token) {
        await writeFileAtomic(this.o.tokenFile, g.token + '\n', { mode: 0o600 })
        this.tokenWritten = g.token
      }
      if (this.o.codexHome !== null) await this.syncAuthJson(client, g, now)
      this.scheduleNext()
    } catch (e) {
      if (!quiet) throw e
      this.tell(e)
      // Unreachable or cut: the subscription's reconnect brings the next sync (resubscribed).
      if (!(e instanceof DaemonUnreachableError || e instanceof ConnectionClosedError)) this.schedule(30_000)
    }
  }

  private async syncAuthJson(client: AuthdClient, g: AuthGrant, now: number): Promise<void> {
    if (g.mode !== 'chatgpt') {
      if (!this.apiKeySaid) this.o.note(`${this.o.speaker}: codex-authd serves an API key, not a ChatGPT login: ${this.o.codexHome}/auth.json is left as it is`)
      this.apiKeySaid = true
      return
    }
    this.apiKeySaid = false
    const placeholderDue = this.issued !== null && placeholderRenewal(now, this.issued.issuedAtMs, Date.parse(this.issued.current.expiresAt)) === 0
    if (this.authAccess === g.token && !placeholderDue) return
    // The placeholder before the current one is replaced, never the current one: a Codex may have
    // read the file just before this write and present it once more (docs/remote.md#sinks).
    const replaces = this.issued?.previousId ?? undefined
    let issued: PlaceholderIssueResult
    try {
      issued = await client.placeholderIssue({ label: this.o.label, ...(replaces !== undefined ? { replaces } : {}) })
    } catch (e) {
      // The one to replace is gone already (expired, revoked by hand): issue without it.
      if (replaces !== undefined && e instanceof AuthdError && e.code === ErrorCode.InvalidParams) issued = await client.placeholderIssue({ label: this.o.label })
      else throw e
    }
    const auth = authFileFromWire(issued.authFile)
    const w = await writePlaceholderAuth(this.o.codexHome!, auth, this.o.force)
    if (w.outcome === 'refused') throw new LoginPresentError(w.file, w.holds, '--force')
    if (w.outcome === 'failed') throw new Error(w.message)
    this.issued = { current: issued, issuedAtMs: now, previousId: this.issued?.current.id ?? null }
    this.authAccess = auth.tokens?.accessToken ?? null
  }

  private dueRenewal(): Renewal | null {
    if (this.grant === null) return null
    const margin = this.o.codexHome !== null ? RENEW_MARGIN_S.authJson : RENEW_MARGIN_S.tokenFile
    const r = tokenRenewal(Date.now(), this.grant.atMs, this.grant.g.expiresAt ? Date.parse(this.grant.g.expiresAt) : null, margin)
    return r !== null && r.inMs === 0 ? r : null
  }

  private scheduleNext(): void {
    const now = Date.now()
    const waits: number[] = []
    if (this.grant !== null) {
      const margin = this.o.codexHome !== null ? RENEW_MARGIN_S.authJson : RENEW_MARGIN_S.tokenFile
      const r = tokenRenewal(now, this.grant.atMs, this.grant.g.expiresAt ? Date.parse(this.grant.g.expiresAt) : null, margin)
      // Already due and still the same token: the daemon could not refresh; try again shortly.
      if (r !== null) waits.push(r.inMs === 0 ? 30_000 : r.inMs)
    }
    if (this.issued !== null) waits.push(Math.max(1_000, placeholderRenewal(now, this.issued.issuedAtMs, Date.parse(this.issued.current.expiresAt))))
    if (waits.length > 0) this.schedule(Math.min(...waits))
  }

  private tell(e: unknown): void {
    if (e instanceof AuthdError && e.code === ErrorCode.NotLoggedIn) {
      if (!this.notLoggedInSaid) this.o.note(`${this.o.speaker}: codex-authd is not logged in; ${this.keptLine()} until it is`)
      this.notLoggedInSaid = true
      return
    }
    if (e instanceof DaemonUnreachableError || e instanceof ConnectionClosedError) return // said by `disconnected`
    if (e instanceof SocketTrustError || e instanceof LoginPresentError) {
      this.o.note(`${this.o.speaker}: ${e.message}`)
      return
    }
    this.o.note(`${this.o.speaker}: renewing failed (${e instanceof Error ? e.message : String(e)}); ${this.keptLine()}; trying again in 30 s`)
  }
}
