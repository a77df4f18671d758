// The Secret Service harness (test/support/secret-service.ts, docs/testing.md#the-secret-service)
// against the real Codex CLI 0.171.0: an entry Codex writes under `cli_auth_credentials_store =
// "keyring"` is seen by items() with the attributes docs/keyring.md measured; an entry the harness
// stores is one Codex reads; freeze() makes the Secret Service stop answering (Codex waits) and
// thaw() resumes it; stop() leaves no process and no file behind.
//
// No secret is printed: comparisons of secrets are t.ok(a === b).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { startProvider, type TestProvider } from './support/provider.js'
import { codexHome, requireCodex, startCodexWorld, type CodexRun, type CodexWorld, shown } from './support/codex.js'
import { codexKeyringAccount, startKeyringCodexWorld, startSecretService, useCodexStore, type SecretService } from './support/secret-service.js'

await requireCodex()

let provider: TestProvider
let world: CodexWorld
let ss: SecretService
t.before(async () => {
  let ssStartMs: number
  ;({ provider, world, ss, ssStartMs } = await startKeyringCodexWorld(t))
  t.comment(`Secret Service ready in ${ssStartMs} ms`)
})

async function keyringHome(): Promise<string> {
  const home = await codexHome(world)
  useCodexStore(home, 'keyring')
  return home
}

t.test("Codex's API-key login under keyring is an item the harness reads back", async (t) => {
  const home = await keyringHome()
  const key = 'sk-harness-0123456789abcdef0123456789abcdef'
  const r = await world.codex(home, ['login', '--with-api-key'], { input: key, env: ss.env })
  t.equal(r.code, 0, `codex login --with-api-key exits 0 (${r.ms} ms)`, { diagnostic: r.code !== 0, output: shown(r) })
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'no auth.json: the login is in the keyring')

  const entry = await ss.codexEntry(home)
  t.ok(entry, 'items() finds the entry by the account the harness computes')
  // docs/keyring.md's four. Some runs also show xdg:schema (seen on one machine, not on CI's fresh
  // install): allowed, with its one value, and nothing else.
  const { 'xdg:schema': schema, ...measured } = entry?.attributes ?? {}
  t.same(
    measured,
    { service: 'Codex Auth', username: codexKeyringAccount(home), target: 'default', application: 'rust-keyring' },
    'attributes as measured in docs/keyring.md',
  )
  t.ok(schema === undefined || schema === 'org.freedesktop.Secret.Generic', `xdg:schema absent or generic (${schema})`)
  t.match(codexKeyringAccount(home), /^cli\|[0-9a-f]{16}$/)
  t.ok(entry?.secret === JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key }), "the secret is auth.json's compact JSON with the key")
  t.equal((await ss.items()).length, 1, 'one item under service "Codex Auth"')

  const st = await world.codex(home, ['login', 'status'], { env: ss.env })
  t.equal(st.code, 0, 'codex login status exits 0', { diagnostic: st.code !== 0, output: shown(st) })
  t.match(st.stdout + st.stderr, /API key configured/)

  const out = await world.codex(home, ['logout'], { env: ss.env })
  t.equal(out.code, 0, 'codex logout exits 0', { diagnostic: out.code !== 0, output: shown(out) })
  t.equal(await ss.codexEntry(home), null, 'the entry is gone after codex logout')
})

t.test('an entry the harness stores is one Codex reads; clear() removes it', async (t) => {
  const home = await keyringHome()
  const key = 'sk-harness-stored-abcdef0123456789abcdef01'
  await ss.storeCodexEntry(home, JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key }))
  const entry = await ss.codexEntry(home)
  t.ok(entry?.secret === JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key }), 'read back byte for byte')

  const st = await world.codex(home, ['login', 'status'], { env: ss.env })
  t.equal(st.code, 0, 'codex login status exits 0', { diagnostic: st.code !== 0, output: shown(st) })
  t.match(st.stdout + st.stderr, /API key configured/, 'Codex reads the stored entry')

  await ss.clear({ service: 'Codex Auth', username: codexKeyringAccount(home) })
  t.equal(await ss.codexEntry(home), null, 'cleared')
  const after = await world.codex(home, ['login', 'status'], { env: ss.env })
  t.equal(after.code, 1, 'codex login status exits 1 once cleared', { diagnostic: after.code !== 1, output: shown(after) })
  t.match(after.stdout + after.stderr, /Not logged in/)
})

t.test('freeze() stops the Secret Service answering, Codex waits; thaw() resumes it', async (t) => {
  const home = await keyringHome()
  await ss.storeCodexEntry(home, JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: 'sk-harness-frozen-0123456789abcdef0123' }))
  t.ok(await ss.answers(), 'answers before freeze()')

  await ss.freeze() // resolves once the kernel reports gnome-keyring-daemon stopped
  t.teardown(() => ss.thaw())
  let ended = false
  const status = world.codex(home, ['login', 'status'], { env: ss.env, timeoutSec: 60 }).finally(() => (ended = true))
  t.notOk(await ss.answers(1_000), 'a call with a 1 s reply timeout is not answered while frozen')
  t.notOk(ended, 'Codex is still waiting for the Secret Service')

  await ss.thaw()
  const st = await status
  t.equal(st.code, 0, `the waiting codex login status ends once thawed (exit 0 after ${st.ms} ms)`, { diagnostic: st.code !== 0, output: shown(st) })
  t.match(st.stdout + st.stderr, /API key configured/)
  t.ok(await ss.answers(), 'answers after thaw()')
})

t.test('stop() leaves no process and no file behind', async (t) => {
  // A Secret Service of its own, frozen, so stop() has to thaw it to end it.
  const own = await startSecretService({ t })
  const dir = path.dirname(own.busAddress.slice('unix:path='.length))
  const pids = [own.keyringPid!, own.busPid]
  await own.freeze()
  await own.stop()
  for (const pid of pids) t.notOk(fs.existsSync(`/proc/${pid}`), `pid ${pid} is gone`)
  t.notOk(fs.existsSync(dir), 'its folder is removed')
  // Nothing else holds the bus address in its environment (no activated or forked helper).
  const strays = fs.readdirSync('/proc').filter((p) => {
    if (!/^\d+$/.test(p)) return false
    try {
      return fs.readFileSync(`/proc/${p}/environ`, 'latin1').includes(own.busAddress)
    } catch {
      return false // ended meanwhile, or not ours to read
    }
  })
  t.same(strays, [], 'no process left with its bus address')
  await own.stop() // idempotent
})
