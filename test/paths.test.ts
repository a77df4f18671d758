import t from 'tap'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  checkRunUserDir,
  computeSocketPath,
  defaultCodexHomeFor,
  givenCodexHome,
  resolveSocketPath,
  restrictedSocketPath,
  SOCKET_PATH_MAX,
  socketIdFor,
  socketPathMax,
  socketPathTooLong,
  type SocketPathInput,
} from '../src/paths.js'

const sha16 = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16)

t.test('computeSocketPath: docs/contract.md#socket-path rules, table', async (t) => {
  const base: SocketPathInput = {
    flag: null,
    env: {},
    codexHome: '/home/u/.codex',
    defaultCodexHome: '/home/u/.codex',
    uid: 1000,
    runUserDirOk: () => false,
  }
  const runOk = (dir: string) => dir === '/run/user/1000'
  const cases: Array<[string, Partial<SocketPathInput>, { path: string; source: string }]> = [
    ['flag wins over everything', { flag: '/x/f.sock', env: { CODEX_AUTHD_SOCK: '/y/e.sock', XDG_RUNTIME_DIR: '/run/x' }, runUserDirOk: runOk }, { path: '/x/f.sock', source: 'flag' }],
    ['env CODEX_AUTHD_SOCK next', { env: { CODEX_AUTHD_SOCK: '/y/e.sock', XDG_RUNTIME_DIR: '/run/x' } }, { path: '/y/e.sock', source: 'env' }],
    ['empty flag counts as unset', { flag: '', env: { CODEX_AUTHD_SOCK: '/y/e.sock' } }, { path: '/y/e.sock', source: 'env' }],
    ['empty CODEX_AUTHD_SOCK counts as unset', { env: { CODEX_AUTHD_SOCK: '' } }, { path: '/home/u/.codex/run/authd.sock', source: 'home' }],
    ['XDG_RUNTIME_DIR, default home -> default.sock', { env: { XDG_RUNTIME_DIR: '/run/x' } }, { path: '/run/x/codex-authd/default.sock', source: 'runtime' }],
    ['XDG_RUNTIME_DIR wins over /run/user', { env: { XDG_RUNTIME_DIR: '/run/x' }, runUserDirOk: runOk }, { path: '/run/x/codex-authd/default.sock', source: 'runtime' }],
    [
      'XDG_RUNTIME_DIR, other home -> 16 hex of sha256',
      { env: { XDG_RUNTIME_DIR: '/run/x' }, codexHome: '/srv/codex-a' },
      { path: `/run/x/codex-authd/${sha16('/srv/codex-a')}.sock`, source: 'runtime' },
    ],
    ['relative XDG_RUNTIME_DIR is ignored', { env: { XDG_RUNTIME_DIR: 'run/x' } }, { path: '/home/u/.codex/run/authd.sock', source: 'home' }],
    ['empty XDG_RUNTIME_DIR, usable /run/user/<uid>', { env: { XDG_RUNTIME_DIR: '' }, runUserDirOk: runOk }, { path: '/run/user/1000/codex-authd/default.sock', source: 'runtime' }],
    [
      '/run/user/<uid> with another home',
      { runUserDirOk: runOk, codexHome: '/tmp/h' },
      { path: `/run/user/1000/codex-authd/${sha16('/tmp/h')}.sock`, source: 'runtime' },
    ],
    ['/run/user/<uid> unusable -> home', { runUserDirOk: () => false }, { path: '/home/u/.codex/run/authd.sock', source: 'home' }],
    ['other uid is asked about its own dir', { uid: 42, runUserDirOk: runOk }, { path: '/home/u/.codex/run/authd.sock', source: 'home' }],
    ['home fallback uses CODEX_HOME', { codexHome: '/srv/c' }, { path: '/srv/c/run/authd.sock', source: 'home' }],
  ]
  for (const [name, over, want] of cases) {
    t.strictSame(computeSocketPath({ ...base, ...over }), want, name)
  }
  t.test('runUserDirOk gets /run/user/<uid>', async (t) => {
    const asked: string[] = []
    computeSocketPath({ ...base, uid: 4242, runUserDirOk: (d) => (asked.push(d), false) })
    t.strictSame(asked, ['/run/user/4242'])
    asked.length = 0
    computeSocketPath({ ...base, env: { XDG_RUNTIME_DIR: '/r' }, runUserDirOk: (d) => (asked.push(d), false) })
    t.strictSame(asked, [], 'not consulted when XDG_RUNTIME_DIR is set')
  })
})

t.test('socketIdFor', async (t) => {
  t.equal(socketIdFor('/a/.codex', '/a/.codex'), 'default')
  t.equal(socketIdFor('/b', '/a/.codex'), sha16('/b'))
  t.match(socketIdFor('/b', '/a/.codex'), /^[0-9a-f]{16}$/)
  t.not(socketIdFor('/b/', '/a/.codex'), socketIdFor('/b', '/a/.codex'), 'exact path string (callers normalize: givenCodexHome)')
})

t.test('restrictedSocketPath: beside the main socket', async (t) => {
  t.equal(restrictedSocketPath('/run/user/1000/codex-authd/default.sock'), '/run/user/1000/codex-authd/default.restricted.sock')
  t.equal(restrictedSocketPath('/home/a/.codex/run/authd.sock'), '/home/a/.codex/run/authd.restricted.sock')
  t.equal(restrictedSocketPath('/tmp/x/agent'), '/tmp/x/agent.restricted', 'a path not ending in .sock gets a suffix')
  t.equal(restrictedSocketPath('/tmp/x/.sock'), '/tmp/x/.restricted.sock')
  t.equal(path.dirname(restrictedSocketPath('/a/b/c.sock')), '/a/b', 'same directory: the same directory rules cover it')
})

t.test('socket path length limits', async (t) => {
  t.equal(SOCKET_PATH_MAX.linux, 107)
  t.equal(SOCKET_PATH_MAX.darwin, 104)
  t.equal(socketPathMax('linux'), 107)
  t.equal(socketPathMax('darwin'), 104)
  t.equal(socketPathMax('freebsd'), 104, 'other platforms: the smaller limit')
  const cases: Array<[number, string, boolean]> = [
    [107, 'linux', false],
    [108, 'linux', true],
    [104, 'darwin', false],
    [105, 'darwin', true],
  ]
  for (const [len, platform, want] of cases) {
    t.equal(socketPathTooLong('/' + 'a'.repeat(len - 1), platform), want, `${len} bytes on ${platform}`)
  }
  // bytes, not characters: 36 three-byte characters = 108 bytes
  t.equal(socketPathTooLong('€'.repeat(36), 'linux'), true, 'counts UTF-8 bytes')
})

t.test('checkRunUserDir (I/O edge)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paths-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const uid = process.getuid!()
  fs.chmodSync(dir, 0o700)
  t.equal(checkRunUserDir(dir, uid), true, '0700, ours')
  t.equal(checkRunUserDir(dir, uid + 1), false, 'owned by someone else')
  fs.chmodSync(dir, 0o750)
  t.equal(checkRunUserDir(dir, uid), false, 'group bits')
  fs.chmodSync(dir, 0o701)
  t.equal(checkRunUserDir(dir, uid), false, 'other bits')
  fs.chmodSync(dir, 0o700)
  t.equal(checkRunUserDir(path.join(dir, 'missing'), uid), false, 'missing')
  fs.writeFileSync(path.join(dir, 'f'), '', { mode: 0o600 })
  t.equal(checkRunUserDir(path.join(dir, 'f'), uid), false, 'a file')
})

// The id is named after CODEX_HOME as given, never symlink-resolved (docs/contract.md#socket-path):
// a symlinked home relinked to another profile keeps its socket, and the daemon and its clients
// agree whatever the link points to at the moment each of them looks.
t.test('CODEX_HOME as given: normalized, symlinks kept', async (t) => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'paths-')))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const real = path.join(dir, 'real')
  fs.mkdirSync(real)
  fs.symlinkSync(real, path.join(dir, 'link'))
  t.equal(defaultCodexHomeFor({ HOME: '/home/u' }), '/home/u/.codex')
  t.equal(defaultCodexHomeFor({}), path.join(os.homedir(), '.codex'), 'HOME unset -> os.homedir()')
  t.equal(givenCodexHome({ CODEX_HOME: path.join(dir, 'link') }), path.join(dir, 'link'), 'a symlink stays a symlink')
  t.equal(givenCodexHome({ CODEX_HOME: path.join(dir, 'nope', '..', 'x') + '/' }), path.join(dir, 'x'), 'normalized: .., trailing /')
  t.equal(givenCodexHome({ CODEX_HOME: 'rel' }), path.resolve('rel'), 'relative: against the working directory')
  t.equal(givenCodexHome({ CODEX_HOME: path.join(dir, 'link') }, path.join(dir, 'missing')), path.join(dir, 'missing'), 'flag wins')
  t.equal(givenCodexHome({ CODEX_HOME: '', HOME: dir }), path.join(dir, '.codex'), 'empty CODEX_HOME -> ~/.codex')
  t.notOk(fs.existsSync(path.join(dir, '.codex')), 'nothing created')

  t.test('resolveSocketPath: a symlinked ~/.codex is the default whatever it links to', async (t) => {
    fs.mkdirSync(path.join(dir, 'home'))
    const dotCodex = path.join(dir, 'home', '.codex')
    fs.symlinkSync(real, dotCodex)
    const env = { HOME: path.join(dir, 'home'), XDG_RUNTIME_DIR: '/run/x' }
    t.strictSame(resolveSocketPath({ env }), { path: '/run/x/codex-authd/default.sock', source: 'runtime', codexHome: dotCodex })
    t.equal(resolveSocketPath({ env: { ...env, CODEX_HOME: dotCodex + '/' } }).path, '/run/x/codex-authd/default.sock', 'spelled out')
    // Obsolete since the rule names the home as given: the link's target, or another link to it,
    // was `default` too while ~/.codex pointed there, and silently changed socket on a relink.
    t.equal(resolveSocketPath({ env, codexHome: real }).path, `/run/x/codex-authd/${sha16(real)}.sock`, 'its target by its own name: its own socket')
    t.equal(resolveSocketPath({ env: { ...env, CODEX_HOME: path.join(dir, 'link') } }).path, `/run/x/codex-authd/${sha16(path.join(dir, 'link'))}.sock`, 'another link to it')
    t.equal(resolveSocketPath({ env, codexHome: dir }).path, `/run/x/codex-authd/${sha16(dir)}.sock`)
    t.equal(resolveSocketPath({ env: { HOME: env.HOME }, uid: 999_999 }).path, path.join(dotCodex, 'run', 'authd.sock'), 'no runtime dir: inside the home, through the link')

    const before = resolveSocketPath({ env: { ...env, CODEX_HOME: path.join(dir, 'link') } }).path
    const other = path.join(dir, 'other')
    fs.mkdirSync(other)
    fs.symlinkSync(other, path.join(dir, 'link.tmp'))
    fs.renameSync(path.join(dir, 'link.tmp'), path.join(dir, 'link'))
    t.equal(resolveSocketPath({ env: { ...env, CODEX_HOME: path.join(dir, 'link') } }).path, before, 'relinked: the same socket')
    fs.symlinkSync(other, path.join(dir, 'home', '.codex.tmp'))
    fs.renameSync(path.join(dir, 'home', '.codex.tmp'), dotCodex)
    t.equal(resolveSocketPath({ env }).path, '/run/x/codex-authd/default.sock', '~/.codex relinked: still default')
  })
})
