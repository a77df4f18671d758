// Browser login end to end: the real daemon, the real provider (kind openai routes), and an HTTP
// client acting as the browser (driveAuthorization follows the provider's pages; then we GET our
// callback and follow it to /success).
import t from 'tap'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { parseAuthFile, serializeAuthFile } from '../src/codex/authfile.js'
import { driveAuthorization } from './support/browser.js'
import { codexRefresh, DEFAULT_ACCOUNT } from './support/provider.js'
import { authFile, followCallback, freePorts, get, getOrRefused, queryPairs, readJson, setup, type Rpc } from './support/login-helpers.js'

const ORDER = [
  'response_type', 'client_id', 'redirect_uri', 'code_challenge', 'code_challenge_method', 'state', 'scope',
  'id_token_add_organizations', 'codex_cli_simplified_flow', 'originator',
]

async function startBrowserLogin(rpc: Rpc) {
  return rpc.ok('login', { method: 'browser' }) as Promise<{ loginId: string; method: string; authUrl: string; callbackUrl: string }>
}

t.test('browser login: URL, callback, file, notifications', async (t) => {
  const { provider, daemon, rpc, ports } = await setup(t)
  const started = await startBrowserLogin(rpc)
  t.match(started, { loginId: String, method: 'browser' })
  t.equal(started.callbackUrl, `http://127.0.0.1:${ports[0]}/auth/callback`, 'first login port')

  // docs/codex-compat.md#browser-login: the URL Codex 0.171.0 prints, parameter by parameter, in order.
  t.ok(started.authUrl.startsWith(`${provider.issuer}/oauth/authorize?`))
  const pairs = queryPairs(started.authUrl)
  t.same(pairs.map(([k]) => k), ORDER)
  const q = Object.fromEntries(pairs)
  t.equal(q.response_type, 'code')
  t.equal(q.client_id, 'app_EMoamEEZ73f0CkXaXp7hrann')
  t.equal(q.redirect_uri, started.callbackUrl)
  t.match(q.code_challenge, /^[A-Za-z0-9_-]{43}$/)
  t.equal(q.code_challenge_method, 'S256')
  t.match(q.state, /^[A-Za-z0-9_-]{43}$/)
  t.equal(q.scope, 'openid profile email offline_access api.connectors.read api.connectors.invoke')
  t.equal(q.id_token_add_organizations, 'true')
  t.equal(q.codex_cli_simplified_flow, 'true')
  t.equal(q.originator, 'codex_cli_rs')
  t.match(started.authUrl, /redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A\d+%2Fauth%2Fcallback&/, 'percent-encoded as Codex')
  t.match(started.authUrl, /scope=openid%20profile%20email/, 'spaces as %20')

  const callback = await driveAuthorization(started.authUrl)
  t.equal(callback.origin + callback.pathname, started.callbackUrl, 'the provider redirects to our callback')
  const code = callback.searchParams.get('code')!
  const { first, final } = await followCallback(callback)
  t.equal(first.status, 302)
  t.equal(first.headers.location, '/success', 'no token in the redirect')
  t.equal(final.status, 200)
  t.match(final.headers['content-security-policy'], /default-src 'none'/)
  t.match(final.body, DEFAULT_ACCOUNT.email)
  t.match(final.body, /\(plus plan\)/)
  t.match(final.body, /You can close this window/)

  const done = await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 })
  t.same(done, { loginId: started.loginId, status: 'succeeded', error: null })

  // The file, exactly as Codex writes it.
  const file = authFile(daemon.home)
  const text = fs.readFileSync(file, 'utf8')
  t.equal(fs.statSync(file).mode & 0o777, 0o600)
  const parsed = parseAuthFile(text, file)
  t.ok(parsed.ok)
  if (parsed.ok) t.equal(serializeAuthFile(parsed.auth), text, 'serializeAuthFile round trip: Codex format')
  const json = readJson(file)
  t.same(Object.keys(json), ['auth_mode', 'OPENAI_API_KEY', 'tokens', 'last_refresh'])
  t.same(Object.keys(json.tokens), ['id_token', 'access_token', 'refresh_token', 'account_id'])
  t.equal(json.auth_mode, 'chatgpt')
  t.equal(json.OPENAI_API_KEY, null)
  t.equal(json.tokens.account_id, DEFAULT_ACCOUNT.accountId)
  t.match(json.last_refresh, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/)
  t.ok(Math.abs(Date.parse(json.last_refresh) - Date.now()) < 60_000)
  t.equal(provider.countCalls({ endpoint: 'token', grantType: 'authorization_code', via: 'form', status: 200 }), 1, 'form-encoded code exchange')

  // authChanged (the reload) before loginCompleted.
  const changed = await rpc.waitFor((n) => n.method === 'authChanged' && n.params.loggedIn)
  t.match(changed.params, { mode: 'chatgpt', account: { email: DEFAULT_ACCOUNT.email, planType: 'plus', accountId: DEFAULT_ACCOUNT.accountId } })
  const completed = await rpc.waitFor((n) => n.method === 'loginCompleted')
  t.same(completed.params, { loginId: started.loginId, status: 'succeeded', error: null })
  t.ok(rpc.notifications.indexOf(changed) < rpc.notifications.indexOf(completed), 'authChanged first')
  const grant = await rpc.ok('getAuth')
  t.equal(grant.token, json.tokens.access_token)

  t.equal((await getOrRefused(started.callbackUrl)).status, -1, 'the login server is gone after /success')
  const logs = daemon.logs.join('\n')
  for (const secret of [json.tokens.refresh_token, json.tokens.access_token, json.tokens.id_token, code, q.state]) {
    t.notOk(logs.includes(secret), 'no secret in the daemon log')
  }
})

t.test('state mismatch keeps the login pending; a replayed callback is refused', async (t) => {
  const { provider, daemon, rpc } = await setup(t)
  const started = await startBrowserLogin(rpc)
  const callback = await driveAuthorization(started.authUrl)
  const forged = new URL(callback)
  forged.searchParams.set('state', 'not-the-state')
  const mismatch = await get(forged)
  t.equal(mismatch.status, 400)
  t.match(mismatch.body, /State mismatch/)
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 0 }), { status: 'pending' })
  t.notOk(fs.existsSync(authFile(daemon.home)))

  const first = await get(callback)
  t.equal(first.status, 302)
  const replay = await get(callback)
  t.equal(replay.status, 400, 'replay while the server still waits for /success')
  t.match(replay.body, /already/)
  t.equal((await get(new URL('/success', callback))).status, 200)
  t.equal((await getOrRefused(callback)).status, -1, 'replay after: nobody listens')
  t.equal(provider.countCalls({ grantType: 'authorization_code' }), 1, 'the code was exchanged once')
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId }), { status: 'succeeded' })
})

t.test('access_denied: error page, login failed, nothing written', async (t) => {
  const { provider, daemon, rpc } = await setup(t)
  const started = await startBrowserLogin(rpc)
  provider.denyNext()
  const callback = await driveAuthorization(started.authUrl)
  t.equal(callback.searchParams.get('error'), 'access_denied')
  const page = await get(callback)
  t.equal(page.status, 400)
  t.match(page.body, /Sign-in failed/)
  t.match(page.body, /access_denied/)
  const r = await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 })
  t.match(r, { status: 'failed', error: { reason: 'login_failed', message: /access_denied/ } })
  t.match((await rpc.waitFor((n) => n.method === 'loginCompleted')).params, { loginId: started.loginId, status: 'failed' })
  t.notOk(fs.existsSync(authFile(daemon.home)))
  t.equal(provider.countCalls({ endpoint: 'token' }), 0)
  t.equal((await getOrRefused(started.callbackUrl)).status, -1, 'port freed')
  // The slot is free again.
  const again = await startBrowserLogin(rpc)
  t.not(again.loginId, started.loginId)
  t.same(await rpc.ok('cancelLogin', { loginId: again.loginId }), { cancelled: true })
})

t.test('workspace rule and forced_login_method', async (t) => {
  const { provider, daemon, rpc } = await setup(t, { args: ['-c', 'forced_chatgpt_workspace_id="other"'] })
  const started = await startBrowserLogin(rpc)
  const q = queryPairs(started.authUrl)
  t.same(q[q.length - 1], ['allowed_workspace_id', 'other'], 'allowed_workspace_id last')
  const page = await get(await driveAuthorization(started.authUrl))
  t.equal(page.status, 403)
  t.match(page.body, /Sign-in not allowed/)
  t.match(page.body, /restricted to workspace id\(s\) other/)
  const r = await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 })
  t.match(r, { status: 'failed', error: { reason: 'forbidden_by_policy' } })
  t.notOk(fs.existsSync(authFile(daemon.home)), 'nothing written')
  t.equal(provider.countCalls({ grantType: 'authorization_code', status: 200 }), 1)

  const api = await setup(t, { args: ['-c', 'forced_login_method="api"'] })
  for (const method of ['browser', 'device']) {
    const a = await api.rpc.call('login', { method })
    t.match(a.error, { code: -32005, data: { reason: 'forbidden_by_policy' } }, `${method} refused`)
  }
})

/** A stand-in for a previous login server on `port`: answers /cancel by giving the port up. */
async function previousLoginServer(port: number, givesUp: boolean) {
  const seen: string[] = []
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? '')
    if (req.url === '/cancel' && givesUp) {
      res.end('Login cancelled', () => {
        server.close()
        server.closeAllConnections()
      })
      return
    }
    res.writeHead(404).end('not found')
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()))
  return { seen, close: () => new Promise<void>((r) => (server.listening ? server.close(() => r()) : r())) }
}

t.test('busy first port: a previous login server gets /cancel; a foreign one keeps it', async (t) => {
  const ports = await freePorts(2)
  const { rpc } = await setup(t, { ports })

  const previous = await previousLoginServer(ports[0]!, true)
  const a = await startBrowserLogin(rpc)
  t.same(previous.seen, ['/cancel'], 'one /cancel')
  t.equal(a.callbackUrl, `http://127.0.0.1:${ports[0]}/auth/callback`, 'the first port, once given up')
  t.same(await rpc.ok('cancelLogin', { loginId: a.loginId }), { cancelled: true })
  await rpc.ok('awaitLogin', { loginId: a.loginId })

  const foreign = await previousLoginServer(ports[0]!, false)
  t.teardown(foreign.close)
  const b = await startBrowserLogin(rpc)
  t.same(foreign.seen, ['/cancel'], 'asked once, then retried binding')
  t.equal(b.callbackUrl, `http://127.0.0.1:${ports[1]}/auth/callback`, 'the second port')
  t.same(await rpc.ok('cancelLogin', { loginId: b.loginId }), { cancelled: true })
  await rpc.ok('awaitLogin', { loginId: b.loginId })

  const other = await previousLoginServer(ports[1]!, false)
  t.teardown(other.close)
  const c = await rpc.call('login', { method: 'browser' })
  t.match(c.error, { code: -32004, data: { reason: 'login_failed' }, message: /already in use/ })
  // A failed start does not hold the slot.
  await other.close()
  const d = await startBrowserLogin(rpc)
  t.equal(d.callbackUrl, `http://127.0.0.1:${ports[1]}/auth/callback`)
  await rpc.ok('cancelLogin', { loginId: d.loginId })
})

t.test('a login left open expires and frees its port', async (t) => {
  const { rpc, ports } = await setup(t, { env: { CODEX_AUTHD_LOGIN_TIMEOUT_MS: '400' } })
  const started = await startBrowserLogin(rpc)
  const r = await rpc.ok('awaitLogin', { loginId: started.loginId })
  t.match(r, { status: 'expired', error: { reason: 'expired' } })
  t.match((await rpc.waitFor((n) => n.method === 'loginCompleted')).params, { status: 'expired' })
  t.equal((await getOrRefused(started.callbackUrl)).status, -1, 'port freed')
  // The port can be bound by anyone again.
  const s = net.createServer()
  await new Promise<void>((res, rej) => s.once('error', rej).listen(ports[0], '127.0.0.1', () => res()))
  await new Promise<void>((res) => s.close(() => res()))
})

t.test('cancel by RPC and by GET /cancel', async (t) => {
  const { rpc } = await setup(t)
  const a = await startBrowserLogin(rpc)
  t.same(await rpc.ok('cancelLogin', { loginId: a.loginId }), { cancelled: true })
  t.match(await rpc.ok('awaitLogin', { loginId: a.loginId }), { status: 'cancelled', error: { reason: 'cancelled' } })
  t.same(await rpc.ok('cancelLogin', { loginId: a.loginId }), { cancelled: false }, 'already ended')
  t.same(await rpc.ok('cancelLogin', { loginId: 'nope' }), { cancelled: false })
  t.match((await rpc.call('awaitLogin', { loginId: 'nope' })).error, { code: -32602, data: { field: 'loginId' } })
  t.equal((await getOrRefused(a.callbackUrl)).status, -1)

  const b = await startBrowserLogin(rpc)
  const page = await get(new URL('/cancel', b.callbackUrl))
  t.equal(page.status, 200)
  t.match(page.body, /Login cancelled/)
  t.match(await rpc.ok('awaitLogin', { loginId: b.loginId }), { status: 'cancelled' })
  t.equal((await get(new URL('/nothing', b.callbackUrl).href).catch(() => ({ status: -1 }))).status, -1, 'server closed')
})

t.test('one browser/device login at a time', async (t) => {
  const { rpc } = await setup(t)
  const a = await startBrowserLogin(rpc)
  for (const method of ['browser', 'device']) {
    const r = await rpc.call('login', { method })
    t.match(r.error, { code: -32003, data: { reason: 'login_in_progress', loginId: a.loginId } }, method)
  }
  t.same(await rpc.ok('cancelLogin', { loginId: a.loginId }), { cancelled: true })
  await rpc.ok('awaitLogin', { loginId: a.loginId })
  const b = await startBrowserLogin(rpc)
  t.ok(b.loginId)
  await rpc.ok('cancelLogin', { loginId: b.loginId })
})

t.test('a new login revokes the refresh token it replaces', async (t) => {
  const { provider, daemon, rpc } = await setup(t)
  const login = async () => {
    const s = await startBrowserLogin(rpc)
    await followCallback(await driveAuthorization(s.authUrl))
    t.match(await rpc.ok('awaitLogin', { loginId: s.loginId, timeoutSeconds: 10 }), { status: 'succeeded' })
    return readJson(authFile(daemon.home)).tokens.refresh_token as string
  }
  const rt1 = await login()
  t.equal(provider.countCalls({ endpoint: 'revoke' }), 0, 'nothing to revoke on a first login')
  const rt2 = await login()
  t.not(rt2, rt1)
  t.equal(provider.countCalls({ endpoint: 'revoke', tokenTypeHint: 'refresh_token', via: 'json', hasClientId: true, status: 200 }), 1, 'the old one revoked as Codex does')
  const old = await codexRefresh(provider, rt1)
  t.not(old.status, 200, 'the old refresh token no longer works')
  const grant = await rpc.ok('refresh')
  t.equal(grant.mode, 'chatgpt', 'the new one still does')
})

t.test('kind oidc: discovered endpoints, openid-client code exchange', async (t) => {
  const { provider, daemon, rpc } = await setup(t, { kind: 'oidc' })
  const started = await startBrowserLogin(rpc)
  t.ok(started.authUrl.startsWith(`${provider.issuer}/oauth/authorize?`), 'the discovered authorization endpoint')
  t.same(queryPairs(started.authUrl).map(([k]) => k), ORDER)
  const callback = await driveAuthorization(started.authUrl)
  t.ok(callback.searchParams.get('iss'), 'the provider sends iss (RFC 9207), checked by openid-client')
  const head = await new Promise<number>((resolve, reject) => {
    const req = http.request(callback, { method: 'HEAD', agent: false }, (res) => resolve(res.statusCode ?? 0))
    req.on('error', reject)
    req.end()
  })
  t.equal(head, 405, 'a HEAD never spends the code')
  const { final } = await followCallback(callback)
  t.equal(final.status, 200)
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 }), { status: 'succeeded' })
  t.match(readJson(authFile(daemon.home)), { auth_mode: 'chatgpt', OPENAI_API_KEY: null, tokens: { account_id: DEFAULT_ACCOUNT.accountId } })
  t.equal(provider.countCalls({ grantType: 'authorization_code', via: 'form', status: 200 }), 1)
  provider.resetCalls()
  t.same(await rpc.ok('logout'), { wasLoggedIn: true, revoked: true }, 'RFC 7009 revocation through openid-client')
  t.equal(provider.countCalls({ endpoint: 'revoke', via: 'form', status: 200 }), 1)
})
