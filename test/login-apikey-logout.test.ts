// API-key login and logout: the file as Codex writes it (checked with the real `codex login
// status`), revocation as `codex logout` does it, a provider that is down, a held lock, and the
// `codex-auth login --with-api-key` / `logout` commands.
import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { serializeAuthFile, formatLastRefresh } from '../src/codex/authfile.js'
import { codexLoginStatus } from './support/codex.js'
import { runCli, tempDir } from './support/daemon.js'
import { authFile, readJson, setup } from './support/login-helpers.js'
import { codexRefresh, mintTokens, type TestProvider } from './support/provider.js'

const KEY = 'sk-test-abcdefghij12345'

/** A ChatGPT auth.json in Codex's format holding real tokens from the provider. */
async function writeChatgptAuth(provider: TestProvider, home: string, extra: Record<string, unknown> = {}) {
  const tokens = await mintTokens(provider)
  const text = serializeAuthFile({
    authMode: 'chatgpt',
    openaiApiKey: null,
    tokens: { idToken: tokens.idToken, accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, accountId: tokens.accountId, extra: {} },
    lastRefresh: formatLastRefresh(new Date()),
    extra,
  })
  fs.writeFileSync(authFile(home), text, { mode: 0o600 })
  return tokens
}

t.test('API-key login: Codex’s file, read by the real Codex CLI', async (t) => {
  const { provider, daemon, rpc } = await setup(t)
  await writeChatgptAuth(provider, daemon.home, { my_tool: { keep: true } })
  await rpc.waitFor((n) => n.method === 'authChanged' && n.params.mode === 'chatgpt')

  const r = await rpc.ok('login', { method: 'apikey', apiKey: `  ${KEY}\n` })
  t.match(r, { loginId: String, method: 'apikey', status: 'succeeded' })
  t.equal(Object.keys(r).length, 3)
  const file = authFile(daemon.home)
  t.equal(fs.statSync(file).mode & 0o777, 0o600)
  t.equal(
    fs.readFileSync(file, 'utf8'),
    `{\n  "auth_mode": "apikey",\n  "OPENAI_API_KEY": "${KEY}",\n  "my_tool": {\n    "keep": true\n  }\n}`,
    'Codex’s two keys, trimmed key; tokens dropped as Codex does; the unknown field kept',
  )
  t.same(await rpc.ok('awaitLogin', { loginId: r.loginId }), { loginId: r.loginId, status: 'succeeded', error: null })
  t.match((await rpc.waitFor((n) => n.method === 'loginCompleted')).params, { loginId: r.loginId, status: 'succeeded' })
  t.match((await rpc.ok('getAuth')), { mode: 'apikey', token: KEY })
  t.equal(provider.countCalls({ endpoint: 'revoke' }), 0, 'an API-key login revokes nothing (as Codex)')
  t.notOk(daemon.logs.join('\n').includes(KEY), 'the key is never logged')

  // Exactly Codex's file, without the extra field:
  fs.rmSync(file)
  await rpc.ok('login', { method: 'apikey', apiKey: KEY })
  t.equal(fs.readFileSync(file, 'utf8'), `{\n  "auth_mode": "apikey",\n  "OPENAI_API_KEY": "${KEY}"\n}`)
  const status = await codexLoginStatus(daemon.home)
  t.equal(status.code, 0)
  // Codex 0.171.0 prints this (docs/codex-compat.md#logout-and-revocation); older versions said
  // "Logged in using an API key - …".
  t.match(status.out, /(API key configured|Logged in using an API key) - sk-test-\*\*\*12345/)
  t.notOk(status.out.includes(KEY))

  for (const bad of [{ method: 'apikey' }, { method: 'apikey', apiKey: '   ' }, { method: 'apikey', apiKey: 42 }]) {
    const a = await rpc.call('login', bad)
    t.match(a.error, { code: -32602, data: { field: 'apiKey' } })
  }
  const forced = await setup(t, { args: ['-c', 'forced_login_method="chatgpt"'] })
  const f = await forced.rpc.call('login', { method: 'apikey', apiKey: KEY })
  t.match(f.error, { code: -32005, data: { reason: 'forbidden_by_policy' } })
  t.notOk(JSON.stringify(f).includes(KEY), 'never echoed')
  t.notOk(fs.existsSync(authFile(forced.daemon.home)))
})

t.test('logout revokes the refresh token as Codex does', async (t) => {
  const { provider, daemon, rpc } = await setup(t)
  const tokens = await writeChatgptAuth(provider, daemon.home)
  await rpc.waitFor((n) => n.method === 'authChanged' && n.params.loggedIn)
  provider.resetCalls()
  t.same(await rpc.ok('logout'), { wasLoggedIn: true, revoked: true })
  t.equal(provider.countCalls({ endpoint: 'revoke', via: 'json', tokenTypeHint: 'refresh_token', hasClientId: true, status: 200 }), 1)
  t.notOk(fs.existsSync(authFile(daemon.home)), 'auth.json deleted')
  t.match((await rpc.waitFor((n) => n.method === 'authChanged' && !n.params.loggedIn)).params, { loggedIn: false })
  const refresh = await codexRefresh(provider, tokens.refreshToken)
  t.not(refresh.status, 200, 'the revoked refresh token no longer works')
  t.same(await rpc.ok('logout'), { wasLoggedIn: false, revoked: false }, 'nothing left')

  // revoke:false, and an API-key file: no revoke call.
  await writeChatgptAuth(provider, daemon.home)
  provider.resetCalls()
  t.same(await rpc.ok('logout', { revoke: false }), { wasLoggedIn: true, revoked: false })
  await rpc.ok('login', { method: 'apikey', apiKey: KEY })
  t.same(await rpc.ok('logout'), { wasLoggedIn: true, revoked: false })
  t.equal(provider.countCalls({ endpoint: 'revoke' }), 0)
  t.match((await rpc.call('logout', { revoke: 'yes' })).error, { code: -32602, data: { field: 'revoke' } })

  // An empty refresh token: the access token is revoked, without client_id (Codex).
  const t2 = await writeChatgptAuth(provider, daemon.home)
  const json = readJson(authFile(daemon.home))
  json.tokens.refresh_token = ''
  fs.writeFileSync(authFile(daemon.home), JSON.stringify(json, null, 2))
  provider.resetCalls()
  const r = await rpc.ok('logout')
  t.equal(r.wasLoggedIn, true)
  t.equal(provider.countCalls({ endpoint: 'revoke', tokenTypeHint: 'access_token', hasClientId: false }), 1)
  t.ok(t2.accessToken)

  // An unreadable auth.json is removed by an explicit logout.
  fs.writeFileSync(authFile(daemon.home), '{ not json')
  t.same(await rpc.ok('logout'), { wasLoggedIn: true, revoked: false })
  t.notOk(fs.existsSync(authFile(daemon.home)))
})

t.test('logout with the provider down still logs out', async (t) => {
  const { provider, daemon, rpc } = await setup(t)
  await writeChatgptAuth(provider, daemon.home)
  await rpc.waitFor((n) => n.method === 'authChanged' && n.params.loggedIn)
  await provider.stop()
  t.same(await rpc.ok('logout'), { wasLoggedIn: true, revoked: false })
  t.notOk(fs.existsSync(authFile(daemon.home)))
})

t.test('logout while auth.json.lock is held: -32004, file kept', async (t) => {
  const { daemon, rpc } = await setup(t)
  await rpc.ok('login', { method: 'apikey', apiKey: KEY })
  // Its own process group, so that the teardown ends flock and the sleep holding the lock.
  const holder = spawn('flock', [path.join(daemon.home, 'auth.json.lock'), '-c', 'echo locked; exec sleep 60'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    detached: true,
  })
  t.teardown(() => {
    try {
      process.kill(-holder.pid!, 'SIGKILL')
    } catch {
      // already gone
    }
  })
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()))
  const r = await rpc.call('logout')
  t.match(r.error, { code: -32004, message: 'credential commit lock timed out', data: { lock: 'auth.json.lock' } })
  t.ok(fs.existsSync(authFile(daemon.home)), 'not deleted')
})

t.test('codex-auth login --with-api-key and logout', async (t) => {
  const { daemon } = await setup(t)
  const li = await runCli(['login', '--with-api-key'], { socket: daemon.socket, input: `${KEY}\n` })
  t.equal(li.code, 0)
  t.match(li.stdout, /Successfully logged in/)
  t.notOk(li.stdout.includes(KEY) || li.stderr.includes(KEY), 'never echoed')
  t.equal(readJson(authFile(daemon.home)).OPENAI_API_KEY, KEY)
  const lo = await runCli(['logout'], { socket: daemon.socket })
  t.equal(lo.code, 0)
  t.equal(lo.stdout, 'Successfully logged out\n')
  t.notOk(fs.existsSync(authFile(daemon.home)))
  const again = await runCli(['logout'], { socket: daemon.socket })
  t.equal(again.code, 0)
  t.equal(again.stdout, 'Not logged in\n')
})
