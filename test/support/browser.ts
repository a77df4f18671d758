/**
 * A tiny fetch-based "browser" for the test provider (test/support/provider.ts):
 * follows redirects by hand (redirect:'manual') with a cookie jar that ignores
 * cookie paths, and auto-submits the provider's POST forms (form_post pages,
 * device confirm forms). Interactions are auto-approved by the provider harness.
 */

export class CookieJar {
  private readonly cookies = new Map<string, string>()

  store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';')
      if (!pair) continue
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      const expired = attrs.some((a) => {
        const [k, v] = a.trim().split('=')
        if (k?.toLowerCase() === 'max-age') return Number(v) <= 0
        if (k?.toLowerCase() === 'expires' && v) return Date.parse(a.trim().slice(8)) <= Date.now()
        return false
      })
      if (expired || value === '') this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }

  get size(): number {
    return this.cookies.size
  }
}

interface Form {
  action: string
  fields: URLSearchParams
}

function decodeHtml(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#x2F;/g, '/')
    .replace(/&#x60;/g, '`')
    .replace(/&#x3D;/g, '=')
    .replace(/&amp;/g, '&')
}

function attr(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}\\s*=\\s*"([^"]*)"`, 'i').exec(tag)
  return m?.[1] !== undefined ? decodeHtml(m[1]) : undefined
}

/** First POST form whose inputs all have values (i.e. one a script would auto-submit). */
function findPostForm(html: string, base: URL): Form | undefined {
  const formRe = /<form\b([^>]*)>([\s\S]*?)<\/form>/gi
  for (let m = formRe.exec(html); m; m = formRe.exec(html)) {
    const open = m[1] ?? ''
    const inner = m[2] ?? ''
    if ((attr(open, 'method') ?? 'get').toLowerCase() !== 'post') continue
    const fields = new URLSearchParams()
    let complete = true
    const inputRe = /<input\b([^>]*)>/gi
    for (let i = inputRe.exec(inner); i; i = inputRe.exec(inner)) {
      const tag = i[1] ?? ''
      const name = attr(tag, 'name')
      if (!name) continue
      const value = attr(tag, 'value')
      if (value === undefined) {
        complete = false
        continue
      }
      fields.append(name, value)
    }
    if (!complete) continue
    return { action: new URL(attr(open, 'action') ?? base.href, base).href, fields }
  }
  return undefined
}

function pageTitle(html: string): string {
  return /<title>([^<]*)<\/title>/i.exec(html)?.[1]?.trim() ?? ''
}

interface Step {
  res: Response
  url: URL
}

async function request(jar: CookieJar, url: URL, form?: URLSearchParams): Promise<Step> {
  const headers: Record<string, string> = { 'user-agent': 'harness-browser/1.0', accept: 'text/html,*/*' }
  const cookie = jar.header()
  if (cookie) headers.cookie = cookie
  let body: string | undefined
  if (form) {
    headers['content-type'] = 'application/x-www-form-urlencoded'
    body = form.toString()
  }
  const res = await fetch(url, { method: form ? 'POST' : 'GET', headers, body, redirect: 'manual' })
  jar.store(res)
  return { res, url }
}

const MAX_STEPS = 20

/**
 * Drive an authorization request through login + consent (auto-approved by the harness) and
 * return the final redirect to the client's redirect_uri (NOT followed), e.g.
 * http://127.0.0.1:1455/auth/callback?code=…&state=…&iss=… (or ?error=access_denied&…).
 * Throws on an unexpected page (the error carries the status and page excerpt, never tokens).
 */
export async function driveAuthorization(authUrl: string, opts: { jar?: CookieJar } = {}): Promise<URL> {
  const jar = opts.jar ?? new CookieJar()
  const start = new URL(authUrl)
  const origin = start.origin
  let step = await request(jar, start)
  for (let i = 0; i < MAX_STEPS; i++) {
    const { res, url } = step
    if (res.status >= 300 && res.status < 400) {
      await res.arrayBuffer()
      const loc = res.headers.get('location')
      if (!loc) throw new Error(`driveAuthorization: ${res.status} without location at ${url.pathname}`)
      const next = new URL(loc, url)
      if (next.origin !== origin) return next
      step = await request(jar, next)
      continue
    }
    const html = await res.text()
    const form = res.status === 200 ? findPostForm(html, url) : undefined
    if (form) {
      const target = new URL(form.action)
      if (target.origin !== origin) {
        // response_mode=form_post to the client: hand back the would-be callback as a URL
        const cb = new URL(target)
        for (const [k, v] of form.fields) cb.searchParams.append(k, v)
        return cb
      }
      step = await request(jar, target, form.fields)
      continue
    }
    throw new Error(`driveAuthorization: unexpected ${res.status} at ${url.pathname}: ${html.slice(0, 300)}`)
  }
  throw new Error('driveAuthorization: too many steps')
}

export interface DeviceApproval {
  /** true when the flow ended on the provider's success page */
  approved: boolean
  /** final HTTP status */
  status: number
  /** final page title ('Sign-in Success', 'Sign-in Error', …) */
  title: string
}

/**
 * The RFC 8628 user side: GET verification_uri_complete (auto-submit form with xsrf + user_code),
 * POST it, POST the confirm form (confirm=yes), then the harness auto-approves login + consent.
 * With provider.denyNext()/deny the flow ends with approved:false and polling gets access_denied.
 */
export async function approveDeviceCode(
  verificationUriComplete: string,
  opts: { jar?: CookieJar } = {},
): Promise<DeviceApproval> {
  const jar = opts.jar ?? new CookieJar()
  let step = await request(jar, new URL(verificationUriComplete))
  for (let i = 0; i < MAX_STEPS; i++) {
    const { res, url } = step
    if (res.status >= 300 && res.status < 400) {
      await res.arrayBuffer()
      const loc = res.headers.get('location')
      if (!loc) throw new Error(`approveDeviceCode: ${res.status} without location at ${url.pathname}`)
      step = await request(jar, new URL(loc, url))
      continue
    }
    const html = await res.text()
    const title = pageTitle(html)
    const form = res.status === 200 && !/error/i.test(title) ? findPostForm(html, url) : undefined
    if (form) {
      step = await request(jar, new URL(form.action), form.fields)
      continue
    }
    return { approved: res.status === 200 && title === 'Sign-in Success', status: res.status, title }
  }
  throw new Error('approveDeviceCode: too many steps')
}
