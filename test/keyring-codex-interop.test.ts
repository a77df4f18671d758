// Issue 15, the daemon and the REAL Codex CLI 0.171.0 sharing a login in the Secret Service
// (docs/keyring.md): for `cli_auth_credentials_store = "keyring"` and `"auto"`, one daemon per
// store on a private Secret Service (test/support/secret-service.ts), Codex in its loopback-only
// namespace reaching the same bus over a path socket.
//
// Per store, in order: an entry with a stale auth.json beside it (the daemon serves what Codex
// would, and under `keyring` names the ignored file); Codex's logout; Codex's API-key login (the
// daemon serves it, source "keyring"); the daemon's API-key login (Codex's `login status`
// agrees); the daemon's logout (Codex says "Not logged in"); a stale auth.json with no entry
// (`keyring` ignores it as Codex does, `auto` serves it as Codex does).
//
// Synchronisation is by authChanged or until(), never sleeps. No secret is printed: comparisons of
// secrets are t.ok(a === b); Codex's `login status` shows only a key's last characters.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, nextAuthChanged, subscribe } from './support/daemon.js'
import { startProvider, type TestProvider } from './support/provider.js'
import { codexHome, requireCodex, startCodexWorld, writeAuthJson, type CodexRun, type CodexWorld, shown } from './support/codex.js'
import { until } from './support/until.js'
import {
  CODEX_SERVICE,
  codexEntryAttributes,
  keyringDaemon,
  startKeyringCodexWorld,

  startSecretService,
  useCodexStore,
  type SecretService,
} from './support/secret-service.js'
import type { AuthFile } from '../src/types.js'

await requireCodex()

let provider: TestProvider
let world: CodexWorld
let ss: SecretService
t.before(async () => {
  ;({ provider, world, ss } = await startKeyringCodexWorld(t))
})

const apikeyAuth = (key: string): AuthFile => ({ authMode: 'apikey', openaiApiKey: key, tokens: null, lastRefresh: null, extra: {} })
/** The entry Codex writes for an API key: `{"auth_mode":"apikey","OPENAI_API_KEY":"…"}` (docs/keyring.md#the-entry). */
const apikeyPayload = (key: string): string => JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key })
/** What `codex login status` shows of a key: its last five characters, the rest masked. */
const tail = (key: string): string => key.slice(-5)
const hasProblem = (status: any, code: string): boolean => (status?.problems ?? []).some((p: any) => p.code === code)
const problemCodes = (status: any): string => (status?.problems ?? []).map((p: any) => p.code).join(', ') || 'none'

async function codexStatus(home: string): Promise<CodexRun & { text: string }> {
  const r = await world.codex(home, ['login', 'status'], { env: ss.env })
  return { ...r, text: r.stdout + r.stderr }
}

t.jobs = 2 // the two stores are independent: a home, an account and a daemon each
for (const store of ['keyring', 'auto'] as const) {
  t.test(`cli_auth_credentials_store = "${store}"`, async (t: Test) => {
    const home = await codexHome(world)
    useCodexStore(home, store)
    const authJson = path.join(home, 'auth.json')
    // Distinct per store and in their last five characters (all that `codex login status` shows).
    const key = (n: number): string => `sk-${store}-interop-0123456789abcdef0123456789-${String(n).repeat(5)}`

    // Before the daemon starts: an entry, and a stale auth.json from the file store put back beside it.
    await ss.storeCodexEntry(home, apikeyPayload(key(1)))
    writeAuthJson(home, apikeyAuth(key(2)))
    const d = await keyringDaemon(t, world, home, ss.env)
    const sub = await subscribe(t, d)
    const c = await connect(t, d)

    await t.test('an entry with a stale auth.json beside it: the daemon serves what Codex would', async (t) => {
      const st = await codexStatus(home)
      t.equal(st.code, 0, 'codex login status exits 0', { diagnostic: st.code !== 0, output: shown(st) })
      t.ok(st.text.includes(tail(key(1))) && !st.text.includes(tail(key(2))), "Codex reads the entry's key, not the file's")

      const g = await c.call('getAuth')
      t.equal(g.error, undefined, 'getAuth answers', { diagnostic: g.error !== undefined, error: g.error })
      t.ok(g.result?.token === key(1), "getAuth serves the entry's key")
      const s = (await c.call('status')).result
      t.equal(s?.source, 'keyring', 'status.source is "keyring"')
      t.equal(s?.settings?.credentialsStore, store, `settings.credentialsStore is "${store}"`)
      if (store === 'keyring') {
        t.ok(hasProblem(s, 'auth_file_ignored'), `the ignored auth.json is a problem (problems: ${problemCodes(s)})`)
        const p = s?.problems?.find((p: any) => p.code === 'auth_file_ignored')
        t.equal(p?.file, authJson, 'the problem names the file')
      }
    })

    await t.test("Codex's logout: the daemon sees the login go", async (t) => {
      const r = await world.codex(home, ['logout'], { env: ss.env })
      t.equal(r.code, 0, 'codex logout exits 0', { diagnostic: r.code !== 0, output: shown(r) })
      t.equal(await ss.codexEntry(home), null, 'the entry is gone')
      t.notOk(fs.existsSync(authJson), 'auth.json is gone (Codex deletes both)')
      const s = await nextAuthChanged(sub, (s) => !s.loggedIn, 'logged out')
      t.equal(s.loggedIn, false, 'authChanged: logged out')
      t.equal((await c.call('getAuth')).error?.code, -32001, 'getAuth: not logged in')
    })

    await t.test("Codex's API-key login: the daemon serves it from the keyring", async (t) => {
      const r = await world.codex(home, ['login', '--with-api-key'], { input: key(3), env: ss.env })
      t.equal(r.code, 0, `codex login --with-api-key exits 0 (${r.ms} ms)`, { diagnostic: r.code !== 0, output: shown(r) })
      t.notOk(fs.existsSync(authJson), 'Codex wrote no auth.json')
      const s = await nextAuthChanged(sub, (s) => s.loggedIn && s.mode === 'apikey', 'logged in with an API key')
      t.equal(s.source, 'keyring', 'authChanged: source "keyring"')
      const g = await c.call('getAuth')
      t.equal(g.result?.mode, 'apikey', 'getAuth: an API key')
      t.ok(g.result?.token === key(3), 'getAuth serves the key Codex stored')
    })

    await t.test("the daemon's API-key login: Codex's login status agrees", async (t) => {
      const r = await c.call('login', { method: 'apikey', apiKey: key(4) })
      t.match(r.result, { method: 'apikey', status: 'succeeded' }, 'login succeeds', { diagnostic: r.error !== undefined, error: r.error })
      const entry = await ss.codexEntry(home)
      t.ok(entry?.secret === apikeyPayload(key(4)), 'the entry holds exactly what Codex would store')
      t.match(entry?.attributes, codexEntryAttributes(home), "Codex's attributes (service, username, target)")
      t.equal((await ss.items({ service: CODEX_SERVICE, username: codexEntryAttributes(home).username })).length, 1, 'one item for this account')
      t.notOk(fs.existsSync(authJson), 'no auth.json')
      const st = await codexStatus(home)
      t.equal(st.code, 0, 'codex login status exits 0', { diagnostic: st.code !== 0, output: shown(st) })
      t.match(st.text, /API key configured/)
      t.ok(st.text.includes(tail(key(4))), "Codex shows the daemon's key")
      t.ok((await c.call('getAuth')).result?.token === key(4), 'getAuth serves it')
    })

    await t.test("the daemon's logout: Codex says Not logged in", async (t) => {
      const r = await c.call('logout')
      t.same(r.result, { wasLoggedIn: true, revoked: false }, 'an API key: nothing to revoke', { diagnostic: r.error !== undefined, error: r.error })
      t.equal(await ss.codexEntry(home), null, 'the entry is deleted')
      const st = await codexStatus(home)
      t.equal(st.code, 1, 'codex login status exits 1', { diagnostic: st.code !== 1, output: shown(st) })
      t.match(st.text, /Not logged in/)
      t.equal((await c.call('getAuth')).error?.code, -32001, 'getAuth: not logged in')
    })

    await t.test(`a stale auth.json and no entry: ${store === 'keyring' ? 'ignored' : 'served'}, as Codex does`, async (t) => {
      writeAuthJson(home, apikeyAuth(key(5)))
      const st = await codexStatus(home)
      if (store === 'keyring') {
        t.equal(st.code, 1, 'codex login status: exit 1', { diagnostic: st.code !== 1, output: shown(st) })
        t.match(st.text, /Not logged in/, 'Codex ignores the file')
        const s = await until('the daemon reports the ignored auth.json', async () => {
          const s = (await c.call('status')).result
          return hasProblem(s, 'auth_file_ignored') ? s : null
        })
        t.equal(s.loggedIn, false, 'the daemon is not logged in either')
        const g = await c.call('getAuth')
        t.equal(g.error?.code, -32001, 'getAuth: not logged in')
      } else {
        t.equal(st.code, 0, 'codex login status: exit 0', { diagnostic: st.code !== 0, output: shown(st) })
        t.ok(st.text.includes(tail(key(5))), "Codex uses the file's key")
        const s = await nextAuthChanged(sub, (s) => s.loggedIn && s.source === 'auth.json', 'logged in from auth.json')
        t.equal(s.mode, 'apikey', 'authChanged: logged in from auth.json')
        t.ok((await c.call('getAuth')).result?.token === key(5), "getAuth serves the file's key")
      }
    })
  })
}
