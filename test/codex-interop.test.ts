// Issue 2, core interop with the REAL Codex CLI 0.171.0 (docs/codex-compat.md#logout-and-revocation,
// #what-codex-rejects): files Codex writes are files the daemon serves, files our serializer writes
// are files Codex accepts, a `codex logout` is seen by the daemon, and a file Codex rewrote after a
// refresh survives parseAuthFile + serializeAuthFile byte for byte.
//
// Codex runs only inside a loopback-only network namespace (test/support/codex.ts); the provider,
// the backend stub and the daemon run out here and are reached through a Unix-socket relay.
// Synchronisation is by authChanged notifications or polling with a deadline, never fixed sleeps.
// No token is ever printed: comparisons of secrets are t.ok(a === b).
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile, serializeAuthFile } from '../src/codex/authfile.js'
import { connect, nextAuthChanged, subscribe } from './support/daemon.js'
import { decodeJwtPayload, mintTokens, startProvider, type TestProvider } from './support/provider.js'
import { authFileFor, CODEX_UA, codexDaemon, codexHome, requireCodex, DAEMON_UA, endedByItself, startCodexWorld, writeAuthJson, type CodexWorld, shown } from './support/codex.js'

await requireCodex()

let provider: TestProvider
let world: CodexWorld
t.before(async () => {
  provider = await startProvider()
  world = await startCodexWorld(provider)
})
t.teardown(async () => {
  await world?.close()
  await provider?.stop()
})

// ---------------------------------------------------------------- helpers

const codexRefreshes = () => provider.countCalls((c) => c.endpoint === 'token' && c.grantType === 'refresh_token' && CODEX_UA.test(c.userAgent))

// ---------------------------------------------------------------- tests

t.test('`codex login --with-api-key` writes a file the daemon serves as an API key', async (t) => {
  const home = await codexHome(world)
  const d = await codexDaemon(t, world, home)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)
  t.equal((await c.call('getAuth')).error?.code, -32001, 'not logged in before')

  const key = 'sk-test-0123456789abcdef0123456789abcdef67890'
  const r = await world.codex(home, ['login', '--with-api-key'], { input: key })
  t.equal(r.code, 0, `codex login --with-api-key exits 0 (${r.ms} ms)`, { diagnostic: r.code !== 0, output: shown(r) })
  t.match(r.stdout + r.stderr, /API key saved/, 'Codex says the key was saved')

  const s = await nextAuthChanged(sub, (s) => s.loggedIn && s.mode === 'apikey', 'logged in with an API key')
  t.equal(s.source, 'auth.json', 'status source is auth.json')
  const g = (await c.call('getAuth')).result
  t.equal(g?.mode, 'apikey', 'getAuth mode apikey')
  t.ok(g?.token === key, 'getAuth serves the key Codex wrote')
  t.equal(g?.accountId, null)
  const st = (await c.call('status')).result
  t.same(st.problems, [], 'no problems')

  const text = fs.readFileSync(path.join(home, 'auth.json'), 'utf8')
  const parsed = parseAuthFile(text, 'auth.json')
  t.ok(parsed.ok, 'parseAuthFile accepts the file Codex wrote')
  if (parsed.ok) {
    t.equal(parsed.auth.authMode, 'apikey')
    t.ok(parsed.auth.openaiApiKey === key, 'OPENAI_API_KEY is the key')
    t.equal(parsed.auth.tokens, null, 'no tokens')
    t.equal(serializeAuthFile(parsed.auth), text, 'serializeAuthFile reproduces Codex\'s bytes')
  }
  t.equal(fs.statSync(path.join(home, 'auth.json')).mode & 0o777, 0o600, 'Codex wrote it 0600')

  const status = await world.codex(home, ['login', 'status'])
  t.equal(status.code, 0, 'codex login status exits 0')
  t.match(status.stderr, /API key configured/, 'codex login status: API key configured')
})

t.test('a ChatGPT auth.json written by our serializer is accepted by `codex login status`', async (t) => {
  const home = await codexHome(world)
  const tokens = await mintTokens(provider)
  const text = writeAuthJson(home, authFileFor(tokens))
  t.notOk(text.endsWith('\n'), 'no trailing newline, like Codex')
  provider.resetCalls()

  const r = await world.codex(home, ['login', 'status'])
  t.equal(r.code, 0, `codex login status exits 0 (${r.ms} ms)`, { diagnostic: r.code !== 0, output: shown(r) })
  t.match(r.stderr, /Logged in using ChatGPT/, 'Codex: Logged in using ChatGPT (stderr)')
  t.equal(provider.calls.length, 0, 'login status made no token or revoke call')
  t.equal(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'), text, 'and left the file alone')

  // Unknown fields, which our serializer keeps (Codex would drop them on a rewrite), are accepted
  // at both levels (docs/codex-compat.md#file-format).
  const extra = authFileFor(tokens)
  extra.extra = { codex_authd: { note: 'unknown top-level field' } }
  extra.tokens!.extra = { unknown_inner: 1 }
  writeAuthJson(home, extra)
  const r2 = await world.codex(home, ['login', 'status'])
  t.equal(r2.code, 0, 'accepted with unknown fields at both levels', { diagnostic: r2.code !== 0, output: shown(r2) })
  t.match(r2.stderr, /Logged in using ChatGPT/)
})

t.test('`codex logout` is seen by the daemon: logged out, getAuth -32001', async (t) => {
  const home = await codexHome(world)
  const tokens = await mintTokens(provider)
  writeAuthJson(home, authFileFor(tokens))
  const d = await codexDaemon(t, world, home)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)
  const g = (await c.call('getAuth')).result
  t.equal(g?.mode, 'chatgpt', 'the daemon serves the ChatGPT tokens')
  t.ok(g?.token === tokens.accessToken, 'getAuth serves the access token from our file')
  t.equal(g?.accountId, tokens.accountId)
  provider.resetCalls()

  const r = await world.codex(home, ['logout'])
  t.equal(r.code, 0, `codex logout exits 0 (${r.ms} ms)`, { diagnostic: r.code !== 0, output: shown(r) })
  t.match(r.stderr, /Successfully logged out/, 'Codex: Successfully logged out (stderr)')
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'auth.json is gone')

  const s = await nextAuthChanged(sub, (s) => !s.loggedIn, 'logged out')
  t.equal(s.mode, null)
  t.equal((await c.call('getAuth')).error?.code, -32001, 'getAuth: -32001 not logged in')

  const revokes = provider.calls.filter((x) => x.endpoint === 'revoke')
  t.equal(revokes.length, 1, 'Codex revoked once, through the relay, at the provider')
  t.match(revokes[0]?.userAgent, /^codex_cli_rs\//, 'with its own user agent')
  t.equal(revokes[0]?.tokenTypeHint, 'refresh_token')
  t.equal(revokes[0]?.status, 200)
  t.equal(codexRefreshes(), 0, 'logout never refreshes')
  t.equal(
    provider.countCalls((x) => x.endpoint === 'token'),
    0,
    'and the daemon made no token call either',
  )
})

t.test('a file Codex rewrote after a refresh round-trips byte for byte', async (t) => {
  const home = await codexHome(world)
  // A 240 s access token is inside Codex's 300 s window; refreshed ones live an hour (gotcha 7).
  provider.setTtl({ authorizationCode: 240, refreshToken: 3600 })
  t.teardown(() => provider.setTtl({ authorizationCode: 3600, refreshToken: 3600 }))
  const tokens = await mintTokens(provider)
  const before = writeAuthJson(home, authFileFor(tokens, { lastRefresh: new Date(Date.now() - 60_000) }))
  provider.resetCalls()

  const r = await world.codex(home, ['exec', '--skip-git-repo-check', 'hi'])
  t.ok(endedByItself(r), `codex exec finished (exit ${r.code}, ${r.ms} ms; it fails on the stub backend)`)
  t.equal(codexRefreshes(), 1, 'Codex refreshed once through the relay', { diagnostic: codexRefreshes() !== 1, output: shown(r) })
  t.equal(provider.calls[0]?.status, 200, 'and the provider answered 200')
  t.equal(provider.calls[0]?.refreshReason, 'proactive_expiry')

  const text = fs.readFileSync(path.join(home, 'auth.json'), 'utf8')
  t.not(text, before, 'Codex rewrote auth.json')
  const parsed = parseAuthFile(text, 'auth.json')
  t.ok(parsed.ok, 'parseAuthFile accepts the file Codex wrote')
  if (!parsed.ok) return
  const a = parsed.auth
  t.ok(a.tokens !== null && a.tokens.refreshToken !== tokens.refreshToken, 'it holds a rotated refresh token')
  t.equal(a.tokens?.accountId, tokens.accountId, 'account_id kept')
  const exp = decodeJwtPayload(a.tokens!.accessToken).exp as number
  t.ok(exp - Date.now() / 1000 > 3000, 'the new access token lives an hour')
  t.match(a.lastRefresh, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/, 'last_refresh with nanoseconds, Z')
  const again = serializeAuthFile(a)
  if (again !== text) {
    // Say where, never what (the text holds tokens).
    let i = 0
    while (i < text.length && text[i] === again[i]) i++
    t.fail(`serializeAuthFile differs from Codex's bytes at offset ${i} (lengths ${again.length} vs ${text.length})`)
  } else {
    t.pass('serializeAuthFile(parseAuthFile(text)) === text')
  }
  t.equal(fs.statSync(path.join(home, 'auth.json')).mode & 0o777, 0o600, 'mode 0600')

  // And the daemon serves Codex's file as it is.
  const d = await codexDaemon(t, world, home)
  const c = await connect(t, d)
  const g = (await c.call('getAuth')).result
  t.ok(g?.mode === 'chatgpt' && g.token === a.tokens!.accessToken, 'the daemon serves the access token Codex wrote')
  t.equal(provider.countCalls((x) => DAEMON_UA.test(x.userAgent)), 0, 'without refreshing it')
})
