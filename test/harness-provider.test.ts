import t from 'tap'
import * as oidcClient from 'openid-client'
import {
  startProvider,
  mintTokens,
  codexRefresh,
  codexRevoke,
  decodeJwtPayload,
  decodeJwtHeader,
  FAILURES,
  AUTH_CLAIM,
  CLIENT_ID,
  API_AUDIENCE,
  DEFAULT_ACCOUNT,
  type TestProvider,
} from './support/provider.js'
import { driveAuthorization, approveDeviceCode } from './support/browser.js'

const JWT_RE = /^[\w-]+\.[\w-]+\.[\w-]+$/

const isJwt = (s: unknown) => typeof s === 'string' && JWT_RE.test(s)

/** shape-only view of a token response (never echo token strings into tap output) */
function shape(json: unknown) {
  const o = (json ?? {}) as Record<string, unknown>
  return {
    access_token: isJwt(o.access_token) ? 'jwt' : typeof o.access_token,
    id_token: isJwt(o.id_token) ? 'jwt' : typeof o.id_token,
    refresh_token: typeof o.refresh_token,
    token_type: o.token_type,
    expires_in: o.expires_in,
  }
}

let provider: TestProvider
t.before(async () => {
  provider = await startProvider({
    accounts: {
      'user-a': { email: 'a@example.test', planType: 'plus', accountId: 'acct-a', userId: 'user-a-id' },
      'user-b': { email: 'b@example.test', planType: 'pro', accountId: 'acct-b', userId: 'user-b-id' },
    },
    ttl: { authorizationCode: 240, refreshToken: 3600 },
  })
})
t.teardown(() => provider.stop())

t.test('listens on 127.0.0.1 with OpenAI routes and device flow in discovery', async (t) => {
  t.match(provider.issuer, /^http:\/\/127\.0\.0\.1:\d+$/)
  const res = await fetch(`${provider.issuer}/.well-known/openid-configuration`)
  const meta = (await res.json()) as Record<string, unknown>
  t.equal(meta.token_endpoint, provider.tokenUrl)
  t.equal(meta.revocation_endpoint, provider.revokeUrl)
  t.equal(meta.authorization_endpoint, provider.authorizationUrl)
  t.equal(meta.device_authorization_endpoint, provider.deviceAuthorizationUrl)
})

t.test('minted tokens: JWT AT with exp/iat + auth claim; id token with email + claim', async (t) => {
  provider.resetCalls()
  const tok = await mintTokens(provider, { account: 'user-b' })
  t.ok(isJwt(tok.accessToken), 'AT is a JWT')
  t.ok(isJwt(tok.idToken), 'id token is a JWT')
  t.type(tok.refreshToken, 'string')
  t.ok(tok.refreshToken.length > 20, 'RT present')
  t.equal(tok.accountId, 'acct-b')
  t.equal(tok.sub, 'user-b')
  t.equal(tok.email, 'b@example.test')
  t.ok(tok.expiresIn > 230 && tok.expiresIn <= 240, 'code-grant AT TTL is 240')

  const hdr = decodeJwtHeader(tok.accessToken)
  t.match(hdr, { alg: 'RS256', typ: 'at+jwt' })
  const at = decodeJwtPayload(tok.accessToken)
  t.type(at.exp, 'number')
  t.type(at.iat, 'number')
  t.equal((at.exp as number) - (at.iat as number), 240)
  t.equal(at.aud, API_AUDIENCE)
  t.equal(at.client_id, CLIENT_ID)
  t.same(at[AUTH_CLAIM], { chatgpt_account_id: 'acct-b', chatgpt_plan_type: 'pro', chatgpt_user_id: 'user-b-id' })

  const id = decodeJwtPayload(tok.idToken)
  t.equal(id.email, 'b@example.test')
  t.equal(id.email_verified, true)
  t.same(id[AUTH_CLAIM], { chatgpt_account_id: 'acct-b', chatgpt_plan_type: 'pro', chatgpt_user_id: 'user-b-id' })

  t.equal(provider.countCalls({ endpoint: 'token', grantType: 'authorization_code', via: 'form', status: 200 }), 1)
})

t.test('default account and Codex authorize params via driveAuthorization', async (t) => {
  const p = await startProvider()
  t.teardown(() => p.stop())
  const tok = await mintTokens(p)
  t.equal(tok.accountId, DEFAULT_ACCOUNT.accountId)
  // expires_in is counted from the token's issue to the answer: a second may tick between them.
  t.ok(tok.expiresIn > 3590 && tok.expiresIn <= 3600, `default AT TTL is 3600 (${tok.expiresIn})`)
})

t.test('openid-client refreshTokenGrant works and rotates', async (t) => {
  const tok = await mintTokens(provider, { account: 'user-a' })
  provider.resetCalls()
  const config = await provider.clientConfig()
  const r1 = await oidcClient.refreshTokenGrant(config, tok.refreshToken)
  t.ok(isJwt(r1.access_token))
  t.ok(isJwt(r1.id_token), 'refresh returns a new id token')
  t.ok(r1.refresh_token, 'new RT')
  t.not(r1.refresh_token === tok.refreshToken, true, 'RT rotated')
  const at = decodeJwtPayload(r1.access_token)
  t.equal((at.exp as number) - (at.iat as number), 3600, 'refresh-grant AT TTL')
  t.same(at[AUTH_CLAIM], { chatgpt_account_id: 'acct-a', chatgpt_plan_type: 'plus', chatgpt_user_id: 'user-a-id' })
  const r2 = await oidcClient.refreshTokenGrant(config, r1.refresh_token!)
  t.ok(isJwt(r2.access_token))
  t.equal(provider.countCalls({ grantType: 'refresh_token', via: 'form', status: 200 }), 2)

  // old RT via openid-client: plain invalid_grant (no reshaping for form callers)
  const err = await oidcClient.refreshTokenGrant(config, tok.refreshToken).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.match(err, { error: 'invalid_grant' })
  const last = provider.calls.at(-1)
  t.match(last, { via: 'form', status: 400, refreshTokenReuse: true, error: 'invalid_grant' })
})

t.test('JSON refresh through the adapter (Codex body) works, is counted, and reuse kills the grant', async (t) => {
  const tok = await mintTokens(provider, { account: 'user-a' })
  provider.resetCalls()

  const r1 = await codexRefresh(provider, tok.refreshToken)
  t.equal(r1.status, 200)
  t.equal(r1.headers.get('x-json-adapted'), '1')
  t.same(shape(r1.json), { access_token: 'jwt', id_token: 'jwt', refresh_token: 'string', token_type: 'Bearer', expires_in: 3600 })
  const rt1 = (r1.json as { refresh_token: string }).refresh_token
  t.equal(provider.countCalls({ endpoint: 'token', grantType: 'refresh_token', via: 'json' }), 1)
  t.match(provider.calls[0], { userAgent: /^codex_exec\/0\.171\.0/, status: 200, hasClientId: true, done: true })
  t.equal(provider.countCalls((c) => c.userAgent.startsWith('codex_exec')), 1)

  // reuse the original (rotated) RT -> OpenAI's 401 refresh_token_reused
  const reused = await codexRefresh(provider, tok.refreshToken)
  t.equal(reused.status, 401)
  t.same(reused.json, {
    error: {
      message: 'Your refresh token has already been used to generate a new access token. Please try signing in again.',
      type: 'invalid_request_error',
      param: null,
      code: 'refresh_token_reused',
    },
  })
  t.match(provider.calls.at(-1), { status: 401, refreshTokenReuse: true, error: 'refresh_token_reused' })

  // the grant is dead: the newest RT is now invalidated
  const dead = await codexRefresh(provider, rt1)
  t.equal(dead.status, 401)
  t.match(dead.json, { error: { code: 'refresh_token_invalidated' } })
  t.equal(provider.countCalls({ grantType: 'refresh_token' }), 3)
})

t.test('openaiErrors:false gives plain RFC invalid_grant to JSON callers', async (t) => {
  const tok = await mintTokens(provider)
  const ok = await codexRefresh(provider, tok.refreshToken)
  t.equal(ok.status, 200)
  provider.openaiErrors = false
  t.teardown(() => {
    provider.openaiErrors = true
  })
  const r = await codexRefresh(provider, tok.refreshToken)
  t.equal(r.status, 400)
  t.match(r.json, { error: 'invalid_grant' })
})

t.test('expired RT maps to refresh_token_expired', async (t) => {
  const p = await startProvider({ ttl: { refreshTokenLifetime: 1 } })
  t.teardown(() => p.stop())
  const tok = await mintTokens(p)
  await new Promise((r) => setTimeout(r, 1100))
  const r = await codexRefresh(p, tok.refreshToken)
  t.equal(r.status, 401)
  t.match(r.json, { error: { code: 'refresh_token_expired', type: 'invalid_request_error' } })
})

t.test('JSON revoke works and kills the RT', async (t) => {
  const tok = await mintTokens(provider)
  provider.resetCalls()
  const r = await codexRevoke(provider, tok.refreshToken)
  t.equal(r.status, 200)
  t.equal(r.text, '')
  t.match(provider.calls, [{ endpoint: 'revoke', via: 'json', status: 200, tokenTypeHint: 'refresh_token', userAgent: /^codex_cli_rs\// }])
  const after = await codexRefresh(provider, tok.refreshToken)
  t.equal(after.status, 401)
  t.match(after.json, { error: { code: 'refresh_token_invalidated' } })

  // Codex's no-RT logout: AT without client_id -> 400 (docs/testing.md#the-test-issuer)
  const noClient = await codexRevoke(provider, tok.accessToken, { tokenTypeHint: 'access_token' })
  t.equal(noClient.status, 400)
})

t.test('failNext injects each failure class without reaching the provider', async (t) => {
  const tok = await mintTokens(provider)
  provider.resetCalls()
  const cases = [
    ['reused', 401],
    ['expired', 401],
    ['invalidated', 401],
    ['invalidGrant', 400],
    ['unsupportedGrantType', 400],
    ['forbidden', 403],
    ['rateLimited', 429],
    ['serverError', 500],
    ['nonJson', 200],
    ['emptyJson', 200],
  ] as const
  for (const [name, status] of cases) {
    provider.failNext(1, FAILURES[name])
    const r = await codexRefresh(provider, tok.refreshToken)
    t.equal(r.status, status, name)
  }
  t.equal(provider.countCalls({ injected: true }), cases.length)
  const nonJson = await (async () => {
    provider.failNext(1, FAILURES.nonJson)
    return codexRefresh(provider, tok.refreshToken)
  })()
  t.equal(nonJson.json, undefined, 'non-JSON body')

  // network failure: socket destroyed
  provider.failNext(2, 'network')
  for (let i = 0; i < 2; i++) {
    const err = await codexRefresh(provider, tok.refreshToken).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.type(err, Error, 'fetch fails')
  }
  t.equal(provider.pendingFailures(), 0)

  // delayMs on an injected answer
  provider.failNext(1, { status: 500, body: { error: 'x' }, delayMs: 150 })
  const t0 = Date.now()
  const slow = await codexRefresh(provider, tok.refreshToken)
  t.equal(slow.status, 500)
  t.ok(Date.now() - t0 >= 140, 'delayed')

  // the RT was never consumed by any of the injected calls
  const real = await codexRefresh(provider, tok.refreshToken)
  t.equal(real.status, 200, 'RT still valid after injected failures')

  // form callers get injected failures too
  provider.failNext(1, FAILURES.serverError)
  const config = await provider.clientConfig()
  const rt = (real.json as { refresh_token: string }).refresh_token
  const err = await oidcClient.refreshTokenGrant(config, rt).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err, 'openid-client sees the 500')
  t.match(provider.calls.at(-1), { via: 'form', status: 500, injected: true })

  // revoke endpoint injection
  provider.failNext(1, FAILURES.serverError, { endpoint: 'revoke' })
  const rv = await codexRevoke(provider, rt)
  t.equal(rv.status, 500)
})

t.test('tokenDelayMs delays answers; concurrent calls are all counted at arrival', async (t) => {
  const tok = await mintTokens(provider)
  provider.resetCalls()
  provider.tokenDelayMs = 200
  t.teardown(() => {
    provider.tokenDelayMs = 0
  })
  const pending = [codexRefresh(provider, tok.refreshToken), codexRefresh(provider, tok.refreshToken)]
  await new Promise((r) => setTimeout(r, 80))
  t.equal(provider.countCalls({ grantType: 'refresh_token', done: false }), 2, 'both in flight')
  const results = await Promise.all(pending)
  t.same(results.map((r) => r.status).sort(), [200, 401], 'one wins, the concurrent reuse loses')
})

t.test('denyNext makes the authorization end with access_denied', async (t) => {
  provider.denyNext()
  const config = await provider.clientConfig()
  const url = oidcClient.buildAuthorizationUrl(config, {
    redirect_uri: provider.redirectUri,
    scope: 'openid profile email offline_access',
    code_challenge: await oidcClient.calculatePKCECodeChallenge(oidcClient.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: 'st-1',
  })
  const cb = await driveAuthorization(url.href)
  t.equal(cb.origin + cb.pathname, provider.redirectUri)
  t.equal(cb.searchParams.get('error'), 'access_denied')
  t.equal(cb.searchParams.get('state'), 'st-1')
  t.ok(cb.searchParams.get('error_description'))
  // next one is approved again
  const tok = await mintTokens(provider)
  t.ok(isJwt(tok.accessToken))
})

t.test('localhost redirect uri works too', async (t) => {
  const config = await provider.clientConfig()
  const verifier = oidcClient.randomPKCECodeVerifier()
  const url = oidcClient.buildAuthorizationUrl(config, {
    redirect_uri: 'http://localhost:1457/auth/callback',
    scope: 'openid profile email offline_access',
    code_challenge: await oidcClient.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: 'st-2',
  })
  const cb = await driveAuthorization(url.href)
  t.equal(cb.host, 'localhost:1457')
  const tokens = await oidcClient.authorizationCodeGrant(config, cb, { pkceCodeVerifier: verifier, expectedState: 'st-2' })
  t.ok(tokens.refresh_token)
})

t.test('device flow with approveDeviceCode', async (t) => {
  const config = await provider.clientConfig()
  const da = await oidcClient.initiateDeviceAuthorization(config, { scope: 'openid profile email offline_access' })
  t.match(da, { user_code: String, verification_uri: String, verification_uri_complete: String, device_code: String })
  const poll = oidcClient.pollDeviceAuthorizationGrant(config, { ...da, interval: 1 })
  const approval = await approveDeviceCode(da.verification_uri_complete!)
  t.same(approval, { approved: true, status: 200, title: 'Sign-in Success' })
  const tokens = await poll
  t.ok(isJwt(tokens.access_token))
  t.ok(tokens.refresh_token)
  const at = decodeJwtPayload(tokens.access_token)
  t.type((at[AUTH_CLAIM] as Record<string, unknown>)?.chatgpt_account_id, 'string')
  const r = await codexRefresh(provider, tokens.refresh_token!)
  t.equal(r.status, 200, 'device-issued RT refreshes via JSON')
})

t.test('device flow denial', async (t) => {
  const config = await provider.clientConfig()
  const da = await oidcClient.initiateDeviceAuthorization(config, { scope: 'openid offline_access' })
  provider.denyNext()
  const poll = oidcClient.pollDeviceAuthorizationGrant(config, { ...da, interval: 1 }).then(
    () => undefined,
    (e: unknown) => e,
  )
  const approval = await approveDeviceCode(da.verification_uri_complete!)
  t.equal(approval.approved, false)
  t.match(await poll, { error: 'access_denied' })
})
