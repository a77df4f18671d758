// The pure parts of the keyring stores (docs/keyring.md): the entry's account and payload, a
// chunked or broken value, the keyring error causes, auto's fallback rule and composition (with a
// backend stand-in that fails as the binding does: the Secret Service itself is in
// store-keyring-daemon.test.ts), and the D-Bus header codec of src/os/dbus-signals.ts.
import t from 'tap'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { busCall, parseMessage, sessionBusPath } from '../src/os/dbus-signals.js'
import { autoFallsBack, autoStore, keyringStore } from '../src/store/credential-store.js'
import { KeyringError, WorkerKeyring, type KeyringBackend } from '../src/store/keyring-backend.js'
import { keyringAccount, keyringCause, keyringPayload, parseKeyringValue } from '../src/store/keyring-entry.js'
import type { AuthFile } from '../src/types.js'
import { tempDir } from './support/daemon.js'

const API_AUTH: AuthFile = { authMode: 'apikey', openaiApiKey: 'sk-test-pure-0001', tokens: null, lastRefresh: null, extra: {} }

t.test('keyringAccount: cli| + the first 16 hex of SHA-256 of the canonical path', async (t) => {
  const full = createHash('sha256').update('/home/u/.codex').digest('hex')
  t.equal(keyringAccount('/home/u/.codex'), `cli|${full.slice(0, 16)}`)
  t.match(keyringAccount('/x'), /^cli\|[0-9a-f]{16}$/)
})

t.test('keyringPayload: compact JSON of auth.json, in its field order; parses back', async (t) => {
  const text = keyringPayload(API_AUTH)
  t.equal(text, '{"auth_mode":"apikey","OPENAI_API_KEY":"sk-test-pure-0001"}', 'what Codex 0.171 stores (docs/keyring.md#the-entry)')
  const back = parseKeyringValue(text, 'cli|0')
  t.ok(back.ok && back.auth.openaiApiKey === API_AUTH.openaiApiKey)
})

t.test('parseKeyringValue: a chunked value names itself; garbage is keyring_entry_invalid, never quoted', async (t) => {
  const chunked = parseKeyringValue('CODEX_CHUNKED:3:{"auth_mode"', 'cli|abc')
  t.notOk(chunked.ok)
  if (!chunked.ok) {
    t.equal(chunked.problem.code, 'keyring_entry_invalid')
    t.match(chunked.problem.message, /CODEX_CHUNKED/)
    t.match(chunked.problem.message, /cli\|abc/)
  }
  const broken = parseKeyringValue('{"OPENAI_API_KEY": "sk-secret-never-shown"', 'cli|abc')
  t.notOk(broken.ok)
  if (!broken.ok) {
    t.equal(broken.problem.code, 'keyring_entry_invalid')
    t.notOk(broken.problem.message.includes('sk-secret-never-shown'), 'the value is not quoted')
  }
})

t.test('keyringCause: the binding messages measured on Linux', async (t) => {
  const cases: [string, string][] = [
    ['Platform failure: DBus error: Failed to connect to socket /nonexistent: No such file or directory', 'no_session'],
    ['Platform failure: DBus error: Using X11 for dbus-daemon autolaunch was disabled at compile time, set your DBUS_SESSION_BUS_ADDRESS instead', 'no_session'],
    ['Platform failure: DBus error: Did not receive a reply. Possible causes include: the remote application did not send a reply', 'timeout'],
    ['Platform failure: DBus error: The name org.freedesktop.secrets was not provided by any .service files', 'no_provider'],
    ['Platform failure: DBus error: ServiceUnknown', 'no_provider'],
    ['Platform failure: the collection is locked', 'locked'],
    ["Couldn't access platform storage: Secret Service: no result found", 'error'],
  ]
  for (const [message, cause] of cases) t.equal(keyringCause(message), cause, cause)
})

t.test('auto falls back on a keyring error, never on a timeout', async (t) => {
  t.ok(autoFallsBack(new KeyringError('no_session', 'x')))
  t.ok(autoFallsBack(new KeyringError('error', 'x')))
  t.ok(autoFallsBack(new KeyringError('binding_missing', 'x')))
  t.notOk(autoFallsBack(new KeyringError('timeout', 'x')), 'a hang is reported, as Codex falls back on errors only')
  t.notOk(autoFallsBack(new Error('other')))
})

/** A KeyringBackend that answers from a map, or fails every call with `failing`. */
function standIn(failing: KeyringError | null = null): KeyringBackend & { values: Map<string, string> } {
  const values = new Map<string, string>()
  const check = (): void => {
    if (failing !== null) throw failing
  }
  return {
    values,
    async get(account) {
      check()
      return values.get(account) ?? null
    },
    async set(account, value) {
      check()
      values.set(account, value)
    },
    async delete(account) {
      check()
      return values.delete(account)
    },
    close() {},
  }
}

function homeWithFile(): string {
  const home = tempDir('cad-krpure-')
  fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: 'sk-test-file-0002' }), { mode: 0o600 })
  return home
}

t.test('auto: the entry first; the file when the entry is absent or the keyring errs; a timeout is a problem', async (t) => {
  const home = homeWithFile()
  const account = keyringAccount(fs.realpathSync(home))

  const empty = standIn()
  const none = await autoStore(home, empty).load()
  t.equal(none.read.state === 'ok' && none.read.store, undefined, 'no entry: the file')
  t.same(none.problems, [])

  const withEntry = standIn()
  withEntry.values.set(account, keyringPayload(API_AUTH))
  const entry = await autoStore(home, withEntry).load()
  t.equal(entry.read.state === 'ok' && entry.read.store, 'keyring', 'the entry wins over the file')
  t.ok(entry.read.state === 'ok' && entry.read.auth.openaiApiKey === API_AUTH.openaiApiKey)

  const noBus = await autoStore(home, standIn(new KeyringError('no_session', 'Failed to connect to socket'))).load()
  t.ok(noBus.read.state === 'ok' && noBus.read.store === undefined, 'keyring error: the file, as Codex')
  t.same(
    noBus.problems.map((p) => [p.code, p.details?.cause]),
    [['keyring_unreachable', 'no_session']],
  )
  t.match(noBus.problems[0]?.message, /DBUS_SESSION_BUS_ADDRESS.*using auth\.json/)

  const hung = await autoStore(home, standIn(new KeyringError('timeout', 'no answer'))).load()
  t.equal(hung.read.state, 'unreadable', 'a timeout: no fallback')
  t.ok(hung.read.state === 'unreadable' && hung.read.problem.code === 'keyring_unreachable' && hung.read.problem.details?.cause === 'timeout')

  const chunked = standIn()
  chunked.values.set(account, 'CODEX_CHUNKED:2:')
  const c = await autoStore(home, chunked).load()
  t.ok(c.read.state === 'ok' && c.read.store === undefined, 'an unreadable entry: the file, as Codex')
  t.same(c.problems.map((p) => p.code), ['keyring_entry_invalid'])
})

t.test('keyring: the file is ignored and reported; commit writes the entry and unlinks auth.json', async (t) => {
  const home = homeWithFile()
  const kr = standIn()
  const store = keyringStore(home, kr)
  const first = await store.load()
  t.equal(first.read.state, 'absent', 'no entry: not logged in, whatever auth.json holds (as Codex)')
  t.same(first.problems.map((p) => p.code), ['auth_file_ignored'])

  const res = await store.commit({ update: () => API_AUTH })
  t.equal(res.outcome, 'written')
  t.equal(kr.values.get(keyringAccount(fs.realpathSync(home))), keyringPayload(API_AUTH), 'the entry holds the compact payload')
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'auth.json unlinked after the save, as Codex')
  const after = await store.load()
  t.same(after.problems, [], 'nothing left to ignore')
  t.equal(after.read.state === 'ok' && after.read.store, 'keyring')

  const gone = await store.commit({ update: () => null })
  t.same(gone, { outcome: 'deleted', existed: true })
  t.equal(kr.values.size, 0)

  const failing = keyringStore(home, standIn(new KeyringError('locked', 'collection is locked')))
  const refused = await failing.commit({ update: () => API_AUTH })
  t.equal(refused.outcome, 'keyring_failed')
  t.ok(refused.outcome === 'keyring_failed' && refused.problem.details?.cause === 'locked')
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'nothing written to the file instead')
})

t.test('auto commit: the file only when the keyring errs; a timeout writes nothing', async (t) => {
  const home = tempDir('cad-krpure-')
  const errs = autoStore(home, standIn(new KeyringError('no_session', 'Failed to connect to socket')))
  const res = await errs.commit({ update: () => API_AUTH })
  t.equal(res.outcome, 'written')
  t.ok(fs.existsSync(path.join(home, 'auth.json')), 'auth.json written, as Codex falls back')
  t.equal((fs.statSync(path.join(home, 'auth.json')).mode & 0o777).toString(8), '600')
  fs.unlinkSync(path.join(home, 'auth.json'))

  const hangs = autoStore(home, standIn(new KeyringError('timeout', 'no answer')))
  const res2 = await hangs.commit({ update: () => API_AUTH })
  t.equal(res2.outcome, 'keyring_failed')
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'no silent file write on a timeout')
})

t.test('dbus-signals: bus address, message codec', async (t) => {
  t.equal(sessionBusPath('unix:path=/run/user/1000/bus'), '/run/user/1000/bus')
  t.equal(sessionBusPath('unix:abstract=/tmp/dbus-x,guid=01'), '\0/tmp/dbus-x')
  t.equal(sessionBusPath('tcp:host=x,port=1;unix:path=/a%20b'), '/a b')
  t.equal(sessionBusPath(undefined), null)
  t.equal(sessionBusPath('tcp:host=localhost,port=1'), null)
  const msg = busCall(7, 'AddMatch', "type='signal'")
  const parsed = parseMessage(msg)
  t.same(parsed && { type: parsed.type, member: parsed.member, iface: parsed.interface, length: parsed.length }, {
    type: 1,
    member: 'AddMatch',
    iface: 'org.freedesktop.DBus',
    length: msg.length,
  })
  t.equal(parseMessage(msg.subarray(0, msg.length - 1)), null, 'incomplete: wait for more')
  t.throws(() => parseMessage(Buffer.alloc(16, 0x7a)), /not a D-Bus message/)
})

// A stand-in for @napi-rs/keyring's Entry, loaded by the worker as the real one is: the account
// "hang" blocks its thread as a silent Secret Service does; the others answer.
const FAKE_BINDING = `
exports.Entry = { withTarget: (target, service, account) => ({
  getPassword() {
    if (account === 'hang') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000)
    if (account === 'fail') throw new Error('Platform failure: DBus error: Failed to connect to socket /nowhere')
    return account === 'none' ? null : target + '/' + service + '/' + account
  },
  setPassword() {},
  deleteCredential() { return true },
}) }
`

t.test('WorkerKeyring: a hung call times out, the worker is made again; errors carry their cause; a missing binding is named', async (t) => {
  const dir = tempDir('cad-krfake-')
  const fake = path.join(dir, 'binding.cjs')
  fs.writeFileSync(fake, FAKE_BINDING)
  // The deadline covers starting a worker too: generous for a loaded machine, far below the 60 s hang.
  const kr = new WorkerKeyring(3000, fake)
  t.teardown(() => kr.close())
  t.equal(await kr.get('cli|1'), 'default/Codex Auth/cli|1', "the entry Codex's crate makes (target, service, account)")
  t.equal(await kr.get('none'), null)
  await t.rejects(kr.get('fail'), { name: 'KeyringError', keyringCause: 'no_session' })
  await t.rejects(kr.get('hang'), { name: 'KeyringError', keyringCause: 'timeout' })
  t.equal(kr.terminated, 1, 'the hung worker was ended')
  t.equal(await kr.get('cli|2'), 'default/Codex Auth/cli|2', 'a new worker answers the next call')

  const missing = new WorkerKeyring(5000, path.join(dir, 'no-such-binding.cjs'))
  t.teardown(() => missing.close())
  await t.rejects(missing.get('cli|1'), { name: 'KeyringError', keyringCause: 'binding_missing' })
})
