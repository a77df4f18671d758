// Binding the login callback server the way Codex does (docs/codex-compat.md#browser-login): 127.0.0.1 only; when a
// port is taken, one GET /cancel to whoever holds it (a previous Codex or codex-authd login server
// gives it up), then retry every 200 ms, 10 attempts in all, then the next port.
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { describeOwner, listenerOf, type SocketOwner } from './port-owner.js'

export interface BindOptions {
  ports: readonly number[]
  /** bind attempts per port (Codex: 10) */
  attempts?: number
  /** wait between attempts (Codex: 200 ms) */
  retryMs?: number
  /** timeout of the /cancel request (Codex: 2 s) */
  cancelTimeoutMs?: number
  signal?: AbortSignal
  /** observes each /cancel sent (tests, logs) */
  onCancelSent?: (port: number) => void
}

export class PortsBusyError extends Error {
  readonly code = 'ports_busy'
  /**
   * `owners[i]` holds `ports[i]` when /proc could tell (port-owner.ts); null otherwise. The
   * message names them: a browser login that cannot start should say why, and who is in the way.
   */
  constructor(
    readonly ports: readonly number[],
    readonly owners: readonly (SocketOwner | null)[] = [],
  ) {
    const list = ports.map((p) => `127.0.0.1:${p}`).join(', ')
    const held = ports
      .map((p, i) => {
        const o = owners[i]
        return o ? `${p} by ${describeOwner(o)}` : null
      })
      .filter((x): x is string => x !== null)
    super(
      (ports.length === 1 ? `Port ${list} is already in use` : `Ports ${list} are already in use`) +
        (held.length > 0 ? ` (held: ${held.join('; ')})` : '') +
        (ports.length > 1 ? '. Every login port is taken, and the sign-in service redirects only to these' : '') +
        `, and the holder did not give ${ports.length === 1 ? 'it' : 'them'} up on /cancel. Stop that program, then log in again.`,
    )
    this.name = 'PortsBusyError'
  }
}

function listenOnce(server: http.Server, port: number): Promise<'ok' | 'busy'> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      server.off('listening', onListening)
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') resolve('busy')
      else reject(e)
    }
    const onListening = () => {
      server.off('error', onError)
      resolve('ok')
    }
    server.once('error', onError)
    server.once('listening', onListening)
    // exclusive: never share the port with a cluster sibling; IPv4 loopback only, as Codex.
    server.listen({ port, host: '127.0.0.1', exclusive: true })
  })
}

/** One GET /cancel to a previous login server on this port; every failure is ignored. */
export function requestCancel(port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/cancel', timeout: timeoutMs, agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve())
      res.on('error', () => resolve())
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve())
    req.on('close', () => resolve())
  })
}

/** Listens on the first port that can be had; returns it. Throws PortsBusyError. */
export async function bindLoginServer(server: http.Server, opts: BindOptions): Promise<number> {
  const attempts = opts.attempts ?? 10
  const retryMs = opts.retryMs ?? 200
  const cancelTimeoutMs = opts.cancelTimeoutMs ?? 2000
  for (const port of opts.ports) {
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (opts.signal?.aborted) throw new PortsBusyError(opts.ports)
      if ((await listenOnce(server, port)) === 'ok') return port
      if (attempt === 0) {
        opts.onCancelSent?.(port)
        await requestCancel(port, cancelTimeoutMs)
      }
      // Aborted: the sleep rejects and the check at the loop's top ends the wait.
      if (attempt < attempts - 1) await sleep(retryMs, undefined, { signal: opts.signal }).catch(() => {})
    }
  }
  throw new PortsBusyError(opts.ports, await Promise.all(opts.ports.map((p) => listenerOf(p))))
}
