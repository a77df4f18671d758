// The pure parts of the logins, without I/O: PKCE and state, the authorize URL, the callback
// query, the workspace rule, device answers, pages, the files a login writes, param checking.
import t from 'tap'
import { createHash } from 'node:crypto'
import { parseAuthFile, serializeAuthFile } from '../src/codex/authfile.js'
import { authorizeParams, buildAuthorizeUrl, checkWorkspace, CODEX_SCOPE, parseCallback, percentEncode, redirectUriFor } from '../src/login/authorize.js'
import { describeCallbackError } from '../src/login/browser.js'
import { parseDeviceTokenAnswer, parseIntervalSeconds, parseUserCodeAnswer } from '../src/login/device.js'
import { LoginError, safeCode, safeDescription } from '../src/login/errors.js'
import { parseAwaitParams, parseCancelParams, parseLoginParams, parseLogoutParams } from '../src/daemon/params.js'
import { describeAnswer, describeOidcError, tokensFromBody } from '../src/login/oauth.js'
import { NetworkError, hostOf } from '../src/net/http.js'
import { errorPage, escapeHtml, successPage } from '../src/login/pages.js'
import { apiKeyAuthFile, chatgptAuthFile } from '../src/login/persist.js'
import { codeChallenge, generatePkce, generateState, pkceFromBytes, statesMatch } from '../src/login/pkce.js'
import { LoginSession } from '../src/login/session.js'
import { RpcError } from '../src/rpc/errors.js'
import { fakeJwt } from './support/tokens.js'

t.test('PKCE and state as Codex makes them', async (t) => {
  // RFC 7636 appendix B
  t.equal(codeChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM')
  const bytes = Buffer.alloc(64, 0xfb)
  const p = pkceFromBytes(bytes)
  t.equal(p.verifier, bytes.toString('base64url'))
  t.equal(p.verifier.length, 86, '64 bytes -> 86 base64url characters')
  t.notMatch(p.verifier, /[=+/]/, 'no padding, url-safe alphabet')
  t.equal(p.challenge, createHash('sha256').update(p.verifier).digest('base64url'))
  const g = generatePkce()
  t.match(g.verifier, /^[A-Za-z0-9_-]{86}$/)
  t.match(g.challenge, /^[A-Za-z0-9_-]{43}$/)
  t.not(generatePkce().verifier, g.verifier)
  const s = generateState()
  t.match(s, /^[A-Za-z0-9_-]{43}$/, '32 bytes -> 43 characters')
  t.not(generateState(), s)
  t.ok(statesMatch(s, s))
  t.notOk(statesMatch(s, s.slice(1)))
  t.notOk(statesMatch(s, null))
  t.notOk(statesMatch(s, ''))
})

t.test('the authorize URL in Codex 0.171.0 order and encoding', async (t) => {
  const input = {
    authorizationEndpoint: 'https://auth.openai.com/oauth/authorize',
    clientId: 'app_EMoamEEZ73f0CkXaXp7hrann',
    redirectUri: redirectUriFor(1455),
    codeChallenge: 'CHALLENGE',
    state: 'STATE',
    allowedWorkspaceIds: null,
  }
  t.equal(input.redirectUri, 'http://127.0.0.1:1455/auth/callback')
  t.equal(
    buildAuthorizeUrl(input),
    'https://auth.openai.com/oauth/authorize?response_type=code&client_id=app_EMoamEEZ73f0CkXaXp7hrann' +
      '&redirect_uri=http%3A%2F%2F127.0.0.1%3A1455%2Fauth%2Fcallback&code_challenge=CHALLENGE&code_challenge_method=S256' +
      '&state=STATE&scope=openid%20profile%20email%20offline_access%20api.connectors.read%20api.connectors.invoke' +
      '&id_token_add_organizations=true&codex_cli_simplified_flow=true&originator=codex_cli_rs',
  )
  const keys = authorizeParams({ ...input, allowedWorkspaceIds: ['ws-1', 'ws-2'] }).map(([k]) => k)
  t.same(keys, [
    'response_type', 'client_id', 'redirect_uri', 'code_challenge', 'code_challenge_method', 'state', 'scope',
    'id_token_add_organizations', 'codex_cli_simplified_flow', 'originator', 'allowed_workspace_id',
  ])
  const url = new URL(buildAuthorizeUrl({ ...input, allowedWorkspaceIds: ['ws-1', 'ws-2'], originator: 'codex_vscode' }))
  t.equal(url.searchParams.get('allowed_workspace_id'), 'ws-1,ws-2')
  t.match(url.search, /&allowed_workspace_id=ws-1%2Cws-2$/, 'comma-joined and percent-encoded, last')
  t.equal(url.searchParams.get('originator'), 'codex_vscode')
  t.equal(url.searchParams.get('scope'), CODEX_SCOPE)
  t.notMatch(buildAuthorizeUrl({ ...input, allowedWorkspaceIds: [] }), /allowed_workspace_id/)
  t.equal(percentEncode("a b+c/d~e.f_g-h!*'()"), 'a%20b%2Bc%2Fd~e.f_g-h%21%2A%27%28%29')
})

t.test('the callback query', async (t) => {
  const q = (s: string) => new URLSearchParams(s)
  t.same(parseCallback(q('code=abc&state=S&iss=x'), 'S'), { kind: 'code', code: 'abc' })
  t.same(parseCallback(q('code=abc&state=T'), 'S'), { kind: 'state_mismatch' })
  t.same(parseCallback(q('code=abc'), 'S'), { kind: 'state_mismatch' })
  t.same(parseCallback(q('error=access_denied&state=T'), 'S'), { kind: 'state_mismatch' }, 'state first, as Codex')
  t.same(parseCallback(q('error=access_denied&error_description=no&state=S'), 'S'), { kind: 'error', error: 'access_denied', description: 'no' })
  t.same(parseCallback(q('state=S'), 'S'), { kind: 'missing_code' })
  t.same(parseCallback(q('state=S&code='), 'S'), { kind: 'missing_code' })
  t.match(describeCallbackError('access_denied', 'End-User denied'), /denied \(access_denied\): End-User denied/)
  t.match(describeCallbackError('access_denied', 'missing_codex_entitlement'), /Codex is not enabled for your workspace/)
  t.match(describeCallbackError('<script>', null), /returned an error \(error\)/, 'odd codes are not quoted')
})

t.test('the workspace rule', async (t) => {
  t.same(checkWorkspace('a', null), { ok: true })
  t.same(checkWorkspace(null, []), { ok: true })
  t.same(checkWorkspace('a', ['b', 'a']), { ok: true })
  const no = checkWorkspace('a', ['b', 'c'])
  t.equal(no.ok, false)
  t.match(no, { message: /restricted to workspace id\(s\) b, c; this account belongs to a/ })
  t.match(checkWorkspace(null, ['b']), { ok: false, message: /names no workspace/ })
})

t.test('device answers', async (t) => {
  t.equal(parseIntervalSeconds('5'), 5000)
  t.equal(parseIntervalSeconds(' 2 '), 2000)
  t.equal(parseIntervalSeconds(3), 3000)
  t.equal(parseIntervalSeconds('0'), null)
  t.equal(parseIntervalSeconds('x'), null)
  t.equal(parseIntervalSeconds(undefined), null)
  t.same(parseUserCodeAnswer({ device_auth_id: 'd', user_code: 'U', interval: '1' }), { deviceAuthId: 'd', userCode: 'U', intervalMs: 1000 })
  t.same(parseUserCodeAnswer({ device_auth_id: 'd', usercode: 'U' }), { deviceAuthId: 'd', userCode: 'U', intervalMs: null })
  t.equal(parseUserCodeAnswer({ user_code: 'U' }), null)
  t.equal(parseUserCodeAnswer(null), null)
  t.same(parseDeviceTokenAnswer({ authorization_code: 'c', code_challenge: 'x', code_verifier: 'v' }), { authorizationCode: 'c', codeVerifier: 'v' })
  t.equal(parseDeviceTokenAnswer({ authorization_code: 'c' }), null)
})

t.test('token answers are described without secrets', async (t) => {
  t.same(tokensFromBody({ id_token: 'i', access_token: 'a', refresh_token: 'r', extra: 1 }), { idToken: 'i', accessToken: 'a', refreshToken: 'r' })
  t.equal(tokensFromBody({ id_token: 'i', access_token: 'a' }), null)
  t.equal(tokensFromBody({ id_token: '', access_token: 'a', refresh_token: 'r' }), null)
  t.equal(describeAnswer({ type: 'http', status: 400, body: { error: 'invalid_grant', error_description: 'code abc123 bad' }, text: '' }), 'HTTP 400 (invalid_grant)')
  t.equal(describeAnswer({ type: 'http', status: 401, body: { error: { code: 'token_expired', message: 'secret-ish' } }, text: '' }), 'HTTP 401 (token_expired)')
  t.equal(describeAnswer({ type: 'http', status: 500, body: { error: 'has spaces and sk-secret' }, text: '' }), 'HTTP 500')
  t.equal(describeAnswer({ type: 'network', code: 'ENOTFOUND', host: 'auth.example.invalid' }), 'network error reaching auth.example.invalid (ENOTFOUND)', 'names the host')
  t.equal(describeAnswer({ type: 'timeout', host: '127.0.0.1:9' }), 'no answer from 127.0.0.1:9 in time')
  t.equal(describeOidcError(new NetworkError('idp.example.invalid', 'ENOTFOUND')), 'network error reaching idp.example.invalid (ENOTFOUND)', 'openid-client: the host too')
  t.equal(describeOidcError(Object.assign(new Error('wrapped'), { cause: new NetworkError('idp.example.invalid:8443', 'timeout') })), 'no answer from idp.example.invalid:8443 in time')
  t.equal(hostOf('https://auth.example.com/oauth/token?code=secret'), 'auth.example.com', 'the host, never the path or query')
  t.equal(safeCode('a b'), null)
  t.equal(safeDescription('x'.repeat(300))?.length, 201)
  t.equal(new LoginError('forbidden_by_policy', 'm').code, 'forbidden_by_policy')
})

t.test('pages are self-contained and escaped', async (t) => {
  const ok = successPage({ email: 'a<b>@example.test', planType: 'pro' })
  t.match(ok, /a&lt;b&gt;@example\.test/)
  t.match(ok, /\(pro plan\)/)
  t.match(ok, /You can close this window/)
  const err = errorPage('Sign-in failed', '"quoted" & <tag>')
  t.match(err, /&quot;quoted&quot; &amp; &lt;tag&gt;/)
  for (const html of [ok, err]) {
    t.notMatch(html, /<script|<link|<img|src=|url\(|@import|https?:\/\//i, 'no scripts, no external assets')
  }
  t.equal(escapeHtml(`'&`), '&#39;&amp;')
})

t.test('the files a login writes are exactly what Codex writes', async (t) => {
  const idToken = fakeJwt({ email: 'u@example.test', 'https://api.openai.com/auth': { chatgpt_account_id: 'acc-1' } })
  const f = chatgptAuthFile({ idToken, accessToken: 'AT', refreshToken: 'RT' }, 'acc-1', new Date('2026-11-26T13:40:37.393Z'), null)
  const text = serializeAuthFile(f)
  t.equal(
    text,
    `{\n  "auth_mode": "chatgpt",\n  "OPENAI_API_KEY": null,\n  "tokens": {\n    "id_token": "${idToken}",\n    "access_token": "AT",\n` +
      `    "refresh_token": "RT",\n    "account_id": "acc-1"\n  },\n  "last_refresh": "2026-11-26T13:40:37.393000000Z"\n}`,
  )
  const back = parseAuthFile(text, 'auth.json')
  t.ok(back.ok)
  if (back.ok) t.same(back.auth, f, 'round trip')
  t.equal(serializeAuthFile(apiKeyAuthFile('sk-test-1234567890', null)), '{\n  "auth_mode": "apikey",\n  "OPENAI_API_KEY": "sk-test-1234567890"\n}')
  const kept = apiKeyAuthFile('k', { ...f, extra: { my_tool: { v: 1 } } })
  t.same(kept.extra, { my_tool: { v: 1 } }, 'unknown top-level fields survive')
  t.equal(kept.tokens, null, 'tokens dropped, as Codex does')
  t.same(chatgptAuthFile({ idToken, accessToken: 'a', refreshToken: 'r' }, null, new Date(), { ...f, openaiApiKey: 'old', extra: { x: 1 } }).extra, { x: 1 })
})

t.test('params', async (t) => {
  const field = (fn: () => unknown) => {
    try {
      fn()
    } catch (e) {
      return e instanceof RpcError ? [e.code, e.data?.field] : ['other']
    }
    return ['none']
  }
  t.same(parseLoginParams({ method: 'browser' }), { method: 'browser', apiKey: null })
  t.same(parseLoginParams({ method: 'apikey', apiKey: '  sk-1 \n' }), { method: 'apikey', apiKey: 'sk-1' })
  t.same(field(() => parseLoginParams({ method: 'apikey', apiKey: '   ' })), [-32602, 'apiKey'])
  t.same(field(() => parseLoginParams({ method: 'apikey' })), [-32602, 'apiKey'])
  t.same(field(() => parseLoginParams({ method: 'apikey', apiKey: 5 })), [-32602, 'apiKey'])
  t.same(field(() => parseLoginParams({ method: 'browser', apiKey: 'x' })), [-32602, 'apiKey'])
  t.same(field(() => parseLoginParams({ method: 'sso' })), [-32602, 'method'])
  t.same(field(() => parseLoginParams(undefined)), [-32602, 'method'])
  t.same(field(() => parseLoginParams([1])), [-32602, 'params'])
  try {
    parseLoginParams({ method: 'apikey', apiKey: ' \t ' })
  } catch (e) {
    t.notMatch((e as Error).message, /\t/, 'the value is never quoted')
  }
  t.same(parseAwaitParams({ loginId: 'x' }), { loginId: 'x', timeoutMs: null })
  t.same(parseAwaitParams({ loginId: 'x', timeoutSeconds: 1.5 }), { loginId: 'x', timeoutMs: 1500 })
  t.same(field(() => parseAwaitParams({ loginId: 'x', timeoutSeconds: -1 })), [-32602, 'timeoutSeconds'])
  t.same(field(() => parseAwaitParams({})), [-32602, 'loginId'])
  t.same(field(() => parseCancelParams({ loginId: 3 })), [-32602, 'loginId'])
  t.same(parseLogoutParams(undefined), { revoke: true })
  t.same(parseLogoutParams({ revoke: false }), { revoke: false })
  t.same(field(() => parseLogoutParams({ revoke: 'no' })), [-32602, 'revoke'])
})

t.test('a login session ends once', async (t) => {
  const s = new LoginSession('browser')
  t.same(await s.wait(0), { loginId: s.id, status: 'pending', error: null })
  const waiting = s.wait(null)
  t.ok(s.cancellable)
  s.busy = true
  t.notOk(s.cancellable, 'not while committing')
  t.ok(s.end('succeeded', null, { email: 'e', planType: 'p', accountId: 'a' }))
  t.notOk(s.end('cancelled'), 'the first end wins')
  t.same(await waiting, { loginId: s.id, status: 'succeeded', error: null })
  t.ok(s.abort.signal.aborted)
  t.same(await s.wait(1000), { loginId: s.id, status: 'succeeded', error: null })
})
