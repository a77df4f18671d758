// The composition root (src/daemon/daemon.ts) in this process: what a start took — the home's
// lock, the state's watches, the listening socket — is given back by stop(), and by a start that
// fails after the lock was taken, through the same list of closers.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { StartError, startDaemon, type DaemonContext } from '../src/daemon/daemon.js'
import { parseDaemonArgs, type DaemonOptions } from '../src/daemon/options.js'
import { createLogger } from '../src/log.js'
import { makeHome, tempDir } from './support/daemon.js'
import { fakeJwt } from './support/tokens.js'
import { lockHeld } from './support/flock.js'
import { until } from './support/until.js'

/** The handles keeping this process alive that a daemon start creates: fs.watch and sockets. */
function handles(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) {
    if (r === 'FSEventWrap' || r.startsWith('Pipe') || r === 'StatWatcher') counts[r] = (counts[r] ?? 0) + 1
  }
  return counts
}

function options(home: string, socket: string): DaemonOptions {
  const cmd = parseDaemonArgs(['--codex-home', home, '--socket', socket])
  if (cmd.kind !== 'run') throw new Error('expected a run command')
  return cmd.options
}

const ctx: DaemonContext = { env: {}, pid: process.pid, uid: process.getuid!(), version: '0.0.0-test', log: createLogger('silent') }

async function homeWithLogin(): Promise<string> {
  const home = await makeHome()
  const now = Math.floor(Date.now() / 1000)
  const auth = {
    auth_mode: 'chatgpt',
    OPENAI_API_KEY: null,
    tokens: { id_token: fakeJwt({ email: 'start@example.com' }), access_token: fakeJwt({ exp: now + 86400, iat: now }), refresh_token: 'rt-fake-start', account_id: 'acc' },
    last_refresh: new Date().toISOString(),
  }
  fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify(auth), { mode: 0o600 })
  return home
}

t.test('stop() gives back the lock, the watches and the socket', async (t) => {
  const home = await homeWithLogin()
  const socket = path.join(tempDir('cad-start-'), 's.sock')
  const before = handles()
  const d = await startDaemon(options(home, socket), ctx)
  t.ok(lockHeld(path.join(home, 'authd.lock')), 'the home is locked while running')
  t.ok((handles().FSEventWrap ?? 0) > (before.FSEventWrap ?? 0), 'the state watches files (what the failed start must close)')
  t.ok(fs.lstatSync(socket).isSocket())
  await d.stop('test')
  t.notOk(lockHeld(path.join(home, 'authd.lock')), 'lock released')
  // stop() ends the HTTP warm-up too (a ChatGPT login's first refresh-to-be,
  // docs/refresh.md#one-in-flight) and waits for it: nothing of it is left once stop() returns.
  t.same(handles(), before, 'no watch or socket left')
  t.notOk(fs.existsSync(socket), 'socket removed')
})

t.test('a start that fails at listen, after the lock, the state and the refresher: all given back', async (t) => {
  const home = await homeWithLogin()
  const dir = tempDir('cad-start-')
  // A plain file where the socket goes: the directory is fine, listening is not.
  const socket = path.join(dir, 's.sock')
  fs.writeFileSync(socket, 'not a socket')
  const before = handles()
  const err = await startDaemon(options(home, socket), ctx).then(
    () => null,
    (e: unknown) => e,
  )
  t.type(err, StartError)
  t.equal((err as StartError).exitCode, 4, 'exit 4: unusable socket path')
  t.match((err as StartError).message, /exists and is not a socket/)
  t.notOk(lockHeld(path.join(home, 'authd.lock')), 'lock released')
  await until('nothing started is left running', () => isDeepStrictEqual(handles(), before))
  t.same(handles(), before, 'watches closed: nothing started is left running')
  t.equal(fs.readFileSync(socket, 'utf8'), 'not a socket', 'the file in the way is left alone')

  // And the home can be served at once by the next start.
  const ok = await startDaemon(options(home, path.join(dir, 'ok.sock')), ctx)
  t.teardown(() => ok.stop('test'))
  t.ok(lockHeld(path.join(home, 'authd.lock')))
})
