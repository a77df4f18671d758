// The cache's watching, in-process (src/state/cache.ts): only CODEX_HOME's two files wake it up. Codex's
// own churn in CODEX_HOME (sqlite, sessions, history) and anything beside CODEX_HOME in its parent
// cause no reload, and — while both files exist — not even an fs.watch callback. Wake-ups are
// counted by AuthState.watchStats (every fs.watch callback is one); synchronisation is by 'change'
// events or polling with a deadline, never by fixed sleeps (except where a pause IS the scenario,
// or to let the kernel deliver events that must NOT arrive).
import t, { type Test } from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AuthState } from '../src/state/cache.js'
import { renameInto, writeInPlace } from './support/auth-files.mjs'
import { chatgptAuth } from './support/tokens.js'
import { until } from './support/until.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A private parent with CODEX_HOME in it (so siblings can be made), removed at teardown. */
function makeParent(t: Test): { parent: string; home: string } {
  const parent = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'csw-')))
  t.teardown(() => fs.rmSync(parent, { recursive: true, force: true }))
  const home = path.join(parent, 'codex-home')
  fs.mkdirSync(home, { mode: 0o700 })
  return { parent, home }
}

/** An AuthState as the daemon has it: homeGone recreates the home (0700). */
async function startState(t: Test, home: string): Promise<{ state: AuthState; homeGone: () => number }> {
  const state = new AuthState({ home, envApiKey: null, overrides: [] })
  let gone = 0
  state.on('homeGone', () => {
    gone++
    fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  })
  state.on('error', (e) => t.fail(`watcher error: ${String(e)}`))
  await state.start()
  t.teardown(() => state.stop())
  return { state, homeGone: () => gone }
}

function served(state: AuthState): string | null {
  const r = state.current.resolved
  return r.kind === 'chatgpt' ? r.tokens.accessToken : null
}

async function untilServed(state: AuthState, access: string | null, what: string): Promise<void> {
  await until(what, () => served(state) === access)
}

/** Quiet period after the churn: let inotify deliver anything that was going to arrive. */
async function settle(state: AuthState): Promise<void> {
  await sleep(300)
  await state.reload() // and nothing queued behind a read
}

/** Codex at work in its home: sqlite with WAL, a session log, history, a log directory. */
function codexChurn(home: string, rounds: number): void {
  fs.mkdirSync(path.join(home, 'sessions', '2026', '01', '01'), { recursive: true })
  fs.mkdirSync(path.join(home, 'log'), { recursive: true })
  const session = path.join(home, 'sessions', '2026', '01', '01', 'x.jsonl')
  for (let i = 0; i < rounds; i++) {
    fs.appendFileSync(path.join(home, 'state_5.sqlite'), 'page'.repeat(64))
    fs.appendFileSync(path.join(home, 'state_5.sqlite-wal'), 'wal'.repeat(32))
    fs.writeFileSync(path.join(home, 'state_5.sqlite-shm'), String(i))
    fs.appendFileSync(session, `{"i":${i}}\n`)
    fs.appendFileSync(path.join(home, 'log', 'codex-tui.log'), `line ${i}\n`)
    if (i % 50 === 0) {
      fs.appendFileSync(path.join(home, 'history.jsonl'), `{"i":${i}}\n`)
      fs.writeFileSync(path.join(home, `tmp-${i}.sqlite-journal`), 'j')
      fs.rmSync(path.join(home, `tmp-${i}.sqlite-journal`))
    }
  }
}

/** Thousands of entries created, written and removed beside CODEX_HOME, and in a sibling dir. */
function siblingChurn(parent: string, files: number): void {
  const sib = path.join(parent, 'sibling')
  fs.mkdirSync(sib, { recursive: true })
  for (let i = 0; i < files; i++) {
    fs.writeFileSync(path.join(parent, `f${i}`), 'x')
    fs.writeFileSync(path.join(sib, `g${i}`), 'y')
  }
  for (let i = 0; i < files; i++) {
    fs.renameSync(path.join(parent, `f${i}`), path.join(parent, `h${i}`))
    fs.rmSync(path.join(parent, `h${i}`))
  }
  fs.mkdirSync(path.join(parent, 'codex-home.bak'))
  fs.rmdirSync(path.join(parent, 'codex-home.bak'))
}

for (const withConfig of [true, false]) {
  const mode = withConfig ? 'both files present' : 'no config.toml'
  t.test(`${mode}: siblings of CODEX_HOME churning do not wake the cache`, async (t) => {
    const { parent, home } = makeParent(t)
    const a = chatgptAuth('sib')
    renameInto(path.join(home, 'auth.json'), a.text)
    if (withConfig) fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
    const { state } = await startState(t, home)
    t.equal(served(state), a.access)
    t.notOk(state.watchedPaths.includes(parent), 'the parent is not watched while CODEX_HOME exists')
    if (withConfig) {
      t.same(state.watchedPaths.sort(), [path.join(home, 'auth.json'), path.join(home, 'config.toml')], 'only the two files are watched')
    }
    await settle(state)
    const before = { ...state.watchStats }
    siblingChurn(parent, 3000)
    await settle(state)
    t.equal(state.watchStats.callbacks - before.callbacks, 0, 'no fs.watch callback for 9000+ sibling events')
    t.equal(state.watchStats.reads - before.reads, 1, 'no read but the one settle() asked for')

    const b = chatgptAuth('sib2')
    renameInto(path.join(home, 'auth.json'), b.text)
    await untilServed(state, b.access, 'a change after the churn')
    t.pass('still watching')
  })

  t.test(`${mode}: Codex's churn inside CODEX_HOME causes no reload`, async (t) => {
    const { home } = makeParent(t)
    const a = chatgptAuth('churn')
    renameInto(path.join(home, 'auth.json'), a.text)
    if (withConfig) fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
    const { state } = await startState(t, home)
    let changes = 0
    state.on('change', () => changes++)
    await settle(state)
    const before = { ...state.watchStats }
    codexChurn(home, 2000)
    await settle(state)
    const callbacks = state.watchStats.callbacks - before.callbacks
    t.equal(state.watchStats.reads - before.reads, 1, 'no read but the one settle() asked for')
    t.equal(changes, 0, 'no change event')
    if (withConfig) t.equal(callbacks, 0, 'not even an fs.watch callback: only the two files are watched')
    else {
      // config.toml may be created at any time: the home directory is watched, each callback is
      // dropped on its name alone.
      t.equal(state.watchStats.ignored - before.ignored, callbacks, `${callbacks} callbacks, all dropped by name`)
    }
    const b = chatgptAuth('churn2')
    writeInPlace(path.join(home, 'auth.json'), b.text)
    await untilServed(state, b.access, 'an in-place write after the churn')
    t.pass('still watching')
  })

  t.test(`${mode}: renames, in-place writes, deletion, creation, two writes 10 ms apart`, async (t) => {
    const { home } = makeParent(t)
    const file = path.join(home, 'auth.json')
    if (withConfig) fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
    const { state } = await startState(t, home)
    t.equal(served(state), null)

    const c = chatgptAuth('c0')
    renameInto(file, c.text)
    await untilServed(state, c.access, 'created after start')
    if (withConfig) t.same(state.watchedPaths.sort(), [file, path.join(home, 'config.toml')], 'back to the two files once both exist')

    for (let i = 1; i <= 3; i++) {
      const a = chatgptAuth(`r${i}`)
      renameInto(file, a.text)
      await untilServed(state, a.access, `rename ${i}`)
      const w = chatgptAuth(`w${i}`)
      writeInPlace(file, w.text)
      await untilServed(state, w.access, `in-place write ${i}`)
    }
    t.pass('renames and in-place writes served')

    for (let i = 1; i <= 6; i++) {
      const first = chatgptAuth(`x${i}a`)
      const second = chatgptAuth(`x${i}b`)
      const write = i % 2 === 0 ? renameInto : writeInPlace
      write(file, first.text)
      await sleep(10) // the scenario under test
      write(file, second.text)
      await untilServed(state, second.access, `round ${i}: the second write`)
    }
    t.pass('two writes 10 ms apart: the final content wins')

    fs.rmSync(file)
    await untilServed(state, null, 'deleted')
    const d = chatgptAuth('d1')
    writeInPlace(file, d.text)
    await untilServed(state, d.access, 'created again in place')
    t.pass('deletion and re-creation seen')

    fs.writeFileSync(path.join(home, 'config.toml'), 'preferred_auth_method = "apikey"\n')
    await until('config.toml change seen', () => state.current.settings.preferredAuthMethod === 'apikey')
    renameInto(path.join(home, 'config.toml'), 'preferred_auth_method = "chatgpt"\n')
    await until('config.toml rename seen', () => state.current.settings.preferredAuthMethod === 'chatgpt')
    t.pass('config.toml followed')
  })
}

t.test('CODEX_HOME removed: homeGone, the parent watched only until it is back, then home-only again', async (t) => {
  const { parent, home } = makeParent(t)
  renameInto(path.join(home, 'auth.json'), chatgptAuth('h0').text)
  fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
  const { state, homeGone } = await startState(t, home)

  fs.rmSync(home, { recursive: true, force: true })
  await until('homeGone and the home recreated', () => homeGone() === 1 && fs.existsSync(home))
  await untilServed(state, null, 'nothing served from the empty home')
  await until('home-only watching again', () => state.watchedPaths.length > 0 && !state.watchedPaths.includes(parent))
  t.same(state.watchedPaths, [home], 'the recreated (empty) home is watched, not its parent')

  const a = chatgptAuth('h1')
  renameInto(path.join(home, 'auth.json'), a.text)
  await untilServed(state, a.access, 'auth.json in the recreated home')

  await settle(state)
  const before = state.watchStats.callbacks
  siblingChurn(parent, 1000)
  await settle(state)
  t.equal(state.watchStats.callbacks - before, 0, 'siblings are quiet again after the recreation')
  t.equal(homeGone(), 1, 'one homeGone for one removal')
})

t.test('CODEX_HOME removed and at once recreated (new inode): homeGone and a fresh watch', async (t) => {
  const { home } = makeParent(t)
  renameInto(path.join(home, 'auth.json'), chatgptAuth('q0').text)
  fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
  const { state, homeGone } = await startState(t, home)
  for (let i = 1; i <= 3; i++) {
    fs.rmSync(home, { recursive: true, force: true })
    fs.mkdirSync(home, { mode: 0o700 })
    const a = chatgptAuth(`q${i}`)
    renameInto(path.join(home, 'auth.json'), a.text)
    fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
    await untilServed(state, a.access, `round ${i}: the new home's auth.json`)
    await until(`round ${i}: homeGone (${homeGone()})`, () => homeGone() === i)
    const b = chatgptAuth(`q${i}b`)
    writeInPlace(path.join(home, 'auth.json'), b.text)
    await untilServed(state, b.access, `round ${i}: a later in-place write`)
    t.pass(`round ${i}: followed into the new directory`)
  }
})

t.test('a symlinked auth.json into CODEX_HOME itself, and into another directory', async (t) => {
  const { parent, home } = makeParent(t)
  fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
  const inside = path.join(home, 'real-auth.json')
  const l0 = chatgptAuth('l0')
  writeInPlace(inside, l0.text)
  fs.symlinkSync('real-auth.json', path.join(home, 'auth.json'))
  const { state } = await startState(t, home)
  t.equal(served(state), l0.access, 'served through the link')
  const a = chatgptAuth('l1')
  renameInto(inside, a.text)
  await untilServed(state, a.access, 'rename onto a target inside the home')
  fs.rmSync(inside)
  await untilServed(state, null, 'target deleted')
  const b = chatgptAuth('l2')
  writeInPlace(inside, b.text)
  await untilServed(state, b.access, 'target created again')

  const other = path.join(parent, 'elsewhere')
  fs.mkdirSync(other)
  const target = path.join(other, 'auth.json')
  const c = chatgptAuth('l3')
  writeInPlace(target, c.text)
  const tmpLink = path.join(home, '.auth.json.link')
  fs.symlinkSync(target, tmpLink)
  fs.renameSync(tmpLink, path.join(home, 'auth.json'))
  await untilServed(state, c.access, 'relinked to another directory')
  t.ok(state.watchedPaths.includes(other), "the target's directory is watched")
  fs.rmSync(target)
  await untilServed(state, null, 'target deleted')
  const d = chatgptAuth('l4')
  renameInto(target, d.text)
  await untilServed(state, d.access, 'target created again by a rename')
  t.pass('symlinked auth.json followed')
})

t.test('a symlinked config.toml (dotfile managers): target edits and relinks are followed', async (t) => {
  const { parent, home } = makeParent(t)
  const dots = path.join(parent, 'dotfiles')
  fs.mkdirSync(dots)
  const cfg = path.join(dots, 'codex.toml')
  fs.writeFileSync(cfg, 'preferred_auth_method = "apikey"\n')
  fs.symlinkSync(cfg, path.join(home, 'config.toml'))
  renameInto(path.join(home, 'auth.json'), chatgptAuth('cfg').text)
  const { state } = await startState(t, home)
  t.equal(state.current.settings.preferredAuthMethod, 'apikey')
  writeInPlace(cfg, 'preferred_auth_method = "chatgpt"\n')
  await until('in-place edit of the target', () => state.current.settings.preferredAuthMethod === 'chatgpt')
  renameInto(cfg, 'preferred_auth_method = "apikey"\n')
  await until('editor-style rename over the target', () => state.current.settings.preferredAuthMethod === 'apikey')
  const cfg2 = path.join(dots, 'codex2.toml')
  fs.writeFileSync(cfg2, 'forced_login_method = "api"\n')
  const tmpLink = path.join(home, '.config.toml.link')
  fs.symlinkSync(cfg2, tmpLink)
  fs.renameSync(tmpLink, path.join(home, 'config.toml'))
  await until('relinked', () => state.current.settings.forcedLoginMethod === 'api')
  t.pass('followed')
})

t.test("CODEX_HOME's parent removed too: watched from the nearest ancestor, recreated", async (t) => {
  const { parent } = makeParent(t)
  const mid = path.join(parent, 'a', 'b')
  const home = path.join(mid, '.codex')
  fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  renameInto(path.join(home, 'auth.json'), chatgptAuth('deep').text)
  const { state, homeGone } = await startState(t, home)
  fs.rmSync(path.join(parent, 'a'), { recursive: true })
  await until('homeGone, the home recreated', () => homeGone() === 1 && fs.existsSync(home))
  await untilServed(state, null, 'nothing served')
  const a = chatgptAuth('deep2')
  renameInto(path.join(home, 'auth.json'), a.text)
  await untilServed(state, a.access, 'auth.json in the recreated home')
  t.same(state.watchedPaths, [home], 'CODEX_HOME watched again, nothing above it')
})

t.test('CODEX_HOME missing for a while (nobody recreates it): the parent watch sees it come back', async (t) => {
  const { parent, home } = makeParent(t)
  renameInto(path.join(home, 'auth.json'), chatgptAuth('p0').text)
  fs.writeFileSync(path.join(home, 'config.toml'), 'model = "x"\n')
  const state = new AuthState({ home, envApiKey: null, overrides: [] })
  let gone = 0
  state.on('homeGone', () => gone++)
  await state.start()
  t.teardown(() => state.stop())
  fs.rmSync(home, { recursive: true })
  await until('homeGone', () => gone === 1)
  await untilServed(state, null, 'nothing served')
  t.same(state.watchedPaths, [parent], 'only the parent is watched while CODEX_HOME is missing')
  await settle(state) // the trailing re-read of the removal
  const before = { ...state.watchStats }
  for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(parent, `s${i}`), 'x')
  await settle(state)
  t.equal(state.watchStats.reads - before.reads, 1, 'siblings wake it meanwhile, but cause no read')
  fs.mkdirSync(home, { mode: 0o700 })
  const a = chatgptAuth('p1')
  renameInto(path.join(home, 'auth.json'), a.text)
  await untilServed(state, a.access, 'auth.json in the home created again')
  await until('home-only watching again', () => !state.watchedPaths.includes(parent))
  t.equal(gone, 1, 'its return is no second homeGone')
})
