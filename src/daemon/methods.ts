// The method table of docs/contract.md: every method the daemon serves, in one place. Each entry checks
// its params (daemon/params.ts), calls the part that does the work and shapes the answer
// (daemon/views.ts). Failures are thrown as the domain's errors; daemon/errors.ts maps them.
import { PROTOCOL_VERSION, type Methods, type MethodName } from '../rpc/contract.js'
import type { Connection } from '../rpc/transport.js'
import type { Logger } from '../log.js'
import type { LoginManager } from '../login/manager.js'
import type { Refresher } from '../refresh/refresher.js'
import type { Snapshot } from '../state/cache.js'
import { badRequest, type Broker } from '../broker/broker.js'
import { invalidParams } from '../rpc/errors.js'
import {
  paramsObject,
  parseAwaitParams,
  parseBrokerRefreshParams,
  parseBrokerRevokeParams,
  parseCancelParams,
  parseGetAuthParams,
  parseHelloParams,
  parseLoginParams,
  parseLogoutParams,
} from './params.js'
import { buildStatus, grantFrom, unreadableError, type DaemonInfo } from './views.js'

export interface MethodDeps {
  snapshot(): Snapshot
  daemon: DaemonInfo
  /** CODEX_HOME as given and where it leads now (it changes with a relink). */
  home(): { given: string; target: string | null }
  refresher: Pick<Refresher, 'ensureFresh' | 'forceRefresh' | 'status'>
  logins: Pick<LoginManager, 'start' | 'wait' | 'cancel' | 'logout'>
  broker: Pick<Broker, 'refresh' | 'revoke' | 'counters'>
  /** Refresh-token spends of the served home, by reason (status counters). */
  spendsByReason(): Record<string, number>
  log: Logger
}

export type MethodHandler<M extends MethodName> = (params: unknown, conn: Connection) => Methods[M][1] | Promise<Methods[M][1]>

/** Every method of the contract, each exactly once (the type makes a missing one a compile error). */
export type MethodTable = { [M in MethodName]: MethodHandler<M> }

export function methodTable(deps: MethodDeps): MethodTable {
  return {
    getAuth: async (params) => {
      const { minValiditySeconds } = parseGetAuthParams(params)
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
    },
    status: (params) => {
      paramsObject(params)
      return buildStatus(deps.snapshot(), deps.daemon, deps.refresher.status(), deps.home(), { refreshTokenSpends: deps.spendsByReason(), broker: deps.broker.counters() })
    },
    refresh: async (params) => {
      paramsObject(params)
      await deps.refresher.forceRefresh()
      return grantFrom(deps.snapshot())
    },
    subscribe: (params, conn) => {
      paramsObject(params)
      conn.subscribed = true
      return { subscribed: true as const }
    },
    login: (params) => {
      const { method, apiKey } = parseLoginParams(params)
      return deps.logins.start(method, apiKey)
    },
    awaitLogin: (params) => {
      const { loginId, timeoutMs } = parseAwaitParams(params)
      const result = deps.logins.wait(loginId, timeoutMs)
      if (result === null) throw invalidParams('loginId', 'no login with this loginId')
      return result
    },
    cancelLogin: (params) => {
      const { loginId } = parseCancelParams(params)
      return { cancelled: deps.logins.cancel(loginId) }
    },
    logout: (params) => {
      const { revoke } = parseLogoutParams(params)
      return deps.logins.logout(revoke)
    },
    // The refresh broker (docs/broker.md): Codex's own requests, forwarded by `codex-auth exec`.
    brokerRefresh: (params) => {
      const body = parseBrokerRefreshParams(params)
      if (body.grant_type !== 'refresh_token') return badRequest('Unsupported grant type', 'unsupported_grant_type')
      return deps.broker.refresh(body)
    },
    brokerRevoke: (params) => deps.broker.revoke(parseBrokerRevokeParams(params)),
    hello: (params) => {
      const { client, protocol } = parseHelloParams(params)
      const fields = { client: client.name, clientVersion: client.version, clientProtocol: protocol, protocol: PROTOCOL_VERSION }
      // The client reports a mismatch to its user; the log says it happened, naming both sides.
      if (protocol !== PROTOCOL_VERSION) deps.log.warn({ ...fields, version: deps.daemon.version }, 'a client speaks another protocol')
      else deps.log.debug(fields, 'hello')
      return { daemon: { version: deps.daemon.version, protocol: PROTOCOL_VERSION } }
    },
  }
}
