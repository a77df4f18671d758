// The loopback HTTP server of a browser login: /auth/callback, /success, /cancel (docs/codex-compat.md#browser-login).
// It knows nothing about tokens: `complete` (given by the login service) exchanges the code,
// checks policy and writes auth.json.
//
// Decisions where Codex's behaviour is not a contract:
// - State mismatch: 400 "State mismatch" page, and the login stays pending (a stray or forged
//   request must not be able to end a login that the real redirect may still complete).
// - A callback after the login ended (a replay, a second tab): 400 page, nothing is exchanged.
// - After success the browser is redirected to /success (no tokens in the URL); the server closes
//   once that page is served, or after `successGraceMs` when no browser asks for it.
import http from 'node:http'
import { CALLBACK_PATH, parseCallback, redirectUriFor } from './authorize.js'
import { LoginError, safeCode, safeDescription } from './errors.js'
import { bindLoginServer } from './loopback.js'
import { connectionOwner, describeOwner } from './port-owner.js'
import { PAGE_HEADERS, errorPage, successPage } from './pages.js'
import { CANCELLED_FROM_OUTSIDE, type LoginSession, type SuccessInfo } from './session.js'

export interface BrowserServerOptions {
  session: LoginSession
  ports: readonly number[]
  /** the state sent in the authorize URL */
  state: string
  /** Exchange the code, check policy, write auth.json. Throws LoginError. */
  complete(callbackUrl: URL, code: string, redirectUri: string): Promise<SuccessInfo>
  /** how long the server stays up after success waiting for /success (default 60 s) */
  successGraceMs?: number
  signal?: AbortSignal
}

/**
 * DNS rebinding: a page of another site whose name now resolves to 127.0.0.1 reaches this server
 * with its own name in `Host`. Only our two names, with our port, are served (Codex's own /cancel
 * sends `Host: 127.0.0.1:<port>`, docs/codex-compat.md#browser-login).
 */
export function hostAllowed(host: string | undefined, port: number): boolean {
  if (host === undefined) return false
  const h = host.toLowerCase()
  return h === `127.0.0.1:${port}` || h === `localhost:${port}`
}

type RequestHeaders = http.IncomingHttpHeaders

function header(h: RequestHeaders, name: string): string | undefined {
  const v = h[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * Why a request for /success or /cancel comes from another site's page, or null when it may be
 * served. Only browsers send `Origin` and `Sec-Fetch-*`; a plain HTTP client (Codex's own /cancel,
 * curl) sends neither and is served: what a local program asks cannot be told apart, so the login
 * result says it was cancelled from outside instead.
 * - `Origin` other than ours (a script's fetch, a form): refused on both.
 * - /cancel: `Sec-Fetch-Site` other than `none` (typed by the user) or `same-origin`: another
 *   site's link, image or script, or a page on another local port (same-site) cannot cancel.
 * - /success: the user's browser arrives here by a redirect chain that started on the issuer's
 *   pages, which makes even the real visit `cross-site`; what it cannot be is anything but a
 *   top-level navigation (`Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`), so a script
 *   or a frame of another page never gets the account details.
 */
export function crossOriginRefusal(h: RequestHeaders, port: number, route: 'success' | 'cancel'): string | null {
  const origin = header(h, 'origin')
  if (origin !== undefined && origin !== `http://127.0.0.1:${port}` && origin !== `http://localhost:${port}`) {
    return 'a request from another site (Origin)'
  }
  if (route === 'cancel') {
    const site = header(h, 'sec-fetch-site')
    if (site !== undefined && site !== 'none' && site !== 'same-origin') return `a request from another site (Sec-Fetch-Site: ${site === 'same-site' ? 'same-site' : 'cross-site'})`
    return null
  }
  const mode = header(h, 'sec-fetch-mode')
  const dest = header(h, 'sec-fetch-dest')
  if ((mode !== undefined && mode !== 'navigate') || (dest !== undefined && dest !== 'document')) {
    return 'a request that is not a top-level page visit (Sec-Fetch-Mode/Sec-Fetch-Dest)'
  }
  return null
}

/** The message for an `error` the issuer sent back to the callback. */
export function describeCallbackError(error: string, description: string | null): string {
  const code = safeCode(error) ?? 'error'
  const desc = safeDescription(description)
  if (code === 'access_denied' && desc !== null && desc.includes('missing_codex_entitlement')) {
    return 'Codex is not enabled for your workspace. Ask your workspace administrator to enable Codex, then sign in again.'
  }
  if (code === 'access_denied') return `Sign-in was denied (access_denied)${desc ? `: ${desc}` : ''}.`
  return `The sign-in service returned an error (${code})${desc ? `: ${desc}` : ''}.`
}

export class BrowserLoginServer {
  readonly server: http.Server
  port = 0
  private closed = false
  private graceTimer: NodeJS.Timeout | null = null

  private constructor(private readonly o: BrowserServerOptions) {
    this.server = http.createServer((req, res) => this.handle(req, res))
    this.server.keepAliveTimeout = 1000
  }

  /** Binds (Codex's port dance) and starts serving. Throws PortsBusyError. */
  static async start(o: BrowserServerOptions): Promise<BrowserLoginServer> {
    const s = new BrowserLoginServer(o)
    s.port = await bindLoginServer(s.server, { ports: o.ports, signal: o.signal })
    void o.session.done.then((r) => {
      if (r.status === 'succeeded') {
        s.graceTimer = setTimeout(() => s.close(), o.successGraceMs ?? 60_000)
        s.graceTimer.unref()
      } else {
        s.close()
      }
    })
    return s
  }

  get redirectUri(): string {
    return redirectUriFor(this.port)
  }

  /** Stops listening at once (the port is free); open connections finish their answer. */
  close(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer)
    this.graceTimer = null
    if (this.closed) return
    this.closed = true
    this.server.close()
    this.server.closeIdleConnections()
  }

  /** Ends every connection too (daemon shutdown). */
  destroy(): void {
    this.close()
    this.server.closeAllConnections()
  }

  private send(res: http.ServerResponse, status: number, html: string): void {
    res.writeHead(status, { ...PAGE_HEADERS, 'content-length': String(Buffer.byteLength(html)) })
    res.end(html)
  }

  private refuse(res: http.ServerResponse, why: string): void {
    this.send(res, 403, errorPage('Request refused', `The codex-authd login server does not answer ${why}.`))
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${this.port}`)
    // GET only: a HEAD (a link prefetcher) must never spend the authorization code.
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET', connection: 'close', 'content-length': '0' })
      res.end()
      return
    }
    if (!hostAllowed(req.headers.host, this.port)) {
      this.refuse(res, 'a request addressed to another host name (Host)')
      return
    }
    switch (url.pathname) {
      case CALLBACK_PATH:
        void this.callback(url, res)
        return
      case '/success':
      case '/cancel': {
        const route = url.pathname === '/success' ? 'success' : 'cancel'
        const why = crossOriginRefusal(req.headers, this.port, route)
        if (why !== null) this.refuse(res, why)
        else if (route === 'success') this.success(res)
        else void this.cancel(req, res)
        return
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' })
        res.end('Not Found')
    }
  }

  private async callback(url: URL, res: http.ServerResponse): Promise<void> {
    const { session } = this.o
    if (!session.pending || session.busy) {
      this.send(res, 400, errorPage('Sign-in link already used', 'This login has already been completed or ended. Start a new login from your terminal if you need one.'))
      return
    }
    const outcome = parseCallback(url.searchParams, this.o.state)
    switch (outcome.kind) {
      case 'state_mismatch':
        this.send(res, 400, errorPage('State mismatch', 'This sign-in response does not belong to the login that is waiting. The login is still waiting for the right one.'))
        return
      case 'error': {
        const message = describeCallbackError(outcome.error, outcome.description)
        session.end('failed', { reason: 'login_failed', message })
        this.send(res, 400, errorPage('Sign-in failed', message))
        return
      }
      case 'missing_code': {
        const message = 'The sign-in service returned no authorization code.'
        session.end('failed', { reason: 'login_failed', message })
        this.send(res, 400, errorPage('Sign-in failed', message))
        return
      }
      case 'code':
        break
    }
    session.busy = true
    let info: SuccessInfo
    try {
      info = await this.o.complete(url, outcome.code, this.redirectUri)
    } catch (e) {
      const err = e instanceof LoginError ? e : new LoginError('login_failed', 'The login could not be completed')
      session.end('failed', { reason: err.code, message: err.message })
      const title = err.code === 'forbidden_by_policy' ? 'Sign-in not allowed' : 'Sign-in failed'
      this.send(res, err.code === 'forbidden_by_policy' ? 403 : 500, errorPage(title, err.message))
      return
    }
    session.end('succeeded', null, info)
    res.writeHead(302, { location: '/success', 'cache-control': 'no-store', connection: 'close', 'content-length': '0' })
    res.end()
  }

  private success(res: http.ServerResponse): void {
    const { session } = this.o
    if (session.status !== 'succeeded' || session.success === null) {
      this.send(res, 404, errorPage('No completed sign-in', 'There is no completed login to show here.'))
      return
    }
    // Stop listening first: once the page is out, the port is already free.
    this.close()
    this.send(res, 200, successPage(session.success))
  }

  /**
   * GET /cancel: a new `codex login` (or codex-authd login) frees the port this way, and so can
   * any local program; the result says the login was cancelled from outside, and by whom when
   * /proc tells (port-owner.ts).
   */
  private async cancel(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { session } = this.o
    // Who sent it, looked up while the caller's end of the connection is still open; only for a
    // login this request may still end.
    const peerPort = req.socket.remotePort
    const who = session.cancellable && peerPort !== undefined ? await connectionOwner(peerPort, this.port) : null
    // Judged after the lookup: the callback may have begun committing meanwhile.
    if (session.busy) {
      this.send(res, 409, errorPage('Login completing', 'The login is being completed and can no longer be cancelled.'))
      return
    }
    if (session.pending) {
      const by = who === null ? '' : ` by ${describeOwner(who)}`
      const message = `Login cancelled from outside: GET /cancel on the login server (127.0.0.1:${this.port})${by}. Another \`codex login\` frees the port this way.`
      session.end('cancelled', { reason: CANCELLED_FROM_OUTSIDE, message })
      this.close()
      this.send(res, 200, errorPage('Login cancelled', 'This login was cancelled.'))
      return
    }
    // A finished login's server (waiting for /success) gives the port to a new login server.
    this.close()
    this.send(res, 200, errorPage('Login server stopped', 'This login had already ended; its server has stopped.'))
  }
}
