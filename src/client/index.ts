// The typed client library (`codex-authd/client`): JSON-RPC 2.0 over NDJSON on a Unix socket.
// json-rpc-2.0's client speaks the protocol (ids, requests, matching answers, errors); this file
// frames lines, connects, times out, reconnects, hands notifications to subscribers and turns
// answers into typed results and errors. Bundled into CommonJS (dist/client.cjs,
// dist/codex-auth.cjs) so that `codex-auth` starts fast (docs/architecture.md#library-choices).

import * as net from 'node:net'
// The client's two modules, not the package index: the index also loads the server half, which
// cost `codex-auth` about 4 ms more at start-up (measured, p10 of 200 runs). The version is pinned.
import { JSONRPCClient } from 'json-rpc-2.0/dist/client.js'
import { JSONRPCErrorException, createJSONRPCErrorResponse } from 'json-rpc-2.0/dist/models.js'
import { resolveSocketPath, socketPathMax, socketPathTooLong, type SocketSource } from '../paths.js'
import { ALLOW_OWNER_ENV, allowedOwnerFrom, judgeSocket, socketFacts, userNameOf } from '../os/socket-owner.js'
import { peerCredentials } from '../os/peercred.js'
import {
  ErrorCode,
  MAX_LINE_BYTES,
  PROTOCOL_VERSION,
  type AuditParams,
  type AuditResult,
  type AuthGrant,
  type BrokerAnswer,
  type BrokerRefreshParams,
  type BrokerRevokeParams,
  type AwaitLoginParams,
  type CancelLoginParams,
  type GetAuthParams,
  type HelloResult,
  type LoginParams,
  type LoginResult,
  type LoginStarted,
  type LogoutParams,
  type LogoutResult,
  type Methods,
  type MethodName,
  type PlaceholderIssueParams,
  type PlaceholderIssueResult,
  type PlaceholderListResult,
  type PlaceholderRevokeParams,
  type Status,
} from '../rpc/contract.js'
import { VERSION } from '../version.js'
import { serviceSetup, startHint } from './service-hint.js'

export * from '../rpc/contract.js'

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** A JSON-RPC error answered by the daemon. `message` is the daemon's. */
export class AuthdError extends Error {
  readonly code: number
  /** `data.reason` (docs/contract.md#errors), or null for protocol errors. */
  readonly reason: string | null
  readonly data: unknown
  constructor(code: number, message: string, data: unknown) {
    super(message)
    this.name = 'AuthdError'
    this.code = code
    this.data = data
    const reason = data !== null && typeof data === 'object' ? (data as { reason?: unknown }).reason : undefined
    this.reason = typeof reason === 'string' ? reason : null
  }
}

/**
 * The daemon and this client do not speak the same protocol, or the daemon is too old for what
 * was asked (`hello`, docs/contract.md). The message names both versions and which one to upgrade;
 * code, reason and data are those of the error that revealed it (-32600, -32601 or -32602).
 */
export class VersionMismatchError extends AuthdError {
  /** null when the daemon did not say (it predates the handshake and `status` failed). */
  readonly daemonVersion: string | null
  readonly daemonProtocol: number
  readonly clientVersion: string
  readonly clientProtocol: number
  constructor(cause: AuthdError, message: string, daemon: { version: string | null; protocol: number }, client: { version: string }) {
    super(cause.code, message, cause.data)
    this.name = 'VersionMismatchError'
    this.daemonVersion = daemon.version
    this.daemonProtocol = daemon.protocol
    this.clientVersion = client.version
    this.clientProtocol = PROTOCOL_VERSION
  }
}

/** Nothing answers on the socket (or the path cannot be used). The message says how to start it. */
export class DaemonUnreachableError extends Error {
  readonly code = 'daemon_unreachable' as const
  readonly socket: string
  /** errno code of the failed connect (ENOENT, ECONNREFUSED, EACCES, ...), or null. */
  readonly errno: string | null
  constructor(socket: string, errno: string | null, detail?: string) {
    super(
      `codex-authd is not running: ${detail ?? `cannot connect to ${socket}${errno ? ` (${errno})` : ''}`}. ` +
        startHint(serviceSetup(process.platform, process.env)),
    )
    this.name = 'DaemonUnreachableError'
    this.socket = socket
    this.errno = errno
  }
}

/**
 * The socket, its directory or the process answering on it belongs to another user
 * (docs/contract.md#whom-the-client-talks-to). Nothing was sent. `codex-auth` exits 4.
 */
export class SocketTrustError extends Error {
  readonly code = 'socket_untrusted' as const
  readonly socket: string
  /** The uid that owns the socket or its directory, or the peer's; null when the opt-in itself is wrong. */
  readonly owner: number | null
  constructor(socket: string, owner: number | null, message: string) {
    super(message)
    this.name = 'SocketTrustError'
    this.socket = socket
    this.owner = owner
  }
}

/** Who the client runs as and which other owner the user allowed (CODEX_AUTH_ALLOW_SOCKET_OWNER). */
interface TrustPolicy {
  me: number
  allowed: number | null
}

function trustPolicy(env: NodeJS.ProcessEnv, socket: string): TrustPolicy {
  const me = typeof process.getuid === 'function' ? process.getuid() : 0
  try {
    return { me, allowed: allowedOwnerFrom(env) }
  } catch (e) {
    throw new SocketTrustError(socket, null, (e as Error).message)
  }
}

/**
 * The refusal. For a file's owner, `problem` names the uid (judgeSocket) and this adds the user
 * name, who we are and the opt-in; a peer that is not who the files say gets no opt-in hint.
 */
function untrusted(socket: string, owner: number, me: number, problem: string, ownerHints = true): SocketTrustError {
  // The opt-in helps only when another user is the reason; a loose mode of our own needs a chmod.
  const other = ownerHints && owner !== me && owner !== 0
  const name = other ? userNameOf(owner) : null
  const who = other ? `${name !== null ? ` (${name})` : ''}, not by you (uid ${me})` : ''
  const optIn = other ? ` If this socket is shared on purpose, set ${ALLOW_OWNER_ENV}=${owner}.` : ''
  return new SocketTrustError(socket, owner, `refusing to use ${socket}: ${problem}${who}; nothing was sent.${optIn}`)
}

/** The connection ended before the answer arrived (the daemon stopped, restarted or hung up). */
export class ConnectionClosedError extends Error {
  readonly code = 'connection_closed' as const
  constructor(message = 'connection to codex-authd closed') {
    super(message)
    this.name = 'ConnectionClosedError'
  }
}

/** No answer within `timeoutMs`. */
export class AuthdTimeoutError extends Error {
  readonly code = 'timeout' as const
  readonly method: string
  constructor(method: string, ms: number) {
    super(`codex-authd did not answer ${method} within ${ms} ms`)
    this.name = 'AuthdTimeoutError'
    this.method = method
  }
}

// ---------------------------------------------------------------------------------------------
// Options and handlers
// ---------------------------------------------------------------------------------------------

export interface ConnectOptions {
  /** Socket path (as `--socket`); otherwise the rules of docs/contract.md#socket-path with `env` and `codexHome`. */
  socket?: string
  /** CODEX_HOME (as `--codex-home`), used only to compute the socket path. */
  codexHome?: string
  /** Environment for the socket rules and CODEX_AUTH_ALLOW_SOCKET_OWNER (default process.env). */
  env?: NodeJS.ProcessEnv
  /** Reconnect after the connection drops (default true). */
  reconnect?: boolean
  /** Per-call timeout and connect timeout in ms (default 60000; 0 disables). */
  timeoutMs?: number
  /** How this client names itself in `hello` (default "codex-authd/client"). */
  clientName?: string
}

export interface SubscriptionHandler {
  authChanged?: (status: Status) => void
  loginCompleted?: (result: LoginResult) => void
  /** Called after the subscription was re-established on a new connection (daemon restart). */
  resubscribed?: () => void
  /**
   * Called when the subscribed connection drops and the client starts reconnecting (the daemon
   * stopped, or a forwarded socket was cut), with why; `resubscribed` follows once it is back.
   */
  disconnected?: (reason: string) => void
}

const DEFAULT_TIMEOUT_MS = 60_000
const DEFAULT_CLIENT_NAME = 'codex-authd/client'
/** Errors after which the client asks `hello` whether the daemon speaks its protocol. */
const PROTOCOL_ERRORS: ReadonlySet<number> = new Set([ErrorCode.InvalidRequest, ErrorCode.MethodNotFound, ErrorCode.InvalidParams])
const BACKOFF_MIN_MS = 100
const BACKOFF_MAX_MS = 5_000

// ---------------------------------------------------------------------------------------------
// One connection: framing, ids, pending calls
// ---------------------------------------------------------------------------------------------

type NotificationSink = (method: string, params: unknown) => void

/** Marks the answer json-rpc-2.0 makes up for a call that timed out (compared by identity). */
const TIMED_OUT = Object.freeze({ timedOut: true })

class Connection {
  private readonly sock: net.Socket
  private readonly client: JSONRPCClient
  /** The reject functions of calls still waiting, to end them when the connection closes. */
  private readonly waiting = new Set<(e: Error) => void>()
  private chunks: Buffer[] = []
  private size = 0
  closed = false
  closeReason: string | null = null
  /** What the daemon said before closing for a limit (an error answering no call). */
  private notice: string | null = null
  subscribed = false
  /** Hold the event loop open even when idle (a subscription is active). */
  keepAlive = false
  private closeListeners: Array<() => void> = []

  private constructor(
    sock: net.Socket,
    private readonly onNotification: NotificationSink,
  ) {
    this.sock = sock
    this.client = new JSONRPCClient((payload) => {
      if (!this.closed) this.sock.write(JSON.stringify(payload) + '\n')
    })
    sock.on('data', (chunk: Buffer) => this.onData(chunk))
    sock.on('error', (err: NodeJS.ErrnoException) => this.shutdown(`connection to codex-authd failed (${err.code ?? err.message})`))
    sock.on('close', () => this.shutdown('connection to codex-authd closed'))
    sock.on('end', () => this.shutdown('codex-authd closed the connection'))
  }

  static open(socketPath: string, timeoutMs: number, trust: TrustPolicy, onNotification: NotificationSink): Promise<Connection> {
    if (socketPathTooLong(socketPath)) {
      return Promise.reject(
        new DaemonUnreachableError(
          socketPath,
          null,
          `socket path is longer than ${socketPathMax()} bytes (${Buffer.byteLength(socketPath)}); ` +
            'set CODEX_AUTHD_SOCK (or --socket) to a shorter path',
        ),
      )
    }
    // Whom we are about to talk to, before anything is sent (docs/contract.md#whom-the-client-talks-to).
    const verdict = judgeSocket(socketFacts(socketPath, trust.me, trust.allowed))
    if (!verdict.ok) return Promise.reject(untrusted(socketPath, verdict.owner, trust.me, verdict.problem))
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ path: socketPath })
      let timer: NodeJS.Timeout | null = null
      const fail = (err: NodeJS.ErrnoException | null, detail?: string, refusal?: SocketTrustError) => {
        if (timer) clearTimeout(timer)
        sock.removeAllListeners()
        sock.on('error', () => {})
        sock.destroy()
        reject(refusal ?? new DaemonUnreachableError(socketPath, err?.code ?? null, detail))
      }
      sock.once('error', (err) => fail(err))
      if (timeoutMs > 0) {
        timer = setTimeout(() => fail(null, `no connection to ${socketPath} within ${timeoutMs} ms`), timeoutMs)
      }
      sock.once('connect', () => {
        // Only where the files did not settle it (a socket another user owns, allowed by the
        // user): loading the FFI costs `codex-auth token` about 30 ms.
        if (verdict.peerUids !== null) {
          let peer: ReturnType<typeof peerCredentials> = null
          try {
            peer = peerCredentials(sock)
          } catch {
            // The C library cannot be loaded here: as where the platform cannot tell, the file checks stand.
          }
          if (peer !== null && !verdict.peerUids.includes(peer.uid)) {
            const pid = peer.pid !== null ? `, pid ${peer.pid}` : ''
            const as = `uid ${peer.uid}${userNameOf(peer.uid) !== null ? ` (${userNameOf(peer.uid)})` : ''}${pid}`
            const problem = `the process answering on it runs as ${as}: neither you, root nor the allowed owner`
            const refusal = untrusted(socketPath, peer.uid, trust.me, problem, false)
            return fail(null, undefined, refusal)
          }
        }
        if (timer) clearTimeout(timer)
        sock.removeAllListeners('error')
        resolve(new Connection(sock, onNotification))
      })
    })
  }

  onClose(fn: () => void): void {
    if (this.closed) fn()
    else this.closeListeners.push(fn)
  }

  /** Keep the event loop alive only while something is waiting on this connection. */
  updateRef(): void {
    if (this.closed) return
    if (this.keepAlive || this.waiting.size > 0) this.sock.ref()
    else this.sock.unref()
  }

  call(method: string, params: unknown, timeoutMs: number): Promise<unknown> {
    if (this.closed) return Promise.reject(new ConnectionClosedError(this.closeReason ?? undefined))
    const requester = timeoutMs > 0 ? this.client.timeout(timeoutMs, (id) => createJSONRPCErrorResponse(id, 0, 'timeout', TIMED_OUT)) : this.client
    return new Promise((resolve, reject) => {
      const fail = (e: Error): void => {
        this.waiting.delete(fail)
        this.updateRef()
        reject(e)
      }
      this.waiting.add(fail)
      this.updateRef()
      requester.request(method, params as Parameters<JSONRPCClient['request']>[1]).then(
        (result) => {
          this.waiting.delete(fail)
          this.updateRef()
          resolve(result)
        },
        (e: unknown) => fail(answerError(e, method, timeoutMs)),
      )
    })
  }

  destroy(reason: string): void {
    this.shutdown(reason)
  }

  private shutdown(why: string): void {
    if (this.closed) return
    const reason = this.notice !== null ? `codex-authd closed the connection: ${this.notice.slice(0, 200)}` : why
    this.closed = true
    this.closeReason = reason
    this.chunks = []
    this.sock.destroy()
    for (const fail of [...this.waiting]) fail(new ConnectionClosedError(reason))
    // Frees the library's own table; the calls above have ended already.
    this.client.rejectAllPendingRequests(reason)
    const listeners = this.closeListeners
    this.closeListeners = []
    for (const fn of listeners) fn()
  }

  private onData(chunk: Buffer): void {
    let start = 0
    while (!this.closed) {
      const nl = chunk.indexOf(10, start)
      if (nl === -1) {
        const rest = chunk.subarray(start)
        this.size += rest.length
        if (this.size > MAX_LINE_BYTES) return this.shutdown('codex-authd sent a line over 1 MiB')
        if (rest.length > 0) this.chunks.push(rest)
        return
      }
      const part = chunk.subarray(start, nl)
      if (this.size + part.length > MAX_LINE_BYTES) return this.shutdown('codex-authd sent a line over 1 MiB')
      const line = this.chunks.length > 0 ? Buffer.concat([...this.chunks, part]) : part
      this.chunks = []
      this.size = 0
      start = nl + 1
      this.onLine(line.toString('utf8'))
    }
  }

  private onLine(line: string): void {
    if (line.trim() === '') return
    let msg: unknown
    try {
      msg = JSON.parse(line)
    } catch {
      return this.shutdown('codex-authd sent invalid JSON')
    }
    // Notifications (a method, no id) go to the subscribers, answers to the calls waiting for
    // them; the daemon sends no requests, and we would serve none.
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (typeof m !== 'object' || m === null) continue
      const o = m as { method?: unknown; id?: unknown; params?: unknown }
      const error = (o as { error?: { message?: unknown } }).error
      if (o.id === null && typeof error?.message === 'string') this.notice = error.message
      if (typeof o.method !== 'string') this.client.receive(m)
      else if (o.id === undefined || o.id === null) this.onNotification(o.method, o.params)
    }
  }
}

/** A failed call as this library's errors: the daemon's error, or a timeout. */
function answerError(e: unknown, method: string, timeoutMs: number): Error {
  if (e instanceof JSONRPCErrorException) {
    if (e.data === TIMED_OUT) return new AuthdTimeoutError(method, timeoutMs)
    return new AuthdError(e.code, e.message, e.data ?? null)
  }
  return new AuthdError(-32603, 'codex-authd sent an answer that is neither a result nor an error', null)
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

export class AuthdClient {
  /** The socket path this client talks to. */
  readonly socket: string
  /** Which rule chose it (docs/contract.md#socket-path). */
  readonly socketSource: SocketSource
  private conn: Connection | null = null
  private connecting: Promise<Connection> | null = null
  private readonly handlers = new Set<SubscriptionHandler>()
  private closedByUser = false
  private resubTimer: NodeJS.Timeout | null = null
  private backoffMs = BACKOFF_MIN_MS
  private readonly reconnect: boolean
  private readonly timeoutMs: number
  private readonly clientName: string
  private readonly trust: TrustPolicy
  private everConnected = false

  /** @internal use connect() */
  constructor(
    socket: string,
    socketSource: SocketSource,
    reconnect: boolean,
    timeoutMs: number,
    clientName = DEFAULT_CLIENT_NAME,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.trust = trustPolicy(env, socket)
    this.socket = socket
    this.socketSource = socketSource
    this.reconnect = reconnect
    this.timeoutMs = timeoutMs
    this.clientName = clientName
  }

  /** @internal */
  async open(): Promise<void> {
    await this.ensureConnection()
  }

  getAuth(params?: GetAuthParams): Promise<AuthGrant> {
    return this.call('getAuth', params)
  }
  status(): Promise<Status> {
    return this.call('status', undefined)
  }
  login(params: LoginParams): Promise<LoginStarted> {
    return this.call('login', params)
  }
  awaitLogin(params: AwaitLoginParams): Promise<LoginResult> {
    // The daemon holds the call for up to timeoutSeconds: never time out before it does.
    const extra = params.timeoutSeconds !== undefined ? params.timeoutSeconds * 1000 + 10_000 : 0
    const ms = this.timeoutMs > 0 ? Math.max(this.timeoutMs, extra) : 0
    return this.call('awaitLogin', params, ms)
  }
  cancelLogin(params: CancelLoginParams): Promise<{ cancelled: boolean }> {
    return this.call('cancelLogin', params)
  }
  logout(params?: LogoutParams): Promise<LogoutResult> {
    return this.call('logout', params)
  }
  refresh(): Promise<AuthGrant> {
    return this.call('refresh', undefined)
  }
  /** The placeholders given to remote machines, oldest first (docs/remote.md); main socket only. */
  placeholderList(): Promise<PlaceholderListResult> {
    return this.call('placeholderList', undefined)
  }
  /** Revokes a placeholder's chain (docs/remote.md); main socket only. */
  placeholderRevoke(params: PlaceholderRevokeParams): Promise<{ revoked: boolean }> {
    return this.call('placeholderRevoke', params)
  }
  /** Who was handed tokens, refreshed, logged in or out, oldest first (docs/contract.md#audit). */
  audit(params?: AuditParams): Promise<AuditResult> {
    return this.call('audit', params)
  }
  /** The refresh broker (docs/broker.md): Codex's refresh request, answered as the token endpoint would. */
  brokerRefresh(params: BrokerRefreshParams): Promise<BrokerAnswer> {
    return this.call('brokerRefresh', params)
  }
  /** The refresh broker: Codex's revoke request (the daemon's logout for the current token). */
  brokerRevoke(params: BrokerRevokeParams): Promise<BrokerAnswer> {
    return this.call('brokerRevoke', params)
  }
  /**
   * A placeholder for a remote Codex's auth.json (docs/remote.md): the current tokens in Codex's
   * auth.json form, with an expiring placeholder in place of the refresh token. `replaces` names
   * an earlier placeholder of this caller's, revoked once the new one is issued.
   */
  placeholderIssue(params: PlaceholderIssueParams): Promise<PlaceholderIssueResult> {
    return this.call('placeholderIssue', params)
  }
  /** The version handshake: the daemon's version and protocol (this client's are PROTOCOL_VERSION and VERSION). */
  async hello(): Promise<HelloResult> {
    return (await this.ensureConnection()).call('hello', this.helloParams(), this.timeoutMs) as Promise<HelloResult>
  }

  /**
   * Subscribes this connection to `authChanged` and `loginCompleted`. Resolves once the daemon
   * confirmed. The returned function removes the handler (the daemon keeps sending; the client
   * drops what no handler wants). With reconnect on, the subscription survives daemon restarts.
   */
  async subscribe(handler: SubscriptionHandler): Promise<() => void> {
    this.handlers.add(handler)
    try {
      const conn = await this.ensureConnection()
      if (!conn.subscribed) await this.subscribeOn(conn)
    } catch (err) {
      this.handlers.delete(handler)
      throw err
    }
    this.setKeepAlive()
    return () => {
      this.handlers.delete(handler)
      this.setKeepAlive()
      if (this.handlers.size === 0 && this.resubTimer) {
        clearTimeout(this.resubTimer)
        this.resubTimer = null
      }
    }
  }

  /** Closes the connection; pending calls reject with ConnectionClosedError. */
  close(): void {
    this.closedByUser = true
    this.handlers.clear()
    if (this.resubTimer) clearTimeout(this.resubTimer)
    this.resubTimer = null
    this.conn?.destroy('client closed')
    this.conn = null
  }

  // -- internals ------------------------------------------------------------------------------

  private async call<M extends MethodName>(method: M, params: Methods[M][0], timeoutMs = this.timeoutMs): Promise<Methods[M][1]> {
    const conn = await this.ensureConnection()
    try {
      return (await conn.call(method, params, timeoutMs)) as Methods[M][1]
    } catch (e) {
      if (e instanceof AuthdError && PROTOCOL_ERRORS.has(e.code)) throw await this.explain(conn, method, e)
      throw e
    }
  }

  private helloParams(): Methods['hello'][0] {
    return { client: { name: this.clientName, version: VERSION }, protocol: PROTOCOL_VERSION }
  }

  /**
   * After a protocol-level error, the handshake (contract.ts `hello`): when the daemon speaks
   * another protocol, or is older and lacks the method, the error says so, naming both versions.
   * Otherwise (or when the daemon cannot tell) it is returned as it was.
   */
  private async explain(conn: Connection, method: MethodName, cause: AuthdError): Promise<AuthdError> {
    const me = `${this.clientName} ${VERSION}`
    let daemon: { version: string | null; protocol: number }
    let predates = false
    try {
      const r = (await conn.call('hello', this.helloParams(), this.timeoutMs)) as Partial<HelloResult> | null
      const d = r?.daemon
      if (typeof d?.version !== 'string' || typeof d.protocol !== 'number') return cause
      daemon = { version: d.version, protocol: d.protocol }
    } catch (e) {
      if (!(e instanceof AuthdError && e.code === ErrorCode.MethodNotFound)) return cause
      // Older than the handshake, so older than this client: protocol 1, its version in status.
      predates = true
      let version: string | null = null
      try {
        const s = (await conn.call('status', undefined, this.timeoutMs)) as Partial<Status> | null
        if (typeof s?.daemon?.version === 'string') version = s.daemon.version
      } catch {
        // the message then goes without the daemon's version
      }
      daemon = { version, protocol: 1 }
    }
    const them = `codex-authd ${daemon.version ?? '(version unknown)'}`
    if (daemon.protocol !== PROTOCOL_VERSION) {
      const older = daemon.protocol < PROTOCOL_VERSION ? 'codex-authd' : this.clientName
      return new VersionMismatchError(
        cause,
        `${them} speaks protocol ${daemon.protocol}, ${me} speaks protocol ${PROTOCOL_VERSION}: upgrade ${older} (${method} failed: ${cause.message})`,
        daemon,
        { version: VERSION },
      )
    }
    const daemonOlder = predates || (daemon.version !== null && compareVersions(daemon.version, VERSION) < 0)
    if (cause.code === ErrorCode.MethodNotFound && daemonOlder) {
      return new VersionMismatchError(
        cause,
        `${them} does not know \`${method}\`, which ${me} uses: upgrade codex-authd${predates ? ' (it predates the version handshake)' : ''}`,
        daemon,
        { version: VERSION },
      )
    }
    return cause
  }

  private async subscribeOn(conn: Connection): Promise<void> {
    await conn.call('subscribe', undefined, this.timeoutMs)
    conn.subscribed = true
  }

  private setKeepAlive(): void {
    if (!this.conn) return
    this.conn.keepAlive = this.handlers.size > 0
    this.conn.updateRef()
  }

  private ensureConnection(): Promise<Connection> {
    if (this.closedByUser) return Promise.reject(new ConnectionClosedError('client closed'))
    if (this.conn && !this.conn.closed) return Promise.resolve(this.conn)
    if (this.conn && this.conn.closed && !this.reconnect) {
      return Promise.reject(new ConnectionClosedError(this.conn.closeReason ?? undefined))
    }
    if (this.connecting) return this.connecting
    const attempt = Connection.open(this.socket, this.timeoutMs, this.trust, (m, p) => this.dispatch(m, p)).then(
      (conn) => {
        this.connecting = null
        if (this.closedByUser) {
          conn.destroy('client closed')
          throw new ConnectionClosedError('client closed')
        }
        this.conn = conn
        this.everConnected = true
        this.setKeepAlive()
        conn.onClose(() => this.onConnectionClosed(conn))
        return conn
      },
      (err: unknown) => {
        this.connecting = null
        throw err
      },
    )
    this.connecting = attempt
    return attempt
  }

  private onConnectionClosed(conn: Connection): void {
    if (this.conn !== conn) return
    if (this.closedByUser || !this.reconnect || this.handlers.size === 0) return
    for (const h of [...this.handlers]) {
      try {
        h.disconnected?.(conn.closeReason ?? 'connection to codex-authd closed')
      } catch {
        // a handler's failure is its own
      }
    }
    this.scheduleResubscribe()
  }

  private scheduleResubscribe(): void {
    if (this.resubTimer || this.closedByUser || this.handlers.size === 0) return
    const jitter = Math.random() * 0.2 * this.backoffMs
    const delay = Math.round(this.backoffMs + jitter)
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS)
    this.resubTimer = setTimeout(() => {
      this.resubTimer = null
      void this.resubscribe()
    }, delay)
  }

  private async resubscribe(): Promise<void> {
    if (this.closedByUser || this.handlers.size === 0) return
    try {
      const conn = await this.ensureConnection()
      if (!conn.subscribed) await this.subscribeOn(conn)
      this.setKeepAlive()
      this.backoffMs = BACKOFF_MIN_MS
      for (const h of [...this.handlers]) {
        try {
          h.resubscribed?.()
        } catch {
          // a handler's failure is its own
        }
      }
    } catch {
      this.scheduleResubscribe()
    }
  }

  private dispatch(method: string, params: unknown): void {
    for (const h of [...this.handlers]) {
      try {
        if (method === 'authChanged') h.authChanged?.(params as Status)
        else if (method === 'loginCompleted') h.loginCompleted?.(params as LoginResult)
      } catch {
        // a handler's failure is its own
      }
    }
  }

  /** @internal for tests */
  get connected(): boolean {
    return this.everConnected && this.conn !== null && !this.conn.closed
  }
}

/** The socket path a client with these options talks to (docs/contract.md#socket-path), without connecting. */
export function socketPathFor(opts: ConnectOptions = {}): { path: string; source: SocketSource } {
  const r = resolveSocketPath({
    flag: opts.socket ?? null,
    codexHome: opts.codexHome ?? null,
    env: opts.env ?? process.env,
  })
  return { path: r.path, source: r.source }
}

/**
 * Connects to the daemon. Rejects with DaemonUnreachableError when nothing answers on the socket,
 * with SocketTrustError when the socket is not the user's own (nothing is sent then). Never
 * starts a daemon.
 */
export async function connect(opts: ConnectOptions = {}): Promise<AuthdClient> {
  const { path, source } = socketPathFor(opts)
  const client = new AuthdClient(path, source, opts.reconnect ?? true, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, opts.clientName, opts.env)
  await client.open()
  return client
}

/** Orders x.y.z versions by number (a pre-release suffix is ignored): <0, 0 or >0. */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string): number[] => v.split(/[-+]/)[0]!.split('.').map((n) => Number.parseInt(n, 10) || 0)
  const x = parts(a)
  const y = parts(b)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}
