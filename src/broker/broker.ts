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
import type { BrokerAnswer, BrokerCounters, BrokerRefreshParams, BrokerRevokeParams, PlaceholderCounters, SocketKind } from '../rpc/contract.js'
import { orTimeout } from '../timeout.js'
import type { TokenData } from '../types.js'
import type { PlaceholderRegistry, Verdict } from './placeholders.js'
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
  /** Placeholders (docs/remote.md): the registry, and saving it (resolves once on disk, or reported). */
  placeholders: { registry: PlaceholderRegistry; save(): Promise<void> }
}

/** What the broker answered, and what the audit records beyond the answer (a placeholder reused). */
export interface BrokerResult extends BrokerAnswer {
  note?: 'placeholder_reused'
}

/** The answers a broker request can get, as counted in `status` (docs/broker.md#counters). */
export type AnswerName = 'spent' | 'shared' | 'current' | 'denied' | 'unavailable' | 'bad_request' | 'revoked' | 'revoke_unknown' | 'placeholder_revoked'

const MAX_ROUNDS = 6

export class Broker {
  private guard = emptyGuard()
  /** A spend this broker started and its requests wait for: one arriving meanwhile waits for it too. */
  private spending: Promise<void> | null = null
  private readonly requests: Record<string, number> = {}
  private readonly answers: Record<string, number> = {}
  private readonly now: () => number
  private readonly ph: PlaceholderCounters & { reuse: number } = { issued: 0, rotated: 0, refused: 0, active: 0, reuse: 0 }
  /** Requests presenting one placeholder at the same time share one answer (and one rotation). */
  private readonly placeholderFlights = new Map<string, Promise<Answer>>()

  constructor(private readonly deps: BrokerDeps) {
    this.now = deps.now ?? Date.now
  }

  counters(): BrokerCounters {
    return { requestsByReason: { ...this.requests }, answers: { ...this.answers } }
  }

  /** Status counters of the placeholders: reuse on its own (the agreed name), the rest together. */
  placeholderCounters(): { placeholderReuse: number; placeholders: PlaceholderCounters } {
    const { reuse, ...rest } = this.ph
    return { placeholderReuse: reuse, placeholders: { ...rest, active: this.deps.placeholders.registry.activeCount() } }
  }

  /** A placeholder was issued (placeholderIssue): counted here with the others. */
  noteIssued(): void {
    this.ph.issued++
  }

  /**
   * Codex's refresh request (its exact body fields), answered as the token endpoint would. On the
   * restricted socket only a placeholder is accepted (docs/remote.md); a placeholder is answered
   * from the same single flight as the real token, with a new placeholder in place of the refresh
   * token.
   */
  async refresh(params: BrokerRefreshParams, socket: SocketKind = 'main'): Promise<BrokerResult> {
    const reason = refreshReason(params.refresh_reason)
    this.count(this.requests, `refresh:${reason}`)
    const verdict = this.deps.placeholders.registry.present(params.refresh_token, socket)
    let answer: Answer
    if (verdict.kind !== 'not_placeholder') answer = await this.forPlaceholder(verdict, reason)
    else if (socket === 'restricted') {
      // A real refresh token never crosses the restricted socket, either way: refused as unknown, nothing re-read.
      answer = { name: 'denied', why: 'real_token_on_restricted', ...denied('refresh_token_invalidated') }
    } else answer = await this.decide(params.refresh_token, reason)
    this.count(this.answers, answer.name)
    // Never the token (nor a placeholder): which way the request went, and why.
    const placeholder = verdict.kind === 'not_placeholder' || verdict.kind === 'unknown' ? {} : { placeholderId: verdict.record.id }
    this.deps.log.info({ reason, socket, ...placeholder, answer: answer.name, status: answer.status, ...(answer.why ? { why: answer.why } : {}) }, 'broker refresh request')
    return { status: answer.status, body: answer.body, ...(answer.note ? { note: answer.note } : {}) }
  }

  private async forPlaceholder(v: Exclude<Verdict, { kind: 'not_placeholder' }>, reason: ReturnType<typeof refreshReason>): Promise<Answer> {
    const { registry, save } = this.deps.placeholders
    switch (v.kind) {
      case 'unknown':
        this.ph.refused++
        return { name: 'denied', why: `placeholder_${v.why}`, ...denied('refresh_token_invalidated') }
      case 'expired':
        this.ph.refused++
        return { name: 'denied', why: 'placeholder_expired', ...denied('refresh_token_expired') }
      case 'revoked':
        this.ph.refused++
        return { name: 'denied', why: 'placeholder_revoked', ...denied('refresh_token_invalidated') }
      case 'reused': {
        this.ph.reuse++
        this.ph.refused++
        await save()
        this.deps.log.warn(
          { placeholderId: v.record.id, family: v.record.family, label: v.record.label, revoked: v.revoked },
          'a rotated placeholder was presented again: its chain is revoked (a copy of it is in other hands, or an answer was lost)',
        )
        return { name: 'denied', why: 'placeholder_reused', note: 'placeholder_reused', ...denied('refresh_token_reused') }
      }
      case 'retry':
      case 'ok': {
        const id = v.kind === 'ok' ? v.record.id : v.successor.id
        const joined = this.placeholderFlights.get(v.record.id)
        if (joined !== undefined) return joined
        const flight = (async (): Promise<Answer> => {
          const current = this.deps.refresher()?.brokerState().current
          if (current === null) {
            registry.touch(v.record.id)
            return { name: 'denied', why: 'nothing_served', ...denied('refresh_token_invalidated') }
          }
          // Codex's 401 answered an access token older than the daemon's current one (handed out
          // before the daemon's last refresh): the current tokens are the remedy, not a spend.
          const stale = reason === 'unauthorized_recovery' && current !== undefined && registry.handedOutOtherThan(v.record, current.accessToken)
          // Nothing served right now (a relink under way): decide() answers 503 for it.
          const answer = await this.decide(current?.refreshToken ?? '', stale ? 'proactive_expiry' : reason)
          if (answer.status !== 200) {
            if (registry.get(v.record.id)?.state === 'active') registry.touch(v.record.id)
            void save()
            return answer
          }
          let replacement: string
          if (v.kind === 'retry') replacement = v.placeholder
          else {
            // Revoked while we waited (placeholderRevoke, a reuse): no new one for it.
            if (registry.get(id)?.state !== 'active') return { name: 'denied', why: 'placeholder_revoked', ...denied('refresh_token_invalidated') }
            replacement = registry.rotate(id, typeof answer.body.access_token === 'string' ? answer.body.access_token : null).placeholder
            this.ph.rotated++
          }
          // Handed out only once saved: a daemon restarted after this answer still knows it.
          await save()
          return { ...answer, body: { ...answer.body, refresh_token: replacement } }
        })().finally(() => this.placeholderFlights.delete(v.record.id))
        this.placeholderFlights.set(v.record.id, flight)
        return flight
      }
    }
  }

  /**
   * Codex's revoke request: the daemon's logout, for a caller that holds the current token. A
   * placeholder revokes its own chain only; on the restricted socket nothing else is revoked.
   */
  async revoke(params: BrokerRevokeParams, socket: SocketKind = 'main'): Promise<BrokerAnswer> {
    this.count(this.requests, 'revoke')
    const { registry, save } = this.deps.placeholders
    const rec = registry.lookup(params.token, socket)
    if (rec !== null) {
      const revoked = registry.revoke(rec.id)
      await save()
      this.count(this.answers, 'placeholder_revoked')
      this.deps.log.info({ answer: 'placeholder_revoked', socket, placeholderId: rec.id, revoked }, 'broker revoke request')
      return { status: 200, body: {} }
    }
    let proven = socket === 'main' && this.holdsCurrent(params.token)
    if (!proven && socket === 'main') {
      await this.deps.reload()
      proven = this.holdsCurrent(params.token)
    }
    if (!proven) {
      // RFC 7009 §2.2: an unknown token is answered 200 too. Nothing is removed for it.
      this.count(this.answers, 'revoke_unknown')
      this.deps.log.info({ answer: 'revoke_unknown', socket }, 'broker revoke request')
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
          return { name: 'denied', why: d.why, ...denied(d.code) }
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
  note?: BrokerResult['note']
}

/** 401 in OpenAI's shape with one of the codes Codex maps to "sign in again" (docs/codex-compat.md#refresh-errors). */
function denied(code: string): BrokerAnswer {
  return { status: 401, body: openAiError(deniedMessage(code), 'invalid_request_error', code) }
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
