// The refresh broker's HTTP listener in `codex-auth exec` (docs/broker.md#the-listener): Codex's
// refresh and revoke requests arrive here (CODEX_REFRESH_TOKEN_URL_OVERRIDE and
// CODEX_REVOKE_TOKEN_URL_OVERRIDE) and go to the daemon over its socket. Loopback only; what a
// browser or a rebound DNS name could send is refused before the body is read. Bodies carry
// tokens: none is ever logged, quoted back or put in an error.
import * as http from 'node:http'
import { randomBytes } from 'node:crypto'
import type { BrokerAnswer } from '../rpc/contract.js'

/** Where Codex 0.171 sends its refresh and revoke without us (docs/codex-compat.md#refresh-request, #logout). */
export interface Endpoints {
  refresh: string
  revoke: string
}

const OPENAI_REFRESH = 'https://auth.openai.com/oauth/token'

/**
 * The endpoints Codex would use with this environment: the override verbatim, else OpenAI's; the
 * revoke's override, else `/oauth/revoke` on the refresh override's origin (path replaced, query
 * dropped), else OpenAI's.
 */
export function codexEndpoints(env: NodeJS.ProcessEnv): Endpoints {
  const refresh = nonEmpty(env.CODEX_REFRESH_TOKEN_URL_OVERRIDE) ?? OPENAI_REFRESH
  let revoke = nonEmpty(env.CODEX_REVOKE_TOKEN_URL_OVERRIDE)
  if (revoke === undefined) {
    try {
      revoke = new URL('/oauth/revoke', refresh).href
    } catch {
      revoke = new URL('/oauth/revoke', OPENAI_REFRESH).href
    }
  }
  return { refresh, revoke }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v !== '' ? v : undefined
}

/**
 * What the daemon said; or that it could not be reached at all (nothing was sent); or that it
 * predates the broker (it refreshes on its own schedule, as before: Codex goes to the endpoint).
 */
export type Forwarded = BrokerAnswer | 'unreachable' | 'unsupported'

export interface ListenerOptions {
  /** Sends the request to the daemon (brokerRefresh / brokerRevoke). */
  forward(kind: 'refresh' | 'revoke', body: Record<string, unknown>): Promise<Forwarded>
  /** Whether a daemon owns the home (asked only when the daemon is unreachable). */
  homeOwned(): Promise<boolean>
  /** The real endpoints, for the pass-through. */
  upstream: Endpoints
  /** A note on stderr for the user (never a body or a token). */
  note?(message: string): void
  maxBodyBytes?: number
  /** For receiving headers and body. */
  requestTimeoutMs?: number
  maxConnections?: number
  /** The pass-through's timeout (Codex: 30 s for a refresh, 10 s for a revoke; we use one). */
  upstreamTimeoutMs?: number
}

export interface BrokerListener {
  port: number
  /** The child's CODEX_REFRESH_TOKEN_URL_OVERRIDE and CODEX_REVOKE_TOKEN_URL_OVERRIDE. */
  env: { CODEX_REFRESH_TOKEN_URL_OVERRIDE: string; CODEX_REVOKE_TOKEN_URL_OVERRIDE: string }
  close(): Promise<void>
}

export const LISTENER_LIMITS = { maxBodyBytes: 64 * 1024, requestTimeoutMs: 10_000, maxConnections: 32, upstreamTimeoutMs: 30_000 }

/** Why a request is refused before its body is read, or null. Pure: headers in, verdict out. */
export function refusal(
  req: { method?: string | undefined; url?: string | undefined; headers: http.IncomingHttpHeaders },
  port: number,
  prefix: string,
): { status: number; code: string } | null {
  const h = req.headers
  // Browsers send these; Codex never does (docs/codex-compat.md#refresh-request).
  if (h.origin !== undefined || Object.keys(h).some((k) => k.startsWith('sec-fetch-'))) return { status: 403, code: 'forbidden' }
  // DNS rebinding: a page whose name resolves to 127.0.0.1 still sends its own name.
  if (h.host !== `127.0.0.1:${port}` && h.host !== `localhost:${port}`) return { status: 403, code: 'forbidden' }
  if (req.url !== `${prefix}/oauth/token` && req.url !== `${prefix}/oauth/revoke`) return { status: 404, code: 'not_found' }
  if (req.method !== 'POST') return { status: 405, code: 'method_not_allowed' }
  const type = (h['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json') return { status: 415, code: 'unsupported_media_type' }
  const length = h['content-length']
  if (length !== undefined && !/^\d+$/.test(length)) return { status: 400, code: 'invalid_request' }
  return null
}

function errorAnswer(status: number, code: string, message: string): BrokerAnswer {
  return { status, body: { error: { message, type: 'invalid_request_error', param: null, code } } }
}

const MESSAGES: Record<number, string> = {
  400: 'The request is not a JSON object',
  403: 'Requests from browsers or other hosts are refused',
  404: 'No such endpoint',
  405: 'Only POST is accepted',
  408: 'The request took too long to arrive',
  413: 'The request body is too large',
  415: 'Only application/json is accepted',
}

export async function startBrokerListener(options: ListenerOptions): Promise<BrokerListener> {
  const o = { ...LISTENER_LIMITS, ...options }
  // Not the defence (Codex prints the URL in some errors), but keeps a stray local client off.
  const prefix = '/' + randomBytes(12).toString('base64url')
  const server = http.createServer({
    requestTimeout: o.requestTimeoutMs,
    headersTimeout: o.requestTimeoutMs,
    keepAliveTimeout: 5_000,
    // How often those timeouts are checked (Node's default, 30 s, would let a slow body sit 40 s).
    connectionsCheckingInterval: 1_000,
  })
  server.maxConnections = o.maxConnections
  let port = 0

  const send = (res: http.ServerResponse, a: BrokerAnswer): void => {
    if (res.headersSent || res.destroyed) return
    const text = JSON.stringify(a.body)
    res.writeHead(a.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
    res.end(text)
  }
  const refuse = (res: http.ServerResponse, status: number, code: string): void => {
    res.shouldKeepAlive = false
    send(res, errorAnswer(status, code, MESSAGES[status] ?? 'Refused'))
  }

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const no = refusal(req, port, prefix)
    if (no !== null) {
      req.resume() // drain, never parse
      return refuse(res, no.status, no.code)
    }
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null
    if (declared !== null && declared > o.maxBodyBytes) {
      req.resume()
      return refuse(res, 413, 'request_too_large')
    }
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > o.maxBodyBytes) {
        over = true
        chunks.length = 0
        refuse(res, 413, 'request_too_large')
        req.destroy()
      } else if (!over) chunks.push(c)
    })
    req.on('end', () => {
      if (over) return
      let body: unknown
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        return refuse(res, 400, 'invalid_request')
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return refuse(res, 400, 'invalid_request')
      const kind = req.url === `${prefix}/oauth/token` ? 'refresh' : 'revoke'
      void handle(kind, body as Record<string, unknown>, req.headers).then(
        (a) => send(res, a),
        () => send(res, unavailable('codex-auth could not forward the request')),
      )
    })
    req.on('error', () => {})
  })
  // A request whose headers or body do not arrive in time.
  server.on('timeout', (sock: import('node:net').Socket) => sock.destroy())
  server.on('clientError', (_e, sock) => {
    if (sock.writable) sock.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    else sock.destroy()
  })

  async function handle(kind: 'refresh' | 'revoke', body: Record<string, unknown>, headers: http.IncomingHttpHeaders): Promise<BrokerAnswer> {
    const answer = await o.forward(kind, body)
    if (answer !== 'unreachable' && answer !== 'unsupported') return answer
    // Nobody to ask: behave as Codex would without us, unless a daemon owns the home (then a
    // spend of ours could be a second one).
    if (answer === 'unreachable' && (await o.homeOwned())) return unavailable('codex-authd owns this home but cannot be reached')
    const why = answer === 'unreachable' ? 'is not reachable' : 'has no refresh broker'
    o.note?.(`codex-auth: codex-authd ${why}; the ${kind} request went to ${kind === 'refresh' ? o.upstream.refresh : o.upstream.revoke} directly`)
    return passThrough(kind === 'refresh' ? o.upstream.refresh : o.upstream.revoke, body, headers, o.upstreamTimeoutMs)
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  port = (server.address() as import('node:net').AddressInfo).port
  const base = `http://127.0.0.1:${port}${prefix}`
  return {
    port,
    env: { CODEX_REFRESH_TOKEN_URL_OVERRIDE: `${base}/oauth/token`, CODEX_REVOKE_TOKEN_URL_OVERRIDE: `${base}/oauth/revoke` },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

function unavailable(message: string): BrokerAnswer {
  return { status: 503, body: { error: { message, type: 'server_error', param: null, code: 'temporarily_unavailable' } } }
}

/** The request as Codex would have sent it, to the endpoint it would have used; its answer verbatim. */
async function passThrough(url: string, body: Record<string, unknown>, headers: http.IncomingHttpHeaders, timeoutMs: number): Promise<BrokerAnswer> {
  const pass: Record<string, string> = { 'content-type': 'application/json', accept: '*/*' }
  for (const k of ['originator', 'user-agent']) if (typeof headers[k] === 'string') pass[k] = headers[k] as string
  try {
    const res = await fetch(url, { method: 'POST', headers: pass, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' })
    const text = await res.text()
    let parsed: unknown = {}
    try {
      parsed = text.trim() === '' ? {} : JSON.parse(text)
    } catch {
      return unavailable('The token endpoint answered with something that is not JSON')
    }
    return { status: res.status, body: typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {} }
  } catch {
    return unavailable('The token endpoint could not be reached')
  }
}
