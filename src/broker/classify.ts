// The refresh broker's decisions (docs/broker.md), pure: what to do with a refresh request Codex sent
// to the broker instead of the token endpoint. The daemon's state and the clock are passed in; the
// acting part is broker.ts. Codex's request carries only the refresh token (and why it asks), so
// possession of a refresh token is what authenticates it.

/** `refresh_reason` values Codex 0.171 sends (docs/codex-compat.md#refresh-request); anything else is 'other'. */
export type RefreshReason = 'proactive_expiry' | 'scheduled' | 'unauthorized_recovery' | 'other'

export function refreshReason(v: unknown): RefreshReason {
  return v === 'proactive_expiry' || v === 'scheduled' || v === 'unauthorized_recovery' ? v : 'other'
}

/** The tokens an answer hands out. */
export interface IssuedTokens {
  idToken: string
  accessToken: string
  refreshToken: string
  /** The access token's `exp` in ms, or null without one. */
  accessExpMs: number | null
}

/** What the daemon knows of one spend of a refresh token (keyed by the spent token). */
export type SpendRecord =
  | { state: 'in_flight' }
  /** Answered by the token endpoint and held (pending, journaled or written): `result` is what the daemon commits. */
  | { state: 'done'; result: IssuedTokens }
  | { state: 'failed'; permanent: boolean; kind: string }

/** The daemon's side, as the broker sees it when a request arrives. */
export interface BrokerView {
  /** The tokens the daemon serves and would spend next (a pending result's, else the file's); null: none it can refresh. */
  current: IssuedTokens | null
  /** Spends this daemon made, by spent refresh token (the most recent few). */
  spends: ReadonlyMap<string, SpendRecord>
  /** The refresher's permanent failure for the current refresh token: its kind, or null. */
  permanentKind: string | null
  /** Until when the refresher backs off the current refresh token (ms), or null. */
  backoffUntil: number | null
  /** The refresher's loop guard: no spend that is not a recovery before this (ms), or null. */
  loopGuardUntil: number | null
  now: number
}

/**
 * The broker's own guard against a backend that rejects every access token: each
 * `unauthorized_recovery` spend is counted against the access token it replaced, and a run of them
 * (each new access token rejected again) spaces the next spend out (recoveryDelayMs).
 */
export interface RecoveryGuard {
  /** Access tokens that already got their one recovery spend. Bounded (oldest dropped). */
  recovered: string[]
  /** Consecutive recovery spends: each came less than RECOVERY_RUN_MS after the moment it was allowed. */
  run: number
  lastSpendMs: number | null
  /** Access tokens handed back once to a recovery that arrived just after the spend that issued them (bounded). */
  restated: string[]
}

export const emptyGuard = (): RecoveryGuard => ({ recovered: [], run: 0, lastSpendMs: null, restated: [] })

/** Codex refreshes by itself when its access token has less than this left (docs/codex-compat.md#refresh-triggers). */
export const CODEX_WINDOW_MS = 300_000
/** What an answer's access token must have left beyond Codex's window, so Codex does not ask again at once. */
export const HANDOUT_MARGIN_MS = 30_000
/** A recovery spend this long after it was allowed starts a new run. */
export const RECOVERY_RUN_MS = 10 * 60_000
const RECOVERY_BASE_MS = 30_000
const RECOVERY_MAX_MS = 60 * 60_000
const KEEP_RECOVERED = 32

/** How long after the previous recovery spend the next may come, the run being `run` spends long (>= 1). */
export function recoveryDelayMs(run: number, scale = 1): number {
  return Math.min(RECOVERY_MAX_MS, RECOVERY_BASE_MS * 2 ** Math.max(0, run - 1)) * scale
}

/** Long enough for Codex: more than its 5-minute window (plus a margin) left, or no `exp` at all. */
export function freshEnough(t: IssuedTokens, now: number): boolean {
  return t.accessExpMs === null || t.accessExpMs - now > CODEX_WINDOW_MS + HANDOUT_MARGIN_MS
}

/** The 401 codes Codex reads (docs/codex-compat.md#refresh-errors); every one is permanent for it. */
export type DeniedCode = 'refresh_token_reused' | 'refresh_token_invalidated' | 'refresh_token_expired' | 'invalid_grant'

export type Decision =
  /** Spend the current refresh token (start or join the daemon's single flight). */
  | { kind: 'spend' }
  /** A spend of `spent` is running: wait for it, then decide again. */
  | { kind: 'await'; spent: string }
  /** Answer with tokens the daemon holds already (nothing spent). */
  | { kind: 'answer'; tokens: IssuedTokens; from: 'current' | 'spend'; restated?: true }
  /** Not a token the daemon knows: re-read auth.json, then decide again with `reread`. */
  | { kind: 'reread' }
  /** 401 in OpenAI's error shape: Codex treats it as "sign in again". Only for a token that cannot be good. */
  | { kind: 'denied'; code: DeniedCode; why: 'unknown' | 'superseded' | 'failed' }
  /** 5xx: Codex retries later and keeps its login (docs/codex-compat.md#refresh-errors). */
  | { kind: 'unavailable'; why: 'backoff' | 'recovery_backoff' | 'recovery_used' | 'spend_failed' | 'not_fresh' }

export interface Request {
  refreshToken: string
  reason: RefreshReason
  /** auth.json was re-read since this request arrived. */
  reread: boolean
}

const FAILED_CODES: Record<string, DeniedCode> = {
  expired: 'refresh_token_expired',
  reused: 'refresh_token_reused',
  revoked: 'refresh_token_invalidated',
}

export function deniedCodeFor(kind: string): DeniedCode {
  return FAILED_CODES[kind] ?? 'invalid_grant'
}

/** The decision for one request (docs/broker.md#decisions). */
export function classify(req: Request, view: BrokerView, guard: RecoveryGuard, recoveryScale = 1): Decision {
  const { current, now } = view
  const presented = req.refreshToken
  if (current !== null && presented === current.refreshToken) return forCurrent(req.reason, view, current, guard, recoveryScale)

  const spend = view.spends.get(presented)
  if (spend !== undefined) {
    if (spend.state === 'in_flight') return { kind: 'await', spent: presented }
    if (spend.state === 'failed') {
      return spend.permanent ? { kind: 'denied', code: deniedCodeFor(spend.kind), why: 'failed' } : { kind: 'unavailable', why: 'spend_failed' }
    }
    // The presenter held the token this result replaced: the result is theirs while it is the
    // current one. A result since spent again is settled: never brought back to life.
    if (current === null || spend.result.refreshToken !== current.refreshToken) return { kind: 'denied', code: 'refresh_token_reused', why: 'superseded' }
    if (freshEnough(spend.result, now)) return { kind: 'answer', tokens: spend.result, from: 'spend' }
    // Its access token is too short-lived to hand out: as a request for the current token.
    return forCurrent(req.reason, view, current, guard, recoveryScale)
  }
  if (!req.reread) return { kind: 'reread' }
  return { kind: 'denied', code: 'refresh_token_invalidated', why: 'unknown' }
}

function forCurrent(reason: RefreshReason, view: BrokerView, current: IssuedTokens, guard: RecoveryGuard, recoveryScale: number): Decision {
  const { now } = view
  if (view.permanentKind !== null) return { kind: 'denied', code: deniedCodeFor(view.permanentKind), why: 'failed' }
  const running = view.spends.get(current.refreshToken)
  if (running?.state === 'in_flight') return { kind: 'await', spent: current.refreshToken }
  if (reason === 'unauthorized_recovery') {
    // The backend rejected this access token: only a new one helps, but at most one spend per
    // access token, and a run of rejected new tokens is spaced out.
    if (guard.recovered.includes(current.accessToken)) return { kind: 'unavailable', why: 'recovery_used' }
    if (inRun(guard, now, recoveryScale) && now < guard.lastSpendMs! + recoveryDelayMs(guard.run, recoveryScale)) {
      return { kind: 'unavailable', why: 'recovery_backoff' }
    }
    // Tokens a spend issued moments ago (within the loop guard): the 401 most likely answered a
    // request sent with the access token they replaced, by another of Codex's requests whose
    // recovery has since taken the new refresh token from the answer to the first. Hand them back
    // once, spending nothing; a second recovery for them is a real rejection and spends.
    if (view.loopGuardUntil !== null && view.loopGuardUntil > now && freshEnough(current, now) && !guard.restated.includes(current.accessToken)) {
      return { kind: 'answer', tokens: current, from: 'current', restated: true }
    }
  } else if (freshEnough(current, now)) {
    // Codex saw an old token (it read the file before our refresh landed): the current one serves.
    return { kind: 'answer', tokens: current, from: 'current' }
  }
  if (view.backoffUntil !== null && view.backoffUntil > now) return { kind: 'unavailable', why: 'backoff' }
  // Refreshed moments ago and still not fresh: the endpoint hands out short-lived tokens; another
  // spend now would not do better, and Codex would loop on it.
  if (reason !== 'unauthorized_recovery' && view.loopGuardUntil !== null && view.loopGuardUntil > now) return { kind: 'unavailable', why: 'not_fresh' }
  return { kind: 'spend' }
}

/** A run goes on until RECOVERY_RUN_MS pass without a recovery spend after the next one was allowed. */
function inRun(guard: RecoveryGuard, now: number, scale: number): boolean {
  return guard.lastSpendMs !== null && guard.run > 0 && now - guard.lastSpendMs < recoveryDelayMs(guard.run, scale) + RECOVERY_RUN_MS
}

/** The guard after `accessToken` was handed back to a recovery without a spend (at most once each). */
export function noteRestated(guard: RecoveryGuard, accessToken: string): RecoveryGuard {
  return { ...guard, restated: [...guard.restated.filter((a) => a !== accessToken), accessToken].slice(-KEEP_RECOVERED) }
}

/** The guard after a recovery spend replacing `accessToken` was started at `now`. */
export function noteRecoverySpend(guard: RecoveryGuard, accessToken: string, now: number, recoveryScale = 1): RecoveryGuard {
  const continues = inRun(guard, now, recoveryScale)
  const recovered = [...guard.recovered.filter((a) => a !== accessToken), accessToken].slice(-KEEP_RECOVERED)
  return { recovered, run: continues ? guard.run + 1 : 1, lastSpendMs: now, restated: guard.restated }
}
