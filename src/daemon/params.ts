// Params of the methods (docs/contract.md), checked strictly before any method runs: every wrong type
// answers -32602 naming the field in `data.field`. Values a param may hold (an API key) are never
// quoted back.
import {
  GET_AUTH_DEFAULT_MIN_VALIDITY,
  GET_AUTH_MAX_MIN_VALIDITY,
  type BrokerRefreshParams,
  type BrokerRevokeParams,
  type HelloParams,
  type LoginMethod,
  type PlaceholderIssueParams,
  type PlaceholderRevokeParams,
} from '../rpc/contract.js'
import { invalidParams } from '../rpc/errors.js'
import { hasLoneSurrogate, hasUnsafeChars } from '../text.js'

/** Params must be an object or absent; positional arrays are not part of the contract. */
export function paramsObject(params: unknown): Record<string, unknown> {
  if (params === undefined || params === null) return {}
  if (typeof params !== 'object' || Array.isArray(params)) throw invalidParams('params', 'params must be an object')
  return params as Record<string, unknown>
}

export function parseGetAuthParams(params: unknown): { minValiditySeconds: number } {
  const p = paramsObject(params)
  const v = p.minValiditySeconds
  if (v === undefined) return { minValiditySeconds: GET_AUTH_DEFAULT_MIN_VALIDITY }
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > GET_AUTH_MAX_MIN_VALIDITY) {
    throw invalidParams('minValiditySeconds', `minValiditySeconds must be a number from 0 to ${GET_AUTH_MAX_MIN_VALIDITY}`)
  }
  return { minValiditySeconds: v }
}

export interface ParsedLogin {
  method: LoginMethod
  apiKey: string | null
}

/** login params: method required; apiKey only (and required) for "apikey", trimmed, non-empty. */
export function parseLoginParams(params: unknown): ParsedLogin {
  const p = paramsObject(params)
  const method = p.method
  if (method !== 'browser' && method !== 'device' && method !== 'apikey') {
    throw invalidParams('method', 'method must be "browser", "device" or "apikey"')
  }
  if (method !== 'apikey') {
    if (p.apiKey !== undefined) throw invalidParams('apiKey', 'apiKey is only accepted with method "apikey"')
    return { method, apiKey: null }
  }
  const key = typeof p.apiKey === 'string' ? p.apiKey.trim() : ''
  // Never quote the value: it is (or may be) a secret.
  if (key === '') throw invalidParams('apiKey', 'apiKey must be a non-empty string')
  return { method, apiKey: key }
}

export function parseAwaitParams(params: unknown): { loginId: string; timeoutMs: number | null } {
  const p = paramsObject(params)
  if (typeof p.loginId !== 'string' || p.loginId === '') throw invalidParams('loginId', 'loginId must be a non-empty string')
  const t = p.timeoutSeconds
  if (t === undefined) return { loginId: p.loginId, timeoutMs: null }
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 86_400) {
    throw invalidParams('timeoutSeconds', 'timeoutSeconds must be a number from 0 to 86400')
  }
  return { loginId: p.loginId, timeoutMs: Math.round(t * 1000) }
}

export function parseCancelParams(params: unknown): { loginId: string } {
  const p = paramsObject(params)
  if (typeof p.loginId !== 'string' || p.loginId === '') throw invalidParams('loginId', 'loginId must be a non-empty string')
  return { loginId: p.loginId }
}

export function parseLogoutParams(params: unknown): { revoke: boolean } {
  const p = paramsObject(params)
  if (p.revoke !== undefined && typeof p.revoke !== 'boolean') throw invalidParams('revoke', 'revoke must be a boolean')
  return { revoke: p.revoke ?? true }
}

/** A name or version a client gives: printable, at most this long (it goes into the log). */
const MAX_CLIENT_FIELD = 100

export function parseHelloParams(params: unknown): HelloParams {
  const p = paramsObject(params)
  const c = p.client
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw invalidParams('client', 'client must be an object {name, version}')
  const { name, version } = c as Record<string, unknown>
  const field = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_CLIENT_FIELD && /^[\x20-\x7e]+$/.test(v)
  if (!field(name)) throw invalidParams('client.name', `client.name must be printable text of 1 to ${MAX_CLIENT_FIELD} characters`)
  if (!field(version)) throw invalidParams('client.version', `client.version must be printable text of 1 to ${MAX_CLIENT_FIELD} characters`)
  const protocol = p.protocol
  if (typeof protocol !== 'number' || !Number.isSafeInteger(protocol) || protocol < 1) {
    throw invalidParams('protocol', 'protocol must be a positive integer')
  }
  return { client: { name, version }, protocol }
}

/** audit params: `limit`, a whole number from 1 (absent: everything kept). */
export function parseAuditParams(params: unknown): { limit: number | null } {
  const p = paramsObject(params)
  const v = p.limit
  if (v === undefined) return { limit: null }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw invalidParams('limit', 'limit must be a whole number from 1')
  return { limit: v }
}

/** Longest token a broker request may carry: real ones are a few KiB at most. */
const MAX_BROKER_TOKEN = 16 * 1024

function brokerString(p: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const v = p[field]
  if (v === undefined && !required) return undefined
  // Never quote the value: it is (or may be) a token.
  if (typeof v !== 'string' || (required && v === '') || v.length > MAX_BROKER_TOKEN) {
    throw invalidParams(field, `${field} must be ${required ? 'a non-empty' : 'a'} string of at most ${MAX_BROKER_TOKEN} characters`)
  }
  return v
}

/** brokerRefresh: Codex's refresh body (docs/broker.md); unknown fields are ignored, as a token endpoint does. */
export function parseBrokerRefreshParams(params: unknown): BrokerRefreshParams {
  const p = paramsObject(params)
  const out: BrokerRefreshParams = {
    client_id: brokerString(p, 'client_id', true)!,
    grant_type: brokerString(p, 'grant_type', true)!,
    refresh_token: brokerString(p, 'refresh_token', true)!,
  }
  const reason = brokerString(p, 'refresh_reason', false)
  if (reason !== undefined) out.refresh_reason = reason
  return out
}

/** brokerRevoke: Codex's revoke body. */
export function parseBrokerRevokeParams(params: unknown): BrokerRevokeParams {
  const p = paramsObject(params)
  const out: BrokerRevokeParams = { token: brokerString(p, 'token', true)! }
  const hint = brokerString(p, 'token_type_hint', false)
  const client = brokerString(p, 'client_id', false)
  if (hint !== undefined) out.token_type_hint = hint
  if (client !== undefined) out.client_id = client
  return out
}

/** Longest placeholder label (`host:alice@build1`, `sink`). */
export const MAX_PLACEHOLDER_LABEL = 80
/** Longest placeholder id accepted (ours are `ph-` and 16 hex digits). */
const MAX_PLACEHOLDER_ID = 64

function placeholderId(p: Record<string, unknown>, field: string): string {
  const v = p[field]
  if (typeof v !== 'string' || v === '' || v.length > MAX_PLACEHOLDER_ID) throw invalidParams(field, `${field} must be a placeholder id (a string of at most ${MAX_PLACEHOLDER_ID} characters)`)
  return v
}

/** placeholderIssue: a label of 1-80 printable characters (it is shown in lists and logs), `replaces` an id. */
export function parsePlaceholderIssueParams(params: unknown): PlaceholderIssueParams {
  const p = paramsObject(params)
  const label = p.label
  if (typeof label !== 'string' || label === '' || Array.from(label).length > MAX_PLACEHOLDER_LABEL || hasUnsafeChars(label) || hasLoneSurrogate(label)) {
    throw invalidParams('label', `label must be 1 to ${MAX_PLACEHOLDER_LABEL} printable characters`)
  }
  return p.replaces === undefined ? { label } : { label, replaces: placeholderId(p, 'replaces') }
}

export function parsePlaceholderRevokeParams(params: unknown): PlaceholderRevokeParams {
  return { id: placeholderId(paramsObject(params), 'id') }
}
