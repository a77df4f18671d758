/**
 * Test harness: a real oidc-provider 9 that looks like auth.openai.com, running
 * in-process on http://127.0.0.1:<random port>, with
 *  - OpenAI's routes (/oauth/authorize, /oauth/token, /oauth/revoke) and the device flow,
 *  - JWT access tokens carrying exp/iat and the `https://api.openai.com/auth` claim,
 *  - id tokens with email + the same claim,
 *  - rotating refresh tokens with reuse detection (reuse revokes the grant),
 *  - an auto-approving interaction handler (/interaction/:uid),
 *  - a JSON->form adapter on the same server for /oauth/token and /oauth/revoke
 *    (Codex posts JSON), which counts every token/revoke call (JSON or form),
 *    reshapes refresh failures to OpenAI's 401 shape for JSON callers, and can
 *    inject failures.
 *
 * See docs/testing.md#the-test-issuer for the facts this configuration is based on.
 * Everything listens on 127.0.0.1 only.
 */
import http from 'node:http'
import { randomBytes, randomUUID, generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'
import type { AddressInfo } from 'node:net'
import type Provider from 'oidc-provider'
import type {
  Configuration,
  KoaContextWithOIDC,
  JWK,
  AdapterFactory,
  Account as OidcAccount,
} from 'oidc-provider'
import * as oidcClient from 'openid-client'
import { driveAuthorization } from './browser.js'
import { registerSecret, registerTokenAnswer } from './secrets.js'

// ---------------------------------------------------------------- constants

export const CLIENT_ID = 'app_EMoamEEZ73f0CkXaXp7hrann'
export const AUTH_CLAIM = 'https://api.openai.com/auth'
export const REDIRECT_URIS = [
  'http://localhost:1455/auth/callback',
  'http://127.0.0.1:1455/auth/callback',
] as const
/** The redirect URI Codex 0.171.0 actually uses (docs/testing.md#the-test-issuer). */
export const REDIRECT_URI = 'http://127.0.0.1:1455/auth/callback'
export const API_AUDIENCE = 'https://api.openai.com/v1'
export const DEVICE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code'
export const DEFAULT_SCOPE = 'openid profile email offline_access'

// ---------------------------------------------------------------- types

export interface TestAccount {
  email: string
  /** chatgpt_plan_type, e.g. 'plus', 'pro', 'team' */
  planType: string
  /** chatgpt_account_id */
  accountId: string
  /** chatgpt_user_id */
  userId: string
  name?: string
}

export const DEFAULT_ACCOUNT_SUB = 'user-default'
export const DEFAULT_ACCOUNT: TestAccount = {
  email: 'default.user@example.test',
  planType: 'plus',
  accountId: 'acct-00000000-0000-4000-8000-000000000001',
  userId: 'user-00000000000000000000default',
  name: 'Default User',
}

/** All values in seconds. */
export interface ProviderTtl {
  /** access token lifetime on the authorization_code grant (default 3600) */
  authorizationCode?: number
  /** access token lifetime on the refresh_token grant (default 3600) */
  refreshToken?: number
  /** access token lifetime on the device_code grant (default 3600) */
  deviceCode?: number
  /** refresh token artifact lifetime (default 30 days) */
  refreshTokenLifetime?: number
  /** authorization code artifact lifetime (default 60) */
  code?: number
  /** device code artifact lifetime (default 600) */
  deviceCodeLifetime?: number
  /** id token lifetime (default 3600) */
  idToken?: number
  /** login session lifetime (default 86400) */
  session?: number
  /** grant lifetime (default 30 days) */
  grant?: number
  /** interaction lifetime (default 600) */
  interaction?: number
}

export interface ProviderOptions {
  /** sub -> account. Default: `{ [DEFAULT_ACCOUNT_SUB]: DEFAULT_ACCOUNT }` */
  accounts?: Record<string, TestAccount>
  /** sub used by the interaction handler when no login_hint names a known account. Default: first key of accounts. */
  defaultAccount?: string
  ttl?: ProviderTtl
  /** every interaction ends with access_denied */
  deny?: boolean
  /** reshape refresh failures of JSON callers to OpenAI's 401 shape (default true) */
  openaiErrors?: boolean
  /** delay (ms) before each token-endpoint call is forwarded to the provider */
  tokenDelayMs?: number
  /** rotate refresh tokens on every use (default true) */
  rotateRefreshToken?: boolean
  /**
   * Called with every answer the token/revoke front sends (forwarded or injected), after it was
   * written: the request's form fields and the raw body, e.g. to record each issued token set.
   */
  onAnswer?: (answer: EndpointAnswer) => void
  /** more redirect URIs to register for the client (e.g. a stand-in issuer's /deviceauth/callback) */
  extraRedirectUris?: string[]
}

export interface EndpointAnswer {
  call: TokenCall
  /** the request's fields (JSON bodies converted to form fields) */
  request: URLSearchParams
  status: number
  /** the body text sent to the caller */
  body: string
}

export type Endpoint = 'token' | 'revoke'

export interface TokenCall {
  endpoint: Endpoint
  grantType?: string
  userAgent: string
  /** the `originator` header ('' when absent) */
  originator: string
  via: 'json' | 'form'
  /** HTTP status sent to the caller; 0 while in flight or when the socket was destroyed */
  status: number
  /** true when the provider reported 'refresh token already used' (the grant got revoked) */
  refreshTokenReuse?: boolean
  /** OAuth `error` or OpenAI `error.code` returned to the caller */
  error?: string
  /** the provider's internal error detail (grant.error / revocation.error event) */
  errorDetail?: string
  /** answered by failNext() without reaching the provider */
  injected?: boolean
  /** Codex's `refresh_reason` body field, if any */
  refreshReason?: string
  /** revoke: token_type_hint */
  tokenTypeHint?: string
  /** revoke/refresh: whether client_id was sent in the body */
  hasClientId: boolean
  /** Date.now() at arrival */
  at: number
  /** the answer has been sent (or the socket destroyed) */
  done: boolean
}

export type CallFilter = Partial<Omit<TokenCall, 'at'>> | ((c: TokenCall) => boolean)

export type FailAnswer =
  | {
      status: number
      /** string: sent verbatim (text/plain unless contentType); anything else: JSON */
      body?: unknown
      contentType?: string
      headers?: Record<string, string>
      delayMs?: number
    }
  | 'network'

export interface TokenSet {
  idToken: string
  accessToken: string
  refreshToken: string
  /** chatgpt_account_id from the id token */
  accountId: string
  /** seconds */
  expiresIn: number
  /** the account's sub */
  sub: string
  email: string
}

export interface TestProvider {
  /** http://127.0.0.1:<port> */
  readonly issuer: string
  /** same server as issuer: the adapter is built in */
  readonly adapterUrl: string
  readonly tokenUrl: string
  readonly revokeUrl: string
  readonly authorizationUrl: string
  readonly deviceAuthorizationUrl: string
  readonly port: number
  readonly clientId: string
  readonly redirectUri: string
  /** live: mutate to change claims of future tokens */
  readonly accounts: Record<string, TestAccount>
  readonly defaultAccount: string
  /** every token/revoke endpoint call, JSON or form, in arrival order */
  readonly calls: TokenCall[]
  countCalls(filter?: CallFilter): number
  resetCalls(): void
  /** the next n calls to `endpoint` (default 'token') get `answer` without reaching the provider */
  failNext(n: number, answer: FailAnswer, opts?: { endpoint?: Endpoint }): void
  /** pending injected failures */
  pendingFailures(endpoint?: Endpoint): number
  clearFailures(): void
  /** delay (ms) before forwarding each token call (injected answers have their own delayMs) */
  tokenDelayMs: number
  /** delay (ms) before forwarding each revoke call */
  revokeDelayMs: number
  /** reshape JSON refresh failures to OpenAI's 401 shape */
  openaiErrors: boolean
  /** every interaction ends with access_denied */
  deny: boolean
  /** the next interaction ends with access_denied */
  denyNext(): void
  /** account (sub) the interaction handler logs in when there is no usable login_hint */
  loginAs: string | undefined
  /** change TTLs for tokens issued from now on */
  setTtl(ttl: ProviderTtl): void
  /** the oidc-provider instance */
  readonly oidc: Provider
  /** openid-client Configuration (discovery, allowInsecureRequests), cached */
  clientConfig(): Promise<oidcClient.Configuration>
  stop(): Promise<void>
  close(): Promise<void>
}

// ---------------------------------------------------------------- failure presets (docs/codex-compat.md#refresh-errors)

export function openaiError(code: 'refresh_token_reused' | 'refresh_token_expired' | 'refresh_token_invalidated') {
  return {
    error: {
      message: OPENAI_MESSAGES[code],
      type: 'invalid_request_error',
      param: null,
      code,
    },
  }
}

const OPENAI_MESSAGES = {
  refresh_token_reused:
    'Your refresh token has already been used to generate a new access token. Please try signing in again.',
  refresh_token_expired: 'Your refresh token has expired. Please try signing in again.',
  refresh_token_invalidated: 'Your refresh token has been invalidated. Please try signing in again.',
} as const

/** One answer per failure class of docs/codex-compat.md#refresh-errors, for `failNext`. */
export const FAILURES = {
  reused: { status: 401, body: openaiError('refresh_token_reused') },
  expired: { status: 401, body: openaiError('refresh_token_expired') },
  invalidated: { status: 401, body: openaiError('refresh_token_invalidated') },
  invalidGrant: { status: 400, body: { error: 'invalid_grant', error_description: 'grant request is invalid' } },
  reused400: { status: 400, body: { error: { code: 'refresh_token_reused' } } },
  unauthorized: { status: 401, body: { error: 'unauthorized' } },
  unsupportedGrantType: { status: 400, body: { error: 'unsupported_grant_type' } },
  forbidden: { status: 403, body: { error: 'forbidden' } },
  rateLimited: { status: 429, body: { error: 'rate_limited' }, headers: { 'retry-after': '1' } },
  serverError: { status: 500, body: { error: 'server_error' } },
  nonJson: { status: 200, body: '<html>not json</html>', contentType: 'text/html' },
  emptyJson: { status: 200, body: {} },
  network: 'network',
} as const satisfies Record<string, FailAnswer>

// ---------------------------------------------------------------- oidc-provider loading (quietly)

type ProviderCtor = typeof Provider
let providerModule: Promise<{ Provider: ProviderCtor; memoryAdapter?: (tolerance: number) => AdapterFactory }> | undefined

function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const { warn, info } = console
  const filter =
    (orig: (...a: unknown[]) => void) =>
    (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('oidc-provider ')) return
      orig.apply(console, args)
    }
  console.warn = filter(warn)
  console.info = filter(info)
  return fn().finally(() => {
    console.warn = warn
    console.info = info
  })
}

function loadProvider() {
  providerModule ??= quietly(async () => {
    const mod = await import('oidc-provider')
    let memoryAdapter: ((tolerance: number) => AdapterFactory) | undefined
    try {
      // Not part of the public API, but the package has no "exports" map and is pinned.
      // Passing the factory ourselves silences the "in-memory adapter" warning and lets us
      // keep expired artifacts findable (so an expired RT reports "expired", not "not found").
      const spec = 'oidc-provider/lib/adapters/memory_adapter.js'
      const m = (await import(spec)) as { createMemoryAdapter?: (tolerance: number) => AdapterFactory }
      memoryAdapter = m.createMemoryAdapter
    } catch {
      memoryAdapter = undefined
    }
    return { Provider: mod.default, memoryAdapter }
  })
  return providerModule
}

let signingKey: Promise<JWK> | undefined
function getSigningKey(): Promise<JWK> {
  signingKey ??= promisify(generateKeyPair)('rsa', { modulusLength: 2048 }).then(({ privateKey }) => ({
    ...(privateKey.export({ format: 'jwk' }) as JWK),
    kid: 'harness-' + randomBytes(4).toString('hex'),
    use: 'sig',
    alg: 'RS256',
  }))
  return signingKey
}

// ---------------------------------------------------------------- helpers

const sleep = (ms: number) =>
  new Promise<void>((r) => {
    setTimeout(r, ms).unref()
  })

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(text)),
    ...extra,
  })
  res.end(text)
}

function matches(c: TokenCall, filter: CallFilter | undefined): boolean {
  if (!filter) return true
  if (typeof filter === 'function') return filter(c)
  for (const [k, v] of Object.entries(filter)) {
    if ((c as unknown as Record<string, unknown>)[k] !== v) return false
  }
  return true
}

/** Decode a JWT's payload without verifying it (tests only). */
export function decodeJwtPayload(jwt: string): Record<string, unknown> {
  const part = jwt.split('.')[1]
  if (!part) throw new Error('not a JWT')
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>
}

/** Decode a JWT's protected header without verifying it (tests only). */
export function decodeJwtHeader(jwt: string): Record<string, unknown> {
  const part = jwt.split('.')[0]
  if (!part) throw new Error('not a JWT')
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>
}

function refreshErrorCode(detail: string | undefined) {
  if (detail === 'refresh token already used') return 'refresh_token_reused' as const
  if (detail === 'refresh token is expired') return 'refresh_token_expired' as const
  return 'refresh_token_invalidated' as const
}

/**
 * Registers what the provider hands out outside the token endpoint: the authorization code in a
 * redirect's Location, and the device_code of a device authorization answer (secrets.ts).
 */
function registerProviderSecrets(pathname: string, res: http.ServerResponse): void {
  const setHeader = res.setHeader.bind(res)
  res.setHeader = ((name: string, value: number | string | readonly string[]) => {
    if (name.toLowerCase() === 'location') {
      for (const v of Array.isArray(value) ? value : [value]) {
        try {
          const u = new URL(String(v), 'http://x')
          registerSecret(u.searchParams.get('code'), 'authorization code (redirect)')
        } catch {
          // not a URL
        }
      }
    }
    return setHeader(name, value)
  }) as typeof res.setHeader
  if (pathname === '/device/auth') {
    const end = res.end.bind(res) as (...a: unknown[]) => http.ServerResponse
    res.end = ((...args: unknown[]) => {
      const chunk = args[0]
      if (typeof chunk === 'string' || Buffer.isBuffer(chunk)) registerTokenAnswer(chunk.toString(), 'device authorization')
      return end(...args)
    }) as typeof res.end
  }
}

// ---------------------------------------------------------------- startProvider

export async function startProvider(opts: ProviderOptions = {}): Promise<TestProvider> {
  const [{ Provider: ProviderClass, memoryAdapter }, jwk] = await Promise.all([loadProvider(), getSigningKey()])

  const accounts: Record<string, TestAccount> = opts.accounts
    ? { ...opts.accounts }
    : { [DEFAULT_ACCOUNT_SUB]: { ...DEFAULT_ACCOUNT } }
  const chosen = opts.defaultAccount ?? Object.keys(accounts)[0]
  if (!chosen || !accounts[chosen]) throw new Error('startProvider: no (valid) default account')
  const defaultAccount: string = chosen

  const ttl: Required<ProviderTtl> = {
    authorizationCode: 3600,
    refreshToken: 3600,
    deviceCode: 3600,
    refreshTokenLifetime: 30 * 86400,
    code: 60,
    deviceCodeLifetime: 600,
    idToken: 3600,
    session: 86400,
    grant: 30 * 86400,
    interaction: 600,
    ...opts.ttl,
  }

  const authClaim = (sub: string) => {
    const a = accounts[sub]
    if (!a) return undefined
    return { chatgpt_account_id: a.accountId, chatgpt_plan_type: a.planType, chatgpt_user_id: a.userId }
  }

  const internalSecret = randomBytes(16).toString('hex')
  const errorDetails = new Map<string, string>()

  const state = {
    deny: opts.deny ?? false,
    denyNext: 0,
    loginAs: undefined as string | undefined,
  }

  const configuration: Configuration = {
    clients: [
      {
        client_id: CLIENT_ID,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT_TYPE],
        response_types: ['code'],
        redirect_uris: [...REDIRECT_URIS, ...(opts.extraRedirectUris ?? [])],
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    claims: {
      openid: ['sub', AUTH_CLAIM],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    conformIdTokenClaims: false,
    findAccount: async (_ctx: KoaContextWithOIDC, sub: string): Promise<OidcAccount | undefined> => {
      const a = accounts[sub]
      if (!a) return undefined
      return {
        accountId: sub,
        claims: () => ({
          sub,
          email: a.email,
          email_verified: true,
          name: a.name ?? a.email,
          [AUTH_CLAIM]: authClaim(sub),
        }),
      }
    },
    extraTokenClaims: async (_ctx, token) => {
      if (token.kind !== 'AccessToken' || !('accountId' in token)) return undefined
      const claim = authClaim(token.accountId)
      return claim ? { [AUTH_CLAIM]: claim } : undefined
    },
    routes: {
      authorization: '/oauth/authorize',
      token: '/oauth/token',
      revocation: '/oauth/revoke',
    },
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: true,
        allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId,
      },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx, form, _out, err) => {
          const title = err ? 'Sign-in Error' : 'Sign-in'
          const msg = err ? `<p class="error">${String(err.name ?? 'error')}</p>` : ''
          ctx.type = 'html'
          ctx.body = `<!DOCTYPE html><html><head><title>${title}</title></head><body>${msg}${form}</body></html>`
        },
        userCodeConfirmSource: (ctx, form) => {
          ctx.type = 'html'
          ctx.body = `<!DOCTYPE html><html><head><title>Device Login Confirmation</title></head><body>${form}</body></html>`
        },
        successSource: (ctx) => {
          ctx.type = 'html'
          ctx.body = '<!DOCTYPE html><html><head><title>Sign-in Success</title></head><body>ok</body></html>'
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'openid profile email offline_access api.connectors.read api.connectors.invoke',
          audience: API_AUDIENCE,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    clientBasedCORS: () => true,
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: () => false,
    rotateRefreshToken: opts.rotateRefreshToken ?? true,
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError: (ctx, out) => {
      ctx.type = 'json'
      ctx.body = out
    },
    ttl: {
      AccessToken: (ctx) => {
        const gt = ctx?.oidc?.params?.grant_type
        if (gt === 'refresh_token') return ttl.refreshToken
        if (gt === DEVICE_GRANT_TYPE) return ttl.deviceCode
        return ttl.authorizationCode
      },
      AuthorizationCode: () => ttl.code,
      DeviceCode: () => ttl.deviceCodeLifetime,
      IdToken: () => ttl.idToken,
      RefreshToken: () => ttl.refreshTokenLifetime,
      Grant: () => ttl.grant,
      Session: () => ttl.session,
      Interaction: () => ttl.interaction,
      ClientCredentials: 600,
      BackchannelAuthenticationRequest: 600,
      PreAuthorizedCode: 600,
    },
  }
  if (memoryAdapter) {
    // keep expired artifacts for an hour so an expired RT is "expired", not "not found"
    configuration.adapter = memoryAdapter(3600)
  }

  const server = http.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const issuer = `http://127.0.0.1:${port}`

  const oidc = await quietly(async () => new ProviderClass(issuer, configuration))
  const callback = oidc.callback()

  const recordDetail = (ctx: KoaContextWithOIDC, err: { error_detail?: string; message?: string }) => {
    const id = ctx.get('x-harness-req')
    if (id) errorDetails.set(id, err.error_detail ?? err.message ?? 'unknown')
  }
  oidc.on('grant.error', recordDetail)
  oidc.on('revocation.error', recordDetail)
  // keep the provider from printing to the console on server errors
  oidc.on('server_error', () => {})

  // No keep-alive for the relay's forwards to the provider on this same server: a reused socket
  // that the server is closing for idleness (its keep-alive timeout) at that moment fails the
  // forward with ECONNRESET, which the relay answers 502. Loaded machines hit that window (seen:
  // Codex's revoke answered 502 in codex-interop); a fresh loopback connection costs nothing here.
  const agent = new http.Agent({ keepAlive: false })
  const calls: TokenCall[] = []
  const failures: Record<Endpoint, FailAnswer[]> = { token: [], revoke: [] }
  let tokenDelayMs = opts.tokenDelayMs ?? 0
  let revokeDelayMs = 0
  let openaiErrors = opts.openaiErrors ?? true
  let stopped = false

  // ---- interactions (auto-approve)
  async function handleInteraction(req: http.IncomingMessage, res: http.ServerResponse) {
    const details = await oidc.interactionDetails(req, res)
    const { prompt, params } = details
    if (state.deny || state.denyNext > 0) {
      if (!state.deny) state.denyNext--
      await oidc.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User denied the authorization request (test harness)' },
        { mergeWithLastSubmission: false },
      )
      return
    }
    if (prompt.name === 'login') {
      const hint = typeof params.login_hint === 'string' ? params.login_hint : undefined
      const accountId = hint && accounts[hint] ? hint : state.loginAs ?? defaultAccount
      await oidc.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false })
      return
    }
    if (prompt.name === 'consent') {
      const accountId = details.session?.accountId
      const clientId = typeof params.client_id === 'string' ? params.client_id : CLIENT_ID
      if (!accountId) throw new Error('consent prompt without a session')
      const existing = details.grantId ? await oidc.Grant.find(details.grantId) : undefined
      const grant = existing ?? new oidc.Grant({ accountId, clientId })
      const d = prompt.details as {
        missingOIDCScope?: string[]
        missingOIDCClaims?: string[]
        missingResourceScopes?: Record<string, string[]>
      }
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '))
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims)
      if (d.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '))
        }
      }
      const grantId = await grant.save()
      await oidc.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
      return
    }
    throw new Error(`unsupported prompt ${prompt.name}`)
  }

  // ---- token / revoke endpoint front (JSON adapter, counting, failure injection)
  async function handleEndpoint(req: http.IncomingMessage, res: http.ServerResponse, endpoint: Endpoint, path: string) {
    const raw = await readBody(req)
    const contentType = String(req.headers['content-type'] ?? '')
    const via: 'json' | 'form' = /application\/json/i.test(contentType) ? 'json' : 'form'

    let form: URLSearchParams
    let parseError = false
    if (via === 'json') {
      form = new URLSearchParams()
      try {
        const parsed: unknown = JSON.parse(raw.toString('utf8'))
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
        for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
          if (v === null || v === undefined) continue
          form.append(k, typeof v === 'object' ? JSON.stringify(v) : String(v))
        }
      } catch {
        parseError = true
      }
    } else {
      form = new URLSearchParams(raw.toString('utf8'))
    }

    const call: TokenCall = {
      endpoint,
      userAgent: String(req.headers['user-agent'] ?? ''),
      originator: String(req.headers['originator'] ?? ''),
      via,
      status: 0,
      hasClientId: form.has('client_id'),
      at: Date.now(),
      done: false,
    }
    // Every secret a caller sends is registered for the leak scanner (test/support/secrets.ts).
    registerSecret(form.get('code'), 'authorization code (token request)')
    registerSecret(form.get('code_verifier'), 'PKCE verifier (token request)')
    registerSecret(form.get('refresh_token'), 'refresh token (token request)')
    registerSecret(form.get('device_code'), 'device code (token request)')
    registerSecret(form.get('token'), `token (${endpoint} request)`)
    const gt = form.get('grant_type')
    if (endpoint === 'token' && gt) call.grantType = gt
    const rr = form.get('refresh_reason')
    if (rr) call.refreshReason = rr
    const hint = form.get('token_type_hint')
    if (endpoint === 'revoke' && hint) call.tokenTypeHint = hint
    calls.push(call)

    const finish = (status: number) => {
      call.status = status
      call.done = true
    }

    const injected = failures[endpoint].shift()
    if (injected !== undefined) {
      call.injected = true
      if (injected === 'network') {
        finish(0)
        req.socket.destroy()
        return
      }
      if (injected.delayMs) await sleep(injected.delayMs)
      if (stopped) return
      const headers: Record<string, string> = { 'cache-control': 'no-store', ...injected.headers }
      let text = ''
      if (typeof injected.body === 'string') {
        text = injected.body
        headers['content-type'] = injected.contentType ?? 'text/plain; charset=utf-8'
      } else if (injected.body !== undefined) {
        text = JSON.stringify(injected.body)
        headers['content-type'] = injected.contentType ?? 'application/json; charset=utf-8'
        const b = injected.body as { error?: unknown }
        if (typeof b.error === 'string') call.error = b.error
        else if (b.error && typeof b.error === 'object' && typeof (b.error as { code?: unknown }).code === 'string') {
          call.error = (b.error as { code: string }).code
        }
      }
      headers['content-length'] = String(Buffer.byteLength(text))
      if (endpoint === 'token') registerTokenAnswer(text, 'injected token answer')
      res.writeHead(injected.status, headers)
      res.end(text)
      finish(injected.status)
      opts.onAnswer?.({ call, request: form, status: injected.status, body: text })
      return
    }

    if (parseError) {
      call.error = 'invalid_request'
      sendJson(res, 400, { error: 'invalid_request', error_description: 'body is not a JSON object' })
      finish(400)
      return
    }

    const delay = endpoint === 'token' ? tokenDelayMs : revokeDelayMs
    if (delay > 0) await sleep(delay)
    if (stopped) return

    // forward to the provider on this same server (internal request, not recorded again)
    const reqId = randomUUID()
    const body = Buffer.from(form.toString(), 'utf8')
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': String(body.length),
      'x-harness-internal': internalSecret,
      'x-harness-req': reqId,
      accept: 'application/json',
    }
    for (const h of ['user-agent', 'authorization', 'dpop'] as const) {
      const v = req.headers[h]
      if (typeof v === 'string') headers[h] = v
    }
    if (via === 'json') headers['x-json-adapted'] = '1'

    let upstream: { status: number; headers: http.IncomingHttpHeaders; body: Buffer }
    try {
      upstream = await new Promise((resolve, reject) => {
        const r = http.request(
          { host: '127.0.0.1', port, method: 'POST', path, headers, agent },
          (up) => {
            readBody(up).then((b) => resolve({ status: up.statusCode ?? 502, headers: up.headers, body: b }), reject)
          },
        )
        r.on('error', reject)
        r.end(body)
      })
    } catch (e) {
      if (stopped) return
      sendJson(res, 502, { error: 'server_error', error_description: `harness forward failed: ${(e as Error).message}` })
      finish(502)
      return
    }

    const detail = errorDetails.get(reqId)
    errorDetails.delete(reqId)
    if (detail) call.errorDetail = detail
    if (detail === 'refresh token already used') call.refreshTokenReuse = true

    let parsedUp: { error?: unknown } | undefined
    try {
      parsedUp = upstream.body.length ? (JSON.parse(upstream.body.toString('utf8')) as { error?: unknown }) : undefined
    } catch {
      parsedUp = undefined
    }
    if (typeof parsedUp?.error === 'string') call.error = parsedUp.error

    if (
      via === 'json' &&
      openaiErrors &&
      endpoint === 'token' &&
      call.grantType === 'refresh_token' &&
      upstream.status === 400 &&
      parsedUp?.error === 'invalid_grant'
    ) {
      const code = refreshErrorCode(detail)
      call.error = code
      sendJson(res, 401, openaiError(code), { 'x-json-adapted': '1' })
      finish(401)
      opts.onAnswer?.({ call, request: form, status: 401, body: JSON.stringify(openaiError(code)) })
      return
    }

    const out: Record<string, string> = {}
    for (const h of ['content-type', 'cache-control', 'pragma', 'www-authenticate', 'dpop-nonce'] as const) {
      const v = upstream.headers[h]
      if (typeof v === 'string') out[h] = v
    }
    if (via === 'json') out['x-json-adapted'] = '1'
    out['content-length'] = String(upstream.body.length)
    if (endpoint === 'token') registerTokenAnswer(upstream.body.toString('utf8'), `token endpoint, ${call.grantType ?? 'no grant_type'}`)
    res.writeHead(upstream.status, out)
    res.end(upstream.body)
    finish(upstream.status)
    opts.onAnswer?.({ call, request: form, status: upstream.status, body: upstream.body.toString('utf8') })
  }

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', issuer)
    const internal = req.headers['x-harness-internal'] === internalSecret
    const fail = (e: unknown) => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      sendJson(res, 500, { error: 'server_error', error_description: `harness: ${(e as Error)?.message ?? String(e)}` })
    }
    if (!internal && url.pathname.startsWith('/interaction/')) {
      handleInteraction(req, res).catch(fail)
      return
    }
    if (!internal && req.method === 'POST' && (url.pathname === '/oauth/token' || url.pathname === '/oauth/revoke')) {
      handleEndpoint(req, res, url.pathname === '/oauth/token' ? 'token' : 'revoke', url.pathname + url.search).catch(
        fail,
      )
      return
    }
    if (!internal) {
      // never let outside callers spoof the adapter markers
      delete req.headers['x-harness-req']
      registerProviderSecrets(url.pathname, res)
    }
    callback(req, res)
  })

  let configPromise: Promise<oidcClient.Configuration> | undefined

  const tp: TestProvider = {
    issuer,
    adapterUrl: issuer,
    tokenUrl: `${issuer}/oauth/token`,
    revokeUrl: `${issuer}/oauth/revoke`,
    authorizationUrl: `${issuer}/oauth/authorize`,
    deviceAuthorizationUrl: `${issuer}/device/auth`,
    port,
    clientId: CLIENT_ID,
    redirectUri: REDIRECT_URI,
    accounts,
    defaultAccount,
    calls,
    countCalls: (filter) => calls.filter((c) => matches(c, filter)).length,
    resetCalls: () => {
      calls.length = 0
    },
    failNext: (n, answer, o) => {
      const ep = o?.endpoint ?? 'token'
      for (let i = 0; i < n; i++) failures[ep].push(answer)
    },
    pendingFailures: (ep) => (ep ? failures[ep].length : failures.token.length + failures.revoke.length),
    clearFailures: () => {
      failures.token.length = 0
      failures.revoke.length = 0
    },
    get tokenDelayMs() {
      return tokenDelayMs
    },
    set tokenDelayMs(v: number) {
      tokenDelayMs = v
    },
    get revokeDelayMs() {
      return revokeDelayMs
    },
    set revokeDelayMs(v: number) {
      revokeDelayMs = v
    },
    get openaiErrors() {
      return openaiErrors
    },
    set openaiErrors(v: boolean) {
      openaiErrors = v
    },
    get deny() {
      return state.deny
    },
    set deny(v: boolean) {
      state.deny = v
    },
    denyNext: () => {
      state.denyNext++
    },
    get loginAs() {
      return state.loginAs
    },
    set loginAs(v: string | undefined) {
      state.loginAs = v
    },
    setTtl: (t) => {
      Object.assign(ttl, t)
    },
    oidc,
    clientConfig: () => {
      configPromise ??= oidcClient.discovery(new URL(issuer), CLIENT_ID, undefined, oidcClient.None(), {
        execute: [oidcClient.allowInsecureRequests],
      })
      return configPromise
    },
    stop: async () => {
      if (stopped) return
      stopped = true
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      agent.destroy()
      await closed
    },
    close: () => tp.stop(),
  }
  return tp
}

// ---------------------------------------------------------------- mintTokens

/**
 * Obtain a REAL token set from the provider: PKCE authorization-code flow with openid-client
 * and the fetch "browser" (Codex's authorize parameters). The token call is recorded in
 * provider.calls as { grantType: 'authorization_code', via: 'form' }.
 */
export async function mintTokens(
  provider: TestProvider,
  opts: { account?: string; scope?: string } = {},
): Promise<TokenSet> {
  const account = opts.account ?? provider.defaultAccount
  if (!provider.accounts[account]) throw new Error(`mintTokens: unknown account ${account}`)
  const config = await provider.clientConfig()
  const pkceCodeVerifier = oidcClient.randomPKCECodeVerifier()
  const codeChallenge = await oidcClient.calculatePKCECodeChallenge(pkceCodeVerifier)
  const expectedState = oidcClient.randomState()
  const authUrl = oidcClient.buildAuthorizationUrl(config, {
    redirect_uri: provider.redirectUri,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state: expectedState,
    scope: opts.scope ?? DEFAULT_SCOPE,
    id_token_add_organizations: 'true',
    codex_cli_simplified_flow: 'true',
    originator: 'codex_cli_rs',
    login_hint: account,
  })
  const callbackUrl = await driveAuthorization(authUrl.href)
  const tokens = await oidcClient.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier, expectedState })
  if (!tokens.id_token || !tokens.refresh_token) throw new Error('mintTokens: provider returned no id_token/refresh_token')
  const claims = tokens.claims()
  const auth = claims?.[AUTH_CLAIM] as { chatgpt_account_id?: string } | undefined
  if (!claims || !auth?.chatgpt_account_id) throw new Error('mintTokens: id token lacks the OpenAI auth claim')
  return {
    idToken: tokens.id_token,
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token,
    accountId: auth.chatgpt_account_id,
    expiresIn: tokens.expiresIn() ?? 0,
    sub: claims.sub,
    email: String(claims.email ?? ''),
  }
}

// ---------------------------------------------------------------- Codex-shaped raw calls

export interface RawAnswer {
  status: number
  headers: Headers
  /** parsed JSON, or undefined */
  json: unknown
  text: string
}

async function rawAnswer(res: Response): Promise<RawAnswer> {
  const text = await res.text()
  let json: unknown
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, json, text }
}

/** POST exactly what Codex 0.171.0 sends to refresh (docs/codex-compat.md#refresh-request), JSON through the adapter. */
export async function codexRefresh(
  provider: TestProvider,
  refreshToken: string,
  opts: { userAgent?: string; refreshReason?: string | null } = {},
): Promise<RawAnswer> {
  const body: Record<string, string> = { client_id: CLIENT_ID, grant_type: 'refresh_token' }
  if (opts.refreshReason) body.refresh_reason = opts.refreshReason
  body.refresh_token = refreshToken
  const res = await fetch(provider.tokenUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': opts.userAgent ?? 'codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb',
      accept: '*/*',
    },
    body: JSON.stringify(body),
  })
  return rawAnswer(res)
}

/** POST exactly what `codex logout` sends (docs/codex-compat.md#logout-and-revocation), JSON through the adapter. */
export async function codexRevoke(
  provider: TestProvider,
  token: string,
  opts: { userAgent?: string; tokenTypeHint?: 'refresh_token' | 'access_token' } = {},
): Promise<RawAnswer> {
  const hint = opts.tokenTypeHint ?? 'refresh_token'
  const body: Record<string, string> = { token, token_type_hint: hint }
  if (hint === 'refresh_token') body.client_id = CLIENT_ID
  const res = await fetch(provider.revokeUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': opts.userAgent ?? 'codex_cli_rs/0.171.0 (Debian 12.0.0; x86_64) dumb',
      accept: '*/*',
    },
    body: JSON.stringify(body),
  })
  return rawAnswer(res)
}
