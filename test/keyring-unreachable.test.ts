// Issue 15, a Secret Service that cannot be used (docs/keyring.md#behaviour-step-by-step):
//
//  - no D-Bus session (DBUS_SESSION_BUS_ADDRESS pointing at no socket): under `keyring` Codex
//    fails ("failed to load CLI auth from keyring") and the daemon names the cause and what to
//    check, never a bare "Not logged in"; a bus with nobody owning org.freedesktop.secrets is the
//    cause `no_provider`. Under `auto` Codex falls back to auth.json, and so does the daemon: it
//    serves Codex's file, and its own login writes the file Codex reads.
//  - a Secret Service that does not answer (gnome-keyring-daemon stopped with SIGSTOP, where Codex
//    hangs forever): the daemon's calls end at CODEX_AUTHD_KEYRING_TIMEOUT_MS with a `timeout`
//    problem, `status` keeps answering, a login is refused rather than written to a file Codex
//    would not read, and once the Secret Service answers again the login is served.
//
// One Secret Service (test/support/secret-service.ts), plus a bare bus for `no_provider`. No secret
// is printed: comparisons of secrets are t.ok(a === b).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, nextAuthChanged, subscribe, tempDir } from './support/daemon.js'
import { startProvider, type TestProvider } from './support/provider.js'
import { codexHome, requireCodex, startCodexWorld, type CodexRun, type CodexWorld, shown } from './support/codex.js'
import { until } from './support/until.js'
import { keyringDaemon, startKeyringCodexWorld, startSecretService, useCodexStore, type SecretService } from './support/secret-service.js'

await requireCodex()

/** The daemon's deadline for one keyring call here (the knob; default 3 s): short, so the file stays fast. */
const KEYRING_TIMEOUT_MS = 1000

let provider: TestProvider
let world: CodexWorld
let ss: SecretService
t.before(async () => {
  ;({ provider, world, ss } = await startKeyringCodexWorld(t))
})

/** A session bus address with no socket behind it. */
const NOWHERE = { DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(tempDir('cad-nobus-'), 'bus')}` }

const problem = (status: any, code: string): any => (status?.problems ?? []).find((p: any) => p.code === code) ?? null
const problemCodes = (status: any): string => (status?.problems ?? []).map((p: any) => `${p.code}${p.details ? `(${p.details.cause})` : ''}`).join(', ') || 'none'
/** getAuth's error names the keyring problem: data.problem, and a message that is not the bare "Not logged in". */
const namesKeyring = (e: any): boolean => e?.data?.problem === 'keyring_unreachable' && !/^not logged in\.?$/i.test(String(e?.message ?? ''))

async function home(store: 'keyring' | 'auto'): Promise<string> {
  const h = await codexHome(world)
  useCodexStore(h, store)
  return h
}

t.jobs = 2 // independent: a home and a daemon each; only the frozen case uses the Secret Service

t.test('keyring without a D-Bus session: the daemon names the cause, as Codex fails', async (t) => {
  const h = await home('keyring')
  const d = await keyringDaemon(t, world, h, NOWHERE)
  const c = await connect(t, d)
  const s = await until('status reports keyring_unreachable', async () => {
    const s = (await c.call('status')).result
    return problem(s, 'keyring_unreachable') ? s : null
  })
  const p = problem(s, 'keyring_unreachable')
  t.equal(p.details?.cause, 'no_session', `cause no_session (problems: ${problemCodes(s)})`)
  t.match(p.message, /DBUS_SESSION_BUS_ADDRESS/, 'the message says what to check')
  t.equal(s.source, null, 'no source')

  const g = await c.call('getAuth')
  t.ok(namesKeyring(g.error), `getAuth names the keyring, not a bare "Not logged in" (code ${g.error?.code}, problem ${g.error?.data?.problem})`)
  const li = await c.call('login', { method: 'apikey', apiKey: 'sk-unreachable-nosession-0123456789abcdef' })
  t.ok(li.error, 'the daemon cannot log in to an unreachable keyring')
  t.notOk(fs.existsSync(path.join(h, 'auth.json')), 'and writes no auth.json Codex would ignore')

  const st = await world.codex(h, ['login', 'status'], { env: NOWHERE })
  t.equal(st.code, 1, 'codex login status exits 1', { diagnostic: st.code !== 1, output: shown(st) })
  t.match(st.stdout + st.stderr, /keyring/, 'Codex fails on the keyring too')
})

t.test('keyring on a bus without a Secret Service: cause no_provider', async (t) => {
  const bare = await startSecretService({ t, keyring: false })
  const h = await home('keyring')
  const d = await keyringDaemon(t, world, h, bare.env)
  const c = await connect(t, d)
  const s = await until('status reports keyring_unreachable', async () => {
    const s = (await c.call('status')).result
    return problem(s, 'keyring_unreachable') ? s : null
  })
  t.equal(problem(s, 'keyring_unreachable').details?.cause, 'no_provider', `cause no_provider (problems: ${problemCodes(s)})`)
  t.ok(namesKeyring((await c.call('getAuth')).error), 'getAuth names the keyring')
})

t.test('auto without a D-Bus session: the file, like Codex', async (t) => {
  const h = await home('auto')
  const authJson = path.join(h, 'auth.json')
  const d = await keyringDaemon(t, world, h, NOWHERE)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)

  const key = 'sk-unreachable-auto-codex-0123456789abcdef-11111'
  const r = await world.codex(h, ['login', '--with-api-key'], { input: key, env: NOWHERE })
  t.equal(r.code, 0, `codex login --with-api-key exits 0 (${r.ms} ms)`, { diagnostic: r.code !== 0, output: shown(r) })
  t.ok(fs.existsSync(authJson), 'Codex fell back to auth.json')
  const s = await nextAuthChanged(sub, (s) => s.loggedIn && s.mode === 'apikey', 'logged in from the file')
  t.equal(s.source, 'auth.json', 'source "auth.json"')
  t.ok((await c.call('getAuth')).result?.token === key, "getAuth serves Codex's file")

  const own = 'sk-unreachable-auto-daemon-0123456789abcdef-22222'
  const li = await c.call('login', { method: 'apikey', apiKey: own })
  t.match(li.result, { status: 'succeeded' }, "the daemon's login succeeds", { diagnostic: li.error !== undefined, error: li.error })
  t.match(JSON.parse(fs.readFileSync(authJson, 'utf8')), { auth_mode: 'apikey' }, 'in auth.json')
  t.ok(JSON.parse(fs.readFileSync(authJson, 'utf8')).OPENAI_API_KEY === own, 'holding its key')
  const st = await world.codex(h, ['login', 'status'], { env: NOWHERE })
  t.equal(st.code, 0, 'codex login status exits 0', { diagnostic: st.code !== 0, output: shown(st) })
  t.ok((st.stdout + st.stderr).includes(own.slice(-5)), "Codex reads the daemon's file")
})

t.test('a frozen Secret Service', async (t) => {
  const env = { ...ss.env, CODEX_AUTHD_KEYRING_TIMEOUT_MS: String(KEYRING_TIMEOUT_MS) }
  const keyringHome = await home('keyring')
  const autoHome = await home('auto')
  const key = 'sk-unreachable-frozen-0123456789abcdef-33333'
  await ss.storeCodexEntry(keyringHome, JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key }))

  await ss.freeze()
  t.teardown(() => ss.thaw())
  // Both daemons start against the frozen Secret Service: their first read must end by its deadline.
  const dk = await keyringDaemon(t, world, keyringHome, env)
  const da = await keyringDaemon(t, world, autoHome, env)
  const ck = await connect(t, dk)
  const ca = await connect(t, da)

  await t.test('a timeout problem, status answers, no login written elsewhere', async (t) => {
    const statusMs: number[] = []
    const timedOut = async (c: typeof ck, what: string): Promise<any> =>
      until(
        `${what}: status reports keyring_unreachable (timeout)`,
        async () => {
          const t0 = Date.now()
          const s = (await c.call('status')).result
          statusMs.push(Date.now() - t0)
          return problem(s, 'keyring_unreachable')?.details?.cause === 'timeout' ? s : null
        },
        30_000,
        50,
      )
    const sk = await timedOut(ck, 'keyring')
    t.match(problem(sk, 'keyring_unreachable').message, /unlock|restart/i, 'the message says what to do')
    t.equal(sk.loggedIn, false, 'not logged in (the entry could not be read)')
    await timedOut(ca, 'auto')

    const t0 = Date.now()
    const g = await ck.call('getAuth')
    t.ok(namesKeyring(g.error), `getAuth names the keyring, not a bare "Not logged in" (after ${Date.now() - t0} ms)`)
    for (const [c, h, store] of [
      [ck, keyringHome, 'keyring'],
      [ca, autoHome, 'auto'],
    ] as const) {
      const li = await c.call('login', { method: 'apikey', apiKey: `sk-unreachable-frozen-${store}-login-0123456789abcdef` })
      t.ok(li.error, `${store}: the daemon's login fails`)
      t.notOk(fs.existsSync(path.join(h, 'auth.json')), `${store}: no auth.json written instead (Codex would read the keyring once it answers)`)
    }
    t.ok((await ck.call('status')).result, 'status still answers')
    t.ok(ss.frozen, 'all of it while the Secret Service is frozen')
    t.comment(`status while frozen: ${statusMs.length} calls, max ${Math.max(...statusMs)} ms (keyring deadline ${KEYRING_TIMEOUT_MS} ms)`)
  })

  await t.test('once it answers again, the entry is served', async (t) => {
    await ss.thaw()
    const served = await until(
      'getAuth serves the entry once the Secret Service answers',
      async () => {
        const r = await ck.call('getAuth')
        return r.result?.token === key ? r.result : null
      },
      30_000,
      100,
    )
    t.equal(served.mode, 'apikey', 'served after the thaw')
    const after = (await ck.call('status')).result
    t.equal(problem(after, 'keyring_unreachable'), null, 'the problem is gone')
    t.equal(after.source, 'keyring', 'source "keyring"')
  })
})
