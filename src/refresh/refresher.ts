// One refresher per CODEX_HOME (docs/refresh.md): decides when, spends the refresh token once for every
// caller, holds the answer as pending until it is committed under Codex's locks, and backs off.
import { formatLastRefresh } from '../codex/authfile.js'
import { decodeAccessTokenClaims, decodeIdTokenClaims, isCodexValidIdToken } from '../codex/jwt.js'
import type { Logger } from '../log.js'
import { NetworkError, post, preloadHttp } from '../net/http.js'
import { oidcConfiguration, openAiEndpoints, originator, type IssuerConfig } from '../net/issuer.js'
import type { ErrorInfo, RefreshState } from '../rpc/contract.js'
import type { AuthState, PendingTokens } from '../state/cache.js'
import { AuthWriteError, sha256Hex, stillHolds, type CommitResult, type HeldToken } from '../store/authstore.js'
import { deleteJournals, readJournals, writeJournal, type JournalPlaces } from '../store/journal.js'
import { orTimeout } from '../timeout.js'
import type { AccessTokenClaims, AuthFile, TokenData } from '../types.js'
import { RefreshError } from './errors.js'
import { backoffDelay, classifyFailure, refreshDueAt, timerDelay, type RefreshFailure, type TokenAnswer } from './policy.js'

/** What `status` reports about refreshing. */
export interface RefreshStatus {
  state: RefreshState
  lastError: ErrorInfo | null
  nextAttemptAt: string | null
  nextRefreshAt: string | null
}

export interface RefresherOptions {
  home: string
  state: AuthState
  issuer: IssuerConfig
  env: NodeJS.ProcessEnv
  log: Logger
  userAgent: string
  now?: () => number
  /** in [0, 1) */
  random?: () => number
  lockTimeoutMs?: number
  httpTimeoutMs?: number
  /** How long getAuth waits for a refresh (docs/refresh.md#getauth-and-refresh: about 10 s). */
  getAuthWaitMs?: number
  /** Multiplies every backoff delay (a test knob: CODEX_AUTHD_BACKOFF_SCALE); default 1. */
  backoffScale?: number
  /**
   * How long a spend answered `reused` or `revoked` waits for another writer's rotation to land
   * before it counts as a failure (docs/refresh.md#adopting-another-writers-refresh); default 3 s.
   */
  adoptWaitMs?: number
  /**
   * Where token answers are journaled when the home's disk cannot take them: a directory of the
   * daemon's own off that disk (the runtime directory); null: none (docs/refresh.md#the-journal).
   */
  journalFallbackDir?: string | null
}

/** The tokens a refresh would spend, and what the file must still hold for the result to land. */
interface Candidate {
  auth: AuthFile
  tokens: TokenData
  /** What auth.json holds (its refresh token differs from tokens.refreshToken while a commit is pending). */
  held: { refreshToken: string; accountId: string | null }
}

type Outcome = { ok: true } | { ok: false; failure: RefreshFailure } | { ok: false; skipped: 'adopted' | 'no_tokens' | 'unreadable' }

/** Fields a token endpoint may return; each is optional (docs/codex-compat.md#refresh-request). */
interface TokenFields {
  id_token?: string
  access_token?: string
  refresh_token?: string
}

type TokenResult = { ok: true; tokens: TokenFields } | { ok: false; answer: TokenAnswer }

/**
 * One spend of a refresh token, kept for the refresh broker (docs/broker.md): a Codex that presents
 * a token whose spend is running or done is answered from it. `settled` resolves once the result
 * is journaled or written to auth.json (the broker answers only then), or the spend ended without one.
 */
export type SpendEntry =
  | { state: 'in_flight'; settled: Promise<void> }
  | { state: 'done'; tokens: TokenData; settled: Promise<void> }
  | { state: 'failed'; failure: RefreshFailure; settled: Promise<void> }

/** What the broker decides on (docs/broker.md#decisions); the refresh tokens never leave the daemon but in an answer. */
export interface BrokerState {
  /** The tokens a refresh would spend next (a pending result's, else the file's); null: none this daemon can refresh. */
  current: TokenData | null
  spends: ReadonlyMap<string, SpendEntry>
  permanentKind: string | null
  backoffUntil: number | null
  /** The loop guard: no automatic refresh before this (ms), or null. */
  loopGuardUntil: number | null
}

/** How many spends are remembered for the broker: enough for every Codex still holding a recent token. */
const KEEP_SPENDS = 8

const NO_TOKENS: RefreshFailure = {
  kind: 'transient',
  permanent: false,
  message: 'Failed to refresh token: the token endpoint answered without tokens',
  status: null,
}

export class Refresher {
  private readonly o: Required<Omit<RefresherOptions, 'now' | 'random'>> & { now: () => number; random: () => number }
  private inFlight: Promise<Outcome> | null = null
  /** The bounded wait getAuth callers of the refresh in flight share (waitForRefresh). */
  private sharedWait: { attempt: Promise<Outcome>; endsAt: number; outcome: Promise<Outcome | 'timeout'> } | null = null
  private committing: Promise<void> | null = null
  private permanent: { refreshToken: string; failure: RefreshFailure } | null = null
  private backoff: { refreshToken: string; attempt: number; until: number; failure: RefreshFailure } | null = null
  private lastError: ErrorInfo | null = null
  private lastDoneMs: number | null = null
  private seen: {
    accessToken: string
    firstSeenMs: number
    jitter: number
    claims: AccessTokenClaims
    due: { lastRefresh: string | null; lastDoneMs: number | null; at: number | null } | null
  } | null = null
  private timer: NodeJS.Timeout | null = null
  private commitTimer: NodeJS.Timeout | null = null
  private commitAttempt = 0
  private stopped = false
  private oidc: ReturnType<typeof oidcConfiguration> | null = null
  private rawAnswer: { status: number; text: string } | null = null
  /** The HTTP client's warm-up, started once (null: not yet); stop() ends it and waits for it. */
  private warmUp: Promise<void> | null = null
  private readonly stopping = new AbortController()
  /** A journal found at start could not be settled yet (auth.json unreadable): tried again on each change. */
  private journalUnsettled = false
  /** The last few spends, by spent refresh token (for the broker), and how each is settled. */
  private readonly spendLog = new Map<string, SpendEntry>()
  private readonly settleSpend = new Map<string, () => void>()
  /** Refresh-token spends by `refresh_reason` (status counters, docs/broker.md#counters). */
  private readonly spendCounts: Record<string, number> = {}
  /** The reason the next spend sends (the broker's request's), else the refresher's own. */
  private nextReason: string | null = null

  constructor(options: RefresherOptions) {
    this.o = {
      journalFallbackDir: null,
      adoptWaitMs: 3000,
      lockTimeoutMs: 5000,
      httpTimeoutMs: 30_000,
      getAuthWaitMs: 10_000,
      backoffScale: 1,
      now: Date.now,
      random: Math.random,
      ...options,
    } as typeof this.o
  }

  /** Commit what a previous run journaled, then follow the state. */
  async start(): Promise<void> {
    await this.commitJournal()
    this.o.state.on('change', () => this.onStateChange())
    this.o.state.on('pendingDropped', () => {
      if (this.commitTimer) clearTimeout(this.commitTimer)
      this.commitTimer = null
      this.commitAttempt = 0
      // Someone else's file won: the journal is settled once the state has let go of the tokens.
      setImmediate(() => void this.settleJournal())
    })
    this.onStateChange()
  }

  /**
   * SIGTERM: wait for a running refresh, try the commit once more. What still cannot land is in
   * the journal already (written when the answer arrived); only tokens that could not be journaled
   * then are tried once more here.
   */
  async stop(): Promise<void> {
    this.stopped = true
    this.stopping.abort()
    if (this.timer) clearTimeout(this.timer)
    if (this.commitTimer) clearTimeout(this.commitTimer)
    await this.warmUp
    await this.inFlight?.catch(() => {})
    await this.committing?.catch(() => {})
    const pending = this.o.state.current.pending
    if (pending === null) return
    if (await this.commitOnce(pending)) return
    if (pending.journal.state !== 'written' && (await this.journal(pending, this.o.now())) === null) {
      this.o.log.error('refreshed tokens could be neither written nor journaled: they are lost with this process')
    }
  }

  status(): RefreshStatus {
    const cand = this.candidate()
    const now = this.o.now()
    const permanent = cand !== null && this.permanent?.refreshToken === cand.tokens.refreshToken
    const backoff = cand !== null && this.backoff !== null && this.backoff.until > now
    const due = cand !== null ? this.dueAt(cand, now) : null
    return {
      state: this.inFlight !== null ? 'refreshing' : permanent ? 'failed' : backoff ? 'backoff' : 'idle',
      lastError: this.lastError,
      nextAttemptAt: backoff ? isoMs(this.backoff!.until) : null,
      nextRefreshAt: due !== null && !permanent ? isoMs(due) : null,
    }
  }

  /** getAuth, first: under a keyring store, an old read of the entry is done again (AuthState.rereadIfStale). */
  rereadIfStale(): Promise<void> | null {
    return this.o.state.rereadIfStale()
  }

  /** getAuth (docs/refresh.md#getauth-and-refresh): wait for a due or running refresh; serve what is valid; else RefreshError. */
  async ensureFresh(minValiditySeconds: number): Promise<void> {
    // A keyring entry replaced by Codex emits no signal (docs/keyring.md#signals-what-can-be-watched):
    // before refreshing or refusing for want of validity, read it again.
    if (this.o.state.store.usesKeyring && this.validMs() < minValiditySeconds * 1000) await this.o.state.reload()
    const outcome = await this.ensureFreshOnce(minValiditySeconds, true)
    // The refresh found another writer's file and adopted it, but that token is not good enough
    // either: refresh it now, with the adopted refresh token (Codex does the same, docs/codex-compat.md#locks),
    // instead of answering -32002 until the timer gets to it.
    if (outcome === 'adopted') await this.ensureFreshOnce(minValiditySeconds, false)
  }

  private async ensureFreshOnce(minValiditySeconds: number, mayRetry: boolean): Promise<'adopted' | undefined> {
    const minMs = minValiditySeconds * 1000
    const validMs = (): number => this.validMs()
    const cand = this.candidate()
    if (cand === null) {
      // Nothing this daemon can refresh: never serve a token that is not good enough (docs/contract.md).
      if (validMs() < minMs) throw new RefreshError(this.unrefreshable(validMs(), minValiditySeconds))
      return
    }
    const now = this.o.now()
    const due = this.dueAt(cand, now)
    const needs = this.inFlight !== null || (due !== null && due <= now) || validMs() < minMs
    if (!needs) return

    let outcome: Outcome | 'timeout' | 'loop_guard' | null = null
    if (this.inFlight !== null) outcome = await this.waitForRefresh(this.inFlight)
    else {
      const blocked = this.blocked(cand, now, false)
      if (blocked === null) outcome = await this.waitForRefresh(this.startRefresh(false))
      else if (blocked === 'loop_guard') outcome = 'loop_guard' // a fresh refresh cannot do better now
    }
    if (validMs() >= minMs) return
    if (mayRetry && typeof outcome === 'object' && outcome !== null && !outcome.ok && 'skipped' in outcome && outcome.skipped === 'adopted') return 'adopted'
    throw new RefreshError(this.failureFor(outcome, validMs(), minValiditySeconds))
  }

  /** How long the token served now stays valid (Infinity: an API key, or no expiry). */
  private validMs(): number {
    const r = this.o.state.current.resolved
    if (r.kind !== 'chatgpt' || r.accessClaims.exp === null) return Infinity
    return r.accessClaims.exp * 1000 - this.o.now()
  }

  /**
   * A getAuth caller's bounded wait for the refresh in flight (docs/refresh.md#getauth-and-refresh).
   * Callers arriving within the same second share one timer, so a storm of them costs one timer,
   * not one each: every caller waits between getAuthWaitMs − 1 s and getAuthWaitMs.
   */
  private waitForRefresh(attempt: Promise<Outcome>): Promise<Outcome | 'timeout'> {
    const now = this.o.now()
    const w = this.sharedWait
    if (w !== null && w.attempt === attempt && w.endsAt - now >= this.o.getAuthWaitMs - 1000) return w.outcome
    const outcome = orTimeout(attempt, this.o.getAuthWaitMs, 'timeout' as const)
    this.sharedWait = { attempt, endsAt: now + this.o.getAuthWaitMs, outcome }
    return outcome
  }

  /** Why a token that is not good enough cannot be refreshed here at all (docs/refresh.md#which-tokens). */
  private unrefreshable(validMs: number, minValiditySeconds: number): RefreshFailure {
    const snap = this.o.state.current
    const store = snap.settings.credentialsStore
    const why =
      store === 'ephemeral'
        ? `the configured credential store (${store}) is not one this daemon can refresh`
        : snap.read.state === 'unreadable'
          ? `${snap.read.problem.code === 'auth_unreadable' ? 'auth.json' : 'the keyring entry'} cannot be read, so no refresh could be written back`
          : 'these tokens cannot be refreshed here'
    return { kind: 'rejected', permanent: true, message: `Failed to refresh token: ${tooShort(validMs, minValiditySeconds)}, and ${why}`, status: null }
  }

  /**
   * The `refresh` method: skips backoff and loop guard, never a permanent failure. Without
   * ChatGPT tokens in the file there is nothing to refresh: it returns, and the caller serves
   * what there is (or says why nothing is served).
   */
  async forceRefresh(): Promise<void> {
    const cand = this.candidate()
    if (cand === null) {
      if (this.o.state.current.resolved.kind === 'chatgpt') {
        const store = this.o.state.current.settings.credentialsStore
        throw new RefreshError({ kind: 'rejected', message: `These tokens cannot be refreshed here: the configured credential store (${store}) is not one this daemon can refresh` })
      }
      return
    }
    const blocked = this.blocked(cand, this.o.now(), true)
    if (blocked === 'permanent') throw new RefreshError(this.permanent!.failure)
    const outcome = await this.startRefresh(true)
    if (!outcome.ok && 'failure' in outcome) throw new RefreshError(outcome.failure)
  }

  // ---- the broker (docs/broker.md) -----------------------------------------------------------

  /** What the broker decides on, now. */
  brokerState(): BrokerState {
    const cand = this.candidate()
    const now = this.o.now()
    return {
      current: cand?.tokens ?? null,
      spends: this.spendLog,
      permanentKind: cand !== null && this.permanent?.refreshToken === cand.tokens.refreshToken ? this.permanent.failure.kind : null,
      backoffUntil: cand !== null && this.backoff?.refreshToken === cand.tokens.refreshToken && this.backoff.until > now ? this.backoff.until : null,
      loopGuardUntil: this.lastDoneMs !== null ? this.lastDoneMs + 30_000 : null,
    }
  }

  /**
   * A spend of the current refresh token the broker decided on: joins the one in flight, or starts
   * one sending `reason`, skipping backoff and the loop guard (the broker checked its own guards).
   * What became of it is in brokerState().spends.
   */
  async brokerSpend(reason: string): Promise<void> {
    if (this.candidate() === null) return
    if (this.inFlight === null) this.nextReason = reason
    await this.startRefresh(true)
  }

  /** Refresh-token spends so far, by the reason sent. */
  spendsByReason(): Record<string, number> {
    return { ...this.spendCounts }
  }

  private noteSpend(spent: string, entry: SpendEntry): void {
    this.spendLog.delete(spent)
    this.spendLog.set(spent, entry)
    while (this.spendLog.size > KEEP_SPENDS) {
      const oldest = this.spendLog.keys().next().value as string
      this.spendLog.delete(oldest)
      this.settleSpend.get(oldest)?.()
      this.settleSpend.delete(oldest)
    }
  }

  /** The spend of `spent` is settled (journaled, written, or ended without a result). */
  private spendSettled(spent: string): void {
    this.settleSpend.get(spent)?.()
    this.settleSpend.delete(spent)
  }

  // ---- decisions ----------------------------------------------------------------------------

  /** The ChatGPT tokens to keep fresh: those in auth.json (even while an API key is served). */
  private candidate(): Candidate | null {
    const snap = this.o.state.current
    // docs/refresh.md#which-tokens: only when we can write the result back; refresh pauses while the file is unreadable.
    if (snap.settings.credentialsStore === 'ephemeral') return null
    if (snap.read.state === 'unreadable' && snap.pending === null) return null
    const auth = snap.pending?.auth ?? (snap.read.state === 'ok' ? snap.read.auth : null)
    if (auth === null || auth.tokens === null) return null
    if (auth.authMode !== null && auth.authMode !== 'chatgpt' && auth.authMode !== 'apikey') return null
    return {
      auth,
      tokens: auth.tokens,
      held:
        snap.pending !== null
          ? { refreshToken: snap.pending.fileRefreshToken, accountId: snap.pending.accountId }
          : { refreshToken: auth.tokens.refreshToken, accountId: auth.tokens.accountId },
    }
  }

  private dueAt(cand: Candidate, now: number): number | null {
    const access = cand.tokens.accessToken
    if (this.seen?.accessToken !== access) {
      this.seen = { accessToken: access, firstSeenMs: now, jitter: this.o.random() * 2 - 1, claims: decodeAccessTokenClaims(access), due: null }
    }
    const seen = this.seen
    // getAuth asks on every call: the answer changes only with the token, last_refresh or our own
    // last refresh, so it is computed once per combination (the hot path stays short).
    if (seen.due !== null && seen.due.lastRefresh === cand.auth.lastRefresh && seen.due.lastDoneMs === this.lastDoneMs) return seen.due.at
    const parsed = cand.auth.lastRefresh !== null ? Date.parse(cand.auth.lastRefresh) : NaN
    const lastRefreshMs = Number.isFinite(parsed) ? parsed : null
    const lastDone = Math.max(this.lastDoneMs ?? -Infinity, lastRefreshMs ?? -Infinity)
    const at = refreshDueAt({
      exp: seen.claims.exp,
      iat: seen.claims.iat,
      lastRefreshMs,
      firstSeenMs: seen.firstSeenMs,
      lastRefreshDoneMs: Number.isFinite(lastDone) ? lastDone : null,
      jitter: seen.jitter,
    })
    seen.due = { lastRefresh: cand.auth.lastRefresh, lastDoneMs: this.lastDoneMs, at }
    return at
  }


  /** Why a refresh may not start now, or null. Forced refreshes ignore backoff and the guard. */
  private blocked(cand: Candidate, now: number, force: boolean): 'permanent' | 'backoff' | 'loop_guard' | null {
    if (this.permanent?.refreshToken === cand.tokens.refreshToken) return 'permanent'
    if (force) return null
    if (this.backoff !== null && this.backoff.refreshToken === cand.tokens.refreshToken && this.backoff.until > now) return 'backoff'
    if (this.lastDoneMs !== null && now - this.lastDoneMs < 30_000) return 'loop_guard'
    return null
  }

  private failureFor(outcome: Outcome | 'timeout' | 'loop_guard' | null, validMs: number, minValiditySeconds: number): RefreshFailure {
    if (typeof outcome === 'object' && outcome !== null && !outcome.ok && 'failure' in outcome) return outcome.failure
    const cand = this.candidate()
    if (cand !== null && this.permanent?.refreshToken === cand.tokens.refreshToken) return this.permanent.failure
    if (this.backoff !== null) return this.backoff.failure
    const why =
      outcome === 'timeout'
        ? 'the token refresh is still running'
        : outcome === 'loop_guard'
          ? 'the tokens were refreshed less than 30 s ago and are not refreshed again so soon'
          : typeof outcome === 'object' && outcome !== null && outcome.ok
            ? 'the token endpoint issued no longer-lived token'
            : 'it could not be refreshed'
    return { kind: 'transient', permanent: false, message: `Failed to refresh token: ${tooShort(validMs, minValiditySeconds)}, and ${why}`, status: null }
  }

  // ---- the sequence ---------------------------------------------------------------------------

  private startRefresh(force: boolean): Promise<Outcome> {
    this.inFlight ??= this.run(force)
      .catch((e): Outcome => {
        this.o.log.error({ err: { type: (e as Error)?.name } }, 'refresh failed unexpectedly')
        return { ok: false, failure: { kind: 'transient', permanent: false, message: 'Failed to refresh token', status: null } }
      })
      .finally(() => {
        this.inFlight = null
        this.nextReason = null // a run that spent nothing leaves no reason for the next
        this.sharedWait = null
        // Pending tokens whose commit was held back while this refresh ran (startCommit).
        if (this.o.state.current.pending !== null && this.commitTimer === null) this.startCommit()
        this.reschedule()
      })
    return this.inFlight
  }

  private async run(force: boolean): Promise<Outcome> {
    // A commit still being made must land (or be dropped) before its tokens are spent again.
    await this.committing
    const cand = this.candidate()
    if (cand === null) return { ok: false, skipped: 'no_tokens' }
    if (!force && this.blocked(cand, this.o.now(), false) === 'permanent') return { ok: false, failure: this.permanent!.failure }

    // (1) Re-read without a lock: someone else may have refreshed or logged in already. When
    // auth.json is still the version the state last read (one stat), that read is current: no
    // read, and no trip through the thread pool while a storm of callers waits. A keyring entry
    // is always read again (its replacement is silent).
    const last = this.o.state.current.read
    const disk = await this.o.state.store.reread(last)
    if (disk.state === 'unreadable') return { ok: false, skipped: 'unreadable' }
    if (!stillHolds(disk, cand.held)) {
      this.o.log.info('auth.json changed before refresh; adopting it')
      await this.o.state.reload()
      return { ok: false, skipped: 'adopted' }
    }

    // (2) Spend the refresh token. No lock is held: Codex waits on auth.lock without a timeout.
    const spent = cand.tokens.refreshToken
    const claims = decodeAccessTokenClaims(cand.tokens.accessToken)
    const reason = this.nextReason ?? (claims.exp !== null ? 'proactive_expiry' : 'scheduled')
    this.nextReason = null
    const settled = new Promise<void>((resolve) => this.settleSpend.set(spent, resolve))
    this.noteSpend(spent, { state: 'in_flight', settled })
    this.spendCounts[reason] = (this.spendCounts[reason] ?? 0) + 1
    const sentAt = performance.now()
    const result = await this.requestTokens(spent, reason)
    const receivedAt = performance.now()
    const failed = (failure: RefreshFailure): Outcome => {
      this.noteSpend(spent, { state: 'failed', failure, settled })
      this.spendSettled(spent)
      return { ok: false, failure: this.fail(spent, failure, this.o.now()) }
    }
    if (!result.ok) {
      const failure = classifyFailure(result.answer)
      // Someone else (a Codex) spent it just before us: its rotation lands in the file moments later.
      if ((failure.kind === 'reused' || failure.kind === 'revoked') && (await this.awaitOtherWriter(cand.held))) {
        this.lastError = null
        this.o.log.info({ kind: failure.kind }, 'refresh token was spent by another writer; adopted its tokens')
        // Not a spend of ours: a Codex holding it is answered after a re-read (docs/broker.md).
        this.spendLog.delete(spent)
        this.spendSettled(spent)
        return { ok: false, skipped: 'adopted' }
      }
      return failed(failure)
    }
    const now = this.o.now()
    const fields = result.tokens
    if (fields.access_token === undefined && fields.refresh_token === undefined) return failed(NO_TOKENS)

    // (3) Journal first, durably, before any lock is waited for (docs/refresh.md#the-journal);
    // then pending: served at once; reloads that still show the file's token cannot replace it.
    const next = withNewTokens(cand.auth, fields, now)
    this.lastDoneMs = now
    this.permanent = null
    this.backoff = null
    this.lastError = null
    // Served at once: the access token's durability is not the journal's concern, the refresh
    // token's is, and the commit (the only thing that waits for locks) waits for the journal.
    const pending: PendingTokens = { fileRefreshToken: cand.held.refreshToken, accountId: cand.held.accountId, auth: next, stuck: false, journal: { state: 'writing' } }
    this.o.state.setPending(pending)
    this.noteSpend(spent, { state: 'done', tokens: next.tokens!, settled })

    // (4)-(6) Journal, then commit, in the background; callers are served the pending tokens meanwhile.
    this.committing = this.journalThenCommit(pending, now, sentAt, receivedAt, spent).finally(() => {
      this.committing = null
      this.spendSettled(spent) // whatever became of it: a broker request waits no longer
    })
    return { ok: true }
  }

  /** `sentAt`, `receivedAt`: performance.now() around the token request. */
  private async journalThenCommit(pending: PendingTokens, receivedAtMs: number, sentAt: number, receivedAt: number, spent: string): Promise<void> {
    const path = await this.journal(pending, receivedAtMs)
    // The broker answers once the result survives a crash (docs/broker.md#the-reply-contract);
    // without a journal it waits for the commit (the finally in run()).
    if (path !== null) this.spendSettled(spent)
    // The window in which a kill loses the rotation: the round trip, then the journal write.
    const journalMs = Math.round(performance.now() - receivedAt)
    this.o.log.info(
      {
        accountId: pending.auth.tokens?.accountId ?? null,
        expiresAt: isoOrNull(decodeAccessTokenClaims(pending.auth.tokens!.accessToken).exp),
        roundTripMs: Math.round(receivedAt - sentAt),
        journalMs,
      },
      'tokens refreshed',
    )
    if (this.o.state.current.pending !== pending) {
      // Dropped meanwhile: someone else's file won.
      await this.settleJournal()
      return
    }
    this.o.state.setPending({ ...pending, journal: path === null ? { state: 'failed' } : { state: 'written', path } })
    await this.commitLoop()
  }

  /**
   * Waits at most adoptWaitMs for auth.json to stop holding `held`: each look takes auth.lock
   * first (bounded), since a writer holds it while it writes, and the state's 'change' event wakes
   * a look early. True (and the state reloaded) when the file moved on; an unreadable file may be
   * half-way through a write and is looked at again.
   */
  private async awaitOtherWriter(held: HeldToken): Promise<boolean> {
    const deadline = this.o.now() + this.o.adoptWaitMs
    for (;;) {
      const remaining = deadline - this.o.now()
      const changed = this.nextChange()
      const cur = await this.o.state.store.readAfterWriters(Math.max(0, remaining))
      if (cur.state !== 'unreadable' && !stillHolds(cur, held)) {
        changed.cancel()
        await this.o.state.reload()
        return true
      }
      const left = deadline - this.o.now()
      if (left <= 0) {
        changed.cancel()
        return false
      }
      await orTimeout(changed.promise, left, undefined)
      changed.cancel()
    }
  }

  /** The state's next 'change' event, as a promise whose listener can be removed. */
  private nextChange(): { promise: Promise<void>; cancel: () => void } {
    let listener = (): void => {}
    const promise = new Promise<void>((resolve) => {
      listener = () => resolve()
      this.o.state.once('change', listener)
    })
    return { promise, cancel: () => this.o.state.off('change', listener) }
  }

  private fail(spent: string, failure: RefreshFailure, now: number): RefreshFailure {
    this.lastError = { reason: failure.kind, message: failure.message }
    if (failure.permanent) {
      this.permanent = { refreshToken: spent, failure }
      this.backoff = null
      this.o.log.warn({ kind: failure.kind, status: failure.status }, 'refresh failed permanently; waiting for a new login')
    } else {
      const attempt = (this.backoff?.refreshToken === spent ? this.backoff.attempt : 0) + 1
      const until = now + this.backoffMs(attempt)
      this.backoff = { refreshToken: spent, attempt, until, failure }
      this.o.log.warn({ kind: failure.kind, status: failure.status, attempt, retryAt: isoMs(until) }, 'refresh failed; will retry')
    }
    return failure
  }

  private backoffMs(attempt: number): number {
    return Math.round(backoffDelay(attempt, this.o.random() * 2 - 1) * this.o.backoffScale)
  }

  /** One commit now; on failure keep the tokens pending and retry with backoff. */
  private async commitLoop(): Promise<void> {
    const pending = this.o.state.current.pending
    if (pending === null) return
    if (await this.commitOnce(pending)) {
      this.commitAttempt = 0
      return
    }
    if (this.o.state.current.pending === null || this.stopped) return
    this.o.state.setPending({ ...this.o.state.current.pending, stuck: true })
    this.commitAttempt++
    const delay = this.backoffMs(this.commitAttempt)
    if (this.commitTimer) clearTimeout(this.commitTimer)
    this.commitTimer = setTimeout(() => {
      this.commitTimer = null
      this.startCommit()
    }, delay)
  }

  /**
   * Commit the pending tokens in the background, unless a refresh is running: it may be spending
   * them right now, and its own result (which replaces them) is committed when it ends. A commit
   * of the older tokens meanwhile would land a spent refresh token.
   */
  private startCommit(): void {
    if (this.inFlight !== null || this.stopped) return
    this.committing ??= this.commitLoop().finally(() => {
      this.committing = null
    })
  }

  /** Steps 4-5: true when the pending tokens are settled (written, or dropped for someone else's). */
  private async commitOnce(pending: PendingTokens): Promise<boolean> {
    let res: CommitResult | { outcome: 'write_error' }
    try {
      res = await this.o.state.store.commit({
        lockTimeoutMs: this.o.lockTimeoutMs,
        precondition: (cur) => stillHolds(cur, { refreshToken: pending.fileRefreshToken, accountId: pending.accountId }),
        update: (cur) => (cur === null ? null : mergeRefreshed(cur, pending.auth)),
        // The watcher's event for our own rename must not read the file back.
        onWrite: (written) => this.o.state.expectOwnWrite(written, pending),
      })
    } catch (e) {
      if (!(e instanceof AuthWriteError)) throw e
      res = { outcome: 'write_error' }
    }
    const outcome = res.outcome
    if (res.outcome === 'written') {
      // What we wrote is the file now: the state takes it without reading it back.
      await this.o.state.wrote(res.written, pending)
      this.o.log.info({ store: this.o.state.store.kind }, res.written.read.store === 'keyring' ? 'refreshed tokens written to the keyring' : 'refreshed tokens written to auth.json')
      await this.settleJournal()
      return true
    }
    if (outcome === 'precondition_failed' || outcome === 'deleted') {
      this.o.log.info('auth.json changed during refresh; keeping the file and dropping our tokens')
      this.o.state.setPending(null)
      await this.o.state.reload()
      await this.settleJournal()
      return true
    }
    this.o.log.warn({ outcome, cause: res.outcome === 'keyring_failed' ? res.problem.details?.cause : undefined }, 'refreshed tokens could not be written yet; holding them')
    return false
  }

  // ---- the journal (docs/refresh.md#the-journal) ----------------------------------------------

  private get journalPlaces(): JournalPlaces {
    return { home: this.o.home, fallbackDir: this.o.journalFallbackDir }
  }

  /** Records pending tokens durably; the journal's path, or null (logged as an error) when nowhere could take them. */
  private async journal(pending: PendingTokens, receivedAtMs: number): Promise<string | null> {
    const res = await writeJournal(this.journalPlaces, {
      fileRefreshTokenSha256: sha256Hex(pending.fileRefreshToken),
      accountId: pending.accountId,
      auth: pending.auth,
      receivedAtMs,
    })
    if (res.ok) {
      if (res.fallback) {
        this.o.log.error({ journal: res.path, cause: res.homeError }, `refreshed tokens journaled to ${this.o.journalFallbackDir} because ${this.o.home} is ${fullOrReadOnly(res.homeError ?? '')}`)
      }
      return res.path
    }
    this.o.log.error(
      { home: res.homeError, fallback: res.fallbackError, fallbackDir: this.o.journalFallbackDir },
      'refreshed tokens could not be journaled: until auth.json can be written they exist only in memory',
    )
    return null
  }

  /** The result is settled (written, or dropped for someone else's): the journal goes, unless newer tokens wait. */
  private async settleJournal(): Promise<void> {
    // A running refresh may have journaled its answer already and not yet made it pending.
    if (this.o.state.current.pending === null && this.inFlight === null) await deleteJournals(this.journalPlaces)
  }

  /**
   * At start, before listening: commit the newest journal under Codex's locks if auth.json still
   * holds the refresh token it was spent from (by hash) and its account. Locks busy or the write
   * failing: the tokens are held as pending, exactly as before the restart, and the commit loop
   * retries; the journal stays until the result is settled.
   */
  private async commitJournal(): Promise<void> {
    const { journals, bad } = await readJournals(this.journalPlaces)
    for (const file of bad) this.o.log.warn({ file }, 'a refresh journal could not be parsed; left in place')
    const newest = journals[0]
    this.journalUnsettled = false
    if (newest === undefined) return
    const { record, path } = newest
    const held: HeldToken = { refreshTokenSha256: record.fileRefreshTokenSha256, accountId: record.accountId }
    let res: CommitResult | { outcome: 'write_error' }
    try {
      res = await this.o.state.store.commit({
        lockTimeoutMs: this.o.lockTimeoutMs,
        precondition: (cur) => stillHolds(cur, held),
        update: (cur) => (cur === null ? null : mergeRefreshed(cur, record.auth)),
        onWrite: (written) => this.o.state.expectOwnWrite(written, null),
      })
    } catch (e) {
      if (!(e instanceof AuthWriteError)) throw e
      res = { outcome: 'write_error' }
    }
    const outcome = res.outcome
    this.o.log.info({ outcome, journal: path }, 'journaled refresh result handled')
    if (outcome === 'written' || outcome === 'precondition_failed' || outcome === 'deleted') {
      if (res.outcome === 'written') await this.o.state.wrote(res.written, null)
      await deleteJournals(this.journalPlaces)
      return
    }
    const cur = (await this.o.state.store.load()).read
    if (cur.state === 'unreadable') {
      this.journalUnsettled = true
      this.o.log.warn({ journal: path }, 'auth.json is unreadable: the journaled refresh result waits for it')
      return
    }
    if (!stillHolds(cur, held) || cur.state !== 'ok' || cur.auth.tokens === null) {
      await deleteJournals(this.journalPlaces)
      return
    }
    this.o.state.setPending({
      fileRefreshToken: cur.auth.tokens.refreshToken,
      accountId: record.accountId,
      auth: mergeRefreshed(cur.auth, record.auth),
      stuck: true,
      journal: { state: 'written', path },
    })
    this.o.log.warn({ outcome }, 'journaled refresh result could not be committed yet; holding it')
    this.startCommit()
  }

  // ---- scheduling -----------------------------------------------------------------------------

  private onStateChange(): void {
    if (this.journalUnsettled && this.o.state.current.read.state !== 'unreadable') void this.commitJournal().catch(() => {})
    const cand = this.candidate()
    // A new refresh token (another writer, a login) clears what we knew about the old one.
    if (cand === null || this.permanent?.refreshToken !== cand.tokens.refreshToken) this.permanent = null
    if (cand === null || this.backoff?.refreshToken !== cand.tokens.refreshToken) this.backoff = null
    this.reschedule()
  }

  /** Arm the one timer: at most 10 minutes at a time, re-checking the wall clock on each wake. */
  private reschedule(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    if (this.stopped || this.inFlight !== null) return
    const cand = this.candidate()
    if (cand === null) return
    const now = this.o.now()
    if (this.permanent?.refreshToken === cand.tokens.refreshToken) return
    // These tokens will be refreshed (within the hour for OpenAI's): load the HTTP client now
    // rather than while callers wait for the refresh.
    if (this.warmUp === null) this.warmUp = preloadHttp(this.stopping.signal)
    const due = this.dueAt(cand, now)
    if (due === null) return
    const wake = this.backoff !== null ? Math.max(due, this.backoff.until) : due
    this.timer = setTimeout(() => {
      this.timer = null
      const c = this.candidate()
      const n = this.o.now()
      if (c === null) return
      const due = this.dueAt(c, n)
      if (due !== null && due <= n && this.blocked(c, n, false) === null) void this.startRefresh(false)
      else this.reschedule()
    }, timerDelay(wake, now))
    this.timer.unref()
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  /**
   * Kind oidc: discovered once and kept (a failed discovery is tried again next time). Its fetch
   * hands every raw answer to `rawAnswer`; one refresh runs at a time, so that field is this one's.
   */
  private oidcConfig(): ReturnType<typeof oidcConfiguration> {
    this.oidc ??= oidcConfiguration(this.o.issuer, this.o.env, (status, text) => {
      this.rawAnswer = { status, text }
    }).catch((e: unknown) => {
      this.oidc = null
      throw e
    })
    return this.oidc
  }

  private async requestTokens(refreshToken: string, reason: string): Promise<TokenResult> {
    if (this.o.issuer.kind === 'openai') {
      const url = openAiEndpoints(this.o.issuer.issuer, this.o.env).refresh
      // Exactly Codex 0.171's body (docs/codex-compat.md#refresh-request): JSON, keys in alphabetical order.
      const answer = await post(
        url,
        { client_id: this.o.issuer.clientId, grant_type: 'refresh_token', refresh_reason: reason, refresh_token: refreshToken },
        { encoding: 'json', timeoutMs: this.o.httpTimeoutMs, headers: { originator: originator(this.o.env), 'user-agent': this.o.userAgent } },
      )
      return tokenResult(answer)
    }
    // Kind oidc: openid-client, with every raw answer captured first so that a 2xx it rejects
    // (no token_type, an id token it dislikes) still gives us the rotated refresh token.
    this.rawAnswer = null
    try {
      const client = await import('openid-client')
      const config = await this.oidcConfig()
      this.rawAnswer = null // the discovery answer is not the token answer
      const res = await client.refreshTokenGrant(config, refreshToken)
      return { ok: true, tokens: { id_token: res.id_token, access_token: res.access_token, refresh_token: res.refresh_token } }
    } catch (e) {
      const seen = this.rawAnswer as { status: number; text: string } | null
      if (seen === null) {
        const timeout = (e as Error)?.name === 'TimeoutError' || (e as Error)?.name === 'AbortError' || (e instanceof NetworkError && e.code === 'timeout')
        const host = e instanceof NetworkError ? { host: e.host } : {}
        return { ok: false, answer: timeout ? { type: 'timeout', ...host } : { type: 'network', code: (e as { code?: string })?.code ?? 'ERR_NETWORK', ...host } }
      }
      let body: unknown = null
      try {
        body = seen.text.trim() === '' ? null : JSON.parse(seen.text)
      } catch {
        return { ok: false, answer: { type: 'unparsable', status: seen.status } }
      }
      return tokenResult({ type: 'http', status: seen.status, body, text: seen.text })
    }
  }
}

/** A 2xx carrying a token is success, whatever else is missing from it. */
function tokenResult(answer: Awaited<ReturnType<typeof post>>): TokenResult {
  if (answer.type === 'http' && answer.status >= 200 && answer.status < 300) {
    const b = (typeof answer.body === 'object' && answer.body !== null ? answer.body : {}) as Record<string, unknown>
    const pick = (k: string): string | undefined => (typeof b[k] === 'string' && b[k] !== '' ? (b[k] as string) : undefined)
    return { ok: true, tokens: { id_token: pick('id_token'), access_token: pick('access_token'), refresh_token: pick('refresh_token') } }
  }
  if (answer.type === 'http') return { ok: false, answer: { type: 'http', status: answer.status, body: answer.body } }
  if (answer.type === 'unparsable') return { ok: false, answer: { type: 'unparsable', status: answer.status } }
  return { ok: false, answer }
}

/** The file after a refresh: returned fields replace ours, the rest stays (docs/codex-compat.md#refresh-request). */
export function withNewTokens(base: AuthFile, fields: TokenFields, nowMs: number): AuthFile {
  const old = base.tokens!
  // An id token Codex would reject must never reach the file: keep the old one instead.
  const idToken = fields.id_token !== undefined && isCodexValidIdToken(fields.id_token) ? fields.id_token : old.idToken
  const accountId = decodeIdTokenClaims(idToken).accountId ?? old.accountId
  return {
    ...base,
    tokens: {
      ...old,
      idToken,
      accessToken: fields.access_token ?? old.accessToken,
      refreshToken: fields.refresh_token ?? old.refreshToken,
      accountId,
    },
    lastRefresh: formatLastRefresh(new Date(nowMs)),
  }
}

/** Our tokens onto what is on disk: its API key, mode and unknown fields stay (docs/refresh.md#the-sequence, step 5). */
export function mergeRefreshed(disk: AuthFile, ours: AuthFile): AuthFile {
  if (ours.tokens === null || disk.tokens === null) return disk
  return {
    ...disk,
    tokens: {
      ...disk.tokens,
      idToken: ours.tokens.idToken,
      accessToken: ours.tokens.accessToken,
      refreshToken: ours.tokens.refreshToken,
      accountId: ours.tokens.accountId,
    },
    lastRefresh: ours.lastRefresh,
  }
}


/** "the access token has expired" / "... expires in 42 s, sooner than the 60 s asked for" */
function tooShort(validMs: number, minValiditySeconds: number): string {
  if (validMs <= 0) return 'the access token has expired'
  return `the access token expires in ${Math.floor(validMs / 1000)} s, sooner than the ${minValiditySeconds} s asked for`
}

function fullOrReadOnly(cause: string): string {
  return cause.startsWith('EROFS') ? 'read-only' : cause.startsWith('EDQUOT') ? 'over its quota' : 'full'
}

function isoOrNull(sec: number | null): string | null {
  return sec === null ? null : isoMs(sec * 1000)
}

/** An RFC 3339 time, or null for one Date cannot hold (an absurd `exp` must not throw). */
function isoMs(ms: number): string | null {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? null : d.toISOString()
}
