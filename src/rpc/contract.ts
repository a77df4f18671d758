// The RPC contract (docs/contract.md): method names, params, results, notifications and error codes.
// Programs outside this repository are written against these names; change none without a reason.

export type AuthMode = 'apikey' | 'chatgpt'

export interface AuthGrant {
  mode: AuthMode
  /** The API key or the ChatGPT access token. Never the refresh token or the id token. */
  token: string
  accountId: string | null
  expiresAt: string | null
  email: string | null
  planType: string | null
}

export interface ErrorInfo {
  reason: string
  message: string
}

export interface StatusProblem {
  code: string
  message: string
  file: string | null
  line: number | null
  column: number | null
  /**
   * Added 2026-11-30, only on `keyring_unreachable`: `cause` is `no_session` | `no_provider` |
   * `timeout` | `locked` | `binding_missing` | `error` (docs/contract.md#problems).
   */
  details?: { cause: string }
}

export type RefreshState = 'idle' | 'refreshing' | 'backoff' | 'failed'

export interface Status {
  loggedIn: boolean
  mode: AuthMode | null
  source: 'env' | 'auth.json' | 'keyring' | null
  account: { email: string | null; planType: string | null; accountId: string | null } | null
  tokens: { expiresAt: string | null; lastRefresh: string | null; nextRefreshAt: string | null } | null
  refresh: { state: RefreshState; lastError: ErrorInfo | null; nextAttemptAt: string | null }
  settings: {
    /** CODEX_HOME as given (absolute, symlinks kept). */
    codexHome: string
    /**
     * Where it leads now (symlinks resolved): the directory served, or the one that cannot be
     * (problem `home_owned`); null when it leads nowhere (problem `home_invalid`). Follows a relink.
     */
    codexHomeTarget: string | null
    preferredAuthMethod: string
    forcedLoginMethod: string | null
    credentialsStore: string
  }
  problems: StatusProblem[]
  /** `restrictedSocket` (added 2026-11-30, docs/remote.md): the restricted socket's path, null when not served. */
  daemon: { version: string; pid: number; startedAt: string; socket: string; restrictedSocket: string | null; activated: boolean }
  /**
   * Since this daemon started (added 2026-11-29, docs/broker.md#counters): refresh-token spends by the
   * `refresh_reason` sent (the served home's), and broker requests by reason and by answer.
   */
  counters: {
    refreshTokenSpends: Record<string, number>
    broker: BrokerCounters
    /** Rotated placeholders presented again, each of which revoked its chain (added 2026-11-30, docs/remote.md). */
    placeholderReuse: number
    /** Placeholders issued, rotated, refused (unknown, other socket, expired, revoked) and active now (added 2026-11-30). */
    placeholders: PlaceholderCounters
  }
}

export interface PlaceholderCounters {
  issued: number
  rotated: number
  refused: number
  active: number
}

/** Broker requests: `requestsByReason` keys are `refresh:<reason>` and `revoke`; `answers` keys are the answer names of docs/broker.md. */
export interface BrokerCounters {
  requestsByReason: Record<string, number>
  answers: Record<string, number>
}

/**
 * `brokerRefresh` (docs/broker.md): Codex's refresh request body, exactly as Codex 0.171 sends it to
 * CODEX_REFRESH_TOKEN_URL_OVERRIDE. The refresh token crosses the socket inbound: the caller proves
 * it holds it.
 */
export interface BrokerRefreshParams {
  client_id: string
  grant_type: string
  refresh_reason?: string
  refresh_token: string
}

/** `brokerRevoke`: Codex's revoke request body (sent to CODEX_REVOKE_TOKEN_URL_OVERRIDE). */
export interface BrokerRevokeParams {
  token: string
  token_type_hint?: string
  client_id?: string
}

/**
 * What the listener answers Codex, verbatim: the HTTP status and JSON body. A 200 to `brokerRefresh`
 * carries `{id_token, access_token, refresh_token}`: the one place a refresh token leaves the daemon,
 * and only to the caller that presented the token it replaced.
 */
export interface BrokerAnswer {
  status: number
  body: Record<string, unknown>
}

/**
 * `placeholderIssue` (added 2026-11-30, docs/remote.md): a placeholder for a remote machine's
 * auth.json. `label` says where it goes (`host:alice@build1`, `sink`); `replaces`, an id issued on
 * the same socket, is revoked (with its chain) once the new one is issued.
 */
export interface PlaceholderIssueParams {
  label: string
  replaces?: string
}

/** auth.json exactly as Codex 0.171 writes it in ChatGPT mode, keys in Codex's order. */
export interface CodexAuthFileJson {
  auth_mode: 'chatgpt'
  OPENAI_API_KEY: null
  tokens: { id_token: string; access_token: string; refresh_token: string; account_id: string | null }
  last_refresh: string | null
}

export interface PlaceholderIssueResult {
  id: string
  /** The placeholder itself: a credential, shown once. `codex-authd-ph.` + base64url of 32 random bytes. */
  placeholder: string
  expiresAt: string
  /** The current tokens with the placeholder as `refresh_token`, ready to be written as auth.json. */
  authFile: CodexAuthFileJson
}

export type PlaceholderState = 'active' | 'rotated' | 'revoked' | 'expired' | 'reused'

/** One placeholder as `placeholderList` shows it: never the placeholder string. */
export interface PlaceholderInfo {
  id: string
  label: string
  /** The socket it was issued on, the only one that accepts it. */
  socket: SocketKind
  createdAt: string
  lastUsedAt: string | null
  expiresAt: string
  uses: number
  state: PlaceholderState
  /** Who asked for its chain's first placeholder, as the kernel told at connect time. */
  peer: { pid: number | null; uid: number | null; exe: string | null } | null
}

export interface PlaceholderListResult {
  placeholders: PlaceholderInfo[]
}

export interface PlaceholderRevokeParams {
  id: string
}

export type LoginMethod = 'browser' | 'device' | 'apikey'

/**
 * `expiresAt` (browser: added 2026-11-30): when the daemon gives up on the login (status `expired`),
 * so that a client can show the time left.
 */
export type LoginStarted =
  | { loginId: string; method: 'browser'; authUrl: string; callbackUrl: string; expiresAt: string }
  | { loginId: string; method: 'device'; verificationUrl: string; userCode: string; expiresAt: string }
  | { loginId: string; method: 'apikey'; status: 'succeeded' }

export type LoginStatus = 'pending' | 'succeeded' | 'failed' | 'cancelled' | 'expired'

export interface LoginResult {
  loginId: string
  status: LoginStatus
  /** `reason` is a LoginErrorReason */
  error: ErrorInfo | null
}

/**
 * `LoginResult.error.reason`. `cancelled_from_outside` (added 2026-11-29): a browser login ended
 * by a GET /cancel on its login server (a new `codex login`, or another local program), not by
 * cancelLogin; the status is `cancelled` either way.
 */
export type LoginErrorReason = 'login_failed' | 'forbidden_by_policy' | 'store_failed' | 'cancelled' | 'cancelled_from_outside' | 'expired'

export interface LogoutResult {
  wasLoggedIn: boolean
  revoked: boolean
}

export interface GetAuthParams {
  minValiditySeconds?: number
}
export interface LoginParams {
  method: LoginMethod
  apiKey?: string
}
export interface AwaitLoginParams {
  loginId: string
  timeoutSeconds?: number
}
export interface CancelLoginParams {
  loginId: string
}
export interface LogoutParams {
  revoke?: boolean
}

/**
 * The protocol this contract describes, exchanged by `hello`. It changes only when a client
 * written against it could no longer work with the daemon (a method or param removed or changed
 * in meaning, a result field removed or retyped). Additions (a method, an optional param, a result
 * field) keep it. A daemon that answers `hello` with -32601 predates the handshake; it speaks
 * protocol 1.
 */
export const PROTOCOL_VERSION = 1

/**
 * `hello`: the version handshake. The client names itself and its protocol; the daemon answers
 * with its own version and protocol, whatever the client's, and never refuses (it cannot judge a
 * newer client). The client decides: another protocol, or -32601 for a method of this contract,
 * is a version mismatch that it reports naming both versions. Clients need not send it before
 * anything else: the one in this repository asks only after a protocol-level error (-32600,
 * -32601, -32602), so a call that works costs no extra round trip.
 */
export interface HelloParams {
  client: { name: string; version: string }
  protocol: number
}
export interface HelloResult {
  daemon: { version: string; protocol: number }
}

/** The methods the audit records (docs/contract.md#audit). */
export type AuditedMethod = 'getAuth' | 'refresh' | 'login' | 'logout' | 'brokerRefresh' | 'brokerRevoke' | 'placeholderIssue' | 'placeholderRevoke'

/** One audit record: who asked for what, and how it ended. Never holds a secret. */
export interface AuditEntry {
  /** When the answer was given (ISO 8601, UTC). */
  time: string
  method: AuditedMethod
  /** `login`: the method asked for (`browser`, `device`, `apikey`); `logout`: `revoke` or `no-revoke`; `brokerRefresh`: Codex's `refresh_reason` (cut to 80 characters); else null. */
  detail: string | null
  /** `ok`, or the error's `data.reason` (`not_logged_in`, `refresh_failed`, ...), or `invalid_params`, `internal_error`. */
  outcome: string
  /** The connecting process as the kernel told it at connect time; fields are null where the platform does not tell. */
  peer: { pid: number | null; uid: number | null; exe: string | null }
  /** The socket the call came in on (added 2026-11-30). */
  socket: SocketKind
}

/** `audit`: the most recent records, oldest first. */
export interface AuditParams {
  /** At most this many (the newest); default and maximum: all that are kept. */
  limit?: number
}
export interface AuditResult {
  entries: AuditEntry[]
  /** How many records the daemon keeps (older ones are dropped). */
  capacity: number
  /** Records made since the daemon started, dropped ones included. */
  recorded: number
}

/** Method name -> [params, result]. */
export interface Methods {
  getAuth: [GetAuthParams | undefined, AuthGrant]
  status: [undefined, Status]
  login: [LoginParams, LoginStarted]
  awaitLogin: [AwaitLoginParams, LoginResult]
  cancelLogin: [CancelLoginParams, { cancelled: boolean }]
  logout: [LogoutParams | undefined, LogoutResult]
  refresh: [undefined, AuthGrant]
  subscribe: [undefined, { subscribed: true }]
  hello: [HelloParams, HelloResult]
  audit: [AuditParams | undefined, AuditResult]
  brokerRefresh: [BrokerRefreshParams, BrokerAnswer]
  brokerRevoke: [BrokerRevokeParams, BrokerAnswer]
  placeholderIssue: [PlaceholderIssueParams, PlaceholderIssueResult]
  placeholderList: [undefined, PlaceholderListResult]
  placeholderRevoke: [PlaceholderRevokeParams, { revoked: boolean }]
}
export type MethodName = keyof Methods

/**
 * Which socket a connection came in on (added 2026-11-30, docs/remote.md): the main socket serves
 * every method; the restricted one, meant to be forwarded to other machines (`ssh -R`, a
 * container), only RESTRICTED_METHODS.
 */
export type SocketKind = 'main' | 'restricted'

/**
 * What the restricted socket serves: tokens, status, notifications, the broker's refresh and
 * revoke (placeholders only there) and placeholderIssue. Any other method of the contract is
 * -32008 `restricted`, with `data.method`: nothing there can change the workstation's credentials.
 */
export const RESTRICTED_METHODS: readonly MethodName[] = Object.freeze(['getAuth', 'status', 'subscribe', 'hello', 'brokerRefresh', 'brokerRevoke', 'placeholderIssue'] as MethodName[])

/** Notifications sent to subscribed connections. */
export interface Notifications {
  authChanged: Status
  loginCompleted: LoginResult
}

export const GET_AUTH_DEFAULT_MIN_VALIDITY = 60
export const GET_AUTH_MAX_MIN_VALIDITY = 3600

/** JSON-RPC error codes (docs/contract.md#errors). */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  NotLoggedIn: -32001,
  RefreshFailed: -32002,
  LoginInProgress: -32003,
  LoginFailed: -32004,
  ForbiddenByPolicy: -32005,
  StoreUnreadable: -32006,
  ServerBusy: -32007,
  /** A method the restricted socket does not serve (added 2026-11-30, docs/remote.md). */
  Restricted: -32008,
} as const
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode]

/** `data.reason` for each application error code. */
export const ErrorReason = {
  [-32001]: 'not_logged_in',
  [-32002]: 'refresh_failed',
  [-32003]: 'login_in_progress',
  [-32004]: 'login_failed',
  [-32005]: 'forbidden_by_policy',
  [-32006]: 'store_unreadable',
  [-32007]: 'server_busy',
  [-32008]: 'restricted',
} as const

export type RefreshFailureKind = 'expired' | 'reused' | 'revoked' | 'rejected' | 'transient'

/** Exit codes of `codex-auth` (docs/contract.md#codex-auth). */
export const CliExit = {
  Ok: 0,
  NotLoggedIn: 1,
  Unreachable: 2,
  DaemonFailure: 3,
  /** The socket, its directory or the peer belongs to another user (docs/contract.md#whom-the-client-talks-to). */
  SocketUntrusted: 4,
  /** `sink --codex-home`: the home holds a login of its own (docs/remote.md#sinks); nothing was replaced. `exec --remote` says 125. */
  LoginPresent: 5,
  Usage: 64,
  ExecSetupFailed: 125,
  ExecNotExecutable: 126,
  ExecNotFound: 127,
} as const

/** Exit codes of `codex-authd` (docs/contract.md#codex-authd). */
export const DaemonExit = {
  Ok: 0,
  Crash: 1,
  HomeOwned: 3,
  SocketUnusable: 4,
  Config: 78,
} as const

/** Framing limits (docs/contract.md#framing-and-limits). */
export const MAX_LINE_BYTES = 1024 * 1024
