// When to refresh, how to read a failure, how long to back off (docs/refresh.md). Pure: every input,
// the clock and the jitter included, comes in as a value.
import type { RefreshFailureKind } from '../rpc/contract.js'

export const SECOND = 1000
export const MINUTE = 60 * SECOND
export const DAY = 24 * 60 * MINUTE

/** Refresh no later than this before `exp`: far outside Codex's own 300 s window. */
export const REFRESH_MARGIN_MS = 10 * MINUTE
/** Never refresh sooner than this after the last refresh (a server handing out short tokens). */
export const LOOP_GUARD_MS = 30 * SECOND
/** Without `exp`: a day before Codex's 8-day rule. */
export const NO_EXP_MAX_AGE_MS = 7 * DAY
/** Timers re-check the wall clock at least this often, so a laptop that slept is on time. */
export const TIMER_CHUNK_MS = 10 * MINUTE
export const BACKOFF_MIN_MS = 1 * SECOND
export const BACKOFF_MAX_MS = 5 * MINUTE

export interface DueInput {
  /** access-token claims, seconds since the epoch */
  exp: number | null
  iat: number | null
  /** `last_refresh` in ms since the epoch, when parsable */
  lastRefreshMs: number | null
  /** when this daemon first saw this access token, ms */
  firstSeenMs: number
  /** the last successful refresh anyone made that we know of, ms (loop guard) */
  lastRefreshDoneMs: number | null
  /** in [-1, 1]: spreads refreshes of many daemons over ±5% of the lifetime (at most ±2 min) */
  jitter: number
}

/** ms since the epoch at which the tokens should be refreshed, or null for never. */
export function refreshDueAt(input: DueInput): number | null {
  let due: number
  if (input.exp !== null) {
    const expMs = input.exp * SECOND
    const issuedMs = input.iat !== null ? input.iat * SECOND : (input.lastRefreshMs ?? input.firstSeenMs)
    const lifetime = Math.max(0, expMs - issuedMs)
    const spread = Math.min(2 * MINUTE, lifetime * 0.05) * clamp(input.jitter, -1, 1)
    due = Math.min(issuedMs + (2 / 3) * lifetime + spread, expMs - REFRESH_MARGIN_MS)
  } else {
    if (input.lastRefreshMs === null) return null
    due = input.lastRefreshMs + NO_EXP_MAX_AGE_MS
  }
  if (input.lastRefreshDoneMs !== null) due = Math.max(due, input.lastRefreshDoneMs + LOOP_GUARD_MS)
  return due
}

/** How long to sleep before looking at the clock again. */
export function timerDelay(dueAtMs: number, nowMs: number): number {
  return clamp(dueAtMs - nowMs, 0, TIMER_CHUNK_MS)
}

/** Backoff for the n-th consecutive transient failure (n >= 1): 1 s doubling to 5 min, ±20%. */
export function backoffDelay(attempt: number, jitter: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt - 1))
  return Math.round(clamp(base * (1 + 0.2 * clamp(jitter, -1, 1)), BACKOFF_MIN_MS, BACKOFF_MAX_MS))
}

export interface RefreshFailure {
  kind: RefreshFailureKind
  permanent: boolean
  /** Codex's own words, for status and errors. No secret, no server text. */
  message: string
  /** HTTP status, when there was an answer. */
  status: number | null
}

/** What the token endpoint answered, as far as classification needs it. */
export type TokenAnswer =
  | { type: 'http'; status: number; body: unknown }
  | { type: 'network'; code: string; host?: string }
  | { type: 'timeout'; host?: string }
  | { type: 'unparsable'; status: number }

const MESSAGES: Record<RefreshFailureKind, string> = {
  expired: 'Your access token could not be refreshed because your refresh token has expired. Please log out and sign in again.',
  reused: 'Your access token could not be refreshed because your refresh token was already used. Please log out and sign in again.',
  revoked: 'Your access token could not be refreshed because your refresh token was revoked. Please log out and sign in again.',
  rejected: 'Your access token could not be refreshed. Please log out and sign in again.',
  transient: 'Failed to refresh token',
}

/** The error code of an answer as Codex reads it: `error.code`, else `error`, else `code`. */
export function answerCode(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return null
  const b = body as Record<string, unknown>
  const err = b.error
  if (typeof err === 'object' && err !== null && typeof (err as Record<string, unknown>).code === 'string') {
    return ((err as Record<string, unknown>).code as string).toLowerCase()
  }
  if (typeof err === 'string') return err.toLowerCase()
  if (typeof b.code === 'string') return b.code.toLowerCase()
  return null
}

/** Classification as Codex does it (docs/codex-compat.md#refresh-errors). */
export function classifyFailure(answer: TokenAnswer): RefreshFailure {
  // The host named when known: "ENOTFOUND" alone does not say which name did not resolve.
  if (answer.type === 'network') return transient(null, `Failed to refresh token: network error${answer.host ? ` reaching ${answer.host}` : ''} (${answer.code})`)
  if (answer.type === 'timeout') return transient(null, `Failed to refresh token: the token endpoint${answer.host ? ` (${answer.host})` : ''} did not answer in time`)
  if (answer.type === 'unparsable') return transient(answer.status, 'Failed to refresh token: the token endpoint answer is invalid')
  const { status } = answer
  const code = answerCode(answer.body)
  const known: Record<string, RefreshFailureKind> = {
    refresh_token_expired: 'expired',
    refresh_token_reused: 'reused',
    refresh_token_invalidated: 'revoked',
  }
  const kind = code !== null ? known[code] : undefined
  if (kind !== undefined) return { kind, permanent: true, message: MESSAGES[kind], status }
  if (status === 401 || (status === 400 && code === 'invalid_grant')) {
    return { kind: 'rejected', permanent: true, message: MESSAGES.rejected, status }
  }
  return transient(status, `Failed to refresh token: ${status}`)
}

function transient(status: number | null, message: string): RefreshFailure {
  return { kind: 'transient', permanent: false, message, status }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v))
}
