// Device logins. Kind oidc: RFC 8628 against the real provider. Kind openai: OpenAI's device API
// served by a small stand-in issuer (its two /api/accounts/deviceauth/* endpoints) that gets a REAL
// authorization code from the provider with redirect_uri {stand-in}/deviceauth/callback and
// proxies /oauth/* to the provider, so the daemon's code exchange really reaches the provider.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as oidcClient from 'openid-client'
import { parseAuthFile, serializeAuthFile } from '../src/codex/authfile.js'
import { approveDeviceCode, driveAuthorization } from './support/browser.js'
import { startDaemon, stopAtTeardown } from './support/daemon.js'
import { authFile, connectRpc, readJson, setup } from './support/login-helpers.js'
import { CLIENT_ID, DEFAULT_ACCOUNT, startProvider, type TestProvider } from './support/provider.js'

function checkFile(t: Test, home: string): void {
  const file = authFile(home)
  const text = fs.readFileSync(file, 'utf8')
  t.equal(fs.statSync(file).mode & 0o777, 0o600)
  const parsed = parseAuthFile(text, file)
  t.ok(parsed.ok, 'Codex can read it')
  if (parsed.ok) t.equal(serializeAuthFile(parsed.auth), text)
  const json = readJson(file)
  t.match(json, { auth_mode: 'chatgpt', OPENAI_API_KEY: null, tokens: { account_id: DEFAULT_ACCOUNT.accountId } })
}

t.test('kind oidc: RFC 8628 against the provider', async (t) => {
  const { provider, daemon, rpc } = await setup(t, { kind: 'oidc', env: { CODEX_AUTHD_DEVICE_INTERVAL_MS: '200' } })
  const before = Date.now()
  const started = await rpc.ok('login', { method: 'device' })
  t.match(started, { loginId: String, method: 'device', verificationUrl: String, userCode: String, expiresAt: String })
  t.ok(started.verificationUrl.startsWith(provider.issuer), 'the provider verification page')
  t.match(started.verificationUrl, /user_code=/, 'the complete URI, code included')
  const expires = Date.parse(started.expiresAt)
  t.ok(expires > before + 590_000 && expires <= Date.now() + 600_000, 'the server’s 10 minutes (below our 15)')
  const approval = await approveDeviceCode(started.verificationUrl)
  t.ok(approval.approved, 'the user approves')
  t.same(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 20 }), { loginId: started.loginId, status: 'succeeded', error: null })
  t.match((await rpc.waitFor((n) => n.method === 'loginCompleted')).params, { status: 'succeeded' })
  t.equal(provider.countCalls({ grantType: 'urn:ietf:params:oauth:grant-type:device_code', status: 200 }), 1)
  checkFile(t, daemon.home)
  t.match(await rpc.ok('status'), { loggedIn: true, mode: 'chatgpt', account: { email: DEFAULT_ACCOUNT.email } })

  // Denied.
  const again = await rpc.ok('login', { method: 'device' })
  provider.denyNext()
  t.notOk((await approveDeviceCode(again.verificationUrl)).approved)
  t.match(await rpc.ok('awaitLogin', { loginId: again.loginId, timeoutSeconds: 20 }), { status: 'failed', error: { reason: 'login_failed', message: /access_denied/ } })
  t.equal(provider.countCalls({ endpoint: 'revoke' }), 0, 'a failed login revokes nothing')

  // Cancel stops the polling.
  const third = await rpc.ok('login', { method: 'device' })
  t.same(await rpc.ok('cancelLogin', { loginId: third.loginId }), { cancelled: true })
  t.match(await rpc.ok('awaitLogin', { loginId: third.loginId }), { status: 'cancelled' })
})

interface StandIn {
  url: string
  /** the provider behind /oauth/* */
  provider: TestProvider | null
  enabled: boolean
  /** answer for an approved poll: 'approve' hands over the code; anything else is an error status */
  userCodeCalls: unknown[]
  tokenPolls: Array<{ at: number; body: unknown; status: number }>
  approve(): Promise<void>
  deny(status: number): void
  close(): Promise<void>
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let s = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => (s += d))
    req.on('end', () => resolve(s))
  })
}

/** OpenAI's device endpoints in front of the provider (see the file comment). */
async function startStandIn(): Promise<StandIn> {
  const deviceAuthId = 'dev-auth-1'
  const userCode = 'ABCD-1234'
  let handover: { authorization_code: string; code_challenge: string; code_verifier: string } | null = null
  let denyStatus: number | null = null
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const body = await readBody(req)
    const json = (status: number, v: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v))
    }
    if (req.method === 'POST' && url.pathname === '/api/accounts/deviceauth/usercode') {
      s.userCodeCalls.push({ contentType: req.headers['content-type'], body: JSON.parse(body) })
      if (!s.enabled) return json(404, { error: 'not_found' })
      return json(200, { device_auth_id: deviceAuthId, user_code: userCode, interval: '1' })
    }
    if (req.method === 'POST' && url.pathname === '/api/accounts/deviceauth/token') {
      const status = denyStatus ?? (handover ? 200 : s.tokenPolls.length % 2 === 0 ? 403 : 404)
      s.tokenPolls.push({ at: Date.now(), body: JSON.parse(body), status })
      if (status === 200) return json(200, handover)
      return json(status, { error: 'pending' })
    }
    if (url.pathname.startsWith('/oauth/') && s.provider) {
      // Proxy to the provider's JSON/form front (which records the call).
      const up = http.request(
        `${s.provider.issuer}${url.pathname}${url.search}`,
        { method: req.method, headers: { 'content-type': String(req.headers['content-type'] ?? ''), 'user-agent': String(req.headers['user-agent'] ?? '') } },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, { 'content-type': String(upRes.headers['content-type'] ?? 'application/json') })
          upRes.pipe(res)
        },
      )
      up.on('error', () => json(502, { error: 'bad_gateway' }))
      up.end(body)
      return
    }
    json(404, { error: 'not_found' })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const s: StandIn = {
    url,
    provider: null,
    enabled: true,
    userCodeCalls: [],
    tokenPolls: [],
    // What OpenAI does when the user approves: a PKCE code flow whose redirect is its own
    // {issuer}/deviceauth/callback; the code and verifier are then handed to the poller.
    async approve() {
      const p = s.provider!
      const config = await p.clientConfig()
      const verifier = oidcClient.randomPKCECodeVerifier()
      const challenge = await oidcClient.calculatePKCECodeChallenge(verifier)
      const authUrl = oidcClient.buildAuthorizationUrl(config, {
        redirect_uri: `${url}/deviceauth/callback`,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        state: oidcClient.randomState(),
        scope: 'openid profile email offline_access',
      })
      const cb = await driveAuthorization(authUrl.href)
      const code = cb.searchParams.get('code')
      if (cb.origin + cb.pathname !== `${url}/deviceauth/callback` || !code) throw new Error('stand-in: no code from the provider')
      handover = { authorization_code: code, code_challenge: challenge, code_verifier: verifier }
    },
    deny(status) {
      denyStatus = status
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
  return s
}

t.test('kind openai: OpenAI’s device API, code exchange at the provider', async (t) => {
  const standIn = await startStandIn()
  t.teardown(standIn.close)
  const provider = await startProvider({ extraRedirectUris: [`${standIn.url}/deviceauth/callback`] })
  t.teardown(() => provider.stop())
  standIn.provider = provider
  const daemon = stopAtTeardown(t, await startDaemon({ args: ['--issuer', standIn.url, '--issuer-kind', 'openai'] }))
  const rpc = await connectRpc(daemon.socket)
  t.teardown(() => rpc.close())
  await rpc.ok('subscribe')

  const before = Date.now()
  const started = await rpc.ok('login', { method: 'device' })
  t.match(started, { method: 'device', verificationUrl: `${standIn.url}/codex/device`, userCode: 'ABCD-1234' })
  const expires = Date.parse(started.expiresAt)
  t.ok(expires >= before + 15 * 60_000 && expires <= Date.now() + 15 * 60_000, 'expires in 15 minutes')
  t.same(standIn.userCodeCalls, [{ contentType: 'application/json', body: { client_id: CLIENT_ID } }], 'JSON {client_id}')

  // Wait for two pending polls (403, then 404) before the user approves.
  while (standIn.tokenPolls.length < 2) await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 0.25 })
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 0 }), { status: 'pending' }, '403 and 404 mean pending')
  await standIn.approve()
  t.same(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 20 }), { loginId: started.loginId, status: 'succeeded', error: null })
  t.same(standIn.tokenPolls[0]!.body, { device_auth_id: 'dev-auth-1', user_code: 'ABCD-1234' })
  for (let i = 1; i < standIn.tokenPolls.length; i++) {
    t.ok(standIn.tokenPolls[i]!.at - standIn.tokenPolls[i - 1]!.at >= 900, 'polls at the server’s interval ("1" s)')
  }
  t.equal(provider.countCalls({ grantType: 'authorization_code', via: 'form', status: 200 }), 1, 'our code exchange reached the provider')
  checkFile(t, daemon.home)
  t.match((await rpc.waitFor((n) => n.method === 'loginCompleted')).params, { loginId: started.loginId, status: 'succeeded' })

  // An error answer from the token endpoint (not 403/404) fails the login.
  standIn.deny(400)
  const second = await rpc.ok('login', { method: 'device' })
  t.match(await rpc.ok('awaitLogin', { loginId: second.loginId, timeoutSeconds: 20 }), { status: 'failed', error: { reason: 'login_failed', message: /HTTP 400/ } })

  // Device login not enabled on the server: refused at once.
  standIn.enabled = false
  const off = await rpc.call('login', { method: 'device' })
  t.match(off.error, { code: -32004, message: /device code login is not enabled/ })
})
