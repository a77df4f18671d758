// The typed client library (`codex-authd/client`): JSON-RPC 2.0 over NDJSON on a Unix socket.
// Hand-written on `net` (no dependencies) so that the CommonJS bundle starts fast (docs/architecture.md#library-choices).

import * as net from 'node:net'
import { resolveSocketPath, socketPathMax, socketPathTooLong, type SocketSource } from '../paths.js'
import {
  MAX_LINE_BYTES,
  type AuthGrant,
  type AwaitLoginParams,
  type CancelLoginParams,
  type GetAuthParams,
  type LoginParams,
  type LoginResult,
  type LoginStarted,
  type LogoutParams,
  type LogoutResult,
  type Methods,
  type MethodName,
  type Status,
} from '../rpc/contract.js'

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

/** Nothing answers on the socket (or the path cannot be used). The message says how to start it. */
export class DaemonUnreachableError extends Error {
  readonly code = 'daemon_unreachable' as const
  readonly socket: string
  /** errno code of the failed connect (ENOENT, ECONNREFUSED, EACCES, ...), or null. */
  readonly errno: string | null
  constructor(socket: string, errno: string | null, detail?: string) {
    super(
      `codex-authd is not running: ${detail ?? `cannot connect to ${socket}${errno ? ` (${errno})` : ''}`}. ` +
        'Start it with `systemctl --user start codex-authd.socket`, or run `codex-authd` ' +
        '(with the same --codex-home/--socket).',
    )
    this.name = 'DaemonUnreachableError'
    this.socket = socket
    this.errno = errno
  }
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
  /** Environment for the socket rules (default process.env). */
  env?: NodeJS.ProcessEnv
  /** Reconnect after the connection drops (default true). */
  reconnect?: boolean
  /** Per-call timeout and connect timeout in ms (default 60000; 0 disables). */
  timeoutMs?: number
}

export interface SubscriptionHandler {
  authChanged?: (status: Status) => void
  loginCompleted?: (result: LoginResult) => void
  /** Called after the subscription was re-established on a new connection (daemon restart). */
  resubscribed?: () => void
}

const DEFAULT_TIMEOUT_MS = 60_000
const BACKOFF_MIN_MS = 100
const BACKOFF_MAX_MS = 5_000

// ---------------------------------------------------------------------------------------------
// One connection: framing, ids, pending calls
// ---------------------------------------------------------------------------------------------

interface Pending {
  method: string
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout | null
}

type NotificationSink = (method: string, params: unknown) => void

class Connection {
  private readonly sock: net.Socket
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private chunks: Buffer[] = []
  private size = 0
  closed = false
  closeReason: string | null = null
  subscribed = false
  /** Hold the event loop open even when idle (a subscription is active). */
  keepAlive = false
  private closeListeners: Array<() => void> = []

  private constructor(
    sock: net.Socket,
    private readonly onNotification: NotificationSink,
  ) {
    this.sock = sock
    sock.on('data', (chunk: Buffer) => this.onData(chunk))
    sock.on('error', (err: NodeJS.ErrnoException) => this.shutdown(`connection to codex-authd failed (${err.code ?? err.message})`))
    sock.on('close', () => this.shutdown('connection to codex-authd closed'))
    sock.on('end', () => this.shutdown('codex-authd closed the connection'))
  }

  static open(socketPath: string, timeoutMs: number, onNotification: NotificationSink): Promise<Connection> {
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
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ path: socketPath })
      let timer: NodeJS.Timeout | null = null
      const fail = (err: NodeJS.ErrnoException | null, detail?: string) => {
        if (timer) clearTimeout(timer)
        sock.removeAllListeners()
        sock.on('error', () => {})
        sock.destroy()
        reject(new DaemonUnreachableError(socketPath, err?.code ?? null, detail))
      }
      sock.once('error', (err) => fail(err))
      if (timeoutMs > 0) {
        timer = setTimeout(() => fail(null, `no connection to ${socketPath} within ${timeoutMs} ms`), timeoutMs)
      }
      sock.once('connect', () => {
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
    if (this.keepAlive || this.pending.size > 0) this.sock.ref()
    else this.sock.unref()
  }

  call(method: string, params: unknown, timeoutMs: number): Promise<unknown> {
    if (this.closed) return Promise.reject(new ConnectionClosedError(this.closeReason ?? undefined))
    const id = this.nextId++
    const msg: Record<string, unknown> = { jsonrpc: '2.0', id, method }
    if (params !== undefined) msg.params = params
    return new Promise((resolve, reject) => {
      const p: Pending = { method, resolve, reject, timer: null }
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(id)
          this.updateRef()
          reject(new AuthdTimeoutError(method, timeoutMs))
        }, timeoutMs)
      }
      this.pending.set(id, p)
      this.updateRef()
      this.sock.write(JSON.stringify(msg) + '\n')
    })
  }

  destroy(reason: string): void {
    this.shutdown(reason)
  }

  private shutdown(reason: string): void {
    if (this.closed) return
    this.closed = true
    this.closeReason = reason
    this.chunks = []
    this.sock.destroy()
    const pending = [...this.pending.values()]
    this.pending.clear()
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer)
      p.reject(new ConnectionClosedError(reason))
    }
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
    const msgs = Array.isArray(msg) ? msg : [msg]
    for (const m of msgs) this.onMessage(m)
  }

  private onMessage(m: unknown): void {
    if (m === null || typeof m !== 'object') return
    const o = m as { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: unknown }
    if (typeof o.method === 'string') {
      // A notification (or a request from the daemon, which we do not serve).
      if (o.id === undefined || o.id === null) this.onNotification(o.method, o.params)
      return
    }
    if (typeof o.id !== 'number') return // errors with id null (parse errors): the connection closes
    const p = this.pending.get(o.id)
    if (!p) return
    this.pending.delete(o.id)
    if (p.timer) clearTimeout(p.timer)
    this.updateRef()
    if (o.error !== undefined && o.error !== null) {
      const e = o.error as { code?: unknown; message?: unknown; data?: unknown }
      p.reject(
        new AuthdError(
          typeof e.code === 'number' ? e.code : -32603,
          typeof e.message === 'string' ? e.message : 'codex-authd error',
          e.data ?? null,
        ),
      )
    } else {
      p.resolve(o.result)
    }
  }
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
  private everConnected = false

  /** @internal use connect() */
  constructor(socket: string, socketSource: SocketSource, reconnect: boolean, timeoutMs: number) {
    this.socket = socket
    this.socketSource = socketSource
    this.reconnect = reconnect
    this.timeoutMs = timeoutMs
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

  private call<M extends MethodName>(method: M, params: Methods[M][0], timeoutMs = this.timeoutMs): Promise<Methods[M][1]> {
    return this.ensureConnection().then(
      (conn) => conn.call(method, params, timeoutMs) as Promise<Methods[M][1]>,
    )
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
    const attempt = Connection.open(this.socket, this.timeoutMs, (m, p) => this.dispatch(m, p)).then(
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
 * Connects to the daemon. Rejects with DaemonUnreachableError when nothing answers on the socket.
 * Never starts a daemon.
 */
export async function connect(opts: ConnectOptions = {}): Promise<AuthdClient> {
  const { path, source } = socketPathFor(opts)
  const client = new AuthdClient(path, source, opts.reconnect ?? true, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  await client.open()
  return client
}
