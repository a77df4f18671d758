// The client checks whom it talks to, and the daemon where it binds (issue 13 finding 4,
// docs/contract.md#whom-the-client-talks-to). Tests run as root: the other users are the test user
// (codexauthd-test) and nobody. A fake daemon, run as one of them, answers getAuth with its own
// "key" and reports every byte it receives, so "nothing was sent" is observed, not assumed.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { DAEMON_BIN, makeHome, runCli, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { asUser, ensureTestUser, publicScript, publicTempDir, runNodeAs, type TestUser } from './support/reliability.js'
import { until } from './support/until.js'
import { judgeSocket, allowedOwnerFrom, type OwnerStat } from '../src/os/socket-owner.js'
import { peerCredentials } from '../src/os/peercred.js'

const amRoot = process.getuid?.() === 0
const REAL_KEY = `sk-real-root-${randomBytes(12).toString('hex')}`
const FAKE_KEY = `sk-fake-other-${randomBytes(12).toString('hex')}`

/** Listens on argv[2], answers every request with argv[3] as an API key, prints `got N` per chunk. */
const FAKE_DAEMON = `'use strict'
const net = require('node:net')
const srv = net.createServer((s) => {
  let buf = ''
  s.setEncoding('utf8')
  s.on('data', (d) => {
    process.stdout.write('got ' + Buffer.byteLength(d) + '\\n')
    buf += d
    let i
    while ((i = buf.indexOf('\\n')) !== -1) {
      const m = JSON.parse(buf.slice(0, i))
      buf = buf.slice(i + 1)
      s.write(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { mode: 'apikey', token: process.argv[3], accountId: null, expiresAt: null, email: null, planType: null } }) + '\\n')
    }
  })
  s.on('error', () => {})
})
srv.listen(process.argv[2], () => process.stdout.write('ready\\n'))
process.stdin.on('end', () => process.exit(0)).resume()
`

interface Fake {
  proc: ChildProcess
  out: () => string
}

let user: TestUser | null = null
const NOBODY: TestUser = { name: 'nobody', uid: 65534, gid: 65534 }
let fakeScript = ''

t.before(() => {
  user = ensureTestUser()
  fakeScript = publicScript('cad-peer-fake-', 'fake.cjs', FAKE_DAEMON)
})

/**
 * A fake daemon run as `as`, bound in a directory of its own, then moved (as root) to `socketPath`
 * inside `runtimeDir/codex-authd`, which belongs to `owner`: the layout another user's
 * XDG_RUNTIME_DIR has. A rename keeps the socket bound, so the peer stays `as`.
 */
async function fakeDaemonAt(t: Test, socketPath: string, as: TestUser, owner: TestUser): Promise<Fake> {
  const own = publicTempDir('cad-peer-bind-')
  fs.chownSync(own, as.uid, as.gid)
  const bindAt = path.join(own, 'f.sock')
  const proc = spawn(asUser(as)[0]!, [...asUser(as).slice(1), process.execPath, fakeScript, bindAt, FAKE_KEY], { stdio: ['pipe', 'pipe', 'inherit'], cwd: '/' })
  t.teardown(() => {
    proc.kill('SIGKILL')
  })
  let out = ''
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  await until('fake daemon ready', () => out.includes('ready'), 20_000)
  fs.mkdirSync(path.dirname(socketPath), { recursive: true })
  fs.renameSync(bindAt, socketPath)
  fs.chownSync(socketPath, owner.uid, owner.gid)
  fs.chmodSync(path.dirname(socketPath), 0o700)
  fs.chownSync(path.dirname(socketPath), owner.uid, owner.gid)
  return { proc, out: () => out }
}

/** An XDG_RUNTIME_DIR that belongs to `owner`, and the socket path the rules compute in it. */
function foreignRuntime(owner: TestUser): { runtime: string; home: string; socket: string } {
  const runtime = publicTempDir('cad-peer-rt-')
  fs.chmodSync(runtime, 0o700)
  fs.chownSync(runtime, owner.uid, owner.gid)
  const home = tempDir('cad-peer-h-')
  return { runtime, home, socket: path.join(runtime, 'codex-authd', 'default.sock') }
}

const skipUnlessRoot = amRoot ? false : 'needs root to act as other users'

// -------------------------------------------------------------------------------- the rules

t.test('judgeSocket: owners, modes and when the peer must be asked', async (t) => {
  const st = (uid: number, mode: number, kind: OwnerStat['kind']): OwnerStat => ({ uid, mode, kind })
  const me = 1000
  const base = { socketPath: '/run/user/1000/codex-authd/default.sock', me, allowed: null as number | null }
  const ok = judgeSocket({ ...base, dir: st(me, 0o40700, 'directory'), socket: st(me, 0o140600, 'socket') })
  t.strictSame(ok, { ok: true, peerUids: null }, 'ours in a private directory: settled without asking the peer')
  t.strictSame(judgeSocket({ ...base, dir: st(0, 0o40755, 'directory'), socket: st(0, 0o140666, 'socket') }), { ok: true, peerUids: null }, "root's socket in root's directory")
  const foreignDir = judgeSocket({ ...base, dir: st(1001, 0o40700, 'directory'), socket: st(1001, 0o140600, 'socket') })
  t.match(foreignDir, { ok: false, owner: 1001, what: 'directory' }, "another user's directory is refused first")
  t.match(judgeSocket({ ...base, dir: st(me, 0o40700, 'directory'), socket: st(1001, 0o140600, 'socket') }), { ok: false, owner: 1001, what: 'socket' })
  t.match(judgeSocket({ ...base, dir: st(me, 0o40770, 'directory'), socket: st(me, 0o140600, 'socket') }), { ok: false, owner: me, problem: /writable by group or other.*chmod go-w/ })
  t.match(judgeSocket({ ...base, dir: st(0, 0o41777, 'directory'), socket: st(me, 0o140600, 'socket') }), { ok: false, problem: /writable/ }, 'a sticky /tmp is still a shared directory')
  t.match(judgeSocket({ ...base, dir: st(me, 0o40700, 'directory'), socket: st(me, 0o120777, 'symlink') }), { ok: false, problem: /symlink/ })
  t.strictSame(judgeSocket({ ...base, dir: st(me, 0o40700, 'directory'), socket: null }), { ok: true, peerUids: null }, 'no socket: the connect reports it')
  const shared = judgeSocket({ ...base, allowed: 1001, dir: st(1001, 0o40700, 'directory'), socket: st(1001, 0o140600, 'socket') })
  t.strictSame(shared, { ok: true, peerUids: [me, 0, 1001] }, 'allowed owner: the peer must be asked')
})

t.test('CODEX_AUTH_ALLOW_SOCKET_OWNER: a uid or a user name', async (t) => {
  const passwd = () => 'root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n'
  t.equal(allowedOwnerFrom({}, passwd), null)
  t.equal(allowedOwnerFrom({ CODEX_AUTH_ALLOW_SOCKET_OWNER: '' }, passwd), null)
  t.equal(allowedOwnerFrom({ CODEX_AUTH_ALLOW_SOCKET_OWNER: '1234' }, passwd), 1234)
  t.equal(allowedOwnerFrom({ CODEX_AUTH_ALLOW_SOCKET_OWNER: 'alice' }, passwd), 1001)
  t.throws(() => allowedOwnerFrom({ CODEX_AUTH_ALLOW_SOCKET_OWNER: 'bob' }, passwd), /no such user/)
})

t.test('peerCredentials: SO_PEERCRED gives both ends the other one', async (t) => {
  const dir = tempDir('cad-peer-pc-')
  const sock = path.join(dir, 'p.sock')
  const seen = new Promise<ReturnType<typeof peerCredentials>>((resolve) => {
    const srv = net.createServer((s) => {
      resolve(peerCredentials(s))
      s.destroy()
      srv.close()
    })
    srv.listen(sock, () => net.connect(sock).on('error', () => {}))
  })
  const cred = await seen
  t.equal(cred?.pid, process.pid, 'the peer pid is ours')
  t.equal(cred?.uid, process.getuid!(), 'the peer uid is ours')
  t.equal(cred?.exe, fs.realpathSync(process.execPath), 'the executable, from /proc/<pid>/exe')
})

// -------------------------------------------------------------------------- the client refuses

t.test("root with another user's XDG_RUNTIME_DIR: nothing sent to that user's fake daemon", { skip: skipUnlessRoot }, async (t) => {
  const other = user!
  const { runtime, home, socket } = foreignRuntime(other)
  const fake = await fakeDaemonAt(t, socket, other, other)
  const env = { HOME: home, XDG_RUNTIME_DIR: runtime }
  const login = await runCli(['login', '--with-api-key'], { env, input: REAL_KEY + '\n' })
  t.equal(login.code, 4, 'login --with-api-key exits 4')
  t.match(login.stderr, new RegExp(`owned by uid ${other.uid} \\(${other.name}\\), not by you \\(uid 0\\)`), 'names the owner')
  t.match(login.stderr, new RegExp(`CODEX_AUTH_ALLOW_SOCKET_OWNER=${other.uid}`), 'and the opt-in')
  const token = await runCli(['token'], { env })
  t.equal(token.code, 4, 'token exits 4')
  t.equal(token.stdout, '', "the other user's key is not served")
  const exec = await runCli(['exec', '--', 'true'], { env })
  t.equal(exec.code, 125, 'exec fails before running the command')
  // Let anything in flight land before looking: a client that connected would have written at once.
  const probe = net.connect(path.join(runtime, 'codex-authd', 'default.sock'))
  await new Promise((r) => probe.once('connect', r))
  probe.write('{"jsonrpc":"2.0","id":1,"method":"status"}\n')
  await until('the probe line reaches the fake', () => fake.out().includes('got'))
  probe.destroy()
  t.equal(fake.out().match(/got/g)?.length, 1, 'the fake daemon received only the probe: no byte from the refused clients')
})

t.test('the opt-in serves a deliberately shared socket', { skip: skipUnlessRoot }, async (t) => {
  const other = user!
  const { runtime, home, socket } = foreignRuntime(other)
  await fakeDaemonAt(t, socket, other, other)
  for (const allow of [String(other.uid), other.name]) {
    const r = await runCli(['token'], { env: { HOME: home, XDG_RUNTIME_DIR: runtime, CODEX_AUTH_ALLOW_SOCKET_OWNER: allow } })
    t.equal(r.code, 0, `CODEX_AUTH_ALLOW_SOCKET_OWNER=${allow}: allowed`)
    t.equal(r.stdout, FAKE_KEY + '\n', 'the shared daemon answers')
  }
})

t.test('the opt-in still checks the peer: a socket the allowed user owns, served by a third user, is refused', { skip: skipUnlessRoot }, async (t) => {
  const other = user!
  const { runtime, home, socket } = foreignRuntime(other)
  // Bound by nobody, moved into the test user's directory and chowned to them: the files say
  // "test user", only SO_PEERCRED tells who answers.
  const fake = await fakeDaemonAt(t, socket, NOBODY, other)
  const r = await runCli(['token'], { env: { HOME: home, XDG_RUNTIME_DIR: runtime, CODEX_AUTH_ALLOW_SOCKET_OWNER: other.name } })
  t.equal(r.code, 4, 'refused, exit 4')
  t.match(r.stderr, /the process answering on it runs as uid 65534 \(nobody\), pid \d+: neither you, root nor the allowed owner; nothing was sent\.$/m, 'names the peer')
  t.equal(r.stdout, '')
  t.notMatch(fake.out(), /got/, 'nothing was sent')
})

t.test('the library refuses the same way (SocketTrustError, nothing sent)', { skip: skipUnlessRoot }, async (t) => {
  const other = user!
  const { runtime, home, socket } = foreignRuntime(other)
  const fake = await fakeDaemonAt(t, socket, other, other)
  const { connect, SocketTrustError } = await import('../src/client/index.js')
  const e = await connect({ env: { HOME: home, XDG_RUNTIME_DIR: runtime }, reconnect: false }).then(
    () => null,
    (err: unknown) => err,
  )
  t.ok(e instanceof SocketTrustError, 'SocketTrustError')
  t.equal((e as InstanceType<typeof SocketTrustError>).owner, other.uid)
  t.notMatch(fake.out(), /got/)
})

// ----------------------------------------------------------------------------- the daemon binds

t.test("the daemon never binds in another user's runtime directory", { skip: skipUnlessRoot }, async (t) => {
  const { runtime, home } = foreignRuntime(user!)
  const r = await runNodeAs(null, [DAEMON_BIN], { env: { HOME: home, CODEX_HOME: await makeHome(), XDG_RUNTIME_DIR: runtime }, timeoutMs: 20_000 })
  t.equal(r.code, 4, 'exit 4')
  t.match(r.stderr + r.stdout, new RegExp(`owned by uid ${user!.uid}`), 'says who owns it')
  t.notOk(fs.existsSync(path.join(runtime, 'codex-authd')), 'created nothing there')
})

t.test('the daemon refuses a parent directory others may write (not sticky)', async (t) => {
  const parent = tempDir('cad-peer-par-')
  fs.chmodSync(parent, 0o777)
  const r = await runNodeAs(null, [DAEMON_BIN, '--socket', path.join(parent, 'd', 's.sock')], { env: { CODEX_HOME: await makeHome() }, timeoutMs: 20_000 })
  t.equal(r.code, 4)
  t.match(r.stderr + r.stdout, /group or other may write .*chmod go-w/)
})

t.test('on stop the daemon removes its own socket, never one that replaced it', async (t) => {
  const own = await startDaemon()
  const dir = path.dirname(own.socket)
  t.same(fs.readdirSync(dir).sort(), ['s.restricted.sock', 's.sock'], 'bound under temporary names and renamed: nothing else left')
  await own.stop()
  t.notOk(fs.existsSync(own.socket), 'its own socket is removed')

  const d = stopAtTeardown(t, await startDaemon())
  // Someone (root, the only one who can in a 0700 directory) swaps in another socket.
  fs.renameSync(d.socket, d.socket + '.old')
  const other = net.createServer()
  await new Promise<void>((r) => other.listen(d.socket, r))
  t.teardown(() => other.close())
  const otherIno = fs.statSync(d.socket).ino
  await d.stop()
  t.ok(fs.existsSync(d.socket), 'the replacement is still there')
  t.equal(fs.statSync(d.socket).ino, otherIno, 'and it is the same file')
})
