// One daemon per credential file: two CODEX_HOMEs whose auth.json are symlinks to one file (a
// common way to share a login between profiles) get one daemon; the second exits 3 naming the
// first's home, so the file's single-use refresh token has one spender.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { makeHome, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { rawConnect } from './support/rpc.js'
import { lockHeld } from './support/flock.js'

function apiKeyFile(dir: string): string {
  const file = path.join(dir, 'shared-auth.json')
  fs.writeFileSync(file, JSON.stringify({ OPENAI_API_KEY: 'sk-test-owner-0000000000' }), { mode: 0o600 })
  return file
}

t.test('two homes whose auth.json link to one file: the second daemon exits 3 naming the first home', async (t) => {
  const shared = tempDir('cad-shared-')
  const file = apiKeyFile(shared)
  const homeA = await makeHome()
  const homeB = await makeHome()
  fs.symlinkSync(file, path.join(homeA, 'auth.json'))
  fs.symlinkSync(path.relative(homeB, file), path.join(homeB, 'auth.json'))

  const a = stopAtTeardown(t, await startDaemon({ home: homeA }))
  t.ok(lockHeld(`${file}.authd.lock`), 'the first daemon holds the lock beside the resolved file')
  t.notOk(lockHeld(`${file}.lock`), "Codex's auth.json.lock stays free")

  const b = stopAtTeardown(t, await startDaemon({ home: homeB, waitReady: false }))
  const { code } = await b.exited
  t.equal(code, 3, 'exit 3: another daemon owns this credential')
  const err = b.stderr.join('\n')
  t.ok(err.includes(fs.realpathSync(homeA)), "names the owning daemon's home")
  t.ok(err.includes(file), 'names the credential file')
  t.notOk(fs.existsSync(b.socket), 'the second daemon bound nothing')
  t.notOk(lockHeld(path.join(homeB, 'authd.lock')), "the second daemon released its home's lock")

  const c = await rawConnect(a.socket)
  t.teardown(() => c.close())
  t.equal((await c.call('status')).result.daemon.pid, a.pid, 'the first daemon keeps serving')

  // Once the first is gone, the second home may own the file.
  await a.stop()
  t.notOk(lockHeld(`${file}.authd.lock`), 'a stopped daemon releases the credential lock')
  const b2 = stopAtTeardown(t, await startDaemon({ home: homeB }))
  t.ok(lockHeld(`${file}.authd.lock`))
  await b2.stop()
})

t.test('a home with a plain auth.json keeps its owner lock in the home', async (t) => {
  const home = await makeHome()
  fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify({ OPENAI_API_KEY: 'sk-test-owner-1111111111' }), { mode: 0o600 })
  const d = stopAtTeardown(t, await startDaemon({ home }))
  const lock = path.join(home, 'auth.json.authd.lock')
  t.ok(lockHeld(lock))
  t.equal(fs.statSync(lock).mode & 0o777, 0o600, 'private')

  // Another home linking to this one's auth.json is refused.
  const other = await makeHome()
  fs.symlinkSync(path.join(home, 'auth.json'), path.join(other, 'auth.json'))
  const second = stopAtTeardown(t, await startDaemon({ home: other, waitReady: false }))
  t.equal((await second.exited).code, 3)
  await d.stop()
})
