// The token calls of a login and a logout: the code exchange and revocation. Kind `openai` sends
// exactly what Codex sends (docs/codex-compat.md#browser-login, #logout-and-revocation); kind `oidc`
// goes through openid-client against the discovered endpoints. Never throws a message that holds a
// secret.
import type { IssuerConfig } from '../net/issuer.js'
import { oidcConfiguration, openAiEndpoints, originator } from '../net/issuer.js'
import { NetworkError, networkMessage, post, type HttpAnswer } from '../net/http.js'
import { orTimeout } from '../timeout.js'
import { VERSION } from '../version.js'
import { LoginError, safeCode } from './errors.js'

export const EXCHANGE_TIMEOUT_MS = 30_000
/** Codex gives the revoke call 10 s (docs/codex-compat.md#logout-and-revocation). */
export const REVOKE_TIMEOUT_MS = 10_000

/** The three tokens a ChatGPT login must bring (Codex rejects an answer without any of them). */
export interface LoginTokens {
  idToken: string
  accessToken: string
  refreshToken: string
}

export function userAgent(): string {
  return `codex-authd/${VERSION}`
}

/** The tokens of a token-endpoint answer body, or null when one of the three is missing. */
export function tokensFromBody(body: unknown): LoginTokens | null {
  if (typeof body !== 'object' || body === null) return null
  const b = body as Record<string, unknown>
  const { id_token: idToken, access_token: accessToken, refresh_token: refreshToken } = b
  if (typeof idToken !== 'string' || typeof accessToken !== 'string' || typeof refreshToken !== 'string') return null
  if (idToken === '' || accessToken === '' || refreshToken === '') return null
  return { idToken, accessToken, refreshToken }
}

/** "HTTP 400 (invalid_grant)" and the like: status and the server's error code, nothing else. */
export function describeAnswer(a: HttpAnswer): string {
  switch (a.type) {
    case 'network':
      return networkMessage(a.host, a.code)
    case 'timeout':
      return networkMessage(a.host, 'timeout')
    case 'unparsable':
      return `HTTP ${a.status} with a body that is not JSON`
    case 'http': {
      const b = (a.body ?? {}) as Record<string, unknown>
      const err = b.error
      const code = safeCode(err) ?? (typeof err === 'object' && err !== null ? safeCode((err as Record<string, unknown>).code) : null)
      return `HTTP ${a.status}${code ? ` (${code})` : ''}`
    }
  }
}

export interface OpenAiExchange {
  code: string
  redirectUri: string
  codeVerifier: string
}

/**
 * Codex's code exchange: form-encoded POST to `{issuer}/oauth/token` with grant_type, code,
 * redirect_uri, client_id, code_verifier; the answer must carry all three tokens.
 */
export async function exchangeCodeOpenAi(issuer: IssuerConfig, env: NodeJS.ProcessEnv, x: OpenAiExchange, signal?: AbortSignal): Promise<LoginTokens> {
  const url = openAiEndpoints(issuer.issuer, env).token
  const answer = await post(
    url,
    {
      grant_type: 'authorization_code',
      code: x.code,
      redirect_uri: x.redirectUri,
      client_id: issuer.clientId,
      code_verifier: x.codeVerifier,
    },
    { encoding: 'form', timeoutMs: EXCHANGE_TIMEOUT_MS, headers: { originator: originator(env), 'user-agent': userAgent() } },
  )
  if (signal?.aborted) throw new LoginError('login_failed', 'the login was ended')
  if (answer.type === 'http' && answer.status >= 200 && answer.status < 300) {
    const tokens = tokensFromBody(answer.body)
    if (tokens) return tokens
    throw new LoginError('login_failed', 'Token exchange failed: the answer lacks an id_token, access_token or refresh_token')
  }
  throw new LoginError('login_failed', `Token exchange failed: ${describeAnswer(answer)}`)
}

/** What openid-client threw, as a safe one-liner (its code and the server's error code). */
export function describeOidcError(e: unknown): string {
  if (e instanceof NetworkError) return e.message
  const cause = (e as { cause?: unknown } | null)?.cause
  if (cause instanceof NetworkError) return cause.message
  const o = (e ?? {}) as Record<string, unknown>
  const parts: string[] = []
  const code = safeCode(o.code)
  if (code) parts.push(code)
  const error = safeCode(o.error)
  if (error) parts.push(error)
  const status = typeof o.status === 'number' ? o.status : null
  if (status !== null) parts.push(`HTTP ${status}`)
  const answered = o.cause as { status?: unknown } | undefined
  if (status === null && answered && typeof answered.status === 'number') parts.push(`HTTP ${answered.status}`)
  return parts.length > 0 ? parts.join(', ') : e instanceof Error ? e.name : 'error'
}

/** A token set from openid-client, checked to hold all three tokens. */
export function tokensFromOidc(t: { id_token?: string; access_token?: string; refresh_token?: string }): LoginTokens {
  const tokens = tokensFromBody(t)
  if (!tokens) throw new LoginError('login_failed', 'The issuer answered without an id_token, access_token or refresh_token')
  return tokens
}

/** Kind oidc: openid-client's authorizationCodeGrant with PKCE and the state check. */
export async function exchangeCodeOidc(
  issuer: IssuerConfig,
  env: NodeJS.ProcessEnv,
  callbackUrl: URL,
  codeVerifier: string,
  expectedState: string,
): Promise<LoginTokens> {
  const client = await import('openid-client')
  let result
  try {
    const config = await oidcConfiguration(issuer, env)
    result = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: codeVerifier, expectedState })
  } catch (e) {
    throw new LoginError('login_failed', `Token exchange failed: ${describeOidcError(e)}`)
  }
  return tokensFromOidc(result)
}

export interface RevokeInput {
  accessToken: string
  refreshToken: string
}

/**
 * Revokes as `codex logout` does: the refresh token (JSON {token, token_type_hint:"refresh_token",
 * client_id}); when the refresh token is "" the access token ({token, token_type_hint:
 * "access_token"}, no client_id). Bounded by 10 s; true only for a 2xx answer. Never throws.
 */
export async function revokeTokens(issuer: IssuerConfig, env: NodeJS.ProcessEnv, t: RevokeInput, timeoutMs = REVOKE_TIMEOUT_MS): Promise<boolean> {
  const byRefresh = t.refreshToken !== ''
  const token = byRefresh ? t.refreshToken : t.accessToken
  if (token === '') return false
  if (issuer.kind === 'openai') {
    const body: Record<string, string> = byRefresh
      ? { token, token_type_hint: 'refresh_token', client_id: issuer.clientId }
      : { token, token_type_hint: 'access_token' }
    const url = openAiEndpoints(issuer.issuer, env).revoke
    const a = await post(url, body, { encoding: 'json', timeoutMs, headers: { originator: originator(env), 'user-agent': userAgent() } })
    return a.type === 'http' && a.status >= 200 && a.status < 300
  }
  try {
    const client = await import('openid-client')
    const work = (async () => {
      const config = await oidcConfiguration(issuer, env)
      await client.tokenRevocation(config, token, { token_type_hint: byRefresh ? 'refresh_token' : 'access_token' })
      return true
    })()
    return await orTimeout(work.catch(() => false), timeoutMs, false)
  } catch {
    return false
  }
}
