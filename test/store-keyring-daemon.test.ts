// The keyring and auto stores end to end (docs/keyring.md): the real daemon bundle against a real
// gnome-keyring in a private D-Bus session (test/support/secret-service.ts). One Secret Service
// and one daemon (store "keyring") carry the subtests in order: an entry appears (ItemCreated),
// a silent replacement is re-read before a refresh decision, a refresh writes the entry and
// unlinks auth.json, the entry vanishes (ItemDeleted), login/logout write the entry, a frozen
// Secret Service times out into a problem while status answers at once. A second daemon has no
// D-Bus session at all (auto falls back to the file; keyring names the cause).
//
// No token is printed: comparisons of secrets are t.ok(a === b).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fakeJwt } from './support/tokens.js'
import { connect, makeHome, nextAuthChanged, startDaemon, stopAtTeardown, subscribe } from './support/daemon.js'
import { mintTokens } from './support/provider.js'
import { authFileFor, daemon, provider, refreshCalls, status } from './support/refresh.js'
import { codexEntryAttributes, codexKeyringAccount, entryAuth, entryPayload, startSecretService, useCodexStore } from './support/secret-service.js'
import { registerAuthJsonSecrets, registerSecret } from './support/secrets.js'
import { until } from './support/until.js'
import { WorkerKeyring } from '../src/store/keyring-backend.js'
import type { AuthFile } from '../src/types.js'

const KEYRING_TIMEOUT_MS = 1500

const ss = await startSecretService({ t })
// Logins are minted with 30 min of validity, refreshes give an hour.
const w = await provider(t, { ttl: { authorizationCode: 1800, refreshToken: 3600 } })
const p = w.provider
const home = await makeHome()
useCodexStore(home, 'keyring')
// A stale auth.json from file mode: under "keyring" Codex ignores it, and so must the daemon.
const stale: AuthFile = { authMode: 'apikey', openaiApiKey: 'sk-test-stale-file-000000001', tokens: null, lastRefresh: null, extra: {} }
fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: stale.openaiApiKey }), { mode: 0o600 })
registerSecret(stale.openaiApiKey, 'stale auth.json key')
// getAuth re-reads a keyring read older than 2 s (default 5 s).
const d = await daemon(t, home, p, { env: { ...ss.env, CODEX_AUTHD_KEYRING_TIMEOUT_MS: String(KEYRING_TIMEOUT_MS), CODEX_AUTHD_KEYRING_REREAD_MS: '2000' } })
const c = await connect(t, d)
const sub = await subscribe(t, d)

// The test's own writer of the entry: the binding's SetSecret on an existing item, as Codex's
// refresh replaces it (no signal). Same bus as the daemon's.
process.env.DBUS_SESSION_BUS_ADDRESS = ss.busAddress
const writer = new WorkerKeyring(20_000)
t.teardown(() => writer.close())

const problemCodes = (s: any): string[] => s.problems.map((x: any) => x.code).sort()

t.test('a stale auth.json is ignored (auth_file_ignored); an entry Codex writes is served at once (ItemCreated)', async (t) => {
  const s0 = await status(c)
  t.equal(s0.loggedIn, false, 'no entry: not logged in, as Codex says')
  t.same(problemCodes(s0), ['auth_file_ignored'])
  const g0 = await c.call('getAuth', {})
  t.equal(g0.error?.code, -32001)

  // A fake ChatGPT login that is not due (issued now, 10 min left): served as it is.
  const now = Math.floor(Date.now() / 1000)
  const a = { ...authFileFor(await mintTokens(p)) }
  a.tokens = { ...a.tokens!, accessToken: fakeJwt({ exp: now + 600, iat: now, tag: 'short' }), refreshToken: 'rt-test-never-spent-0001' }
  registerAuthJsonSecrets(entryPayload(a))
  await ss.storeCodexEntry(home, entryPayload(a))
  const changed = await nextAuthChanged(sub, (s) => s.loggedIn === true, 'the entry is served')
  t.equal(changed.source, 'keyring')
  t.equal(changed.mode, 'chatgpt')
  t.same(problemCodes(changed), ['auth_file_ignored'], 'the file is still there, still ignored')
  const g = await c.call('getAuth', {})
  t.ok(g.result?.token === a.tokens.accessToken, 'getAuth serves the entry, not the file')
})

t.test('a silent replacement (SetSecret, no signal) is read again before a refresh decision', async (t) => {
  const b = authFileFor(await mintTokens(p))
  registerAuthJsonSecrets(entryPayload(b))
  const account = codexKeyringAccount(home)
  await c.call('getAuth', {}) // a fresh read now: what follows is the validity rule, not the read's age
  await writer.set(account, entryPayload(b))
  const before = refreshCalls(p)
  // The cache holds 10 min of validity; asking for 20 makes the daemon read the entry again,
  // where it finds a token valid for 30: served, nothing spent.
  const g = await c.call('getAuth', { minValiditySeconds: 1200 })
  t.ok(g.result?.token === b.tokens!.accessToken, 'the replaced entry is served')
  t.equal(refreshCalls(p), before, 'no refresh token was spent')
})

t.test('a refresh writes the entry (same item) and unlinks auth.json, as Codex saves', async (t) => {
  const entryBefore = await ss.codexEntry(home)
  const spent = entryAuth(entryBefore).tokens!.refreshToken
  const before = refreshCalls(p)
  // More than the 30 min the entry holds: a refresh (the provider issues an hour).
  const g = await c.call('getAuth', { minValiditySeconds: 3000 })
  t.ok(g.result?.token, 'served after a refresh')
  t.equal(refreshCalls(p), before + 1, 'one refresh')
  const entry = await until('the entry holds the rotated tokens', async () => {
    const e = await ss.codexEntry(home)
    return e !== null && entryAuth(e).tokens!.refreshToken !== spent ? e : null
  })
  t.equal(entry.path, entryBefore!.path, 'the same item, replaced (Codex finds it first)')
  t.ok(entryAuth(entry).tokens!.accessToken === g.result.token, 'the entry holds what is served')
  t.same(entry.attributes, { ...entry.attributes, ...codexEntryAttributes(home) }, "Codex's attributes")
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'auth.json unlinked after the save')
  const s = await until('auth_file_ignored cleared', async () => {
    const st = await status(c)
    return problemCodes(st).length === 0 ? st : null
  })
  t.equal(s.source, 'keyring')
})

t.test('the entry deleted (ItemDeleted): authChanged says not logged in', async (t) => {
  await ss.clear(codexEntryAttributes(home))
  const changed = await nextAuthChanged(sub, (s) => s.loggedIn === false, 'the logout is seen')
  t.equal(changed.source, null)
})

t.test('login with an API key and logout write the entry, as Codex does', async (t) => {
  const key = 'sk-test-keyring-login-0123456789'
  registerSecret(key, 'api key')
  const r = await c.call('login', { method: 'apikey', apiKey: key })
  t.equal(r.result?.status, 'succeeded')
  const entry = await ss.codexEntry(home)
  t.ok(entry?.secret === `{"auth_mode":"apikey","OPENAI_API_KEY":"${key}"}`, "the entry holds Codex's compact payload")
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'no auth.json')
  const s = await status(c)
  t.equal(s.source, 'keyring')
  t.equal(s.mode, 'apikey')

  // Codex logs in again with another key: SetSecret on the item, no signal. getAuth reads the
  // entry again once its last read is older than the window (2 s here).
  const key2 = 'sk-test-keyring-relogin-987654321'
  registerSecret(key2, 'api key')
  await writer.set(codexKeyringAccount(home), `{"auth_mode":"apikey","OPENAI_API_KEY":"${key2}"}`)
  await until('the replaced key is served', async () => (await c.call('getAuth', {})).result?.token === key2, 20_000, 100)

  const out = await c.call('logout', {})
  t.same(out.result, { wasLoggedIn: true, revoked: false })
  t.equal(await ss.codexEntry(home), null, 'the entry is deleted')
  t.equal((await status(c)).loggedIn, false)
})

t.test('a frozen Secret Service: status answers at once; the read times out into keyring_unreachable (timeout); thawed, it recovers', async (t) => {
  const key = 'sk-test-keyring-frozen-000000001'
  registerSecret(key, 'api key')
  t.equal((await c.call('login', { method: 'apikey', apiKey: key })).result?.status, 'succeeded')
  ss.freeze()
  t.teardown(() => ss.thaw())
  // A change to config.toml makes the daemon read the store again.
  fs.appendFileSync(path.join(home, 'config.toml'), '# frozen\n')
  let slowest = 0
  const s = await until(
    'keyring_unreachable (timeout) reported',
    async () => {
      const t0 = performance.now()
      const st = await status(c)
      slowest = Math.max(slowest, performance.now() - t0)
      return st.problems.find((x: any) => x.code === 'keyring_unreachable') ? st : null
    },
    30_000,
    50,
  )
  t.comment(`slowest status while the Secret Service was frozen: ${slowest.toFixed(0)} ms (keyring deadline ${KEYRING_TIMEOUT_MS} ms)`)
  const problem = s.problems.find((x: any) => x.code === 'keyring_unreachable')
  t.same(problem.details, { cause: 'timeout' })
  t.match(problem.message, /did not answer in time.*unlock the keyring/)
  t.equal(s.loggedIn, true, 'the last good credential is still served meanwhile')

  ss.thaw()
  fs.appendFileSync(path.join(home, 'config.toml'), '# thawed\n')
  const back = await until(
    'the keyring read again',
    async () => {
      const st = await status(c)
      return st.problems.length === 0 ? st : null
    },
    30_000,
    50,
  )
  t.equal(back.source, 'keyring')
  t.equal((await c.call('logout', {})).result?.wasLoggedIn, true)
})

t.test('no D-Bus session: auto falls back to auth.json and says why; keyring names the cause, never "Not logged in"', async (t) => {
  const home2 = await makeHome()
  useCodexStore(home2, 'auto')
  const key = 'sk-test-auto-fallback-000000001'
  fs.writeFileSync(path.join(home2, 'auth.json'), JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key }), { mode: 0o600 })
  const d2 = stopAtTeardown(t, await startDaemon({ home: home2, env: { DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(home2, 'no-bus')}` } }))
  const c2 = await connect(t, d2)
  const s = await status(c2)
  t.equal(s.loggedIn, true, 'auto: the file, as Codex falls back')
  t.equal(s.source, 'auth.json')
  const problem = s.problems.find((x: any) => x.code === 'keyring_unreachable')
  t.same(problem?.details, { cause: 'no_session' })
  t.match(problem?.message, /DBUS_SESSION_BUS_ADDRESS.*using auth\.json/)

  useCodexStore(home2, 'keyring')
  const s2 = await until('the keyring store read', async () => {
    const st = await status(c2)
    return st.settings.credentialsStore === 'keyring' ? st : null
  })
  t.equal(s2.loggedIn, false)
  t.same(problemCodes(s2), ['auth_file_ignored', 'keyring_unreachable'])
  const g = await c2.call('getAuth', {})
  t.equal(g.error?.code, -32006, 'not a silent "Not logged in"')
  t.match(g.error?.data, { problem: 'keyring_unreachable', details: { cause: 'no_session' } })
  t.match(g.error?.message, /DBUS_SESSION_BUS_ADDRESS/)
})
