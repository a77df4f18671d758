// NDJSON framing and the limits of a net.Server's connections (docs/contract.md#framing-and-limits). One line = one
// JSON-RPC message or batch: this file cuts lines, decodes them (strict UTF-8, then JSON; -32700
// otherwise) and hands each parsed line to `receive` (rpc/server.ts, json-rpc-2.0), whose reply it
// writes back. The limits are its own: line length, bytes buffered across connections (input not
// yet processed, partial lines, unsent replies), requests running per connection and in all,
// connections and subscribers served, idle closing.
//
// Memory is bounded whatever clients do: everything a client can make the daemon hold is counted
// against a cap, and over a shared cap the connections holding the most are dropped (and logged),
// never the one that merely asked for a little — a client that reads its replies holds almost
// nothing. Lines are taken round-robin, one per connection per turn, so one flooding connection
// cannot starve the others; a connection's socket is read again only once its previous chunk has
// been processed, so unprocessed input is one chunk per connection at most.
import net from 'node:net'
import { setMaxListeners } from 'node:events'
import { createJSONRPCErrorResponse } from 'json-rpc-2.0'
import { ErrorCode, ErrorReason, MAX_LINE_BYTES } from './contract.js'
import type { PeerCred } from '../os/peercred.js'
import type { SocketKind } from './contract.js'

export interface TransportLimits {
  /** A line longer than this gets -32600 and the connection is closed. */
  maxLineBytes: number
  /** Connections served at once; more are answered -32007 and closed at accept. */
  maxConnections: number
  /**
   * Subscribed connections at once (they are exempt from the idle timeout). Kept below
   * maxConnections so that subscribers can never hold every slot; a subscribe over it is answered
   * -32007 and the connection closed.
   */
  maxSubscribers: number
  /** Bytes buffered across all connections (input not yet processed, partial lines, unsent replies). */
  maxBufferedBytes: number
  /** Unsent reply bytes one connection may hold before it counts as a reader that never reads. */
  maxConnectionOutputBytes: number
  /** Requests one connection may have running before we stop reading from it. */
  maxInFlightPerConnection: number
  /** Requests running across all connections; over it, the connection running the most is dropped. */
  maxInFlightTotal: number
  /** An unsubscribed connection with nothing running is closed after this long without traffic. */
  idleTimeoutMs: number
}

export const DEFAULT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  maxLineBytes: MAX_LINE_BYTES,
  maxConnections: 1024,
  maxSubscribers: 512,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxConnectionOutputBytes: 4 * 1024 * 1024,
  maxInFlightPerConnection: 256,
  maxInFlightTotal: 4096,
  idleTimeoutMs: 60_000,
})

/** Listen backlog: absorbs a burst of 1000 connects while the accept loop catches up. */
export const LISTEN_BACKLOG = 2048

/** Requests started per turn of the event loop before the loop gets to read sockets again. */
const REQUESTS_PER_TURN = 256
/**
 * Requests a connection may start per visit of the round-robin, on average (deficit round-robin):
 * a batch of 256 then waits 16 visits, in which others' single requests go first.
 */
const QUANTUM = 16
/**
 * A connection closed for a limit is told why, then kept this long (its input read and dropped)
 * before it is destroyed: a client that writes its request at once then reads the reason rather
 * than failing its write with EPIPE; one that never closes its side is not kept longer.
 */
const LINGER_MS = 1000
/** Connections refused at accept that may linger at once; beyond it they are destroyed at once. */
const MAX_LINGERING_REFUSALS = 64

export interface Connection {
  readonly id: number
  /** Whether notifications go to this connection. */
  readonly subscribed: boolean
  /** Asks for notifications; false when the subscriber cap is reached (the connection is then closed after its reply). */
  subscribe(): boolean
  /** Aborted when the connection is gone: work waiting only for this connection's sake stops. */
  readonly closed: AbortSignal
  /** Who connected, asked once at accept (TransportEvents.identify); null when unknown. */
  readonly peer: PeerCred | null
  /** The socket it came in on: the restricted one serves only some methods (docs/remote.md). */
  readonly socketKind: SocketKind
}

/** The reply to one parsed line (null: nothing to send). Never rejects by design. */
export type Receive = (message: unknown, conn: Connection) => PromiseLike<unknown>

export type LimitKind = 'line_too_long' | 'buffer_cap' | 'slow_reader' | 'max_connections' | 'pending_cap' | 'subscriber_cap'

export interface TransportEvents {
  /** `receive` rejected after all: a fault of ours; the line gets no answer. */
  onReceiveError(error: unknown): void
  /** A connection was refused or closed for a limit; `held` is what it held then (bytes or requests). */
  onLimit(kind: LimitKind, connId: number, held?: number): void
  /** The peer's credentials, asked once per connection at accept so that no method pays for it. */
  identify?(socket: net.Socket): PeerCred | null
}

interface ConnState extends Connection {
  subscribed: boolean
  socket: net.Socket
  abort: AbortController
  /** Received and not yet processed: the rest of one chunk (the socket is paused meanwhile). */
  pending: Buffer | null
  /** In the round-robin queue. */
  queued: boolean
  /** Requests it may start before waiting its turn again (deficit round-robin; at most QUANTUM). */
  credit: number
  /**
   * The partial line, in one buffer that grows by doubling: a list of received chunks would cost
   * an object per chunk (a client trickling one byte per write would pin ~60 bytes of heap per
   * byte, far beyond what the buffer cap counts). Its capacity is what bufferedIn counts.
   */
  part: Buffer | null
  partBytes: number
  /** Reply bytes handed to the socket and not yet taken by the kernel. */
  out: number
  inFlight: number
  /** Not read for having too many requests running. */
  paused: boolean
  /** socket.pause() was called (and resume() not yet). */
  readStopped: boolean
  closing: boolean
  /** Closed: its bytes and requests no longer count. */
  gone: boolean
  /** Refused a subscription: closed once that reply is written. */
  endAfterReply: boolean
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The wire form of one message. A Buffer: held off the V8 heap while it waits to be sent. */
function frame(message: unknown): Buffer {
  return Buffer.from(JSON.stringify(message) + '\n')
}

export class Transport {
  private readonly limits: TransportLimits
  private readonly conns = new Set<ConnState>()
  /** Connections with input to process, in turn. */
  private readonly ready: ConnState[] = []
  private scheduled = false
  private bufferedIn = 0
  private bufferedOut = 0
  private inFlightTotal = 0
  private subscribers = 0
  private lingeringRefusals = 0
  private nextId = 1

  constructor(
    private readonly receive: Receive,
    private readonly events: TransportEvents,
    limits: Partial<TransportLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
  }

  /**
   * Wire a server to this transport. The caller listens (path or inherited fd). Every server
   * shares the same limits: a forwarded restricted socket cannot take more than the main one could.
   */
  attach(server: net.Server, kind: SocketKind = 'main'): void {
    server.on('connection', (socket) => this.accept(socket, kind))
  }

  /** Send a notification to every subscribed connection. */
  broadcast(method: string, params: unknown): void {
    let line: Buffer | null = null
    for (const c of this.conns) {
      if (!c.subscribed || c.closing) continue
      line ??= frame({ jsonrpc: '2.0', method, params })
      this.write(c, line)
    }
  }

  /** Close every connection (after the server stopped accepting). */
  closeAll(): void {
    for (const c of this.conns) c.socket.destroy()
  }

  private accept(socket: net.Socket, socketKind: SocketKind): void {
    socket.on('error', () => {})
    if (this.conns.size >= this.limits.maxConnections) {
      // Said, not only closed: a client then reports the limit rather than a bare EPIPE.
      this.events.onLimit('max_connections', 0)
      const busy = createJSONRPCErrorResponse(null, ErrorCode.ServerBusy, `Server busy: ${this.limits.maxConnections} connections open`, { reason: ErrorReason[ErrorCode.ServerBusy] })
      socket.end(frame(busy))
      if (this.lingeringRefusals >= MAX_LINGERING_REFUSALS) {
        socket.once('finish', () => socket.destroy())
        return
      }
      this.lingeringRefusals++
      socket.once('close', () => this.lingeringRefusals--)
      socket.on('data', () => {})
      socket.setTimeout(LINGER_MS, () => socket.destroy())
      return
    }
    const abort = new AbortController()
    // One listener per running request at most (awaitLogin): bounded by the in-flight cap.
    setMaxListeners(0, abort.signal)
    const c: ConnState = {
      id: this.nextId++,
      subscribed: false,
      peer: this.events.identify?.(socket) ?? null,
      socketKind,
      subscribe: () => this.subscribe(c),
      closed: abort.signal,
      abort,
      socket,
      pending: null,
      queued: false,
      credit: QUANTUM,
      part: null,
      partBytes: 0,
      out: 0,
      inFlight: 0,
      paused: false,
      readStopped: false,
      closing: false,
      gone: false,
      endAfterReply: false,
    }
    this.conns.add(c)
    socket.setNoDelay?.(true)
    socket.setTimeout(this.limits.idleTimeoutMs)
    socket.on('timeout', () => {
      // Idle: nothing running or waiting its turn, and not waiting for notifications; or closed
      // for a limit and lingering (LINGER_MS). Destroy rather than end(): a peer that never
      // closes its side would otherwise keep the connection, and its partial line, forever.
      if (!c.closing && (c.inFlight > 0 || c.pending !== null || c.subscribed)) return
      socket.destroy()
    })
    socket.on('data', (chunk: Buffer) => this.onData(c, chunk))
    socket.on('close', () => this.release(c))
  }

  private subscribe(c: ConnState): boolean {
    if (c.subscribed) return true
    if (this.subscribers >= this.limits.maxSubscribers) {
      this.events.onLimit('subscriber_cap', c.id, this.subscribers)
      c.endAfterReply = true
      return false
    }
    c.subscribed = true
    this.subscribers++
    return true
  }

  /** The connection is gone: nothing it held counts any more, and what waits for it stops. */
  private release(c: ConnState): void {
    if (c.gone) return
    c.gone = true
    c.closing = true
    this.releasePart(c)
    if (c.pending !== null) this.bufferedIn -= c.pending.length
    c.pending = null
    this.bufferedOut -= c.out
    c.out = 0
    this.inFlightTotal -= c.inFlight
    if (c.subscribed) this.subscribers--
    this.conns.delete(c)
    c.abort.abort()
  }

  private releasePart(c: ConnState): void {
    this.bufferedIn -= c.part?.length ?? 0
    c.part = null
    c.partBytes = 0
  }

  private get buffered(): number {
    return this.bufferedIn + this.bufferedOut
  }

  private onData(c: ConnState, chunk: Buffer): void {
    if (c.closing) return
    // More of a long line, and no whole line waiting: nothing to take turns for.
    if (c.pending === null && chunk.indexOf(10) === -1) return this.appendPart(c, chunk)
    c.pending = c.pending === null ? chunk : Buffer.concat([c.pending, chunk])
    this.bufferedIn += chunk.length
    if (this.buffered > this.limits.maxBufferedBytes) this.shed(0, c)
    if (c.closing) return
    if (this.ready.length === 0 && !this.scheduled) {
      // Nobody is waiting for a turn, so this connection's turn is now: one request costs no extra
      // loop iteration, and no stop and restart of reading (two epoll_ctl calls) when it used the
      // whole chunk, the usual case (docs/contract.md, "Lines are taken in turn").
      c.queued = true
      this.ready.push(c)
      this.pump()
    } else {
      this.enqueue(c)
    }
    // One chunk at a time: lines left over (or too many requests running) wait for pump() or
    // untrack(), which read again once they are done.
    if (!c.closing && (c.pending !== null || c.paused)) this.stopReading(c)
  }

  private stopReading(c: ConnState): void {
    if (c.readStopped) return
    c.readStopped = true
    c.socket.pause()
  }

  private startReading(c: ConnState): void {
    if (!c.readStopped) return
    c.readStopped = false
    c.socket.resume()
  }

  private enqueue(c: ConnState): void {
    if (c.queued) return
    c.queued = true
    this.ready.push(c)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.pump())
    }
  }

  /**
   * One line from each connection with input, in turn (a connection whose last batch used up its
   * credit waits some turns), up to REQUESTS_PER_TURN; then the loop reads sockets again.
   */
  private pump(): void {
    this.scheduled = false
    let started = 0
    while (started < REQUESTS_PER_TURN && this.ready.length > 0) {
      // Requests that finish at once (most) are done by the next turn: only those still running
      // then count against the cap on requests running across connections. Near it, end the turn.
      if (started > 0 && this.inFlightTotal + this.limits.maxInFlightPerConnection > this.limits.maxInFlightTotal) break
      const c = this.ready.shift()!
      c.queued = false
      if (c.closing || c.paused || c.pending === null) continue
      if (c.credit <= 0) {
        c.credit += QUANTUM
        this.enqueue(c)
        continue
      }
      const cost = this.step(c)
      c.credit -= cost
      started += cost
      if (c.closing || c.paused) continue
      if (c.pending !== null) this.enqueue(c)
      else this.startReading(c)
    }
    if (this.ready.length > 0 && !this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.pump())
    }
  }

  /**
   * Takes the next line of `c.pending` (or keeps its unfinished end as the partial line); the
   * number of requests that started.
   */
  private step(c: ConnState): number {
    const chunk = c.pending!
    const nl = chunk.indexOf(10)
    if (nl === -1) {
      c.pending = null
      this.bufferedIn -= chunk.length
      this.appendPart(c, chunk)
      return 0
    }
    c.pending = nl + 1 < chunk.length ? chunk.subarray(nl + 1) : null
    this.bufferedIn -= nl + 1
    const piece = chunk.subarray(0, nl)
    if (c.partBytes + piece.length > this.limits.maxLineBytes) {
      this.lineTooLong(c)
      return 0
    }
    let line: Buffer
    if (c.part === null) line = piece
    else {
      line = Buffer.concat([c.part.subarray(0, c.partBytes), piece])
      this.releasePart(c)
    }
    return this.onLine(c, line)
  }

  private appendPart(c: ConnState, rest: Buffer): void {
    if (c.partBytes + rest.length > this.limits.maxLineBytes) return this.lineTooLong(c)
    const need = c.partBytes + rest.length
    const capacity = c.part?.length ?? 0
    // Copy (never keep a subarray: it would pin the whole chunk); grow by doubling, at most to
    // the line limit, which `need` is within.
    const grown = need > capacity ? Math.min(Math.max(need, capacity * 2), this.limits.maxLineBytes) : capacity
    if (this.buffered + (grown - capacity) > this.limits.maxBufferedBytes) {
      this.shed(grown - capacity, c)
      if (c.closing) return
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

  /** What a connection makes us hold, in bytes. */
  private held(c: ConnState): number {
    return (c.part?.length ?? 0) + (c.pending?.length ?? 0) + c.out
  }

  /**
   * Over the global buffer cap: drop the connections holding the most until `need` more bytes fit.
   * `asking` (the connection that needs them) counts them as held; on a tie it goes first.
   */
  private shed(need: number, asking: ConnState): void {
    const weight = (c: ConnState): number => this.held(c) + (c === asking ? need : 0)
    const byWeight = [...this.conns].filter((c) => !c.closing).sort((a, b) => weight(b) - weight(a) || (a === asking ? -1 : b === asking ? 1 : 0))
    for (const c of byWeight) {
      if (this.buffered + (asking.closing ? 0 : need) <= this.limits.maxBufferedBytes) return
      this.events.onLimit('buffer_cap', c.id, weight(c))
      // A reader that never reads gets nothing more (it would not read it); a client that sent
      // too much is told why.
      if (c.out > (c.part?.length ?? 0)) this.drop(c)
      else this.fail(c, ErrorCode.InvalidRequest, `Server busy: more than ${this.limits.maxBufferedBytes} bytes buffered across connections`)
    }
  }

  private lineTooLong(c: ConnState): void {
    this.events.onLimit('line_too_long', c.id)
    this.fail(c, ErrorCode.InvalidRequest, `Invalid Request: line longer than ${this.limits.maxLineBytes} bytes`)
  }

  /** Answer a protocol fault with id null and close the connection; its input no longer counts. */
  private fail(c: ConnState, code: number, message: string): void {
    c.closing = true
    this.releasePart(c)
    if (c.pending !== null) this.bufferedIn -= c.pending.length
    c.pending = null
    this.endWith(c, frame(createJSONRPCErrorResponse(null, code, message)))
  }

  /** Ends our side after `last`, and destroys the connection LINGER_MS later if the peer has not closed its own. */
  private endWith(c: ConnState, last?: Buffer): void {
    c.socket.setTimeout(LINGER_MS)
    if (last === undefined) c.socket.end()
    else c.socket.end(last)
  }

  /** Close at once, unsent replies discarded. */
  private drop(c: ConnState): void {
    c.closing = true
    c.socket.destroy()
    this.release(c)
  }

  /** Parses and dispatches one line; the number of requests it started (an answered fault counts one). */
  private onLine(c: ConnState, line: Buffer): number {
    if (line.length === 0 || (line.length === 1 && line[0] === 13)) return 0
    let message: unknown
    try {
      message = JSON.parse(utf8.decode(line))
    } catch {
      this.write(c, frame(createJSONRPCErrorResponse(null, ErrorCode.ParseError, 'Parse error')))
      return 1
    }
    // A batch is as many requests as it has members, for the in-flight caps.
    const requests = Math.max(Array.isArray(message) ? message.length : 1, 1)
    if (requests > this.limits.maxInFlightPerConnection) {
      this.write(c, frame(createJSONRPCErrorResponse(null, ErrorCode.InvalidRequest, `Invalid Request: batch larger than ${this.limits.maxInFlightPerConnection}`)))
      return 1
    }
    if (this.inFlightTotal + requests > this.limits.maxInFlightTotal) {
      this.shedRequests(requests, c)
      if (c.closing) return 0
    }
    this.track(c, requests)
    this.receive(message, c).then(
      (reply) => {
        this.untrack(c, requests)
        if (reply !== null) this.write(c, frame(reply))
        if (c.endAfterReply && !c.closing) {
          c.closing = true
          this.endWith(c)
        }
      },
      (error: unknown) => {
        this.untrack(c, requests)
        this.events.onReceiveError(error)
      },
    )
    return requests
  }

  /** Over the global in-flight cap: drop the connections running the most until `requests` more fit. */
  private shedRequests(requests: number, asking: ConnState): void {
    const weight = (c: ConnState): number => c.inFlight + (c === asking ? requests : 0)
    const byWeight = [...this.conns].filter((c) => !c.closing).sort((a, b) => weight(b) - weight(a) || (a === asking ? -1 : b === asking ? 1 : 0))
    for (const c of byWeight) {
      if (this.inFlightTotal + (asking.closing ? 0 : requests) <= this.limits.maxInFlightTotal) return
      this.events.onLimit('pending_cap', c.id, weight(c))
      this.drop(c)
    }
  }

  /** Count running requests; stop reading from a connection that has too many. */
  private track(c: ConnState, requests: number): void {
    c.inFlight += requests
    this.inFlightTotal += requests
    if (c.inFlight >= this.limits.maxInFlightPerConnection) c.paused = true
  }

  private untrack(c: ConnState, requests: number): void {
    c.inFlight -= requests
    if (c.gone) return // release() already took its requests off the total
    this.inFlightTotal -= requests
    if (c.paused && c.inFlight < this.limits.maxInFlightPerConnection / 2) {
      c.paused = false
      if (c.closing) return
      if (c.pending !== null) this.enqueue(c)
      else this.startReading(c)
    }
  }

  private write(c: ConnState, data: Buffer): void {
    if (c.closing || c.socket.destroyed) return
    const n = data.length
    if (c.out + n > this.limits.maxConnectionOutputBytes) {
      // A reader that never reads: drop it rather than hold its replies forever.
      this.events.onLimit('slow_reader', c.id, c.out)
      this.drop(c)
      return
    }
    if (this.buffered + n > this.limits.maxBufferedBytes) {
      this.shed(n, c)
      if (c.closing) return
    }
    c.out += n
    this.bufferedOut += n
    c.socket.write(data, () => {
      if (c.gone) return
      c.out -= n
      this.bufferedOut -= n
    })
  }
}
