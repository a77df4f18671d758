// NDJSON framing and the limits of a net.Server's connections (docs/contract.md#framing-and-limits). One line = one
// JSON-RPC message or batch: this file cuts lines, decodes them (strict UTF-8, then JSON; -32700
// otherwise) and hands each parsed line to `receive` (rpc/server.ts, json-rpc-2.0), whose reply it
// writes back. The limits are its own: line length, bytes buffered across connections, a
// connection's unsent replies and requests running, connections served, idle closing.
import net from 'node:net'
import { createJSONRPCErrorResponse } from 'json-rpc-2.0'
import { ErrorCode, MAX_LINE_BYTES } from './contract.js'
import type { PeerCred } from '../os/peercred.js'

export interface TransportLimits {
  /** A line longer than this gets -32600 and the connection is closed. */
  maxLineBytes: number
  /** Connections served at once; more are closed at accept. */
  maxConnections: number
  /** Bytes buffered across all connections (partial lines in, unsent replies out). */
  maxBufferedBytes: number
  /** Unsent reply bytes one connection may hold before it counts as a reader that never reads. */
  maxConnectionOutputBytes: number
  /** Requests one connection may have running before we stop reading from it. */
  maxInFlightPerConnection: number
  /** An unsubscribed connection with nothing running is closed after this long without traffic. */
  idleTimeoutMs: number
}

export const DEFAULT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  maxLineBytes: MAX_LINE_BYTES,
  maxConnections: 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxConnectionOutputBytes: 4 * 1024 * 1024,
  maxInFlightPerConnection: 256,
  idleTimeoutMs: 60_000,
})

/** Listen backlog: absorbs a burst of 1000 connects while the accept loop catches up. */
export const LISTEN_BACKLOG = 2048

export interface Connection {
  readonly id: number
  subscribed: boolean
  /** Who connected, asked once at accept (TransportEvents.identify); null when unknown. */
  readonly peer: PeerCred | null
}

/** The reply to one parsed line (null: nothing to send). Never rejects by design. */
export type Receive = (message: unknown, conn: Connection) => PromiseLike<unknown>

export interface TransportEvents {
  /** `receive` rejected after all: a fault of ours; the line gets no answer. */
  onReceiveError(error: unknown): void
  /** A connection was refused or closed for a limit. */
  onLimit(kind: 'line_too_long' | 'buffer_cap' | 'slow_reader' | 'max_connections', connId: number): void
  /** The peer's credentials, asked once per connection at accept so that no method pays for it. */
  identify?(socket: net.Socket): PeerCred | null
}

interface ConnState extends Connection {
  socket: net.Socket
  /**
   * The partial line, in one buffer that grows by doubling: a list of received chunks would cost
   * an object per chunk (a client trickling one byte per write would pin ~60 bytes of heap per
   * byte, far beyond what the buffer cap counts). Its capacity is what bufferedIn counts.
   */
  part: Buffer | null
  partBytes: number
  inFlight: number
  paused: boolean
  closing: boolean
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

export class Transport {
  private readonly limits: TransportLimits
  private readonly conns = new Set<ConnState>()
  private bufferedIn = 0
  private nextId = 1

  constructor(
    private readonly receive: Receive,
    private readonly events: TransportEvents,
    limits: Partial<TransportLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
  }

  /** Bytes held now: partial lines in plus replies not yet taken by the kernel. */
  private get bufferedBytes(): number {
    let out = 0
    for (const c of this.conns) out += c.socket.writableLength
    return this.bufferedIn + out
  }

  /** Wire a server to this transport. The caller listens (path or inherited fd). */
  attach(server: net.Server): void {
    server.maxConnections = this.limits.maxConnections
    server.on('drop', () => this.events.onLimit('max_connections', 0))
    server.on('connection', (socket) => this.accept(socket))
  }

  /** Send a notification to every subscribed connection. */
  broadcast(method: string, params: unknown): void {
    let line: string | null = null
    for (const c of this.conns) {
      if (!c.subscribed || c.closing) continue
      line ??= JSON.stringify({ jsonrpc: '2.0', method, params }) + '\n'
      this.write(c, line)
    }
  }

  /** Close every connection (after the server stopped accepting). */
  closeAll(): void {
    for (const c of this.conns) c.socket.destroy()
  }

  private accept(socket: net.Socket): void {
    const c: ConnState = {
      id: this.nextId++,
      subscribed: false,
      peer: this.events.identify?.(socket) ?? null,
      socket,
      part: null,
      partBytes: 0,
      inFlight: 0,
      paused: false,
      closing: false,
    }
    this.conns.add(c)
    socket.setNoDelay?.(true)
    socket.setTimeout(this.limits.idleTimeoutMs)
    socket.on('timeout', () => {
      // Idle: nothing running, and not waiting for notifications (or already closing for a fault).
      // Destroy rather than end(): a peer that never closes its side would otherwise keep the
      // connection, and its partial line, forever.
      if (c.inFlight > 0 || (c.subscribed && !c.closing)) return
      c.closing = true
      this.releasePart(c)
      socket.destroy()
    })
    socket.on('data', (chunk: Buffer) => this.onData(c, chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      this.releasePart(c)
      c.closing = true
      this.conns.delete(c)
    })
  }

  private releasePart(c: ConnState): void {
    this.bufferedIn -= c.part?.length ?? 0
    c.part = null
    c.partBytes = 0
  }

  private onData(c: ConnState, chunk: Buffer): void {
    if (c.closing) return
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(10, start)
      if (nl === -1) break
      const piece = chunk.subarray(start, nl)
      if (c.partBytes + piece.length > this.limits.maxLineBytes) return this.lineTooLong(c)
      let line: Buffer
      if (c.part === null) line = piece
      else {
        line = Buffer.concat([c.part.subarray(0, c.partBytes), piece])
        this.releasePart(c)
      }
      start = nl + 1
      this.onLine(c, line)
      if (c.closing) return
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start)
      if (c.partBytes + rest.length > this.limits.maxLineBytes) return this.lineTooLong(c)
      const need = c.partBytes + rest.length
      const capacity = c.part?.length ?? 0
      // Copy (never keep a subarray: it would pin the whole chunk); grow by doubling, at most to
      // the line limit, which `need` is within.
      const grown = need > capacity ? Math.min(Math.max(need, capacity * 2), this.limits.maxLineBytes) : capacity
      if (this.bufferedBytes + (grown - capacity) > this.limits.maxBufferedBytes) {
        this.events.onLimit('buffer_cap', c.id)
        this.fail(c, ErrorCode.InvalidRequest, `Server busy: more than ${this.limits.maxBufferedBytes} bytes buffered across connections`)
        return
      }
      if (grown !== capacity) {
        const next = Buffer.allocUnsafeSlow(grown)
        if (c.part !== null) c.part.copy(next, 0, 0, c.partBytes)
        c.part = next
        this.bufferedIn += grown - capacity
      }
      rest.copy(c.part!, c.partBytes)
      c.partBytes = need
    }
  }

  private lineTooLong(c: ConnState): void {
    this.events.onLimit('line_too_long', c.id)
    this.fail(c, ErrorCode.InvalidRequest, `Invalid Request: line longer than ${this.limits.maxLineBytes} bytes`)
  }

  /** Answer a protocol fault with id null and close the connection. */
  private fail(c: ConnState, code: number, message: string): void {
    this.write(c, JSON.stringify(createJSONRPCErrorResponse(null, code, message)) + '\n')
    c.closing = true
    this.releasePart(c)
    c.socket.end()
  }

  private onLine(c: ConnState, line: Buffer): void {
    if (line.length === 0 || (line.length === 1 && line[0] === 13)) return
    let message: unknown
    try {
      message = JSON.parse(utf8.decode(line))
    } catch {
      this.send(c, createJSONRPCErrorResponse(null, ErrorCode.ParseError, 'Parse error'))
      return
    }
    // A batch is as many requests as it has members, for the in-flight cap.
    const requests = Array.isArray(message) ? message.length : 1
    if (requests > this.limits.maxInFlightPerConnection) {
      this.send(c, createJSONRPCErrorResponse(null, ErrorCode.InvalidRequest, `Invalid Request: batch larger than ${this.limits.maxInFlightPerConnection}`))
      return
    }
    this.track(c, this.receive(message, c), Math.max(requests, 1)).then(
      (reply) => {
        if (reply !== null) this.send(c, reply)
      },
      (error: unknown) => this.events.onReceiveError(error),
    )
  }

  /** Count running requests; stop reading from a connection that has too many. */
  private track<T>(c: ConnState, p: PromiseLike<T>, requests: number): PromiseLike<T> {
    c.inFlight += requests
    if (c.inFlight >= this.limits.maxInFlightPerConnection && !c.paused) {
      c.paused = true
      c.socket.pause()
    }
    const done = (): void => {
      c.inFlight -= requests
      if (c.paused && c.inFlight < this.limits.maxInFlightPerConnection / 2) {
        c.paused = false
        if (!c.closing) c.socket.resume()
      }
    }
    p.then(done, done)
    return p
  }

  private send(c: ConnState, message: unknown): void {
    this.write(c, JSON.stringify(message) + '\n')
  }

  private write(c: ConnState, line: string): void {
    if (c.socket.destroyed) return
    if (c.socket.writableLength + line.length > this.limits.maxConnectionOutputBytes) {
      // A reader that never reads: drop it rather than hold its replies forever.
      this.events.onLimit('slow_reader', c.id)
      c.closing = true
      c.socket.destroy()
      return
    }
    c.socket.write(line)
  }
}
