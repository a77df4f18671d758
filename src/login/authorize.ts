// The pure parts of the browser login: the authorize URL exactly as Codex 0.171.0 prints it
// (docs/codex-compat.md#browser-login), the redirect URI, reading the callback's query, and the workspace rule
// (docs/codex-compat.md#browser-login). No I/O here.
import { statesMatch } from './pkce.js'
import { clip } from '../text.js'

/** The scope Codex 0.171.0 asks for. */
export const CODEX_SCOPE = 'openid profile email offline_access api.connectors.read api.connectors.invoke'
/** The scope of the standard (kind oidc) device grant: no OpenAI-only scopes. */
export const OIDC_DEVICE_SCOPE = 'openid profile email offline_access'
export const DEFAULT_ORIGINATOR = 'codex_cli_rs'
export const CALLBACK_PATH = '/auth/callback'

export interface AuthorizeUrlInput {
  /** `{issuer}/oauth/authorize` (kind openai) or the discovered authorization endpoint. */
  authorizationEndpoint: string
  clientId: string
  redirectUri: string
  codeChallenge: string
  state: string
  /** forced_chatgpt_workspace_id as a list; null or empty: no `allowed_workspace_id`. */
  allowedWorkspaceIds: readonly string[] | null
  /** Codex's `originator` (default codex_cli_rs; env CODEX_INTERNAL_ORIGINATOR_OVERRIDE). */
  originator?: string
}

/**
 * RFC 3986 percent-encoding of everything but the unreserved characters (A-Z a-z 0-9 - . _ ~), as
 * Codex's `urlencoding::encode` does: a space is `%20`, never `+`.
 */
export function percentEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** Codex 0.171.0's redirect URI for a loopback port (127.0.0.1, not localhost). */
export function redirectUriFor(port: number): string {
  return `http://127.0.0.1:${port}${CALLBACK_PATH}`
}

/** The parameters in Codex 0.171.0's order; `allowed_workspace_id` last, comma-joined. */
export function authorizeParams(input: AuthorizeUrlInput): [string, string][] {
  const params: [string, string][] = [
    ['response_type', 'code'],
    ['client_id', input.clientId],
    ['redirect_uri', input.redirectUri],
    ['code_challenge', input.codeChallenge],
    ['code_challenge_method', 'S256'],
    ['state', input.state],
    ['scope', CODEX_SCOPE],
    ['id_token_add_organizations', 'true'],
    ['codex_cli_simplified_flow', 'true'],
    ['originator', input.originator || DEFAULT_ORIGINATOR],
  ]
  if (input.allowedWorkspaceIds && input.allowedWorkspaceIds.length > 0) {
    params.push(['allowed_workspace_id', input.allowedWorkspaceIds.join(',')])
  }
  return params
}

export function buildAuthorizeUrl(input: AuthorizeUrlInput): string {
  const query = authorizeParams(input)
    .map(([k, v]) => `${k}=${percentEncode(v)}`)
    .join('&')
  const sep = input.authorizationEndpoint.includes('?') ? '&' : '?'
  return `${input.authorizationEndpoint}${sep}${query}`
}

/** What a request to /auth/callback carries, judged against the state we sent. */
export type CallbackOutcome =
  | { kind: 'code'; code: string }
  | { kind: 'error'; error: string; description: string | null }
  | { kind: 'state_mismatch' }
  | { kind: 'missing_code' }

/**
 * Reads the callback query. The state is checked first, as Codex does: a request without our
 * state (a stray or forged one) is a mismatch even when it carries an `error`.
 */
export function parseCallback(query: URLSearchParams, expectedState: string): CallbackOutcome {
  if (!statesMatch(expectedState, query.get('state'))) return { kind: 'state_mismatch' }
  const error = query.get('error')
  if (error !== null) return { kind: 'error', error, description: query.get('error_description') }
  const code = query.get('code')
  if (code === null || code === '') return { kind: 'missing_code' }
  return { kind: 'code', code }
}

export type WorkspaceCheck = { ok: true } | { ok: false; message: string }

/**
 * forced_chatgpt_workspace_id after the code exchange: the id token's chatgpt_account_id must be
 * one of the allowed ids (docs/codex-compat.md#browser-login). Account ids are not secrets.
 */
export function checkWorkspace(accountId: string | null, allowed: readonly string[] | null): WorkspaceCheck {
  if (allowed === null || allowed.length === 0) return { ok: true }
  const list = clip(allowed.join(', '))
  if (accountId === null) {
    return { ok: false, message: `Login is restricted to workspace id(s) ${list}, but the token names no workspace (chatgpt_account_id).` }
  }
  if (allowed.includes(accountId)) return { ok: true }
  return { ok: false, message: `Login is restricted to workspace id(s) ${list}; this account belongs to ${clip(accountId)}.` }
}
