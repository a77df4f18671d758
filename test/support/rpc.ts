// A raw NDJSON connection for protocol tests: send any bytes, read parsed lines back in order.
import net from 'node:net'
import { onLines } from './lines.js'
import { registerSecret } from './secrets.js'

export interface RawConnection {
  socket: net.Socket
  /** Write bytes as they are (no newline added). */
  write(data: string | Buffer): void
  /** Send one message as a line. */
  send(message: unknown): void
  /** The next line the daemon sends, parsed. Rejects when the connection closes first. */
  next(): Promise<any>
  /** id-matched request/response. */
  call(method: string, params?: unknown): Promise<any>
  /** Resolves when the daemon closes the connection. */
  closed: Promise<void>
  close(): void
}

let nextId = 1

export function rawConnect(path: string): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path)
    const queue: any[] = []
    const waiters: Array<{ resolve: (v: any) => void; reject: (e: Error) => void }> = []
    let ended = false
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    onLines(socket, (line) => {
      const msg = JSON.parse(line)
      // a served credential (getAuth/refresh result) is a secret for the leak scanner
      if (typeof msg?.result?.token === 'string') registerSecret(msg.result.token, `${msg.result.mode ?? 'served'} token (RPC result)`)
      const w = waiters.shift()
      if (w) w.resolve(msg)
      else queue.push(msg)
    })
    socket.on('close', () => {
      ended = true
      for (const w of waiters.splice(0)) w.reject(new Error('connection closed'))
    })
    socket.on('error', () => {})
    const conn: RawConnection = {
      socket,
      write: (data) => void socket.write(data),
      send: (message) => void socket.write(JSON.stringify(message) + '\n'),
      next: () => {
        if (queue.length > 0) return Promise.resolve(queue.shift())
        if (ended) return Promise.reject(new Error('connection closed'))
        return new Promise((res, rej) => waiters.push({ resolve: res, reject: rej }))
      },
      async call(method, params) {
        const id = nextId++
        conn.send(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params })
        for (;;) {
          const msg = await conn.next()
          if (msg && msg.id === id) return msg
        }
      },
      closed,
      close: () => socket.destroy(),
    }
    socket.once('connect', () => resolve(conn))
    socket.once('error', reject)
  })
}
