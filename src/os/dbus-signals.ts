// A minimal D-Bus session-bus client that only listens: SASL EXTERNAL, Hello, AddMatch, then every
// signal the match rules let through is reported by its member name (docs/keyring.md#signals-what-can-be-watched).
// No method calls of ours beyond those, no introspection, no timers: an idle connection is one
// socket the event loop waits on (0 wake-ups). Messages are parsed only as far as the header.
import { EventEmitter } from 'node:events'
import { createConnection, type Socket } from 'node:net'

/** A unix: address of DBUS_SESSION_BUS_ADDRESS as a socket path (abstract: a leading NUL), or null. */
export function sessionBusPath(address: string | undefined): string | null {
  if (address === undefined || address === '') return null
  for (const one of address.split(';')) {
    const colon = one.indexOf(':')
    if (colon < 0 || one.slice(0, colon) !== 'unix') continue
    const kv = new Map<string, string>()
    for (const pair of one.slice(colon + 1).split(',')) {
      const eq = pair.indexOf('=')
      if (eq < 0) continue
      try {
        kv.set(pair.slice(0, eq), decodeURIComponent(pair.slice(eq + 1)))
      } catch {
        // A malformed %-escape: not an address we can use.
      }
    }
    const path = kv.get('path')
    if (path !== undefined) return path
    const abstract = kv.get('abstract')
    if (abstract !== undefined) return `\0${abstract}`
  }
  return null
}

const enum MsgType {
  MethodCall = 1,
  MethodReturn = 2,
  Error = 3,
  Signal = 4,
}

/** Little-endian message builder with D-Bus alignment (relative to the message start). */
class Writer {
  private parts: Buffer[] = []
  private length = 0
  pad(n: number): void {
    const p = (n - (this.length % n)) % n
    if (p > 0) this.raw(Buffer.alloc(p))
  }
  raw(b: Buffer): void {
    this.parts.push(b)
    this.length += b.length
  }
  byte(v: number): void {
    this.raw(Buffer.from([v]))
  }
  u32(v: number): void {
    this.pad(4)
    const b = Buffer.alloc(4)
    b.writeUInt32LE(v)
    this.raw(b)
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8')
    this.u32(b.length)
    this.raw(Buffer.concat([b, Buffer.from([0])]))
  }
  signature(s: string): void {
    this.byte(s.length)
    this.raw(Buffer.from(`${s}\0`, 'ascii'))
  }
  get size(): number {
    return this.length
  }
  done(): Buffer {
    return Buffer.concat(this.parts)
  }
}

/** A method call to the bus itself (org.freedesktop.DBus), with at most one string argument. */
export function busCall(serial: number, member: string, arg: string | null): Buffer {
  const body = new Writer()
  if (arg !== null) body.string(arg)
  const bodyBuf = body.done()
  const fields = new Writer()
  const field = (code: number, sig: string, write: () => void): void => {
    fields.pad(8)
    fields.byte(code)
    fields.signature(sig)
    write()
  }
  // Offsets in `fields` are 16 less than in the message: 16 is a multiple of 8, so alignment holds.
  field(1, 'o', () => fields.string('/org/freedesktop/DBus'))
  field(2, 's', () => fields.string('org.freedesktop.DBus'))
  field(3, 's', () => fields.string(member))
  field(6, 's', () => fields.string('org.freedesktop.DBus'))
  if (arg !== null) field(8, 'g', () => fields.signature('s'))
  const fieldsBuf = fields.done()
  const head = new Writer()
  head.raw(Buffer.from(['l'.charCodeAt(0), MsgType.MethodCall, 0, 1]))
  head.u32(bodyBuf.length)
  head.u32(serial)
  head.u32(fieldsBuf.length)
  head.raw(fieldsBuf)
  head.pad(8)
  head.raw(bodyBuf)
  return head.done()
}

export interface ParsedMessage {
  type: number
  member: string | null
  interface: string | null
  /** bytes the message took */
  length: number
}

/** The header of the first complete message in `buf`, or null when more bytes are needed. Throws on garbage. */
export function parseMessage(buf: Buffer): ParsedMessage | null {
  if (buf.length < 16) return null
  const le = buf[0] === 0x6c // 'l'
  if (!le && buf[0] !== 0x42) throw new Error('not a D-Bus message')
  const u32 = (at: number): number => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at))
  const bodyLen = u32(4)
  const fieldsLen = u32(12)
  if (fieldsLen > 1 << 26 || bodyLen > 1 << 27) throw new Error('D-Bus message too large')
  const headerEnd = 16 + fieldsLen
  const total = align(headerEnd, 8) + bodyLen
  if (buf.length < total) return null
  let member: string | null = null
  let iface: string | null = null
  let pos = 16
  while (pos < headerEnd) {
    pos = align(pos, 8)
    if (pos >= headerEnd) break
    const code = buf[pos++] as number
    const sigLen = buf[pos++] as number
    const sig = buf.toString('ascii', pos, pos + sigLen)
    pos += sigLen + 1
    if (sig === 's' || sig === 'o') {
      pos = align(pos, 4)
      const len = u32(pos)
      pos += 4
      const value = buf.toString('utf8', pos, pos + len)
      pos += len + 1
      if (code === 3) member = value
      if (code === 2) iface = value
    } else if (sig === 'g') {
      pos += (buf[pos] as number) + 2
    } else if (sig === 'u') {
      pos = align(pos, 4) + 4
    } else break // a field we do not need, of a type we do not parse: stop (member comes early)
  }
  return { type: buf[1] as number, member, interface: iface, length: total }
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to
}

export interface SignalEvents {
  /** A signal passed the match rules. */
  signal: [member: string]
  /** Every match rule is in place: from now on no matching signal is missed. */
  subscribed: []
  /** The connection ended (or never came up); `error` says why. */
  closed: [error: Error | null]
}

/**
 * Connects to the bus at `path`, subscribes to `rules` (AddMatch) and reports matching signals.
 * One connection; `close()` ends it. Never throws after construction: failures end in `closed`.
 */
export class SignalWatch extends EventEmitter<SignalEvents> {
  private readonly socket: Socket
  private buf: Buffer = Buffer.alloc(0)
  private authed = false
  private replies = 0
  private ended = false

  constructor(path: string, rules: readonly string[], uid: number) {
    super()
    this.socket = createConnection({ path })
    this.socket.on('connect', () => {
      this.socket.write(`\0AUTH EXTERNAL ${Buffer.from(String(uid), 'ascii').toString('hex')}\r\n`)
    })
    this.socket.on('data', (chunk) => {
      try {
        this.onData(chunk, rules)
      } catch (e) {
        this.end(e as Error)
      }
    })
    this.socket.on('error', (e) => this.end(e))
    this.socket.on('close', () => this.end(null))
  }

  close(): void {
    this.end(null)
  }

  private end(error: Error | null): void {
    if (this.ended) return
    this.ended = true
    this.socket.destroy()
    this.emit('closed', error)
  }

  private onData(chunk: Buffer, rules: readonly string[]): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    if (!this.authed) {
      const nl = this.buf.indexOf('\r\n')
      if (nl < 0) {
        if (this.buf.length > 4096) throw new Error('D-Bus authentication answer too long')
        return
      }
      const line = this.buf.toString('ascii', 0, nl)
      this.buf = this.buf.subarray(nl + 2)
      if (!line.startsWith('OK ')) throw new Error(`D-Bus authentication refused: ${line.slice(0, 80)}`)
      this.authed = true
      const out = [Buffer.from('BEGIN\r\n', 'ascii'), busCall(1, 'Hello', null)]
      rules.forEach((rule, i) => out.push(busCall(i + 2, 'AddMatch', rule)))
      this.socket.write(Buffer.concat(out))
    }
    for (;;) {
      const msg = parseMessage(this.buf)
      if (msg === null) return
      this.buf = this.buf.subarray(msg.length)
      if (msg.type === MsgType.MethodReturn || msg.type === MsgType.Error) {
        this.replies++
        if (this.replies === rules.length + 1) this.emit('subscribed')
      } else if (msg.type === MsgType.Signal && msg.member !== null && msg.member !== 'NameAcquired' && msg.member !== 'NameLost') {
        this.emit('signal', msg.member)
      }
    }
  }
}

/** What a keyring store listens to: items created, deleted or changed, the collection's lock, the provider coming or going. */
export const SECRET_SERVICE_RULES: readonly string[] = Object.freeze([
  "type='signal',sender='org.freedesktop.secrets',interface='org.freedesktop.Secret.Collection'",
  "type='signal',sender='org.freedesktop.secrets',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',arg0='org.freedesktop.Secret.Collection'",
  "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.freedesktop.secrets'",
])
