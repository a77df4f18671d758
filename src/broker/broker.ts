// The refresh broker (docs/broker.md): Codex's own refresh and revoke requests, forwarded by the
// `codex-auth exec` listener, answered from the daemon's single flight. classify.ts decides; this
// file acts on the decision and shapes the HTTP answer the listener sends back verbatim.
//
// The one place a refresh token leaves the daemon: an answer carries the new refresh token to the
// caller that presented the one it replaced (possession of the previous token is the proof), so
// that Codex's own write of auth.json leaves the file holding exactly what the daemon committed.
import { decodeAccessTokenClaims } from '../codex/jwt.js'
import type { Logger } from '../log.js'
import type { BrokerState, SpendEntry } from '../refresh/refresher.js'
import type { BrokerAnswer, BrokerCounters, BrokerRefreshParams, BrokerRevokeParams } from '../rpc/contract.js'
import { orTimeout } from '../timeout.js'
import type { TokenData } from '../types.js'
import { classify, emptyGuard, freshEnough, noteRecoverySpend, noteRestated, refreshReason, type BrokerView, type Decision, type IssuedTokens, type SpendRecord } from './classify.js'

/** The served home's refresher, as far as the broker uses it. */
export interface BrokerRefresher {
  brokerState(): BrokerState
  brokerSpend(reason: string): Promise<void>
}

export interface BrokerDeps {
  /** The refresher of the home served now; null: nothing is served. */
  refresher(): BrokerRefresher | null
  /** Re-read auth.json (the state's reload). */
  reload(): Promise<void>
  /** Revoke these tokens at the issuer (the logout path's revocation); true when the issuer confirmed. */
  revoke(tokens: TokenData): Promise<boolean>
  /** The logout path without its revocation: remove the credential under Codex's locks. */
  remove(): Promise<unknown>
  log: Logger
  now?: () => number
  /** Multiplies the recovery guard's delays (a test knob: CODEX_AUTHD_RECOVERY_SCALE); default 1. */
  recoveryScale?: number
  /** How long a request waits for a spend to be journaled before it answers 503 (default 20 s). */
  settleWaitMs?: number
  /** After a revoke, how long Codex has to remove auth.json itself before the daemon does (default 5 s). */
  removeGraceMs?: number
}

/** The answers a broker request can get, as counted in `status` (docs/broker.md#counters). */
export type AnswerName = 'spent' | 'shared' | 'current' | 'denied' | 'unavailable' | 'bad_request' | 'revoked' | 'revoke_unknown'

const MAX_ROUNDS = 6

export class Broker {
  private guard = emptyGuard()
  /** A spend this broker started and its requests wait for: one arriving meanwhile waits for it too. */
  private spending: Promise<void> | null = null
  private readonly requests: Record<string, number> = {}
  private readonly answers: Record<string, number> = {}
  private readonly now: () => number

  constructor(private readonly deps: BrokerDeps) {
    this.now = deps.now ?? Date.now
  }

  counters(): BrokerCounters {
    return { requestsByReason: { ...this.requests }, answers: { ...this.answers } }
  }

  /** Codex's refresh request (its exact body fields), answered as the token endpoint would. */
  async refresh(params: BrokerRefreshParams): Promise<BrokerAnswer> {
    const reason = refreshReason(params.refresh_reason)
    this.count(this.requests, `refresh:${reason}`)
    const answer = await this.decide(params.refresh_token, reason)
    this.count(this.answers, answer.name)
    // Never the token: which way the request went, and why.
    this.deps.log.info({ reason, answer: answer.name, status: answer.status, ...(answer.why ? { why: answer.why } : {}) }, 'broker refresh request')
    return { status: answer.status, body: answer.body }
  }

  /** Codex's revoke request: the daemon's logout, for a caller that holds the current token. */
  async revoke(params: BrokerRevokeParams): Promise<BrokerAnswer> {
    this.count(this.requests, 'revoke')
    let proven = this.holdsCurrent(params.token)
    if (!proven) {
      await this.deps.reload()
      proven = this.holdsCurrent(params.token)
    }
    if (!proven) {
      // RFC 7009 §2.2: an unknown token is answered 200 too. Nothing is removed for it.
      this.count(this.answers, 'revoke_unknown')
      this.deps.log.info({ answer: 'revoke_unknown' }, 'broker revoke request')
      return { status: 200, body: {} }
    }
    // Revoked upstream once, here; the file is Codex's to remove right after our answer (it then
    // says "Successfully logged out"; had we removed it first, "Not logged in"). If it has not
    // within the grace, the daemon removes it: the revocation is never left half done.
    const tokens = this.deps.refresher()!.brokerState().current!
    const revoked = await this.deps.revoke(tokens)
    this.count(this.answers, 'revoked')
    this.deps.log.info({ answer: 'revoked', revoked }, 'broker revoke request')
    void this.removeUnlessGone(tokens.refreshToken)
    return { status: 200, body: {} }
  }

  private async removeUnlessGone(refreshToken: string): Promise<void> {
    const deadline = this.now() + (this.deps.removeGraceMs ?? 5_000)
    const stillThere = (): boolean => this.deps.refresher()?.brokerState().current?.refreshToken === refreshToken
    while (this.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      await this.deps.reload().catch(() => {})
      if (!stillThere()) return
    }
    try {
      if (stillThere()) await this.deps.remove()
    } catch (e) {
      this.deps.log.warn({ err: { type: (e as Error)?.name } }, 'a revoked credential could not be removed')
    }
  }

  private holdsCurrent(token: string): boolean {
    const cur = this.deps.refresher()?.brokerState().current ?? null
    return cur !== null && token !== '' && (token === cur.refreshToken || token === cur.accessToken)
  }

  private async decide(presented: string, reason: ReturnType<typeof refreshReason>): Promise<Answer> {
    let reread = false
    let spentHere = false
    for (let round = 0; round < MAX_ROUNDS; round++) {
      // Before the refresher records its spend (it re-reads auth.json first), the guard has
      // counted it already: decide only once it is recorded.
      if (this.spending !== null) await this.spending
      const refresher = this.deps.refresher()
      if (refresher === null) return { name: 'unavailable', why: 'not_served', ...unavailable('This home is not served by codex-authd') }
      const state = refresher.brokerState()
      const now = this.now()
      const d: Decision = classify({ refreshToken: presented, reason, reread }, viewOf(state, now), this.guard, this.deps.recoveryScale ?? 1)
      switch (d.kind) {
        case 'spend': {
          // One spend per request: a result that is not good enough is not spent again at once.
          if (spentHere) return { name: 'unavailable', why: 'not_fresh', ...unavailable('The token endpoint issued no longer-lived token') }
          if (reason === 'unauthorized_recovery') this.guard = noteRecoverySpend(this.guard, state.current!.accessToken, now, this.deps.recoveryScale ?? 1)
          spentHere = true
          const spend = refresher.brokerSpend(reason).finally(() => {
            if (this.spending === spend) this.spending = null
          })
          this.spending = spend
          await spend
          continue
        }
        case 'await': {
          const entry = state.spends.get(d.spent)
          if (entry !== undefined && !(await this.settled(entry))) return { name: 'unavailable', why: 'settle_timeout', ...unavailable('The token refresh is still running') }
          continue
        }
        case 'reread':
          await this.deps.reload()
          reread = true
          continue
        case 'answer': {
          if (d.restated) this.guard = noteRestated(this.guard, d.tokens.accessToken)
          // Only once the result survives a crash of the daemon (docs/broker.md#the-reply-contract).
          const entry = spendOf(state.spends, d.tokens.refreshToken)
          if (entry !== undefined && !(await this.settled(entry))) return { name: 'unavailable', why: 'settle_timeout', ...unavailable('The token refresh is still being saved') }
          if (!freshEnough(d.tokens, this.now())) continue // it aged while we waited: decide again
          const name: AnswerName = spentHere ? 'spent' : d.from === 'spend' ? 'shared' : 'current'
          return { name, status: 200, body: { id_token: d.tokens.idToken, access_token: d.tokens.accessToken, refresh_token: d.tokens.refreshToken } }
        }
        case 'denied':
          return { name: 'denied', why: d.why, status: 401, body: openAiError(deniedMessage(d.code), 'invalid_request_error', d.code) }
        case 'unavailable':
          return { name: 'unavailable', why: d.why, ...unavailable(unavailableMessage(d.why)) }
      }
    }
    return { name: 'unavailable', why: 'undecided', ...unavailable('The token refresh is still running') }
  }

  private async settled(entry: SpendEntry): Promise<boolean> {
    return (await orTimeout(entry.settled.then(() => true), this.deps.settleWaitMs ?? 20_000, false)) === true
  }

  private count(m: Record<string, number>, k: string): void {
    m[k] = (m[k] ?? 0) + 1
  }
}

interface Answer extends BrokerAnswer {
  name: AnswerName
  why?: string
}

function issued(t: TokenData): IssuedTokens {
  const exp = decodeAccessTokenClaims(t.accessToken).exp
  return { idToken: t.idToken, accessToken: t.accessToken, refreshToken: t.refreshToken, accessExpMs: exp === null ? null : exp * 1000 }
}

function viewOf(state: BrokerState, now: number): BrokerView {
  const spends = new Map<string, SpendRecord>()
  for (const [k, e] of state.spends) {
    spends.set(
      k,
      e.state === 'in_flight'
        ? { state: 'in_flight' }
        : e.state === 'done'
          ? { state: 'done', result: issued(e.tokens) }
          : { state: 'failed', permanent: e.failure.permanent, kind: e.failure.kind },
    )
  }
  return {
    current: state.current === null ? null : issued(state.current),
    spends,
    permanentKind: state.permanentKind,
    backoffUntil: state.backoffUntil,
    loopGuardUntil: state.loopGuardUntil,
    now,
  }
}

/** The spend whose result holds this refresh token, if the daemon made it. */
function spendOf(spends: ReadonlyMap<string, SpendEntry>, refreshToken: string): SpendEntry | undefined {
  for (const e of spends.values()) if (e.state === 'done' && e.tokens.refreshToken === refreshToken) return e
  return undefined
}

/** OpenAI's error shape (docs/codex-compat.md#refresh-errors): Codex reads `error.code`. */
function openAiError(message: string, type: string, code: string): Record<string, unknown> {
  return { error: { message, type, param: null, code } }
}

/** A 5xx: Codex keeps its login and tries again later. */
export function unavailable(message: string): BrokerAnswer {
  return { status: 503, body: openAiError(message, 'server_error', 'temporarily_unavailable') }
}

export function badRequest(message: string, code: string): BrokerAnswer {
  return { status: 400, body: openAiError(message, 'invalid_request_error', code) }
}

function deniedMessage(code: string): string {
  switch (code) {
    case 'refresh_token_reused':
      return 'Your refresh token has already been used to generate a new access token. Please try signing in again.'
    case 'refresh_token_expired':
      return 'Your refresh token has expired. Please try signing in again.'
    case 'refresh_token_invalidated':
      return 'Your refresh token has been invalidated. Please try signing in again.'
    default:
      return 'Your refresh token is not valid. Please try signing in again.'
  }
}

function unavailableMessage(why: string): string {
  switch (why) {
    case 'backoff':
    case 'spend_failed':
      return 'The token endpoint could not be reached; codex-authd retries later'
    case 'recovery_backoff':
    case 'recovery_used':
      return 'The backend rejected the refreshed access token too; codex-authd waits before refreshing again'
    default:
      return 'The token endpoint issued no longer-lived token'
  }
}
