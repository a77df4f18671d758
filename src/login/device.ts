// Device-code logins. Kind `openai`: OpenAI's own device API as Codex uses it (docs/codex-compat.md#device-code-login):
// usercode, then poll token (403/404 = pending) until it hands over an authorization code and its
// PKCE verifier, then the normal code exchange with redirect_uri {issuer}/deviceauth/callback.
// Kind `oidc`: RFC 8628 through openid-client.
import { setTimeout as sleep } from 'node:timers/promises'
import type { IssuerConfig } from '../net/issuer.js'
import { oidcConfiguration, openAiEndpoints } from '../net/issuer.js'
import { post } from '../net/http.js'
import { OIDC_DEVICE_SCOPE } from './authorize.js'
import { LoginError, safeCode } from './errors.js'
import { describeAnswer, describeOidcError, exchangeCodeOpenAi, tokensFromOidc, userAgent, type LoginTokens } from './oauth.js'

/** RFC 8628's default interval when the server names none. */
export const DEFAULT_DEVICE_INTERVAL_MS = 5000
/** Consecutive network failures while polling before the login fails. */
export const MAX_POLL_NETWORK_FAILURES = 5
const DEVICE_HTTP_TIMEOUT_MS = 30_000

export interface DeviceLogin {
  verificationUrl: string
  userCode: string
  /** how long the server keeps the code, when it says (ms) */
  expiresInMs: number | null
  /** Polls until the user approves. Throws LoginError; stops when `signal` aborts. */
  poll(signal: AbortSignal): Promise<LoginTokens>
}

export interface DeviceOptions {
  /** interval when the server gives none (or 0) */
  defaultIntervalMs?: number
}

/** OpenAI's `interval`: a string of seconds ("5"), tolerated as a number; null when absent or 0. */
export function parseIntervalSeconds(v: unknown): number | null {
  const n = typeof v === 'string' ? Number(v.trim()) : typeof v === 'number' ? v : NaN
  return Number.isFinite(n) && n > 0 ? n * 1000 : null
}

export interface UserCodeAnswer {
  deviceAuthId: string
  userCode: string
  intervalMs: number | null
}

/** The usercode answer: device_auth_id, user_code (alias usercode), interval. */
export function parseUserCodeAnswer(body: unknown): UserCodeAnswer | null {
  if (typeof body !== 'object' || body === null) return null
  const b = body as Record<string, unknown>
  const userCode = typeof b.user_code === 'string' ? b.user_code : typeof b.usercode === 'string' ? b.usercode : null
  if (typeof b.device_auth_id !== 'string' || b.device_auth_id === '' || !userCode) return null
  return { deviceAuthId: b.device_auth_id, userCode, intervalMs: parseIntervalSeconds(b.interval) }
}

/** The token answer once approved: authorization_code and the server's code_verifier. */
export function parseDeviceTokenAnswer(body: unknown): { authorizationCode: string; codeVerifier: string } | null {
  if (typeof body !== 'object' || body === null) return null
  const b = body as Record<string, unknown>
  if (typeof b.authorization_code !== 'string' || b.authorization_code === '') return null
  if (typeof b.code_verifier !== 'string' || b.code_verifier === '') return null
  return { authorizationCode: b.authorization_code, codeVerifier: b.code_verifier }
}

const ended = (): LoginError => new LoginError('login_failed', 'the login was ended')

export async function startOpenAiDevice(issuer: IssuerConfig, env: NodeJS.ProcessEnv, opts: DeviceOptions = {}): Promise<DeviceLogin> {
  const e = openAiEndpoints(issuer.issuer, env)
  const headers = { originator: env.CODEX_INTERNAL_ORIGINATOR_OVERRIDE || 'codex_cli_rs', 'user-agent': userAgent() }
  const start = await post(e.deviceUserCode, { client_id: issuer.clientId }, { encoding: 'json', timeoutMs: DEVICE_HTTP_TIMEOUT_MS, headers })
  if (start.type === 'http' && start.status === 404) {
    throw new LoginError('login_failed', 'device code login is not enabled for this Codex server. Use the browser login or verify the server URL.')
  }
  if (start.type !== 'http' || start.status < 200 || start.status >= 300) {
    throw new LoginError('login_failed', `Device code request failed: ${describeAnswer(start)}`)
  }
  const uc = parseUserCodeAnswer(start.body)
  if (!uc) throw new LoginError('login_failed', 'Device code request failed: the answer lacks device_auth_id or user_code')
  const intervalMs = uc.intervalMs ?? opts.defaultIntervalMs ?? DEFAULT_DEVICE_INTERVAL_MS

  return {
    verificationUrl: e.deviceVerification,
    userCode: uc.userCode,
    expiresInMs: null,
    async poll(signal) {
      let networkFailures = 0
      for (;;) {
        if (signal.aborted) throw ended()
        const a = await post(
          e.deviceToken,
          { device_auth_id: uc.deviceAuthId, user_code: uc.userCode },
          { encoding: 'json', timeoutMs: DEVICE_HTTP_TIMEOUT_MS, headers },
        )
        if (signal.aborted) throw ended()
        if (a.type === 'http' && a.status >= 200 && a.status < 300) {
          const code = parseDeviceTokenAnswer(a.body)
          if (!code) throw new LoginError('login_failed', 'Device code login failed: the answer lacks authorization_code or code_verifier')
          return exchangeCodeOpenAi(issuer, env, { code: code.authorizationCode, codeVerifier: code.codeVerifier, redirectUri: e.deviceCallback }, signal)
        }
        if (a.type === 'network' || a.type === 'timeout') {
          if (++networkFailures >= MAX_POLL_NETWORK_FAILURES) throw new LoginError('login_failed', `Device code login failed: ${describeAnswer(a)}`)
        } else if (a.status === 403 || a.status === 404) {
          networkFailures = 0 // pending: the user has not approved yet
        } else {
          throw new LoginError('login_failed', `Device code login failed: ${describeAnswer(a)}`)
        }
        await sleep(intervalMs, undefined, { signal }).catch(() => {}) // aborted: the check at the top ends it
      }
    },
  }
}

export async function startOidcDevice(issuer: IssuerConfig, env: NodeJS.ProcessEnv, opts: DeviceOptions = {}): Promise<DeviceLogin> {
  const client = await import('openid-client')
  let config
  let da
  try {
    config = await oidcConfiguration(issuer, env)
    da = await client.initiateDeviceAuthorization(config, { scope: OIDC_DEVICE_SCOPE })
  } catch (e) {
    throw new LoginError('login_failed', `Device authorization request failed: ${describeOidcError(e)}`)
  }
  const cfg = config
  const intervalSeconds = typeof da.interval === 'number' && da.interval > 0 ? da.interval : (opts.defaultIntervalMs ?? DEFAULT_DEVICE_INTERVAL_MS) / 1000
  const response = { ...da, interval: intervalSeconds }
  return {
    // The complete URI (code included) when the server gives one: one click for the user.
    verificationUrl: da.verification_uri_complete ?? da.verification_uri,
    userCode: da.user_code,
    expiresInMs: typeof da.expires_in === 'number' && da.expires_in > 0 ? da.expires_in * 1000 : null,
    async poll(signal) {
      try {
        const t = await client.pollDeviceAuthorizationGrant(cfg, response, undefined, { signal })
        return tokensFromOidc(t)
      } catch (e) {
        if (signal.aborted) throw ended()
        if (e instanceof LoginError) throw e
        const code = safeCode((e as { error?: unknown }).error)
        if (code === 'access_denied') throw new LoginError('login_failed', 'Sign-in was denied (access_denied).')
        if (code === 'expired_token') throw new LoginError('login_failed', 'The device code expired before it was approved.')
        throw new LoginError('login_failed', `Device code login failed: ${describeOidcError(e)}`)
      }
    },
  }
}
