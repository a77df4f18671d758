// No re-read of the file just written (docs/refresh.md#the-sequence, docs/watching.md#reading-after-an-event):
// in-process, the refresher's commit hands what it wrote to the state, and the watcher's events
// for that write (the rename, the trailing read) are recognised by the file's identity and cost no
// parse of auth.json. Someone writing right after us is read as usual. Real parts: the harness
// provider, a temp CODEX_HOME, the real AuthState (fs.watch) and Refresher.
import t from 'tap'
import fs from 'node:fs'
import { createLogger } from '../src/log.js'
import { Refresher } from '../src/refresh/refresher.js'
import { AuthState } from '../src/state/cache.js'
import { makeHome } from './support/daemon.js'
import { mintTokens, startProvider } from './support/provider.js'
import { authFileFor, fileTokens, writeAuthFile } from './support/refresh.js'
import { until } from './support/until.js'


t.test('a refresh commit is not read back; a write right after it is', async (t) => {
  const p = await startProvider({ ttl: { authorizationCode: 3600, refreshToken: 3600 } })
  t.teardown(() => p.stop())
  const minted = await mintTokens(p)
  const home = await makeHome()
  writeAuthFile(home, authFileFor(minted))
  const state = new AuthState({ home, envApiKey: null, overrides: [] })
  state.on('error', (e) => t.fail(`watcher error: ${String(e)}`))
  await state.start()
  t.teardown(() => state.stop())
  const refresher = new Refresher({
    home,
    state,
    issuer: { issuer: p.issuer, kind: 'openai', clientId: p.clientId },
    env: {},
    log: createLogger('silent'),
    userAgent: 'codex-authd/test',
  })
  await refresher.start()
  t.teardown(() => refresher.stop())
  const served = (): string | null => (state.current.resolved.kind === 'chatgpt' ? state.current.resolved.tokens.accessToken : null)

  const before = state.watchStats
  await refresher.forceRefresh()
  // The commit runs after the callers are answered: wait for auth.json to hold the new tokens,
  // then for the watcher's event for that rename to have been read (a read after the write).
  const mine = served()
  t.ok(mine !== null && mine !== minted.accessToken, 'the refreshed token is served')
  await until('the commit landed in auth.json', async () => (await fileTokens(home)).accessToken === mine)
  await until('the watcher saw our write and the state read after it', () => state.watchStats.reads > before.reads && state.current.pending === null)
  await state.reload() // one more read, as the trailing read after an event does
  const after = state.watchStats
  t.equal(after.authParses - before.authParses, 0, `auth.json was not parsed again after our own write (${after.reads - before.reads} reads, each a stat)`)
  t.ok(after.callbacks > before.callbacks, 'the watcher did report the write')
  t.ok(served() === mine, 'still serving what we wrote')

  // Our own file written in place right after us, same size (as older writers did): its
  // modification time tells it from the version we wrote.
  const text = fs.readFileSync(`${home}/auth.json`, 'utf8')
  const third = await mintTokens(p)
  const rewritten = text.replace(mine!, third.accessToken)
  t.equal(rewritten.length, text.length, 'same size')
  fs.writeFileSync(`${home}/auth.json`, rewritten)
  await until('the in-place rewrite is served', () => served() === third.accessToken)
  t.ok(state.watchStats.authParses > after.authParses, 'the rewrite was read')

  // Someone else renames their file over ours: another version, read and served.
  const other = await mintTokens(p)
  writeAuthFile(home, authFileFor(other))
  await until('the other writer’s file is served', () => served() === other.accessToken)
  t.pass('their file is served')
})
