// The method table (docs/contract.md#methods), built from the daemon's parts. Param checking is strict: every
// wrong type answers -32602 with `data.field`.
import { ErrorCode, GET_AUTH_DEFAULT_MIN_VALIDITY, GET_AUTH_MAX_MIN_VALIDITY, type AuthGrant, type ErrorInfo, type RefreshState, type Status } from './contract.js'
import { RpcError, invalidParams } from './errors.js'
import type { Snapshot } from '../state/cache.js'
import type { Problem } from '../types.js'
import type { Transport } from './transport.js'

export interface RefreshStatus {
  state: RefreshState
  lastError: ErrorInfo | null
  nextAttemptAt: string | null
  nextRefreshAt: string | null
}

/** What getAuth needs from the refresher (issue 4); absent until it exists. */
export interface FreshTokenSource {
  /** Resolves when the served ChatGPT token is as fresh as getAuth asks, or throws an RpcError (docs/refresh.md). */
  ensureFresh(minValiditySeconds: number): Promise<void>
  forceRefresh(): Promise<void>
  status(): RefreshStatus
}

export interface DaemonInfo {
  version: string
  pid: number
  startedAt: string
  socket: string
  activated: boolean
}

export interface MethodDeps {
  snapshot(): Snapshot
  daemon: DaemonInfo
  refresher: FreshTokenSource | null
}

const IDLE_REFRESH: RefreshStatus = { state: 'idle', lastError: null, nextAttemptAt: null, nextRefreshAt: null }

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

function unreadableError(p: Problem): RpcError {
  return new RpcError(ErrorCode.StoreUnreadable, p.message, { file: p.file, line: p.line, column: p.column })
}

function isoFromSeconds(s: number | null): string | null {
  return s === null ? null : new Date(s * 1000).toISOString()
}

/** The grant for what the snapshot serves now, or the error that explains why nothing is served. */
export function grantFrom(snap: Snapshot): AuthGrant {
  const r = snap.resolved
  switch (r.kind) {
    case 'apikey':
      return { mode: 'apikey', token: r.apiKey, accountId: null, expiresAt: null, email: null, planType: null }
    case 'chatgpt':
      return {
        mode: 'chatgpt',
        token: r.tokens.accessToken,
        accountId: r.tokens.accountId ?? r.idClaims.accountId,
        expiresAt: isoFromSeconds(r.accessClaims.exp),
        email: r.idClaims.email,
        planType: r.idClaims.planType,
      }
    case 'forbidden':
      throw new RpcError(ErrorCode.ForbiddenByPolicy, r.message)
    case 'unsupported':
      throw new RpcError(ErrorCode.NotLoggedIn, `auth.json uses auth_mode "${r.mode}", which codex-authd does not serve`)
    case 'none': {
      const unreadable = snap.problems.find((p) => p.code === 'auth_unreadable')
      if (unreadable) throw unreadableError(unreadable)
      // keyring/ephemeral: nothing in auth.json, and the configured store is one we cannot read.
      const store = snap.settings.credentialsStore
      if (store === 'keyring' || store === 'ephemeral') {
        throw new RpcError(ErrorCode.StoreUnreadable, `the configured credential store "${store}" is not supported yet`, {
          file: null,
          line: null,
          column: null,
        })
      }
      throw new RpcError(ErrorCode.NotLoggedIn, 'Not logged in')
    }
  }
}

export function buildStatus(snap: Snapshot, daemon: DaemonInfo, refresh: RefreshStatus, codexHome: string): Status {
  const r = snap.resolved
  const loggedIn = r.kind === 'apikey' || r.kind === 'chatgpt'
  return {
    loggedIn,
    mode: r.kind === 'apikey' ? 'apikey' : r.kind === 'chatgpt' ? 'chatgpt' : null,
    source: r.kind === 'apikey' || r.kind === 'chatgpt' ? r.source : null,
    account:
      r.kind === 'chatgpt'
        ? { email: r.idClaims.email, planType: r.idClaims.planType, accountId: r.tokens.accountId ?? r.idClaims.accountId }
        : null,
    tokens:
      r.kind === 'chatgpt'
        ? {
            expiresAt: isoFromSeconds(r.accessClaims.exp),
            lastRefresh: snap.served?.lastRefresh ?? null,
            nextRefreshAt: refresh.nextRefreshAt,
          }
        : null,
    refresh: { state: refresh.state, lastError: refresh.lastError, nextAttemptAt: refresh.nextAttemptAt },
    settings: {
      codexHome,
      preferredAuthMethod: snap.settings.preferredAuthMethod,
      forcedLoginMethod: snap.settings.forcedLoginMethod,
      credentialsStore: snap.settings.credentialsStore,
    },
    problems: snap.problems.map((p) => ({ code: p.code, message: p.message, file: p.file, line: p.line, column: p.column })),
    daemon: { ...daemon },
  }
}

export function registerCoreMethods(transport: Transport, deps: MethodDeps, codexHome: string): void {
  transport.addMethod('getAuth', async (params) => {
    const { minValiditySeconds } = parseGetAuthParams(params)
    const snap = deps.snapshot()
    if (snap.resolved.kind === 'chatgpt' && deps.refresher !== null) await deps.refresher.ensureFresh(minValiditySeconds)
    const now = deps.snapshot()
    // The last good credential of an unparsable file is served until it expires
    // (docs/watching.md#files-the-daemon-cannot-use).
    if (now.read.state === 'unreadable' && now.resolved.kind === 'chatgpt') {
      const exp = now.resolved.accessClaims.exp
      if (exp !== null && exp * 1000 <= Date.now()) throw unreadableError(now.read.problem)
    }
    return grantFrom(now)
  })
  transport.addMethod('status', (params) => {
    paramsObject(params)
    return buildStatus(deps.snapshot(), deps.daemon, deps.refresher?.status() ?? IDLE_REFRESH, codexHome)
  })
  transport.addMethod('refresh', async (params) => {
    paramsObject(params)
    if (deps.refresher === null) throw new RpcError(ErrorCode.MethodNotFound, 'Method not found')
    await deps.refresher.forceRefresh()
    return grantFrom(deps.snapshot())
  })
  transport.addMethod('subscribe', (params, conn) => {
    paramsObject(params)
    conn.subscribed = true
    return { subscribed: true as const }
  })
}
