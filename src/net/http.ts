// Outbound HTTP for refresh, login and revocation. Honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY as
// Codex does (Node's fetch does not by itself; undici's EnvHttpProxyAgent does: docs/architecture.md#library-choices).
// undici is loaded on first use (or by preloadHttp), so a daemon with nothing to refresh never pays for it.
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { Dispatcher } from 'undici'

let dispatcher: Promise<Dispatcher> | null = null
let undiciFetch: Promise<typeof import('undici').fetch> | null = null

function load(): Promise<[Dispatcher, typeof import('undici').fetch]> {
  const mod = import('undici')
  dispatcher ??= mod.then((u) => new u.EnvHttpProxyAgent())
  undiciFetch ??= mod.then((u) => u.fetch)
  return Promise.all([dispatcher, undiciFetch])
}

/**
 * Load undici now, and warm it up, off the path of a request: the refresher calls it once it
 * holds tokens it will refresh, so that the first refresh does not pay for loading the HTTP
 * client, or for compiling what its first request runs, while callers wait for it
 * (docs/refresh.md#one-in-flight). Never throws; settles once the warm-up has let go of everything,
 * at once when `signal` aborts (the daemon stopping).
 */
export function preloadHttp(signal: AbortSignal): Promise<void> {
  return load()
    .then(([, fetch]) => (signal.aborted ? undefined : warmUp(fetch, signal)))
    .catch(() => {})
}

/** What the warm-up's private server answers, once the whole request (headers, 2-byte body) is in. */
const WARM_ANSWER = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}'

/**
 * One `post` to a private Unix socket that this process answers itself. undici's first request
 * compiles its HTTP parser (a WebAssembly module) and runs fetch's code for the first time: tens
 * of milliseconds on a busy machine that every caller of the first refresh would otherwise wait
 * for. No network traffic; best effort (a failure leaves the first refresh as it was).
 */
async function warmUp(fetch: typeof import('undici').fetch, signal: AbortSignal): Promise<void> {
  const { Agent } = await import('undici')
  // On Linux an abstract socket (a random name, no file): nothing is left behind when the daemon
  // is killed meanwhile. Elsewhere a socket in a private temp directory, removed afterwards.
  const dir = process.platform === 'linux' ? null : await fs.mkdtemp(path.join(os.tmpdir(), 'codex-authd-warm-'))
  const socketPath = dir === null ? `\0codex-authd-warm-${randomBytes(16).toString('hex')}` : path.join(dir, 'http.sock')
  // Anyone local can reach an abstract socket: one connection at a time, each ended with the warm-up.
  const accepted = new Set<net.Socket>()
  const server = net.createServer((s) => {
    accepted.add(s)
    let request = ''
    s.on('error', () => {})
    s.on('data', (chunk: Buffer) => {
      request += chunk.toString('latin1')
      if (request.endsWith('\r\n\r\n{}')) s.end(WARM_ANSWER)
      else if (request.length > 4096) s.destroy() // not our request
    })
  })
  server.maxConnections = 1
  const agent = new Agent({ connect: { socketPath } })
  // Stopping ends the request at once: its sockets are destroyed, so the post settles now.
  const stop = (): void => {
    server.close()
    for (const s of accepted) s.destroy()
    agent.destroy().catch(() => {})
  }
  signal.addEventListener('abort', stop, { once: true })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.once('close', () => reject(new Error('stopped'))) // closed before it listened
      if (signal.aborted) return stop()
      server.listen(socketPath, resolve)
    })
    await request(fetch, agent, 'http://localhost/', {}, { timeoutMs: 5_000, encoding: 'json' })
  } finally {
    signal.removeEventListener('abort', stop)
    await (signal.aborted ? agent.destroy() : agent.close()).catch(() => {})
    server.close()
    for (const s of accepted) s.destroy()
    if (dir !== null) await fs.rm(dir, { recursive: true, force: true })
  }
}

export type HttpAnswer =
  | { type: 'http'; status: number; body: unknown; text: string }
  | { type: 'unparsable'; status: number; text: string }
  | { type: 'network'; code: string; host: string }
  | { type: 'timeout'; host: string }

export interface PostOptions {
  timeoutMs: number
  headers?: Record<string, string>
  /** 'json' sends a JSON body (Codex's refresh and revoke), 'form' an urlencoded one. */
  encoding: 'json' | 'form'
}

/**
 * POST and read the whole answer. Never throws for network faults: they come back as values so
 * that the caller classifies them. `body` is the parsed JSON (null for an empty body).
 */
export async function post(url: string, body: Record<string, string>, opts: PostOptions): Promise<HttpAnswer> {
  const [agent, fetch] = await load()
  return request(fetch, agent, url, body, opts)
}

/** `post` through a given dispatcher (the proxy agent, or the warm-up's). */
async function request(fetch: typeof import('undici').fetch, agent: Dispatcher, url: string, body: Record<string, string>, opts: PostOptions): Promise<HttpAnswer> {
  const headers: Record<string, string> = {
    accept: 'application/json',
    'content-type': opts.encoding === 'json' ? 'application/json' : 'application/x-www-form-urlencoded',
    ...opts.headers,
  }
  const payload = opts.encoding === 'json' ? JSON.stringify(body) : new URLSearchParams(body).toString()
  const signal = AbortSignal.timeout(opts.timeoutMs)
  let status: number
  let text: string
  try {
    const res = await fetch(url, { method: 'POST', headers, body: payload, dispatcher: agent, signal, redirect: 'manual' })
    status = res.status
    text = await res.text()
  } catch (e) {
    if (signal.aborted) return { type: 'timeout', host: hostOf(url) }
    return { type: 'network', code: networkCode(e), host: hostOf(url) }
  }
  if (text.trim() === '') return { type: 'http', status, body: null, text }
  try {
    return { type: 'http', status, body: JSON.parse(text) as unknown, text }
  } catch {
    return { type: 'unparsable', status, text }
  }
}

/**
 * A fetch for openid-client (its `customFetch`): goes through the proxy agent, and hands every
 * answer's status and body to `tap` before openid-client can reject it, so that a rotated refresh
 * token is never lost to a validation error (docs/refresh.md#the-sequence).
 */
export function proxiedFetchFor(tap?: (status: number, text: string) => void, timeoutMs = 30_000) {
  return async (url: string, options: { method?: string; headers?: Record<string, string> | Headers; body?: unknown; redirect?: string; signal?: AbortSignal }): Promise<Response> => {
    const [agent, fetch] = await load()
    const headers = options.headers instanceof Headers ? Object.fromEntries(options.headers.entries()) : options.headers
    const signal = options.signal ?? AbortSignal.timeout(timeoutMs)
    let res
    try {
      res = await fetch(url, { method: options.method, headers, body: options.body as string | undefined, redirect: 'manual', dispatcher: agent, signal })
    } catch (e) {
      // The caller's own abort stays what it is; a fault of the network names the host it was for.
      if (options.signal?.aborted) throw e
      throw new NetworkError(hostOf(url), signal.aborted ? 'timeout' : networkCode(e))
    }
    const text = await res.text()
    tap?.(res.status, text)
    // openid-client checks `instanceof Response` against the global class, not undici's.
    return new Response(text === '' && (res.status === 204 || res.status === 304) ? null : text, {
      status: res.status,
      headers: Object.fromEntries(res.headers.entries()),
    })
  }
}

/**
 * A request that got no HTTP answer, naming the host it was for: "ENOTFOUND" alone does not say
 * which name did not resolve (the issuer, a proxy's target, an override URL). `code` is the errno
 * code (ENOTFOUND, ECONNREFUSED...), or `timeout`.
 */
export class NetworkError extends Error {
  constructor(
    readonly host: string,
    readonly code: string,
  ) {
    super(networkMessage(host, code))
    this.name = 'NetworkError'
  }
}

/** The words for a request that got no HTTP answer: `network error reaching auth.openai.com (ENOTFOUND)`. */
export function networkMessage(host: string, code: string): string {
  return code === 'timeout' ? `no answer from ${host} in time` : `network error reaching ${host} (${code})`
}

/** The host (and port) of a URL, as a message names it; never its path or query (a code could be there). */
export function hostOf(url: string): string {
  try {
    return new URL(url).host
  } catch {
    return '(an unparsable URL)'
  }
}

function networkCode(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | null)?.cause
  if (cause && typeof cause.code === 'string') return cause.code
  // undici's refusals without an errno ("bad port": a port fetch never uses): its short words.
  if (cause && typeof cause.message === 'string' && /^[a-z][\w .-]{0,40}$/i.test(cause.message)) return cause.message
  const code = (e as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'ERR_NETWORK'
}
