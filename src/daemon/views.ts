// What the methods answer, built from the state's snapshot: the AuthGrant served now (or why
// nothing is served) and the Status (docs/contract.md). Holds no secret beyond the grant's token.
import type { AuthGrant, PlaceholderInfo, Status } from '../rpc/contract.js'
import type { PlaceholderRegistry } from '../broker/placeholders.js'
import type { RefreshStatus } from '../refresh/refresher.js'
import type { Snapshot } from '../state/cache.js'
import { StoreError } from '../store/errors.js'
import type { Problem } from '../types.js'

export interface DaemonInfo {
  version: string
  pid: number
  startedAt: string
  socket: string
  /** The restricted socket's path, or null when it is not served (docs/remote.md). */
  restrictedSocket: string | null
  activated: boolean
}

/** Nothing can be served: nobody is logged in (in a way we serve), or policy forbids what is there. */
export class NotServedError extends Error {
  readonly reason: 'not_logged_in' | 'forbidden_by_policy'
  constructor(
    reason: 'not_logged_in' | 'forbidden_by_policy',
    message: string,
    /** The problem that says why (store_ephemeral), sent as data.problem. */
    readonly problem: Problem['code'] | null = null,
  ) {
    super(message)
    this.name = 'NotServedError'
    this.reason = reason
  }
}

/** auth.json or the keyring entry cannot be read: where and why, as the state found it. */
export function unreadableError(p: Problem): StoreError {
  const named = p.code === 'auth_unreadable' ? null : p.code
  return new StoreError('unreadable', p.message, { file: p.file, line: p.line, column: p.column }, named, p.details ?? null)
}

/** Problems that mean the stored credential could not be read at all (getAuth's -32006). */
const UNREADABLE: readonly Problem['code'][] = ['auth_unreadable', 'keyring_entry_invalid', 'keyring_unreachable']

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
      throw new NotServedError('forbidden_by_policy', r.message)
    case 'unsupported':
      throw new NotServedError('not_logged_in', `auth.json uses auth_mode "${r.mode}", which codex-authd does not serve`)
    case 'none': {
      // The home leads nowhere, or to a directory another daemon owns: say so rather than "Not logged in".
      const home = snap.problems.find((p) => p.code === 'home_owned' || p.code === 'home_invalid')
      if (home) throw new NotServedError('not_logged_in', home.message)
      const unreadable = snap.problems.find((p) => UNREADABLE.includes(p.code))
      if (unreadable) throw unreadableError(unreadable)
      // Ephemeral credentials exist only inside the Codex process: say so, never a bare "Not logged in".
      const ephemeral = snap.problems.find((p) => p.code === 'store_ephemeral')
      if (ephemeral) throw new NotServedError('not_logged_in', `Not logged in: ${ephemeral.message}`, 'store_ephemeral')
      throw new NotServedError('not_logged_in', 'Not logged in')
    }
  }
}

export function buildStatus(
  snap: Snapshot,
  daemon: DaemonInfo,
  refresh: RefreshStatus,
  home: { given: string; target: string | null },
  counters: Status['counters'],
): Status {
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
      codexHome: home.given,
      codexHomeTarget: home.target,
      preferredAuthMethod: snap.settings.preferredAuthMethod,
      forcedLoginMethod: snap.settings.forcedLoginMethod,
      credentialsStore: snap.settings.credentialsStore,
    },
    problems: snap.problems.map((p) => ({ code: p.code, message: p.message, file: p.file, line: p.line, column: p.column, ...(p.details ? { details: { ...p.details } } : {}) })),
    daemon: { ...daemon },
    counters,
  }
}

/** One placeholder for placeholderList: times as RFC 3339, never the string (the registry has none). */
export function placeholderInfo(r: ReturnType<PlaceholderRegistry['list']>[number]): PlaceholderInfo {
  const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())
  return {
    id: r.id,
    label: r.label,
    socket: r.socket,
    createdAt: iso(r.createdAt)!,
    lastUsedAt: iso(r.lastUsedAt),
    expiresAt: iso(r.expiresAt)!,
    uses: r.uses,
    state: r.state,
    peer: r.peer,
  }
}
