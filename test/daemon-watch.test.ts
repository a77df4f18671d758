// The live cache (docs/watching.md): whatever happens to auth.json and config.toml on disk, getAuth
// ends up serving what is there, never a half-written file. Synchronisation is by authChanged
// notifications or by polling a condition with a deadline — never by fixed sleeps.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, makeHome, startDaemon, stopAtTeardown, subscribe, tempDir, type RunningDaemon } from './support/daemon.js'
import type { RawConnection } from './support/rpc.js'
import { renameInto, writeInPlace } from './support/auth-files.mjs'
import { chatgptAuth } from './support/tokens.js'
import { until } from './support/until.js'

async function daemon(t: Test, home: string): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ home }))
}

/** The next authChanged notification whose Status satisfies `pred`. */
async function nextChange(c: RawConnection, pred: (status: any) => boolean): Promise<any> {
  for (;;) {
    const m = await c.next()
    if (m.method === 'authChanged' && pred(m.params)) return m.params
  }
}

async function token(c: RawConnection): Promise<string | null> {
  const r = await c.call('getAuth')
  return r.result?.token ?? null
}

async function untilServed(c: RawConnection, expected: string, what: string): Promise<void> {
  await until(what, async () => (await token(c)) === expected)
}

t.test('auth.json created after start', async (t) => {
  const home = await makeHome()
  const d = await daemon(t, home)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)
  t.equal((await c.call('getAuth')).error.code, -32001)

  const a = chatgptAuth('created')
  renameInto(path.join(home, 'auth.json'), a.text)
  const s = await nextChange(sub, (s) => s.loggedIn)
  t.equal(s.account.email, 'created@example.com')
  t.equal(await token(c), a.access, 'getAuth serves it once authChanged arrived')
})

t.test('atomic renames, one after another', async (t) => {
  const home = await makeHome()
  const file = path.join(home, 'auth.json')
  renameInto(file, chatgptAuth('r0').text)
  const d = await daemon(t, home)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)
  for (let i = 1; i <= 5; i++) {
    const a = chatgptAuth(`r${i}`)
    renameInto(file, a.text)
    await nextChange(sub, (s) => s.account?.email === `r${i}@example.com`)
    t.equal(await token(c), a.access, `rename ${i} served`)
  }
  const st = (await c.call('status')).result
  t.same(st.problems, [], 'no problem along the way')
})

t.test('in-place writes', async (t) => {
  const home = await makeHome()
  const file = path.join(home, 'auth.json')
  writeInPlace(file, chatgptAuth('w0').text)
  const d = await daemon(t, home)
  const c = await connect(t, d)
  const ino = fs.statSync(file).ino
  for (let i = 1; i <= 5; i++) {
    const a = chatgptAuth(`w${i}`)
    writeInPlace(file, a.text)
    await untilServed(c, a.access, `in-place write ${i}`)
    t.pass(`in-place write ${i} served`)
  }
  t.equal(fs.statSync(file).ino, ino, 'the same file all along')
})

t.test('two writes 10 ms apart: the final content wins', async (t) => {
  const home = await makeHome()
  const file = path.join(home, 'auth.json')
  writeInPlace(file, chatgptAuth('x0').text)
  const d = await daemon(t, home)
  const c = await connect(t, d)
  for (let i = 1; i <= 6; i++) {
    const first = chatgptAuth(`x${i}a`)
    const second = chatgptAuth(`x${i}b`)
    const write = i % 2 === 0 ? renameInto : writeInPlace
    write(file, first.text)
    await new Promise((r) => setTimeout(r, 10)) // the scenario under test, not synchronisation
    write(file, second.text)
    await untilServed(c, second.access, `round ${i}: second write served`)
    t.pass(`round ${i} (${write.name}): the second write is served`)
  }
})

t.test('CODEX_HOME deleted and recreated', async (t) => {
  const home = await makeHome()
  renameInto(path.join(home, 'auth.json'), chatgptAuth('h0').text)
  const d = await daemon(t, home)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)

  fs.rmSync(home, { recursive: true, force: true })
  await nextChange(sub, (s) => !s.loggedIn)
  t.equal((await c.call('getAuth')).error.code, -32001, 'nothing served once the home is gone')

  // Recreate it ourselves (racing the daemon, which recreates it too) and log in again.
  fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  const a = chatgptAuth('h1')
  renameInto(path.join(home, 'auth.json'), a.text)
  await untilServed(c, a.access, 'auth.json in the recreated home')
  t.pass('served from the recreated home')

  // And once more, quickly: delete and recreate with new content without waiting in between.
  fs.rmSync(home, { recursive: true, force: true })
  fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  const b = chatgptAuth('h2')
  renameInto(path.join(home, 'auth.json'), b.text)
  await untilServed(c, b.access, 'auth.json after a quick delete+recreate')
  t.pass('served after a quick delete and recreate')

  const later = chatgptAuth('h3')
  writeInPlace(path.join(home, 'auth.json'), later.text)
  await untilServed(c, later.access, 'the watcher still works after the recreation')
  t.pass('still watching')
})

t.test('auth.json deleted: not logged in; restored: served', async (t) => {
  const home = await makeHome()
  const file = path.join(home, 'auth.json')
  renameInto(file, chatgptAuth('d0').text)
  const d = await daemon(t, home)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)
  fs.rmSync(file)
  await nextChange(sub, (s) => !s.loggedIn)
  t.equal((await c.call('getAuth')).error.code, -32001)
  const a = chatgptAuth('d1')
  renameInto(file, a.text)
  await nextChange(sub, (s) => s.loggedIn)
  t.equal(await token(c), a.access)
})

t.test('a half-written auth.json never replaces the served credential', async (t) => {
  const home = await makeHome()
  const file = path.join(home, 'auth.json')
  const good = chatgptAuth('good')
  writeInPlace(file, good.text)
  const d = await daemon(t, home)
  const c = await connect(t, d)
  t.equal(await token(c), good.access)

  const next = chatgptAuth('next')
  const half = next.text.slice(0, Math.floor(next.text.length / 2))
  writeInPlace(file, half)
  // Every getAuth while the file is broken still returns the last good token.
  await until('status shows auth_unreadable', async () => {
    const g = await c.call('getAuth')
    if (g.result?.token !== good.access) throw new Error('a broken file replaced the served credential')
    const s = (await c.call('status')).result
    return s.problems.some((p: any) => p.code === 'auth_unreadable')
  })
  const s = (await c.call('status')).result
  const p = s.problems.find((x: any) => x.code === 'auth_unreadable')
  t.equal(p.file, file)
  t.type(p.line, 'number')
  t.type(p.column, 'number')
  t.equal(s.loggedIn, true, 'still logged in with the last good credential')
  t.equal(await token(c), good.access, 'getAuth still serves the last good token')
  t.equal(fs.readFileSync(file, 'utf8'), half, 'the daemon never wrote over the broken file')

  // The writer finishes: the new content is served and the problem goes away.
  writeInPlace(file, next.text)
  await untilServed(c, next.access, 'the completed file')
  const s2 = (await c.call('status')).result
  t.notOk(s2.problems.some((x: any) => x.code === 'auth_unreadable'), 'problem cleared')

  // Same with a rename of a broken file into place.
  renameInto(file, '{"auth_mode": "chatgpt", "tokens": {')
  await until('auth_unreadable after a broken rename', async () => {
    if ((await token(c)) !== next.access) throw new Error('a broken file replaced the served credential')
    return (await c.call('status')).result.problems.some((x: any) => x.code === 'auth_unreadable')
  })
  t.pass('a broken rename keeps the last good credential too')
})

t.test('config.toml changes apply live', async (t) => {
  const home = await makeHome()
  const key = 'sk-fake-live-0000000000000000abcde'
  const a = chatgptAuth('cfg', key)
  renameInto(path.join(home, 'auth.json'), a.text)
  const d = await daemon(t, home)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)
  const g0 = (await c.call('getAuth')).result
  t.equal(g0.mode, 'chatgpt', 'tokens by default')

  const config = path.join(home, 'config.toml')
  fs.writeFileSync(config, 'preferred_auth_method = "apikey"\n')
  const s1 = await nextChange(sub, (s) => s.mode === 'apikey')
  t.equal(s1.settings.preferredAuthMethod, 'apikey')
  const g1 = (await c.call('getAuth')).result
  t.equal(g1.mode, 'apikey')
  t.ok(g1.token === key, 'serves the key')

  renameInto(config, 'preferred_auth_method = "chatgpt"\n')
  await nextChange(sub, (s) => s.mode === 'chatgpt')
  t.equal(await token(c), a.access, 'back to tokens after a rename of config.toml')

  fs.writeFileSync(config, 'preferred_auth_method = "apikey"\n')
  await nextChange(sub, (s) => s.mode === 'apikey')
  fs.rmSync(config)
  await nextChange(sub, (s) => s.mode === 'chatgpt')
  t.pass('removing config.toml restores the defaults')

  fs.writeFileSync(config, 'forced_login_method = "api"\n')
  const s2 = await nextChange(sub, (s) => s.settings.forcedLoginMethod === 'api')
  t.equal(s2.mode, 'apikey', 'forced api narrows to the key')

  fs.writeFileSync(config, 'preferred_auth_method = [unclosed\n')
  const s3 = await nextChange(sub, (s) => s.problems.some((p: any) => p.code === 'config_invalid'))
  t.equal(s3.mode, 'chatgpt', 'an unparsable config.toml falls back to the defaults')
  t.equal(await token(c), a.access)
})

t.test('a symlinked auth.json: changes to the target are picked up', async (t) => {
  const home = await makeHome()
  const elsewhere = tempDir('cad-target-')
  const target = path.join(elsewhere, 'real-auth.json')
  writeInPlace(target, chatgptAuth('s0').text)
  fs.symlinkSync(target, path.join(home, 'auth.json'))
  const d = await daemon(t, home)
  const c = await connect(t, d)
  const sub = await subscribe(t, d)
  t.equal((await c.call('getAuth')).result.accountId, 'acc-s0')

  const a = chatgptAuth('s1')
  writeInPlace(target, a.text)
  await nextChange(sub, (s) => s.account?.accountId === 'acc-s1')
  t.equal(await token(c), a.access, 'in-place write to the target')

  const b = chatgptAuth('s2')
  renameInto(target, b.text)
  await nextChange(sub, (s) => s.account?.accountId === 'acc-s2')
  t.equal(await token(c), b.access, 'rename onto the target')
  t.ok(fs.lstatSync(path.join(home, 'auth.json')).isSymbolicLink(), 'the link is left alone')

  // Point the link at another file in yet another directory, then change that one.
  const elsewhere2 = tempDir('cad-target2-')
  const target2 = path.join(elsewhere2, 'auth2.json')
  const c3 = chatgptAuth('s3')
  writeInPlace(target2, c3.text)
  const link = path.join(home, 'auth.json')
  const tmpLink = path.join(home, '.auth.json.link')
  fs.symlinkSync(target2, tmpLink)
  fs.renameSync(tmpLink, link)
  await nextChange(sub, (s) => s.account?.accountId === 'acc-s3')
  t.equal(await token(c), c3.access, 'relinked')
  const c4 = chatgptAuth('s4')
  writeInPlace(target2, c4.text)
  await untilServed(c, c4.access, 'a change to the new target')
  t.pass('the new target is watched')
})

/** The inodes `pid` has inotify watches on (Linux: /proc/<pid>/fdinfo of its inotify descriptors). */
function inotifyInodes(pid: number): Set<number> {
  const inodes = new Set<number>()
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:inotify') continue
      const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
      for (const m of info.matchAll(/^inotify wd:\S+ ino:([0-9a-f]+) /gm)) inodes.add(parseInt(m[1]!, 16))
    } catch {
      // closed meanwhile
    }
  }
  return inodes
}

/** Context switches (voluntary + involuntary) of all the daemon's threads: its wake-ups. */
function wakeups(pid: number): number {
  let n = 0
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    let status: string
    try {
      status = fs.readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8')
    } catch {
      continue // a thread that just ended
    }
    for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) n += Number(m[1])
  }
  return n
}

/** Wake-ups of `pid` while `work` runs and for 300 ms after (events still in flight). */
async function wakeupsDuring(pid: number, work: () => void): Promise<number> {
  const before = wakeups(pid)
  work()
  await new Promise((r) => setTimeout(r, 300)) // letting events that must not come arrive
  return wakeups(pid) - before
}

/**
 * The fewest wake-ups over `tries` runs of `work`. A watch that sees the churn wakes the daemon
 * every time (thousands); V8's own housekeeping (the memory reducer's GC, a few seconds after
 * start) lands in one window at most.
 */
async function fewestWakeups(pid: number, work: () => void, tries = 3): Promise<number[]> {
  // Start from a quiet daemon: on a loaded machine its start-up work (module loading, the GCs
  // that follow) can run seconds late and would land in every window.
  await until('the daemon to be quiet for 500 ms', async () => {
    const before = wakeups(pid)
    await new Promise((r) => setTimeout(r, 500))
    return wakeups(pid) === before
  })
  const seen: number[] = []
  for (let i = 0; i < tries; i++) {
    seen.push(await wakeupsDuring(pid, work))
    if (seen[i] === 0) break
  }
  return seen
}

t.test('an idle daemon is not woken by churn beside CODEX_HOME, nor by Codex churn inside it', async (t) => {
  // CODEX_HOME in a parent of its own, so that the test can churn its siblings.
  const parent = fs.realpathSync(tempDir('cad-p-'))
  const home = path.join(parent, 'codex-home')
  fs.mkdirSync(home, { mode: 0o700 })
  const a = chatgptAuth('idle')
  renameInto(path.join(home, 'auth.json'), a.text)
  const d = await daemon(t, home)
  const c = await connect(t, d)
  const sub = await subscribe(t, d)
  t.equal(await token(c), a.access)

  let round = 0
  const siblings = await fewestWakeups(d.pid, () => {
    const r = round++
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(parent, `f${i}`), 'x')
    for (let i = 0; i < 3000; i++) fs.rmSync(path.join(parent, `f${i}`))
    fs.mkdirSync(path.join(parent, `sibling${r}`))
    for (let i = 0; i < 1000; i++) fs.writeFileSync(path.join(parent, `sibling${r}`, `g${i}`), 'y')
  })
  t.comment(`daemon wake-ups while 7000 sibling events happened: ${siblings.join(', ')}`)
  t.ok(Math.min(...siblings) <= 10, `not woken by siblings (${Math.min(...siblings)} context switches)`)

  // Codex writes its sqlite state, sessions and history beside auth.json all the time. With
  // config.toml there too (the usual home), only the two files are watched: not even a wake-up.
  t.ok(inotifyInodes(d.pid).has(fs.statSync(home).ino), 'CODEX_HOME itself is watched while config.toml is missing')
  fs.writeFileSync(path.join(home, 'config.toml'), 'forced_login_method = "chatgpt"\n')
  await nextChange(sub, (s) => s.settings.forcedLoginMethod === 'chatgpt')
  t.equal(await token(c), a.access, 'config.toml read, still served')
  // With both files present the daemon drops its watch on CODEX_HOME (on the trailing re-read of
  // that change): wait for that state rather than a fixed time, which a loaded machine outlasts.
  await until('the daemon no longer watches CODEX_HOME itself', async () => !inotifyInodes(d.pid).has(fs.statSync(home).ino))
  fs.mkdirSync(path.join(home, 'sessions', '2026'), { recursive: true })
  const inside = await fewestWakeups(d.pid, () => {
    for (let i = 0; i < 2000; i++) {
      fs.appendFileSync(path.join(home, 'state_5.sqlite'), 'page'.repeat(64))
      fs.appendFileSync(path.join(home, 'state_5.sqlite-wal'), 'wal')
      fs.appendFileSync(path.join(home, 'sessions', '2026', 'x.jsonl'), `{"i":${i}}\n`)
    }
  })
  t.comment(`daemon wake-ups while Codex-like churn wrote 6000 times inside CODEX_HOME: ${inside.join(', ')}`)
  t.ok(Math.min(...inside) <= 10, `not woken by Codex's own files (${Math.min(...inside)} context switches)`)

  const b = chatgptAuth('idle2')
  renameInto(path.join(home, 'auth.json'), b.text)
  await untilServed(c, b.access, 'a change after the churn')
  t.pass('auth.json still followed')
})
