// Hostile files (issue 7, docs/watching.md#files-the-daemon-cannot-use): auth.json or config.toml
// that is binary, huge, truncated, a directory, a dangling or looping symlink, a device, a FIFO,
// world-readable or unreadable, and a CODEX_HOME removed while the daemon runs. Each gives a clear
// `status` problem (code, file, line and column where they apply), none crashes or hangs the
// daemon, and none is ever written: bytes, inode, mode and mtime are compared before and after,
// including after the daemon has run a while (RPCs, SIGHUP, reloads) and stopped. The mode-000
// cases run the daemon as an unprivileged user (as root, EACCES never happens). Keys and tokens
// here are fake and never printed.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { makeHome, tempDir } from './support/daemon.js'
import {
  Wire,
  ensureTestUser,
  launchDaemon as launch,
  publicTempDir,
  reliabilityComment,
  type LaunchedDaemon as Daemonish,
  type TestUser,
} from './support/reliability.js'
import { until } from './support/until.js'

const AUTH_KEY = `sk-fake-hostile-${randomBytes(10).toString('hex')}`
const GOOD_AUTH = JSON.stringify({ OPENAI_API_KEY: AUTH_KEY, tokens: null, last_refresh: null }, null, 2)
const t0 = Date.now()
let cases = 0
const failedCases: string[] = []

// ----------------------------------------------------------------------------- file fingerprints

interface Fingerprint {
  path: string
  kind: string
  ino: number
  mode: number
  uid: number
  size: number
  mtimeMs: number
  sha256: string | null
  link: string | null
}

/** What a path is, without ever opening a FIFO or device, nor reading a huge (sparse) file whole. */
function fingerprint(p: string): Fingerprint | null {
  let st: fs.Stats
  try {
    st = fs.lstatSync(p)
  } catch {
    return null
  }
  const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : 'other'
  let sha256: string | null = null
  if (kind === 'file' && st.size <= 4 * 1024 * 1024 && (st.mode & 0o444) !== 0) sha256 = createHash('sha256').update(fs.readFileSync(p)).digest('hex')
  if (kind === 'file' && st.size <= 4 * 1024 * 1024 && (st.mode & 0o444) === 0 && process.getuid?.() === 0) {
    sha256 = createHash('sha256').update(fs.readFileSync(p)).digest('hex') // root reads mode 000
  }
  if (kind === 'dir') sha256 = fs.readdirSync(p).sort().join('/')
  return {
    path: p,
    kind,
    ino: st.ino,
    mode: st.mode & 0o7777,
    uid: st.uid,
    size: st.size,
    mtimeMs: st.mtimeMs,
    sha256,
    link: kind === 'symlink' ? fs.readlinkSync(p) : null,
  }
}

/** Files in the home the daemon may create (its lock) and must not (temp files, a refresh journal left behind). */
function strayFiles(home: string): string[] {
  let names: string[] = []
  try {
    names = fs.readdirSync(home)
  } catch {
    return []
  }
  return names.filter((n) => n.startsWith('.auth-') || n === 'authd.pending.json' || n.startsWith('.config'))
}

// ------------------------------------------------------------------------------------- daemons

let user: TestUser | null = null
const needUser = process.getuid?.() === 0

/** A home the unprivileged user owns (0700), in a world-traversable parent, and its socket. */
function userHome(u: TestUser): { home: string; socket: string } {
  const parent = publicTempDir('cad-rel-h-')
  const home = path.join(parent, 'home')
  const sdir = path.join(parent, 'run')
  for (const d of [home, sdir]) {
    fs.mkdirSync(d, { mode: 0o700 })
    fs.chmodSync(d, 0o700)
    fs.chownSync(d, u.uid, u.gid)
  }
  return { home, socket: path.join(sdir, 's.sock') }
}

async function call(d: Daemonish, method: string, params?: unknown): Promise<any> {
  const c = await Wire.connect(d.socket)
  try {
    return await c.call(method, params)
  } finally {
    c.close()
  }
}

/**
 * Exercise the daemon for a while: RPCs of every kind that reads, a SIGHUP (config re-read), and a
 * reload triggered by a file event in the home; then status must still answer.
 */
async function runAWhile(d: Daemonish, home: string, touchConfig: boolean): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await call(d, 'status')
    await call(d, 'getAuth', { minValiditySeconds: 0 })
    await call(d, 'refresh')
  }
  const hups = d.logs.filter((l) => l.includes('SIGHUP')).length
  d.sighup()
  await until('SIGHUP handled', () => d.logs.filter((l) => l.includes('SIGHUP')).length > hups)
  if (touchConfig) {
    // A config change makes the daemon re-read both files.
    const cfg = path.join(home, 'config.toml')
    fs.writeFileSync(cfg, '# touched by the reliability suite\n')
    await call(d, 'status')
    fs.rmSync(cfg)
  }
  await call(d, 'status')
}

interface Case {
  name: string
  /** creates the hostile file(s); returns the paths whose fingerprint must not change */
  setup(home: string): string[]
  /** the problem status must show */
  problem: { code: string; file: (home: string) => string; message: RegExp; lineColumn?: boolean }
  /** true: the file holds the only credential, so nothing can be served */
  authCase: boolean
  unprivileged?: boolean
}

function authPath(home: string): string {
  return path.join(home, 'auth.json')
}
function configPath(home: string): string {
  return path.join(home, 'config.toml')
}

function writeGoodAuth(home: string): void {
  fs.writeFileSync(authPath(home), GOOD_AUTH, { mode: 0o600 })
}

const GOOD_JSON = JSON.stringify(
  { OPENAI_API_KEY: AUTH_KEY, tokens: { id_token: 'x.y.z', access_token: 'a.b.c', refresh_token: 'rt-fake', account_id: 'acc' }, last_refresh: '2026-01-01T00:00:00Z' },
  null,
  2,
)

const CASES: Case[] = [
  {
    name: 'auth.json: binary (not UTF-8)',
    setup: (h) => (fs.writeFileSync(authPath(h), Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x80, 0xc3, 0x28]), { mode: 0o600 }), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /not valid UTF-8/ },
    authCase: true,
  },
  {
    name: 'auth.json: binary that is UTF-8 (NULs and control characters)',
    setup: (h) => (fs.writeFileSync(authPath(h), '\u0000\u0001\u0002{"OPENAI_API_KEY":1}', { mode: 0o600 }), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /line 1 column \d+/, lineColumn: true },
    authCase: true,
  },
  {
    name: 'auth.json: huge (2 MiB of real bytes)',
    setup: (h) => (fs.writeFileSync(authPath(h), GOOD_JSON + ' '.repeat(2 * 1024 * 1024), { mode: 0o600 }), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /larger than 1048576 bytes/ },
    authCase: true,
  },
  {
    name: 'auth.json: huge and sparse (8 GiB)',
    setup: (h) => {
      const fd = fs.openSync(authPath(h), 'w', 0o600)
      fs.writeSync(fd, '{"OPENAI_API_KEY":"')
      fs.ftruncateSync(fd, 8 * 1024 ** 3)
      fs.closeSync(fd)
      return [authPath(h)]
    },
    problem: { code: 'auth_unreadable', file: authPath, message: /larger than 1048576 bytes \(8589934592 bytes\)/ },
    authCase: true,
  },
  {
    name: 'auth.json: truncated',
    setup: (h) => (fs.writeFileSync(authPath(h), GOOD_JSON.slice(0, Math.floor(GOOD_JSON.length / 2)), { mode: 0o600 }), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /line \d+ column \d+/, lineColumn: true },
    authCase: true,
  },
  {
    name: 'auth.json: a directory',
    setup: (h) => (fs.mkdirSync(authPath(h), { mode: 0o700 }), fs.writeFileSync(path.join(authPath(h), 'inside'), 'x'), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /not a regular file \(a directory\)/ },
    authCase: true,
  },
  {
    name: 'auth.json: a dangling symlink (not logged in, like Codex, and a problem says why)',
    setup: (h) => (fs.symlinkSync(path.join(h, 'nowhere', 'auth.json'), authPath(h)), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /is a symlink to .*nowhere\/auth\.json, which does not exist/ },
    authCase: true,
  },
  {
    name: 'auth.json: a symlink loop',
    setup: (h) => (fs.symlinkSync('auth2.json', authPath(h)), fs.symlinkSync('auth.json', path.join(h, 'auth2.json')), [authPath(h), path.join(h, 'auth2.json')]),
    problem: { code: 'auth_unreadable', file: authPath, message: /too many levels of symbolic links/ },
    authCase: true,
  },
  {
    name: 'auth.json: a symlink to /dev/zero (endless)',
    setup: (h) => (fs.symlinkSync('/dev/zero', authPath(h)), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: () => '/dev/zero', message: /not a regular file \(a character device\)/ },
    authCase: true,
  },
  {
    name: 'auth.json: a FIFO (no writer: must not hang)',
    setup: (h) => (execFileSync('mkfifo', ['-m', '600', authPath(h)]), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /not a regular file \(a FIFO\)/ },
    authCase: true,
  },
  {
    name: 'auth.json: world-readable (0644, not chmod-ed by the daemon)',
    setup: (h) => (fs.writeFileSync(authPath(h), GOOD_AUTH), fs.chmodSync(authPath(h), 0o644), [authPath(h)]),
    problem: { code: 'auth_permissions', file: authPath, message: /readable by group or other \(mode 644\).*chmod 600/ },
    authCase: false,
  },
  {
    name: 'auth.json: mode 000, owned by root (daemon unprivileged)',
    setup: (h) => (fs.writeFileSync(authPath(h), GOOD_AUTH), fs.chmodSync(authPath(h), 0o000), [authPath(h)]),
    problem: { code: 'auth_unreadable', file: authPath, message: /permission denied/ },
    authCase: true,
    unprivileged: true,
  },
  {
    name: 'config.toml: binary (not UTF-8)',
    setup: (h) => (writeGoodAuth(h), fs.writeFileSync(configPath(h), Buffer.from([0x80, 0x81, 0xff, 0x0a, 0xc0])), [configPath(h), authPath(h)]),
    problem: { code: 'config_invalid', file: configPath, message: /not valid UTF-8/ },
    authCase: false,
  },
  {
    name: 'config.toml: huge (2 MiB)',
    setup: (h) => (writeGoodAuth(h), fs.writeFileSync(configPath(h), '# x\n'.repeat(512 * 1024 + 1)), [configPath(h), authPath(h)]),
    problem: { code: 'config_invalid', file: configPath, message: /larger than 1048576 bytes/ },
    authCase: false,
  },
  {
    name: 'config.toml: truncated',
    setup: (h) => (writeGoodAuth(h), fs.writeFileSync(configPath(h), 'model = "o3"\npreferred_auth_method = "api'), [configPath(h), authPath(h)]),
    problem: { code: 'config_invalid', file: configPath, message: /line 2 column \d+/, lineColumn: true },
    authCase: false,
  },
  {
    name: 'config.toml: a directory',
    setup: (h) => (writeGoodAuth(h), fs.mkdirSync(configPath(h)), [configPath(h), authPath(h)]),
    problem: { code: 'config_invalid', file: configPath, message: /not a regular file \(a directory\)/ },
    authCase: false,
  },
  {
    name: 'config.toml: a dangling symlink (defaults, and a problem says why)',
    setup: (h) => (writeGoodAuth(h), fs.symlinkSync('/nonexistent/config.toml', configPath(h)), [configPath(h), authPath(h)]),
    problem: { code: 'config_invalid', file: configPath, message: /is a symlink to \/nonexistent\/config\.toml, which does not exist; using defaults/ },
    authCase: false,
  },
  {
    name: 'config.toml: a FIFO (no writer: must not hang)',
    setup: (h) => (writeGoodAuth(h), execFileSync('mkfifo', ['-m', '600', configPath(h)]), [configPath(h), authPath(h)]),
    problem: { code: 'config_invalid', file: configPath, message: /not a regular file \(a FIFO\)/ },
    authCase: false,
  },
  {
    name: 'config.toml: mode 000, owned by root (daemon unprivileged)',
    setup: (h) => (writeGoodAuth(h), fs.writeFileSync(configPath(h), 'model = "o3"\n'), fs.chmodSync(configPath(h), 0o000), [configPath(h), authPath(h)]),
    problem: { code: 'config_invalid', file: configPath, message: /permission denied/ },
    authCase: false,
    unprivileged: true,
  },
]

t.before(() => {
  if (needUser) user = ensureTestUser()
})

for (const c of CASES) {
  t.test(c.name, async (t) => {
    countCase(t)
    let home: string
    let d: Daemonish
    if (c.unprivileged && needUser) {
      if (user === null) {
        t.fail('cannot create the unprivileged test user (useradd codexauthd-test): permission checks would prove nothing as root')
        return
      }
      const u = userHome(user)
      home = u.home
      // The hostile file is root's (created by us); a good auth.json beside it is the user's.
      const watched = c.setup(home)
      if (c.name.startsWith('config.toml')) fs.chownSync(authPath(home), user.uid, user.gid)
      const before = watched.map(fingerprint)
      d = await launch(t, home, { as: user, socket: u.socket })
      await check(t, c, d, home, watched, before)
      return
    }
    home = await makeHome()
    const watched = c.setup(home)
    const before = watched.map(fingerprint)
    const started = Date.now()
    d = await launch(t, home)
    t.ok(Date.now() - started < 10_000, 'started without hanging')
    await check(t, c, d, home, watched, before)
  })
}

async function check(t: Test, c: Case, d: Daemonish, home: string, watched: string[], before: (Fingerprint | null)[]): Promise<void> {
  // A daemon stuck on the hostile file would leave this unanswered (call's own 10 s deadline).
  const st = (await call(d, 'status')).result
  t.ok(st, 'status answers')
  const problems: any[] = st?.problems ?? []
  const p = problems.find((x) => x.code === c.problem.code)
  t.ok(p, `problem ${c.problem.code}`)
  if (p) {
    t.equal(p.file, c.problem.file(home), 'names the file')
    t.match(p.message, c.problem.message, 'says why')
    if (c.problem.lineColumn) {
      t.ok(Number.isInteger(p.line) && p.line >= 1 && Number.isInteger(p.column) && p.column >= 1, `line ${p.line} column ${p.column}`)
    } else {
      t.equal(p.line, null, 'no line for a file-level problem')
    }
    t.notOk(JSON.stringify(st).includes(AUTH_KEY), 'status holds no secret')
  }
  const g = await call(d, 'getAuth')
  if (c.authCase) {
    t.equal(st?.loggedIn, false, 'not logged in: nothing can be served')
    t.equal(g.error?.code, -32006, 'getAuth: -32006 store_unreadable')
    t.equal(g.error?.data?.reason, 'store_unreadable')
    t.equal(g.error?.data?.file, c.problem.file(home), 'getAuth names the file')
  } else {
    t.equal(g.result?.token, AUTH_KEY, 'the credential in auth.json is still served')
  }

  await runAWhile(d, home, !c.name.startsWith('config.toml'))
  t.ok(d.alive(), 'daemon still running after a while')
  const mid = watched.map(fingerprint)
  t.same(mid, before, 'nothing was written (bytes, inode, mode, mtime), while running')
  const exit = await d.stop()
  t.same(exit, { code: 0, signal: null }, `clean stop${exit.code === 0 ? '' : ` (stderr: ${d.stderr.join('').trim()}; last log: ${d.logs.at(-1)})`}`)
  t.same(watched.map(fingerprint), before, 'nothing was written, after stop')
  t.same(strayFiles(home), [], 'no temp or park files left')
  t.notOk([...d.logs, ...d.stderr].join('\n').includes(AUTH_KEY), 'the key never appears in the output')
}

/** Every case counts toward the figures; a failed one is named in them. */
function countCase(t: Test): void {
  cases++
  t.teardown(() => {
    if (!t.passing()) failedCases.push(t.name)
  })
}

t.test('auth.json replaced by hostile files while running: last good credential kept, never overwritten', async (t) => {
  countCase(t)
  const home = await makeHome()
  writeGoodAuth(home)
  const d = await launch(t, home)
  t.equal((await call(d, 'getAuth')).result?.token, AUTH_KEY, 'serving the key')
  const file = authPath(home)
  // Each replaces auth.json at once (rename over it), except the directory, which cannot be.
  const viaRename = (make: (tmp: string) => void) => (): void => {
    const tmp = path.join(home, 'incoming.tmp')
    make(tmp)
    fs.renameSync(tmp, file)
  }
  // gap: the replacement is two steps (a file cannot be renamed over by a directory), so the
  // daemon may see auth.json absent in between: after a deletion there is no last good credential.
  const variants: Array<{ name: string; replace: () => void; message: RegExp; gap?: true }> = [
    { name: 'truncated', replace: viaRename((p) => fs.writeFileSync(p, GOOD_AUTH.slice(0, 20), { mode: 0o600 })), message: /line \d+ column \d+/ },
    { name: 'binary', replace: viaRename((p) => fs.writeFileSync(p, randomBytes(512), { mode: 0o600 })), message: /not valid UTF-8|line \d+ column \d+/ },
    { name: 'FIFO', replace: viaRename((p) => execFileSync('mkfifo', ['-m', '600', p])), message: /a FIFO/ },
    { name: 'symlink loop', replace: viaRename((p) => fs.symlinkSync('auth.json', p)), message: /too many levels of symbolic links/ },
    { name: '/dev/zero', replace: viaRename((p) => fs.symlinkSync('/dev/zero', p)), message: /a character device/ },
    { name: 'directory', replace: () => (fs.rmSync(file), fs.mkdirSync(file)), message: /a directory/, gap: true },
  ]
  for (const v of variants) {
    fs.rmSync(file, { recursive: true, force: true })
    writeGoodAuth(home)
    await until('the good file served again', async () => {
      const s = (await call(d, 'status')).result
      return s?.loggedIn === true && !s.problems.some((p: any) => p.code === 'auth_unreadable')
    })
    v.replace()
    const before = fingerprint(file)
    const p = await until(`the ${v.name} auth.json reported`, async () => {
      const s = (await call(d, 'status')).result
      return s?.problems.find((x: any) => x.code === 'auth_unreadable')
    })
    t.match(p.message, v.message, `${v.name}: says why`)
    const g = await call(d, 'getAuth')
    if (v.gap && g.result === undefined) {
      // It saw the deletion: nothing to serve, and the error names the unusable file.
      t.equal(g.error?.code, -32006, `${v.name}: after the gap, getAuth says the file is unusable`)
      t.equal(g.error?.data?.file, file, `${v.name}: and names it`)
    } else t.equal(g.result?.token, AUTH_KEY, `${v.name}: the last good credential is still served`)
    await call(d, 'refresh')
    t.same(fingerprint(file), before, `${v.name}: not overwritten`)
  }
  t.ok(d.alive(), 'daemon still running')
  t.same(strayFiles(home), [], 'no temp or park files left')
  t.notOk([...d.logs, ...d.stderr].join('\n').includes(AUTH_KEY), 'the key never appears in the output')
})

t.test('auth.json churned between a file and symlinks as fast as possible: the daemon survives every race', async (t) => {
  countCase(t)
  // A reload that lstat()s a symlink which a rename then replaces before its readlink() got
  // EINVAL; the rejection went unhandled and ended the daemon (in 3 of 4 scratch runs of this loop).
  const home = await makeHome()
  writeGoodAuth(home)
  const d = await launch(t, home)
  const file = authPath(home)
  const tmp = path.join(home, 'incoming.tmp')
  const ROUNDS = 150
  let answered = 0
  for (let i = 0; i < ROUNDS && d.alive(); i++) {
    const kind = i % 4
    if (kind === 0) fs.symlinkSync('auth.json', tmp)
    else if (kind === 1) fs.symlinkSync('/dev/zero', tmp)
    else if (kind === 2) fs.symlinkSync(path.join(home, 'nowhere.json'), tmp)
    else fs.writeFileSync(tmp, GOOD_AUTH, { mode: 0o600 })
    fs.renameSync(tmp, file)
    fs.rmSync(file, { force: true })
    fs.writeFileSync(tmp, GOOD_AUTH, { mode: 0o600 })
    fs.renameSync(tmp, file)
    if ((await call(d, 'status')).result) answered++
  }
  t.ok(d.alive(), `daemon still running after ${ROUNDS * 2} replacements`)
  t.equal(answered, ROUNDS, 'status answered every round')
  await until('the good file served in the end', async () => (await call(d, 'getAuth')).result?.token === AUTH_KEY)
  t.same(await d.stop(), { code: 0, signal: null }, `clean stop${d.stderr.length ? ` (stderr: ${d.stderr.join('').trim()})` : ''}`)
})

t.test('CODEX_HOME removed while running: recreated (0700) with its lock; status answers', async (t) => {
  countCase(t)
  const parent = tempDir('cad-rel-gone-')
  const home = path.join(parent, 'home')
  fs.mkdirSync(home, { mode: 0o700 })
  writeGoodAuth(home)
  const d = await launch(t, home)
  t.equal((await call(d, 'status')).result?.loggedIn, true, 'logged in at first')
  fs.rmSync(home, { recursive: true, force: true })
  await until('the daemon to recreate the home', () => d.logs.some((l) => l.includes('"CODEX_HOME was removed; recreated it"')))
  const st = fs.statSync(home)
  t.ok(st.isDirectory(), 'recreated')
  t.equal(st.mode & 0o777, 0o700, 'mode 0700')
  t.ok(fs.existsSync(path.join(home, 'authd.lock')), 'its lock is back')
  const s = await until('status without the removed credential', async () => {
    const r = (await call(d, 'status')).result
    return r?.loggedIn === false ? r : undefined
  })
  t.equal(s.settings.codexHome, home, 'same home')
  // The watcher still works on the recreated home.
  writeGoodAuth(home)
  await until('a new auth.json in the recreated home served', async () => (await call(d, 'getAuth')).result?.token === AUTH_KEY)
  t.pass('a new auth.json in the recreated home is picked up')
  // A second daemon for the same home is refused: the recreated lock is held.
  const second = await launch(t, home, { waitReady: false })
  const ex = await second.exited
  t.equal(ex.code, 3, 'a second daemon for the recreated home exits 3 (the lock is held)')
  t.ok(d.alive(), 'daemon still running')
  t.same(await d.stop(), { code: 0, signal: null }, 'clean stop')
})

t.test('figures', async (t) => {
  // What the figures report, asserted: every case ran (the table's and the three running-daemon
  // tests above), none failed, and as root the unprivileged user existed for the mode-000 cases.
  t.equal(cases, CASES.length + 3, `every case ran (${cases})`)
  t.same(failedCases, [], 'no case failed')
  t.ok(!needUser || user !== null, 'running as root, the unprivileged test user was available')
  reliabilityComment(t, {
    file: 'reliability-hostile-files',
    cases,
    failures: failedCases.length,
    timeMs: Date.now() - t0,
    unprivilegedUser: user ? user.name : needUser ? 'unavailable' : 'already unprivileged',
  })
})
