// JWT payload decoding, no signature check: Codex never verifies the id_token or access_token
// either, it only reads claims. Pure: no I/O.
import type { AccessTokenClaims, IdTokenClaims } from '../types.js'
import { hasLoneSurrogate } from '../text.js'

/** Claim namespaces OpenAI puts in its tokens (login/src/token_data.rs). */
export const AUTH_CLAIM = 'https://api.openai.com/auth'
export const PROFILE_CLAIM = 'https://api.openai.com/profile'

const BASE64URL_CHARS = /^[A-Za-z0-9_-]*$/
const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * Base64url decoding. `strict` is exactly what Codex's `URL_SAFE_NO_PAD` engine accepts (url-safe
 * alphabet, no `=`, canonical trailing bits); otherwise padding and the standard alphabet are
 * tolerated too, which is harmless when we only read claims.
 */
export function decodeBase64Url(input: string, strict: boolean): Uint8Array | null {
  let s = input
  if (!strict) s = s.replace(/={1,2}$/, '').replace(/\+/g, '-').replace(/\//g, '_')
  if (!BASE64URL_CHARS.test(s)) return null
  const rem = s.length % 4
  if (rem === 1) return null
  if (strict && rem !== 0) {
    // The unused low bits of the last symbol must be zero (base64 crate: InvalidLastSymbol).
    const last = BASE64URL_ALPHABET.indexOf(s[s.length - 1] ?? 'A')
    const mask = rem === 2 ? 0x0f : 0x03
    if ((last & mask) !== 0) return null
  }
  return Buffer.from(s, 'base64url')
}

/** The first three dot-separated parts; Codex takes three and ignores anything after them. */
function jwtParts(token: string): [string, string, string] | null {
  const parts = token.split('.')
  const [h, p, s] = parts
  if (h === undefined || p === undefined || s === undefined) return null
  if (h === '' || p === '' || s === '') return null
  return [h, p, s]
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function payloadJson(token: string, strict: boolean): unknown {
  const parts = jwtParts(token)
  if (!parts) return undefined
  const bytes = decodeBase64Url(parts[1], strict)
  if (!bytes) return undefined
  try {
    // serde_json::from_slice rejects invalid UTF-8 and a BOM; so do we.
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

/** The payload of a JWT-shaped token as a JSON object, or null. Never verifies a signature. */
export function decodeJwtPayload(token: string): Record<string, unknown> | null {
  if (typeof token !== 'string') return null
  const payload = payloadJson(token, false)
  return isPlainObject(payload) ? payload : null
}

// A claim Codex reads is deserialized into a Rust String: JSON.parse takes a lone-surrogate escape
// ("\ud800") that serde_json refuses, so such a claim makes Codex reject the whole file.
const isOptString = (v: unknown): boolean => v === undefined || v === null || (typeof v === 'string' && !hasLoneSurrogate(v))
const isOptObject = (v: unknown): boolean => v === undefined || v === null || isPlainObject(v)

/**
 * Whether Codex 0.171 would accept this as `tokens.id_token` (otherwise it rejects all of
 * auth.json): three non-empty parts, a strict base64url payload holding a JSON object whose
 * claims that Codex reads have the types it expects (strings or null).
 */
export function isCodexValidIdToken(token: string): boolean {
  if (typeof token !== 'string') return false
  const payload = payloadJson(token, true)
  if (!isPlainObject(payload)) return false
  if (!isOptString(payload.email)) return false
  const profile = payload[PROFILE_CLAIM]
  const auth = payload[AUTH_CLAIM]
  if (!isOptObject(profile) || !isOptObject(auth)) return false
  if (isPlainObject(profile) && !isOptString(profile.email)) return false
  if (isPlainObject(auth)) {
    for (const k of ['chatgpt_plan_type', 'chatgpt_user_id', 'user_id', 'chatgpt_account_id']) {
      if (!isOptString(auth[k])) return false
    }
  }
  return true
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null
}

/** The claims Codex reads from the id_token. Never throws; null for anything missing. */
export function decodeIdTokenClaims(idToken: string): IdTokenClaims {
  const payload = decodeJwtPayload(idToken)
  const none: IdTokenClaims = { email: null, planType: null, userId: null, accountId: null }
  if (!payload) return none
  const profile = payload[PROFILE_CLAIM]
  const auth = payload[AUTH_CLAIM]
  const email = str(payload.email) ?? (isPlainObject(profile) ? str(profile.email) : null)
  if (!isPlainObject(auth)) return { ...none, email }
  return {
    email,
    planType: str(auth.chatgpt_plan_type),
    userId: str(auth.chatgpt_user_id) ?? str(auth.user_id),
    accountId: str(auth.chatgpt_account_id),
  }
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

/** `exp` and `iat` of the access token; opaque (non-JWT) tokens give nulls. */
export function decodeAccessTokenClaims(accessToken: string): AccessTokenClaims {
  const payload = decodeJwtPayload(accessToken)
  if (!payload) return { exp: null, iat: null }
  return { exp: num(payload.exp), iat: num(payload.iat) }
}
