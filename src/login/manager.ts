// The logins and the logout behind login, awaitLogin, cancelLogin and logout (docs/contract.md#methods).
// The method table (daemon/methods.ts) checks params and calls in here; failures are thrown as
// LoginError or StoreError, which daemon/errors.ts maps to the contract's codes.
//
// A browser or device login runs in the background: `start` answers LoginStarted at once, the flow
// ends in `succeeded | failed | cancelled | expired`, reported by awaitLogin and the loginCompleted
// notification. One browser/device login at a time (-32003 with the running one's loginId).
// Success = auth.json written under Codex's locks, exactly as Codex writes it, then state.reload()
// (so authChanged goes out before loginCompleted), then the superseded refresh token is revoked.
//
// Decisions the docs leave open (see also browser.ts):
// - awaitLogin without timeoutSeconds waits until the login ends (it always does: it expires).
// - awaitLogin for an unknown loginId: -32602 (field loginId); cancelLogin for one: {cancelled:false}.
// - loginCompleted is also sent for an API-key login (status succeeded), for symmetry.
// - API-key login writes {"auth_mode":"apikey","OPENAI_API_KEY":key} like Codex, drops tokens and
//   last_refresh like Codex, keeps unknown top-level fields (they survive our rewrites:
//   docs/codex-compat.md#file-format), and revokes nothing (Codex does not).
// - logout revokes whenever the file holds ChatGPT tokens (a file with an API key *and* tokens is
//   deleted with live tokens otherwise); wasLoggedIn = an auth.json existed (an env key is not
//   something logout can remove). Lock timeout: -32004 "credential commit lock timed out"
//   (data.lock names the lock); the file is then untouched, as in Codex.
// - Every store is written through the configured one (file, keyring, auto: docs/keyring.md);
//   `ephemeral`: login and logout answer -32006 (those credentials live only in a Codex process).
// - A workspace-policy failure revokes the just-issued refresh token (nobody will hold it).
import type { Logger } from '../log.js'
import { decodeIdTokenClaims, isCodexValidIdToken } from '../codex/jwt.js'
import type { IssuerConfig } from '../net/issuer.js'
import { oidcConfiguration, openAiEndpoints, originator } from '../net/issuer.js'
import type { LoginMethod, LoginResult, LoginStarted, LogoutResult } from '../rpc/contract.js'
import type { AuthState } from '../state/cache.js'
import { StoreError } from '../store/errors.js'
import { EPHEMERAL_MESSAGE } from '../codex/config.js'
import type { Settings } from '../types.js'
import { buildAuthorizeUrl, checkWorkspace } from './authorize.js'
import { BrowserLoginServer } from './browser.js'
import { startOidcDevice, startOpenAiDevice, type DeviceLogin } from './device.js'
import { LoginError } from './errors.js'
import { PortsBusyError } from './loopback.js'
import { describeOidcError, exchangeCodeOidc, exchangeCodeOpenAi, revokeTokens, type LoginTokens } from './oauth.js'
import { persistApiKeyLogin, persistChatgptLogin, removeCredential } from './persist.js'
import { generatePkce, generateState } from './pkce.js'
import { LoginSession, type SuccessInfo } from './session.js'

/** A login left open ends after this long (Codex's device login: 15 minutes). */
export const DEFAULT_LOGIN_TIMEOUT_MS = 15 * 60_000
/** Finished logins kept for awaitLogin. */
const KEEP_FINISHED = 64

export interface LoginDeps {
  home: string
  state: AuthState
  issuer: IssuerConfig
  env: NodeJS.ProcessEnv
  log: Logger
  loginPorts: number[]
  /** Send a notification to subscribed connections. */
  broadcast(method: 'loginCompleted', params: unknown): void
  /** A browser/device login left open ends (expired) after this long (default 15 min). */
  loginTimeoutMs?: number
  /** Device polling interval when the server names none (default 5 s, RFC 8628). */
  deviceIntervalMs?: number
  /** Lock bound for auth.json commits (default 5 s, as Codex). */
  lockTimeoutMs?: number
}

function storeCheck(settings: Settings): void {
  if (settings.credentialsStore === 'ephemeral') {
    throw new StoreError('unsupported', EPHEMERAL_MESSAGE, { file: null, line: null, column: null }, 'store_ephemeral')
  }
}

function chatgptAllowed(settings: Settings): void {
  if (settings.forcedLoginMethod === 'api') {
    throw new LoginError('forbidden_by_policy', 'ChatGPT login is disabled (forced_login_method = "api"). Use API key login instead.')
  }
}

function apiKeyAllowed(settings: Settings): void {
  if (settings.forcedLoginMethod === 'chatgpt') {
    throw new LoginError('forbidden_by_policy', 'API key login is disabled (forced_login_method = "chatgpt"). Use ChatGPT login instead.')
  }
}

interface Running {
  session: LoginSession
  server: BrowserLoginServer | null
  timer: NodeJS.Timeout | null
  /** resolves when the background flow has fully finished (device polling, revocation) */
  flow: Promise<void>
}

export class LoginManager {
  private readonly sessions = new Map<string, LoginSession>()
  private readonly running = new Map<string, Running>()
  /** the browser/device login in progress (also while it is being set up) */
  private active: LoginSession | null = null
  private stopped = false

  constructor(private readonly deps: LoginDeps) {}

  /**
   * awaitLogin: the result once the login ends, or `pending` after timeoutMs or once `cancel`
   * aborts (the caller's connection closed: its wait is dropped at once, not kept until the login
   * ends); null for an unknown loginId.
   */
  wait(loginId: string, timeoutMs: number | null, cancel?: AbortSignal): Promise<LoginResult> | null {
    return this.sessions.get(loginId)?.wait(timeoutMs, cancel) ?? null
  }

  /** cancelLogin: true when this call ended the login. */
  cancel(loginId: string): boolean {
    const s = this.sessions.get(loginId)
    if (!s || !s.cancellable) return false
    return s.end('cancelled', { reason: 'cancelled', message: 'Login cancelled' })
  }

  /** End running logins and free their ports (shutdown). */
  async stop(): Promise<void> {
    this.stopped = true
    for (const r of this.running.values()) {
      if (r.session.cancellable) r.session.end('cancelled', { reason: 'cancelled', message: 'codex-authd is stopping' })
      r.server?.destroy()
    }
    // A login that is writing auth.json finishes its write (bounded by the lock timeouts).
    await Promise.all([...this.running.values()].map((r) => r.flow.catch(() => {})))
  }

  private get settings(): Settings {
    return this.deps.state.current.settings
  }

  private get timeoutMs(): number {
    return this.deps.loginTimeoutMs ?? DEFAULT_LOGIN_TIMEOUT_MS
  }

  private remember(s: LoginSession): void {
    this.sessions.set(s.id, s)
    if (this.sessions.size <= KEEP_FINISHED) return
    for (const [id, old] of this.sessions) {
      if (this.sessions.size <= KEEP_FINISHED) break
      if (!old.pending) this.sessions.delete(id)
    }
  }

  /** login: an API-key login completes here; a browser or device login is started (apiKey null). */
  async start(method: LoginMethod, apiKey: string | null): Promise<LoginStarted> {
    if (this.stopped) throw new LoginError('login_failed', 'codex-authd is stopping')
    const settings = this.settings
    storeCheck(settings)
    if (method === 'apikey') {
      apiKeyAllowed(settings)
      return this.apiKeyLogin(apiKey as string)
    }
    chatgptAllowed(settings)
    if (this.active) {
      throw new LoginError('login_in_progress', 'A browser or device login is already in progress', { loginId: this.active.id })
    }
    const session = new LoginSession(method)
    this.active = session
    try {
      return method === 'browser' ? await this.startBrowser(session) : await this.startDevice(session)
    } catch (e) {
      this.active = null
      session.end('failed', { reason: 'login_failed', message: e instanceof Error ? e.message : 'login failed' })
      if (e instanceof PortsBusyError) throw new LoginError('login_failed', e.message)
      throw e
    }
  }

  /** Common bookkeeping once a background login is set up: expiry, end notification, cleanup. */
  private track(session: LoginSession, server: BrowserLoginServer | null, background: Promise<void>, expiresInMs: number): void {
    this.remember(session)
    const r: Running = { session, server, timer: null, flow: Promise.resolve() }
    r.timer = setTimeout(() => this.expire(session), expiresInMs)
    r.timer.unref()
    this.running.set(session.id, r)
    r.flow = (async () => {
      const result = await session.done
      if (r.timer) clearTimeout(r.timer)
      if (this.active === session) this.active = null
      await background.catch(() => {})
      this.finished(result)
      this.running.delete(session.id)
    })()
  }

  private expire(session: LoginSession): void {
    if (session.cancellable) {
      const minutes = Math.round(this.timeoutMs / 60_000)
      session.end('expired', { reason: 'expired', message: `The login was not completed within ${minutes >= 1 ? `${minutes} minutes` : `${this.timeoutMs} ms`}` })
      return
    }
    // Being committed right now: it ends on its own in a moment.
  }

  private finished(result: LoginResult): void {
    this.deps.log.info({ loginId: result.loginId, status: result.status, reason: result.error?.reason ?? null }, 'login ended')
    this.deps.broadcast('loginCompleted', result)
  }

  // ---------------------------------------------------------------- ChatGPT completion (shared)

  /**
   * After the tokens arrived: check them, check policy, write auth.json, reload, then revoke the
   * refresh token the new login replaced (best effort). Throws LoginError.
   */
  private async completeChatgpt(tokens: LoginTokens): Promise<SuccessInfo> {
    if (!isCodexValidIdToken(tokens.idToken)) {
      throw new LoginError('login_failed', 'The issuer returned an id_token that Codex cannot read')
    }
    const claims = decodeIdTokenClaims(tokens.idToken)
    const settings = this.settings
    const policy =
      settings.forcedLoginMethod === 'api'
        ? ({ ok: false, message: 'ChatGPT login is disabled (forced_login_method = "api").' } as const)
        : checkWorkspace(claims.accountId, settings.forcedChatgptWorkspaceIds)
    if (!policy.ok) {
      // Nobody will ever hold these tokens: give them back.
      void revokeTokens(this.deps.issuer, this.deps.env, tokens).catch(() => false)
      throw new LoginError('forbidden_by_policy', policy.message)
    }
    const { previous } = await persistChatgptLogin(this.deps.state.store, tokens, claims.accountId, new Date(), this.deps.lockTimeoutMs)
    await this.deps.state.reload()
    const old = previous?.tokens ?? null
    if (old !== null && old.refreshToken !== tokens.refreshToken && (old.refreshToken !== '' || old.accessToken !== '')) {
      const revoked = await revokeTokens(this.deps.issuer, this.deps.env, old)
      this.deps.log.info({ revoked }, 'revoked the superseded refresh token')
    }
    return { email: claims.email, planType: claims.planType, accountId: claims.accountId }
  }

  // ---------------------------------------------------------------- browser

  private async startBrowser(session: LoginSession): Promise<LoginStarted> {
    const { issuer, env } = this.deps
    const pkce = generatePkce()
    const state = generateState()
    let authorizationEndpoint: string
    if (issuer.kind === 'openai') authorizationEndpoint = openAiEndpoints(issuer.issuer, env).authorize
    else {
      try {
        const config = await oidcConfiguration(issuer, env)
        const ep = config.serverMetadata().authorization_endpoint
        if (!ep) throw new LoginError('login_failed', 'the issuer has no authorization endpoint')
        authorizationEndpoint = ep
      } catch (e) {
        if (e instanceof LoginError) throw e
        throw new LoginError('login_failed', `the issuer could not be discovered: ${describeOidcError(e)}`)
      }
    }
    const server = await BrowserLoginServer.start({
      session,
      ports: this.deps.loginPorts,
      state,
      complete: async (callbackUrl, code, redirectUri) => {
        const tokens =
          issuer.kind === 'openai'
            ? await exchangeCodeOpenAi(issuer, env, { code, redirectUri, codeVerifier: pkce.verifier })
            : await exchangeCodeOidc(issuer, env, callbackUrl, pkce.verifier, state)
        return this.completeChatgpt(tokens)
      },
    })
    const authUrl = buildAuthorizeUrl({
      authorizationEndpoint,
      clientId: issuer.clientId,
      redirectUri: server.redirectUri,
      codeChallenge: pkce.challenge,
      state,
      allowedWorkspaceIds: this.settings.forcedChatgptWorkspaceIds,
      originator: originator(env),
    })
    const expiresAt = new Date(Date.now() + this.timeoutMs).toISOString()
    this.track(session, server, Promise.resolve(), this.timeoutMs)
    this.deps.log.info({ loginId: session.id, method: 'browser', port: server.port }, 'login started')
    return { loginId: session.id, method: 'browser', authUrl, callbackUrl: server.redirectUri, expiresAt }
  }

  // ---------------------------------------------------------------- device

  private async startDevice(session: LoginSession): Promise<LoginStarted> {
    const { issuer, env } = this.deps
    const opts = { defaultIntervalMs: this.deps.deviceIntervalMs }
    const device: DeviceLogin = issuer.kind === 'openai' ? await startOpenAiDevice(issuer, env, opts) : await startOidcDevice(issuer, env, opts)
    const lifetime = Math.min(this.timeoutMs, device.expiresInMs ?? Infinity)
    const expiresAt = new Date(Date.now() + lifetime).toISOString()
    const background = (async () => {
      let tokens: LoginTokens
      try {
        tokens = await device.poll(session.abort.signal)
      } catch (e) {
        if (!session.pending) return
        const err = e instanceof LoginError ? e : new LoginError('login_failed', 'Device code login failed')
        session.end('failed', { reason: err.code, message: err.message })
        return
      }
      if (!session.cancellable) return
      session.busy = true
      try {
        const info = await this.completeChatgpt(tokens)
        session.end('succeeded', null, info)
      } catch (e) {
        const err = e instanceof LoginError ? e : new LoginError('login_failed', 'The login could not be completed')
        session.end('failed', { reason: err.code, message: err.message })
      }
    })()
    this.track(session, null, background, lifetime)
    this.deps.log.info({ loginId: session.id, method: 'device' }, 'login started')
    return { loginId: session.id, method: 'device', verificationUrl: device.verificationUrl, userCode: device.userCode, expiresAt }
  }

  // ---------------------------------------------------------------- API key

  private async apiKeyLogin(apiKey: string): Promise<LoginStarted> {
    await persistApiKeyLogin(this.deps.state.store, apiKey, this.deps.lockTimeoutMs)
    await this.deps.state.reload()
    const session = new LoginSession('apikey')
    this.remember(session)
    session.end('succeeded')
    this.finished(session.result())
    return { loginId: session.id, method: 'apikey', status: 'succeeded' }
  }

  // ---------------------------------------------------------------- logout

  async logout(revoke: boolean): Promise<LogoutResult> {
    storeCheck(this.settings)
    // As Codex: read without a lock, revoke, then delete under the locks without comparing.
    const store = this.deps.state.store
    const before = (await store.load()).read
    let revoked = false
    if (revoke && before.state === 'ok' && before.auth.tokens !== null) {
      revoked = await revokeTokens(this.deps.issuer, this.deps.env, before.auth.tokens)
    }
    const removed = await removeCredential(store, this.deps.lockTimeoutMs)
    await this.deps.state.reload()
    this.deps.log.info({ wasLoggedIn: removed.existed, revoked }, 'logged out')
    return { wasLoggedIn: removed.existed, revoked }
  }
}
