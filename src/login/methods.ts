// login, awaitLogin, cancelLogin and logout (DESIGN §6). Filled in by the login work (issue 5).
import type { Logger } from '../log.js'
import type { IssuerConfig } from '../net/issuer.js'
import type { Transport } from '../rpc/transport.js'
import type { AuthState } from '../state.js'

export interface LoginDeps {
  home: string
  state: AuthState
  issuer: IssuerConfig
  env: NodeJS.ProcessEnv
  log: Logger
  loginPorts: number[]
  /** Send a notification to subscribed connections. */
  broadcast(method: 'loginCompleted', params: unknown): void
}

export interface LoginService {
  /** End running logins and free their ports (shutdown). */
  stop(): Promise<void>
}

export function registerLoginMethods(_transport: Transport, _deps: LoginDeps): LoginService {
  return { stop: async () => {} }
}
