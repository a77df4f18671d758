// The method table of docs/contract.md: every method the daemon serves, in one place. Each entry checks
// its params (daemon/params.ts), calls the part that does the work and shapes the answer
// (daemon/views.ts). Failures are thrown as the domain's errors; daemon/errors.ts maps them.
import {
  ErrorCode,
  GET_AUTH_DEFAULT_MIN_VALIDITY,
  PROTOCOL_VERSION,
  RESTRICTED_METHODS,
  type AuditedMethod,
  type BrokerAnswer,
  type Methods,
  type MethodName,
  type SocketKind,
  type Status,
} from '../rpc/contract.js'
import { clip } from '../text.js'
import type { Connection } from '../rpc/transport.js'
import type { Logger } from '../log.js'
import type { LoginManager } from '../login/manager.js'
import type { Refresher } from '../refresh/refresher.js'
import type { Snapshot } from '../state/cache.js'
import { RpcError, invalidParams } from '../rpc/errors.js'
import type { AuditLog } from './audit.js'
import { toRpcError } from './errors.js'
import { badRequest, type Broker, type BrokerResult } from '../broker/broker.js'
import type { PlaceholderRegistry } from '../broker/placeholders.js'
import {
  paramsObject,
  parseAuditParams,
  parseAwaitParams,
  parseBrokerRefreshParams,
  parseBrokerRevokeParams,
  parseCancelParams,
  parseGetAuthParams,
  parseHelloParams,
  parseLoginParams,
  parseLogoutParams,
  parsePlaceholderIssueParams,
  parsePlaceholderRevokeParams,
} from './params.js'
import { NotServedError, buildStatus, grantFrom, placeholderInfo, unreadableError, type DaemonInfo } from './views.js'

export interface MethodDeps {
  snapshot(): Snapshot
  daemon: DaemonInfo
  /** CODEX_HOME as given and where it leads now (it changes with a relink). */
  home(): { given: string; target: string | null }
  refresher: Pick<Refresher, 'ensureFresh' | 'forceRefresh' | 'status' | 'rereadIfStale'>
  logins: Pick<LoginManager, 'start' | 'wait' | 'cancel' | 'logout'>
  broker: Pick<Broker, 'refresh' | 'revoke' | 'noteIssued'>
  /** Placeholders (docs/remote.md): the registry, and saving it (resolves once on disk, or reported). */
  placeholders: { registry: PlaceholderRegistry; save(): Promise<void> }
  /** Status counters since start. */
  counters(): Status['counters']
  log: Logger
  audit: AuditLog
}

export type MethodHandler<M extends MethodName> = (params: unknown, conn: Connection) => Methods[M][1] | Promise<Methods[M][1]>

/** Every method of the contract, each exactly once (the type makes a missing one a compile error). */
export type MethodTable = { [M in MethodName]: MethodHandler<M> }

/** The audit's outcome for what a method threw: the contract's reason, never the message. */
function outcomeOf(e: unknown): string {
  const rpc = toRpcError(e)
  if (rpc === null) return 'internal_error'
  const reason = rpc.data?.reason
  if (typeof reason === 'string') return reason
  return rpc.code === ErrorCode.InvalidParams ? 'invalid_params' : `error ${rpc.code}`
}

/** Where a broker answer carries its note to the audit: a symbol, so it never goes on the wire. */
const NOTE = Symbol('broker note')

/** The audit's outcome for a broker answer: `ok`, its note (`placeholder_reused`), or its HTTP status and OpenAI error code. */
function brokerOutcome(answer: BrokerAnswer): string {
  const note = (answer as { [NOTE]?: string })[NOTE]
  if (note !== undefined) return note
  if (answer.status === 200) return 'ok'
  const code = (answer.body.error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? `http ${answer.status} ${clip(code)}` : `http ${answer.status}`
}

const restrictedAllowed: ReadonlySet<string> = new Set(RESTRICTED_METHODS)
/**
 * -32008 for a method of the contract that the restricted socket does not serve
 * (docs/remote.md#the-restricted-socket-and-placeholders); null: serve it.
 */
export function refuseOnRestricted(method: string, socketKind: SocketKind): RpcError | null {
  if (socketKind !== 'restricted' || restrictedAllowed.has(method)) return null
  return new RpcError(ErrorCode.Restricted, `${method} is not available on the restricted socket`, { method })
}

export function methodTable(deps: MethodDeps): MethodTable {
  /** Runs `work` and records who asked and how it ended (daemon/audit.ts); `detail` is set by `work` once it has read its params. */
  const audited = async <T>(
    method: AuditedMethod,
    conn: Connection,
    work: (setDetail: (d: string) => void) => T | Promise<T>,
    outcomeOfResult: (result: T) => string = () => 'ok',
  ): Promise<T> => {
    let detail: string | null = null
    try {
      const result = await work((d) => (detail = d))
      deps.audit.record(method, conn.peer, detail, outcomeOfResult(result), conn.socketKind)
      return result
    } catch (e) {
      deps.audit.record(method, conn.peer, detail, outcomeOf(e), conn.socketKind)
      throw e
    }
  }
  /** A broker answer on the wire is exactly {status, body}; its note goes to the audit only. */
  const brokerAnswer = async (result: Promise<BrokerResult>): Promise<BrokerAnswer> => {
    const { note, ...answer } = await result
    return note !== undefined ? Object.assign(answer, { [NOTE]: note }) : answer
  }
  return {
    getAuth: (params, conn) => audited('getAuth', conn, () => getAuth(params)),
    status: (params) => {
      paramsObject(params)
      return buildStatus(deps.snapshot(), deps.daemon, deps.refresher.status(), deps.home(), deps.counters())
    },
    refresh: (params, conn) =>
      audited('refresh', conn, async () => {
        paramsObject(params)
        await deps.refresher.forceRefresh()
        return grantFrom(deps.snapshot())
      }),
    subscribe: (params, conn) => {
      paramsObject(params)
      // Subscribers are exempt from the idle timeout: capped, so they never hold every slot.
      if (!conn.subscribe()) throw new RpcError(ErrorCode.ServerBusy, 'Server busy: too many subscribed connections; this connection will be closed')
      return { subscribed: true as const }
    },
    login: (params, conn) =>
      audited('login', conn, (setDetail) => {
        const { method, apiKey } = parseLoginParams(params)
        setDetail(method)
        return deps.logins.start(method, apiKey)
      }),
    awaitLogin: (params, conn) => {
      const { loginId, timeoutMs } = parseAwaitParams(params)
      // The wait ends with the connection: nobody could read its answer.
      const result = deps.logins.wait(loginId, timeoutMs, conn.closed)
      if (result === null) throw invalidParams('loginId', 'no login with this loginId')
      return result
    },
    cancelLogin: (params) => {
      const { loginId } = parseCancelParams(params)
      return { cancelled: deps.logins.cancel(loginId) }
    },
    logout: (params, conn) =>
      audited('logout', conn, (setDetail) => {
        const { revoke } = parseLogoutParams(params)
        setDetail(revoke ? 'revoke' : 'no-revoke')
        return deps.logins.logout(revoke)
      }),
    // The refresh broker (docs/broker.md): Codex's own requests, forwarded by `codex-auth exec`.
    // Audited like refresh and logout: a user who wonders which tool spent or revoked can find out.
    brokerRefresh: (params, conn) =>
      audited(
        'brokerRefresh',
        conn,
        (setDetail) => {
          const body = parseBrokerRefreshParams(params)
          setDetail(clip(body.refresh_reason ?? 'no reason'))
          if (body.grant_type !== 'refresh_token') return badRequest('Unsupported grant type', 'unsupported_grant_type')
          return brokerAnswer(deps.broker.refresh(body, conn.socketKind))
        },
        brokerOutcome,
      ),
    brokerRevoke: (params, conn) => audited('brokerRevoke', conn, () => deps.broker.revoke(parseBrokerRevokeParams(params), conn.socketKind), brokerOutcome),
    // Placeholders (docs/remote.md#the-restricted-socket-and-placeholders). Issued on either socket,
    // bound to it; listed and revoked on the main socket only (the restricted one refuses those).
    placeholderIssue: (params, conn) =>
      audited('placeholderIssue', conn, async (setDetail) => {
        const { label, replaces } = parsePlaceholderIssueParams(params)
        setDetail(clip(label))
        return placeholderIssue(label, replaces ?? null, conn)
      }),
    placeholderList: (params) => {
      paramsObject(params)
      const { registry } = deps.placeholders
      return { placeholders: registry.list().map(placeholderInfo) }
    },
    placeholderRevoke: (params, conn) =>
      audited('placeholderRevoke', conn, async (setDetail) => {
        const { id } = parsePlaceholderRevokeParams(params)
        setDetail(id)
        const revoked = deps.placeholders.registry.revoke(id)
        if (revoked) await deps.placeholders.save()
        deps.log.info({ placeholderId: id, revoked }, 'placeholder revoke')
        return { revoked }
      }),
    hello: (params) => {
      const { client, protocol } = parseHelloParams(params)
      const fields = { client: client.name, clientVersion: client.version, clientProtocol: protocol, protocol: PROTOCOL_VERSION }
      // The client reports a mismatch to its user; the log says it happened, naming both sides.
      if (protocol !== PROTOCOL_VERSION) deps.log.warn({ ...fields, version: deps.daemon.version }, 'a client speaks another protocol')
      else deps.log.debug(fields, 'hello')
      return { daemon: { version: deps.daemon.version, protocol: PROTOCOL_VERSION } }
    },
    audit: (params) => {
      const { limit } = parseAuditParams(params)
      return deps.audit.read(limit)
    },
  }

  /**
   * A placeholder for the caller's socket, with the current tokens as Codex's auth.json (ChatGPT
   * login only: it stands in for a refresh token). The tokens are made valid first, as getAuth's.
   */
  async function placeholderIssue(label: string, replaces: string | null, conn: Connection): Promise<Methods['placeholderIssue'][1]> {
    const chatgpt = async (): Promise<Snapshot> => {
      const snap = deps.snapshot()
      if (snap.resolved.kind === 'apikey') throw new NotServedError('not_logged_in', 'Not logged in with ChatGPT: the daemon serves an API key, and placeholders stand in for a ChatGPT refresh token only')
      if (snap.resolved.kind !== 'chatgpt') grantFrom(snap) // throws why nothing is served
      return snap
    }
    await chatgpt()
    await deps.refresher.ensureFresh(GET_AUTH_DEFAULT_MIN_VALIDITY)
    const snap = await chatgpt()
    const r = snap.resolved as Extract<Snapshot['resolved'], { kind: 'chatgpt' }>
    const peer = conn.peer === null ? null : { pid: conn.peer.pid, uid: conn.peer.uid, exe: conn.peer.exe }
    const { record, placeholder } = deps.placeholders.registry.issue({ label, socket: conn.socketKind, peer, replaces, accessToken: r.tokens.accessToken })
    // Handed out only once saved: a daemon restarted after this answer still knows it.
    await deps.placeholders.save()
    deps.broker.noteIssued()
    deps.log.info({ placeholderId: record.id, label: clip(label), socket: conn.socketKind, replaces }, 'placeholder issued')
    return {
      id: record.id,
      placeholder,
      expiresAt: new Date(record.expiresAt).toISOString(),
      authFile: {
        auth_mode: 'chatgpt',
        OPENAI_API_KEY: null,
        tokens: { id_token: r.tokens.idToken, access_token: r.tokens.accessToken, refresh_token: placeholder, account_id: r.tokens.accountId ?? r.idClaims.accountId },
        last_refresh: snap.served?.lastRefresh ?? null,
      },
    }
  }

  /** getAuth's work: a token valid for minValiditySeconds, refreshed first when needed. */
  async function getAuth(params: unknown): Promise<Methods['getAuth'][1]> {
    const { minValiditySeconds } = parseGetAuthParams(params)
    // A keyring entry Codex replaced sends no signal: read it again if the last read is old.
    const reread = deps.refresher.rereadIfStale()
    if (reread !== null) await reread
    const before = deps.snapshot()
    // docs/architecture.md: the last good credential of an unparsable file is served until it
    // expires; then the file is the error (-32006), not the refresh.
    if (before.read.state === 'unreadable' && before.resolved.kind === 'chatgpt') {
      const exp = before.resolved.accessClaims.exp
      if (exp !== null && exp * 1000 <= Date.now()) throw unreadableError(before.read.problem)
    }
    // Throws unless the token is valid for minValiditySeconds, whatever the store (docs/contract.md).
    if (before.resolved.kind === 'chatgpt') await deps.refresher.ensureFresh(minValiditySeconds)
    return grantFrom(deps.snapshot())
  }
}
