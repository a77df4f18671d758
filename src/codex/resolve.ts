// Which credential the daemon serves: docs/codex-compat.md#which-credential-is-served (Codex's documented
// "Forcing a specific auth method" rules, made precise).
// Pure. Messages name sources and settings, never a key or token.
import { CODEX_AUTH_MODES } from './authfile.js'
import { decodeAccessTokenClaims, decodeIdTokenClaims } from './jwt.js'
import type { AuthFile, CredentialSource, IdTokenClaims, Problem, Resolved, Settings, TokenData } from '../types.js'
import { clip } from '../text.js'

export interface ResolveInput {
  /** The daemon's own `OPENAI_API_KEY` environment variable. */
  envApiKey: string | null
  settings: Settings
  auth: AuthFile | null
  /** Where `auth` was read (Status.source); default auth.json. */
  source?: CredentialSource
  /** Path shown in `mode_unsupported` problems; defaults to 'auth.json'. */
  authPath?: string | null
}

export interface ResolveResult {
  resolved: Resolved
  problems: Problem[]
}

/** `auth_mode` values Codex 0.171 knows whose credentials we do not serve. */
export const UNSUPPORTED_AUTH_MODES: readonly string[] = Object.freeze(CODEX_AUTH_MODES.filter((m) => m !== 'apikey' && m !== 'chatgpt'))

/** Plans for which "certain account types may also require API-key mode" (Codex E1 logic). */
export const API_KEY_PLANS: readonly string[] = Object.freeze(['enterprise', 'hc', 'edu', 'education', 'business'])

interface KeyCandidate {
  apiKey: string
  source: 'env' | CredentialSource
}

function nonEmpty(v: string | null | undefined): string | null {
  if (typeof v !== 'string') return null
  const t = v.trim()
  return t === '' ? null : t
}

/**
 * The key docs/codex-compat.md#which-credential-is-served means: auth.json's if non-empty after
 * trimming, else the env's. Served trimmed, since surrounding whitespace can never be part of a working key.
 */
export function pickApiKey(auth: AuthFile | null, envApiKey: string | null, stored: CredentialSource = 'auth.json'): KeyCandidate | null {
  const fromFile = nonEmpty(auth?.openaiApiKey)
  if (fromFile !== null) return { apiKey: fromFile, source: stored }
  const fromEnv = nonEmpty(envApiKey)
  if (fromEnv !== null) return { apiKey: fromEnv, source: 'env' }
  return null
}

/** Rule 3's exception: a workspace plan whose owner must use the API key stored next to it. */
function accountTypeNeedsApiKey(auth: AuthFile, claims: IdTokenClaims): boolean {
  if (auth.authMode !== null) return false
  if (nonEmpty(auth.openaiApiKey) === null) return false
  const email = claims.email?.toLowerCase() ?? ''
  if (email.endsWith('@openai.com')) return false
  return claims.planType !== null && API_KEY_PLANS.includes(claims.planType.toLowerCase())
}

function apikey(k: KeyCandidate): Resolved {
  return { kind: 'apikey', apiKey: k.apiKey, source: k.source }
}

function chatgpt(tokens: TokenData, idClaims: IdTokenClaims, source: CredentialSource): Resolved {
  return { kind: 'chatgpt', source, tokens, idClaims, accessClaims: decodeAccessTokenClaims(tokens.accessToken) }
}

function policy(message: string): Problem {
  return { code: 'policy_conflict', message, file: null, line: null, column: null }
}

/** The tokens' workspace: `tokens.account_id`, else the id_token's `chatgpt_account_id` (blank = none). */
function workspaceOf(tokens: TokenData, claims: IdTokenClaims): string | null {
  return nonEmpty(tokens.accountId) ?? nonEmpty(claims.accountId)
}

/**
 * docs/codex-compat.md#which-credential-is-served, in order. Decisions the rules leave open:
 * - An `auth_mode` Codex knows but we do not serve (UNSUPPORTED_AUTH_MODES) wins over everything
 *   except rule 1 (`preferred_auth_method = "apikey"` with a key the narrowing allows): the file
 *   says its credential is something else, so its `tokens` are not ours to serve. The
 *   `mode_unsupported` problem is reported in both cases.
 * - "The narrowing leaves nothing" counts credentials from the env too: with
 *   `forced_login_method = "chatgpt"` and only an env key, the answer is `forbidden`, not `none`.
 * - Rule 3's account-type exception needs a key the narrowing allows; under
 *   `forced_login_method = "chatgpt"` the tokens are served.
 * - The workspace restriction is checked only when tokens would be served (an API key is exempt,
 *   as in Codex); a mismatch is `forbidden`, not a fall-through to a key.
 */
export function resolveAuth(input: ResolveInput): ResolveResult {
  const { settings, auth } = input
  const problems: Problem[] = []
  const forced = settings.forcedLoginMethod
  const keyAllowed = forced !== 'chatgpt'
  const tokensAllowed = forced !== 'api'

  const stored = input.source ?? 'auth.json'
  const key = pickApiKey(auth, input.envApiKey, stored)
  const tokens = auth?.tokens ?? null
  const usableKey = keyAllowed ? key : null

  // Rule 1 (also the one way past an unsupported auth_mode).
  const rule1 = settings.preferredAuthMethod === 'apikey' && usableKey !== null

  if (auth?.authMode != null && UNSUPPORTED_AUTH_MODES.includes(auth.authMode)) {
    const file = input.authPath ?? 'auth.json'
    problems.push({
      code: 'mode_unsupported',
      message: `auth_mode "${auth.authMode}" is valid for Codex but not served by codex-authd` +
        (rule1 ? '; serving the API key because preferred_auth_method = "apikey"' : ''),
      file,
      line: null,
      column: null,
    })
    if (!rule1) return { resolved: { kind: 'unsupported', mode: auth.authMode }, problems }
  }

  if (rule1) return { resolved: apikey(usableKey), problems }

  // Rule 2.
  if (auth?.authMode === 'apikey' && usableKey !== null) return { resolved: apikey(usableKey), problems }

  // Rule 3.
  if (tokens !== null && tokensAllowed) {
    const idClaims = decodeIdTokenClaims(tokens.idToken)
    if (usableKey !== null && usableKey.source !== 'env' && accountTypeNeedsApiKey(auth as AuthFile, idClaims)) {
      return { resolved: apikey(usableKey), problems }
    }
    const allowed = settings.forcedChatgptWorkspaceIds
    if (allowed !== null) {
      const ws = workspaceOf(tokens, idClaims)
      if (ws === null || !allowed.includes(ws)) {
        const message =
          `Login is restricted to workspace(s) ${clip(allowed.join(', '))}, but current credentials ` +
          (ws === null ? 'carry no workspace id' : `belong to ${clip(ws)}`) +
          ' (forced_chatgpt_workspace_id). Log in with an allowed workspace; auth.json is left untouched.'
        problems.push(policy(message))
        return { resolved: { kind: 'forbidden', message }, problems }
      }
    }
    return { resolved: chatgpt(tokens, idClaims, stored), problems }
  }

  // Rule 4.
  if (usableKey !== null) return { resolved: apikey(usableKey), problems }

  // Narrowing left nothing although something exists: a policy conflict, not "not logged in".
  if (forced === 'api' && tokens !== null) {
    const message =
      'API key login is required (forced_login_method = "api"), but only ChatGPT tokens are available. ' +
      'Log in with an API key; auth.json is left untouched.'
    problems.push(policy(message))
    return { resolved: { kind: 'forbidden', message }, problems }
  }
  if (forced === 'chatgpt' && key !== null) {
    const from = key.source === 'env' ? 'the OPENAI_API_KEY environment variable' : key.source === 'keyring' ? 'the keyring' : 'auth.json'
    const message =
      `ChatGPT login is required (forced_login_method = "chatgpt"), but only an API key (from ${from}) is available. ` +
      'Log in with ChatGPT; auth.json is left untouched.'
    problems.push(policy(message))
    return { resolved: { kind: 'forbidden', message }, problems }
  }

  // Rule 5.
  return { resolved: { kind: 'none' }, problems }
}
