// Socket security (issue 7, docs/contract.md#socket-path): the socket's directory must be ours with no group/other
// bits or the daemon refuses to start (exit 4, saying why); the socket is 0600 whatever the umask;
// and even a socket chmod-ed 0666 gives another user nothing, because the directory is 0700.
// Every "cannot connect" runs as an unprivileged user (codexauthd-test): as root, permission
// checks prove nothing. The probe prints only a hash of any token it gets; the key is fake.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { DAEMON_BIN, makeHome, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { Wire, ensureTestUser, launchDaemon, publicScript, reliabilityComment, runNodeAs, stageBundle, type Ran, type TestUser } from './support/reliability.js'

const API_KEY = `sk-fake-sock-${randomBytes(12).toString('hex')}`
const KEY_SHA = createHash('sha256').update(API_KEY).digest('hex')
const t0 = Date.now()
let cases = 0
const failed: string[] = []
const track = (t: Test): void => {
  cases++
  t.teardown(() => {
    if (!t.passing()) failed.push(t.name)
  })
}

/** The probe another user runs: connect, ask for a token, report what happened (never the token). */
const PROBE = `'use strict'
const net = require('node:net')
const crypto = require('node:crypto')
const s = net.connect(process.argv[2])
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\\n'); process.exit(0) }
s.on('error', (e) => out({ connected: false, code: e.code }))
s.on('connect', () => {
  s.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'getAuth' }) + '\\n')
  let buf = ''
  s.setEncoding('utf8')
  s.on('data', (d) => {
    buf += d
    const i = buf.indexOf('\\n')
    if (i === -1) return
    const m = JSON.parse(buf.slice(0, i))
    const token = m.result && m.result.token
    out({ connected: true, tokenSha256: token ? crypto.createHash('sha256').update(token).digest('hex') : null, error: m.error ? m.error.code : null })
  })
})
setTimeout(() => out({ connected: 'timeout' }), 5000)
`

let user: TestUser | null = null
let probePath = ''

t.before(() => {
  user = ensureTestUser()
  probePath = publicScript('cad-rel-probe-', 'probe.cjs', PROBE)
})

const amRoot = process.getuid?.() === 0

/** Runs the probe as the unprivileged user (or as ourselves when we already are unprivileged). */
async function probeAs(socket: string): Promise<any> {
  const r = await runNodeAs(amRoot ? user : null, [probePath, socket])
  try {
    return JSON.parse(r.stdout.trim())
  } catch {
    return { unparsable: r.stdout + r.stderr, code: r.code }
  }
}

function runDaemon(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return runNodeAs(null, [DAEMON_BIN, ...args], { env, timeoutMs: 20_000 })
}

// ------------------------------------------------------------------------- directory refusals

const LOOSE_MODES = [0o750, 0o770, 0o705, 0o707, 0o701, 0o710, 0o711, 0o755, 0o777, 0o1777]

for (const mode of LOOSE_MODES) {
  t.test(`socket directory mode ${mode.toString(8)}: refused, exit 4, says why`, async (t) => {
    track(t)
    const home = await makeHome()
    const dir = path.join(tempDir('cad-rel-sd-'), 'run')
    fs.mkdirSync(dir)
    fs.chmodSync(dir, mode)
    const sock = path.join(dir, 's.sock')
    const r = await runDaemon(['--codex-home', home, '--socket', sock], { HOME: path.dirname(home) })
    t.equal(r.code, 4, 'exit 4')
    t.match(r.stderr, new RegExp(`socket directory ${dir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} has mode ${(mode & 0o777).toString(8)}`), 'names the directory and its mode')
    t.match(r.stderr, /group and other must have no access/, 'says why')
    t.match(r.stderr, /chmod 700/, 'says how to fix it')
    t.notOk(fs.existsSync(sock), 'no socket created')
    t.equal(fs.statSync(dir).mode & 0o7777, mode, 'the directory is left as it was')
  })
}

t.test('socket directory from CODEX_AUTHD_SOCK with group bits: refused the same way', async (t) => {
  track(t)
  const home = await makeHome()
  const dir = path.join(tempDir('cad-rel-sd-'), 'run')
  fs.mkdirSync(dir)
  fs.chmodSync(dir, 0o770)
  const r = await runDaemon(['--codex-home', home], { HOME: path.dirname(home), CODEX_AUTHD_SOCK: path.join(dir, 's.sock') })
  t.equal(r.code, 4, 'exit 4')
  t.match(r.stderr, /has mode 770: group and other must have no access/)
})

t.test('socket directory owned by another user: refused, exit 4', async (t) => {
  if (!amRoot) return void t.fail('needs root to chown (CI runs as root)')
  track(t)
  if (!user) return void t.fail('no unprivileged test user')
  const home = await makeHome()
  const dir = path.join(tempDir('cad-rel-sd-'), 'run')
  fs.mkdirSync(dir, { mode: 0o700 })
  fs.chownSync(dir, user.uid, user.gid)
  const r = await runDaemon(['--codex-home', home, '--socket', path.join(dir, 's.sock')], { HOME: path.dirname(home) })
  t.equal(r.code, 4, 'exit 4')
  t.match(r.stderr, new RegExp(`is owned by uid ${user.uid}, not by us \\(uid 0\\)`), 'says whose it is')
})

t.test('socket directory that is a symlink (to a good 0700 directory): refused, exit 4', async (t) => {
  track(t)
  const home = await makeHome()
  const base = tempDir('cad-rel-sd-')
  const real = path.join(base, 'real')
  fs.mkdirSync(real, { mode: 0o700 })
  const link = path.join(base, 'link')
  fs.symlinkSync(real, link)
  const r = await runDaemon(['--codex-home', home, '--socket', path.join(link, 's.sock')], { HOME: path.dirname(home) })
  t.equal(r.code, 4, 'exit 4')
  t.match(r.stderr, /is not a directory/, 'says why')
  t.same(fs.readdirSync(real), [], 'nothing created through the link')
})

// ----------------------------------------------------------------------------- socket mode

t.test('the socket is 0600 and a fresh directory 0700, even under umask 000', async (t) => {
  track(t)
  const base = tempDir('cad-rel-um-')
  const sock = path.join(base, 'fresh', 'sub', 's.sock')
  const home = await makeHome()
  const daemon = await launchDaemon(t, home, { socket: sock, env: { OPENAI_API_KEY: API_KEY }, umask: 0 })
  t.match(fs.readFileSync(`/proc/${daemon.pid}/status`, 'utf8'), /^Umask:\s+0000$/m, 'the daemon runs with umask 000')
  const st = fs.lstatSync(sock)
  t.ok(st.isSocket(), 'a socket')
  t.equal(st.mode & 0o777, 0o600, 'socket 0600')
  t.equal(fs.statSync(path.dirname(sock)).mode & 0o777, 0o700, 'directory 0700')
  t.equal(st.uid, process.getuid?.(), 'owned by us')
  const c = await Wire.connect(daemon.socket)
  t.teardown(() => c.close())
  t.ok((await c.call('status')).result, 'the owner is served')
  c.close()
  t.same(await daemon.stop(), { code: 0, signal: null }, 'clean stop')
})

// --------------------------------------------------------------------------- another user

t.test('another user cannot get a token, even with the socket chmod-ed 0666 (the 0700 directory stops it)', async (t) => {
  track(t)
  if (amRoot && !user) return void t.fail('cannot create the unprivileged test user: the checks below would prove nothing as root')
  const d = stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: API_KEY } }))
  const dir = path.dirname(d.socket)
  const sockMode = () => fs.statSync(d.socket).mode & 0o777
  const dirMode = () => fs.statSync(dir).mode & 0o777
  t.equal(dirMode(), 0o700)
  t.equal(sockMode(), 0o600)

  // The owner (us) gets the key: the probe itself works.
  const own = await runNodeAs(null, [probePath, d.socket])
  t.equal(JSON.parse(own.stdout).tokenSha256, KEY_SHA, 'the owner gets the token through the probe')

  const a = await probeAs(d.socket)
  t.same(a, { connected: false, code: 'EACCES' }, 'socket 0600 in a 0700 directory: EACCES')

  fs.chmodSync(d.socket, 0o666)
  t.equal(sockMode(), 0o666)
  const b = await probeAs(d.socket)
  t.same(b, { connected: false, code: 'EACCES' }, 'socket 0666 in a 0700 directory: still EACCES')

  // The CLI as that user: unreachable (exit 2), nothing on stdout.
  const staged = stageBundle()
  const cli = await runNodeAs(amRoot ? user : null, [staged.cli, '--socket', d.socket, 'token'])
  t.equal(cli.code, 2, 'codex-auth token as the other user: exit 2 (unreachable)')
  t.equal(cli.stdout, '', 'prints no token')
  t.notOk(cli.stderr.includes(API_KEY), 'and no key on stderr')

  // Controls, each barrier alone: a traversable directory with a 0600 socket still refuses...
  fs.chmodSync(d.socket, 0o600)
  fs.chmodSync(dir, 0o711)
  const c = await probeAs(d.socket)
  t.same(c, { connected: false, code: 'EACCES' }, 'control: socket 0600 in a 0711 directory: EACCES (the socket mode alone also stops it)')
  // ...and with both opened up, the other user does get the token: the probe can succeed, so
  // its failures above are the permissions at work.
  fs.chmodSync(d.socket, 0o666)
  const e = await probeAs(d.socket)
  t.equal(e.connected, true, 'control: socket 0666 in a 0711 directory: connects')
  t.equal(e.tokenSha256, KEY_SHA, 'control: and gets the token (both barriers removed)')
  fs.chmodSync(dir, 0o700)
  fs.chmodSync(d.socket, 0o600)
  t.equal(d.proc.exitCode, null, 'daemon still running')
})

t.test('figures', async (t) => {
  // What the figures report, asserted: every case ran (one per loose mode and the five tests
  // after them), none failed, and as root the unprivileged user existed to probe with.
  t.equal(cases, LOOSE_MODES.length + 5, `every case ran (${cases})`)
  t.same(failed, [], 'no case failed')
  t.ok(!amRoot || user !== null, 'running as root, the unprivileged test user was available')
  reliabilityComment(t, {
    file: 'reliability-socket-security',
    cases,
    failures: failed.length,
    timeMs: Date.now() - t0,
    unprivilegedUser: user ? user.name : amRoot ? 'unavailable' : 'already unprivileged',
  })
})
