// The daemon as a process (docs/contract.md#socket-path, #codex-authd): socket and directory rules,
// one daemon per home, stale sockets, signals, exit codes, CODEX_HOME removed while running,
// systemd socket activation.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {
  DAEMON_BIN,
  ROOT,
  isolatedEnv,
  makeHome,
  runDaemonCommand,
  startDaemon,
  stopAtTeardown,
  tempDir,
  type RunningDaemon,
} from './support/daemon.js'
import { rawConnect, type RawConnection } from './support/rpc.js'
import { fakeJwt } from './support/tokens.js'
import { until } from './support/until.js'
import { lockHeld } from './support/flock.js'

const AUTH_CLAIM = 'https://api.openai.com/auth'
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

function chatgptAuth(tag: string): { json: Record<string, unknown>; access: string } {
  const now = Math.floor(Date.now() / 1000)
  const account = `acc-${tag}`
  const access = fakeJwt({ exp: now + 30 * 86400, iat: now, tag, [AUTH_CLAIM]: { chatgpt_account_id: account } })
  const id = fakeJwt({ email: `${tag}@example.com`, [AUTH_CLAIM]: { chatgpt_plan_type: 'plus', chatgpt_account_id: account } })
  return {
    access,
    json: {
      auth_mode: 'chatgpt',
      OPENAI_API_KEY: null,
      tokens: { id_token: id, access_token: access, refresh_token: `rt-fake-${tag}`, account_id: account },
      last_refresh: new Date().toISOString(),
    },
  }
}

function writeAuth(home: string, json: unknown): void {
  const tmp = path.join(home, `.auth.${process.pid}.tmp`)
  fs.writeFileSync(tmp, JSON.stringify(json), { mode: 0o600 })
  fs.renameSync(tmp, path.join(home, 'auth.json'))
}

async function daemon(t: Test, opts: Parameters<typeof startDaemon>[0] = {}): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon(opts))
}

async function connect(t: Test, socket: string): Promise<RawConnection> {
  const c = await rawConnect(socket)
  t.teardown(() => c.close())
  return c
}

function inode(p: string): number {
  return fs.lstatSync(p).ino
}

t.test('socket directory open to group/other: exit 4 and why', async (t) => {
  const dir = tempDir('cad-perm-')
  fs.chmodSync(dir, 0o755)
  const d = stopAtTeardown(t, await startDaemon({ socket: path.join(dir, 's.sock'), waitReady: false }))
  const { code } = await d.exited
  t.equal(code, 4)
  const err = d.stderr.join('\n')
  t.match(err, /755/, 'names the mode')
  t.match(err, /group and other/, 'says why')
  t.match(err, dir, 'names the directory')
  t.notOk(fs.existsSync(path.join(dir, 's.sock')), 'no socket created')
  t.notOk(lockHeld(path.join(d.home, 'authd.lock')), 'the home lock was released')
})

t.test('socket path over 107 bytes: exit 4 naming CODEX_AUTHD_SOCK', async (t) => {
  const dir = tempDir('cad-long-')
  const sock = path.join(dir, 'x'.repeat(120 - dir.length) + '.sock')
  t.ok(Buffer.byteLength(sock) > 107)
  const d = stopAtTeardown(t, await startDaemon({ socket: sock, waitReady: false }))
  const { code } = await d.exited
  t.equal(code, 4)
  t.match(d.stderr.join('\n'), /CODEX_AUTHD_SOCK/)
  t.match(d.stderr.join('\n'), /107/)
  t.same(fs.readdirSync(dir), [], 'nothing created, not even a truncated name')

  // The same path from the environment.
  const home = await makeHome()
  const r = await runDaemonCommand(['--codex-home', home], { env: { CODEX_AUTHD_SOCK: sock, HOME: path.dirname(home) } })
  t.equal(r.code, 4)
  t.match(r.stderr, /CODEX_AUTHD_SOCK/)
})

t.test('a stale socket left by a SIGKILLed daemon is replaced by the next daemon', async (t) => {
  const d1 = await daemon(t)
  await d1.stop('SIGKILL')
  t.ok(fs.lstatSync(d1.socket).isSocket(), 'the killed daemon left its socket file')
  const d2 = await daemon(t, { home: d1.home, socket: d1.socket })
  t.ok(fs.lstatSync(d2.socket).isSocket())
  const c = await connect(t, d2.socket)
  const s = await c.call('status')
  t.equal(s.result.daemon.pid, d2.pid, 'the new daemon answers')
})

t.test("a live socket of another home's daemon: exit 4, socket in use", async (t) => {
  const d1 = await daemon(t)
  const ino = inode(d1.socket)
  const d2 = stopAtTeardown(t, await startDaemon({ socket: d1.socket, waitReady: false }))
  t.not(d2.home, d1.home)
  const { code } = await d2.exited
  t.equal(code, 4)
  t.match(d2.stderr.join('\n'), /socket in use/)
  t.equal(inode(d1.socket), ino, 'the first daemon keeps its socket')
  const c = await connect(t, d1.socket)
  t.equal((await c.call('status')).result.daemon.pid, d1.pid, 'and still answers')
})

t.test('a second daemon for the same home: exit 3 naming the first one\'s socket', async (t) => {
  const d1 = await daemon(t)
  const d2 = stopAtTeardown(t, await startDaemon({ home: d1.home, waitReady: false }))
  const { code } = await d2.exited
  t.equal(code, 3)
  t.ok(d2.stderr.join('\n').includes(d1.socket), 'names the socket of the daemon that owns the home')
  t.notOk(fs.existsSync(d2.socket), 'the second daemon bound nothing')

  // Through CODEX_HOME in the environment instead of the flag: same answer.
  const r = await runDaemonCommand(['--socket', path.join(tempDir('cad-s-'), 's.sock')], { env: { CODEX_HOME: d1.home } })
  t.equal(r.code, 3)
  t.ok(r.stderr.includes(d1.socket))
})

t.test('SIGTERM and SIGINT: exit 0, socket removed, lock released', async (t) => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    const d = await daemon(t)
    const c = await connect(t, d.socket)
    c.send({ jsonrpc: '2.0', id: 1, method: 'subscribe' })
    await c.next()
    t.ok(lockHeld(path.join(d.home, 'authd.lock')), 'lock held while running')
    const { code, signal } = await d.stop(sig)
    t.equal(code, 0, `${sig}: exit 0`)
    t.equal(signal, null)
    t.notOk(fs.existsSync(d.socket), `${sig}: socket removed`)
    t.notOk(lockHeld(path.join(d.home, 'authd.lock')), `${sig}: lock released`)
    await c.closed
    t.ok(d.logs.some((l) => l.includes('codex-authd stopped')), 'logged the stop')
  }
})

t.test('exit 78: missing CODEX_HOME, bad arguments', async (t) => {
  const sockDir = tempDir('cad-s-')
  const sock = path.join(sockDir, 's.sock')
  const missing = await runDaemonCommand(['--codex-home', '/nonexistent/codex-home', '--socket', sock])
  t.equal(missing.code, 78, '--codex-home /nonexistent')
  t.match(missing.stderr, /\/nonexistent\/codex-home/)
  t.match(missing.stderr, /does not exist/)
  t.notOk(fs.existsSync('/nonexistent/codex-home'), 'an explicit home is never created')

  const envMissing = await runDaemonCommand(['--socket', sock], { env: { CODEX_HOME: '/nonexistent/codex-home' } })
  t.equal(envMissing.code, 78, 'CODEX_HOME=/nonexistent')
  t.match(envMissing.stderr, /CODEX_HOME/)

  const file = path.join(sockDir, 'a-file')
  fs.writeFileSync(file, '')
  const notDir = await runDaemonCommand(['--codex-home', file, '--socket', sock])
  t.equal(notDir.code, 78, 'CODEX_HOME is a file')
  t.notOk(fs.existsSync(sock))

  const bad: string[][] = [
    ['--bogus'],
    ['positional'],
    ['--issuer-kind', 'saml'],
    ['--issuer', 'not a url'],
    ['--log-level', 'loud'],
    ['--login-ports', '0'],
    ['--login-ports', 'a,b'],
    ['-c', 'no-equals-sign'],
    ['--socket'],
    ['--socket', ''],
  ]
  for (const args of bad) {
    const r = await runDaemonCommand(args)
    t.equal(r.code, 78, `${args.join(' ')}: exit 78`)
    t.match(r.stderr, /codex-authd: /, `${args.join(' ')}: says why`)
    t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`)
  }
})

t.test('--version and --help', async (t) => {
  const v = await runDaemonCommand(['--version'])
  t.equal(v.code, 0)
  t.equal(v.stdout, `codex-authd ${VERSION}\n`)
  t.equal(v.stderr, '')
  const h = await runDaemonCommand(['--help'])
  t.equal(h.code, 0)
  t.match(h.stdout, /^Usage: codex-authd/)
  for (const flag of ['--codex-home', '--socket', '-c key=value', '--issuer', '--issuer-kind', '--client-id', '--login-ports', '--log-level', '--version', '--help']) {
    t.ok(h.stdout.includes(flag), `help mentions ${flag}`)
  }
  t.match(h.stdout, /78/, 'help lists the exit codes')
  t.equal(h.stderr, '')
  const short = await runDaemonCommand(['-h'])
  t.equal(short.stdout, h.stdout, '-h is --help')
})

t.test('SIGHUP re-reads config.toml and keeps running', async (t) => {
  const home = await makeHome()
  const key = 'sk-fake-hup-000000000000000000abcde'
  const a = chatgptAuth('hup')
  writeAuth(home, { ...a.json, OPENAI_API_KEY: key })
  const d = await daemon(t, { home })
  const c = await connect(t, d.socket)
  t.equal((await c.call('getAuth')).result.mode, 'chatgpt')

  fs.writeFileSync(path.join(home, 'config.toml'), 'preferred_auth_method = "apikey"\n')
  process.kill(d.pid, 'SIGHUP')
  await d.waitForLog((r) => r.msg === 'SIGHUP: reloading configuration')
  t.pass('logged the SIGHUP reload')
  await until('status shows the new preferred_auth_method', async () => (await c.call('status')).result.settings.preferredAuthMethod === 'apikey')
  const g = await c.call('getAuth')
  t.equal(g.result.mode, 'apikey')
  t.ok(g.result.token === key, 'serves the key now')
  t.equal(d.proc.exitCode, null, 'SIGHUP did not stop the daemon')
  t.equal((await c.call('status')).result.daemon.pid, d.pid)
})

t.test('CODEX_HOME deleted while running: recreated 0700, lock retaken, new auth.json picked up', async (t) => {
  const home = await makeHome()
  writeAuth(home, chatgptAuth('before').json)
  const d = await daemon(t, { home })
  const c = await connect(t, d.socket)
  c.send({ jsonrpc: '2.0', id: 1, method: 'subscribe' })
  await c.next()

  fs.rmSync(home, { recursive: true, force: true })
  await d.waitForLog((r) => r.msg === 'CODEX_HOME was removed; recreated it')
  const st = fs.statSync(home)
  t.ok(st.isDirectory(), 'recreated')
  t.equal(st.mode & 0o777, 0o700, 'mode 0700')
  t.ok(lockHeld(path.join(home, 'authd.lock')), 'authd.lock is held again')
  t.ok(fs.readFileSync(path.join(home, 'authd.lock'), 'utf8').includes(d.socket), 'and names our socket')

  const second = await runDaemonCommand(['--codex-home', home, '--socket', path.join(tempDir('cad-s-'), 's.sock')])
  t.equal(second.code, 3, 'a second daemon for the recreated home is refused')

  await until('getAuth reports not logged in', async () => (await c.call('getAuth')).error?.code === -32001)
  const b = chatgptAuth('after')
  writeAuth(home, b.json)
  await until('getAuth serves the new auth.json', async () => (await c.call('getAuth')).result?.token === b.access)
  t.pass('new auth.json served')
  t.equal(d.proc.exitCode, null, 'still running')
  t.notOk(d.logs.some((l) => l.includes('could not be recreated')), 'no failed recreation logged')
})

t.test('CODEX_HOME deleted and at once recreated by someone else: lock retaken there too', async (t) => {
  const home = await makeHome()
  writeAuth(home, chatgptAuth('q0').json)
  const d = await daemon(t, { home })
  const c = await connect(t, d.socket)
  for (let i = 1; i <= 3; i++) {
    fs.rmSync(home, { recursive: true, force: true })
    fs.mkdirSync(home, { mode: 0o700 })
    const a = chatgptAuth(`q${i}`)
    writeAuth(home, a.json)
    await until(`round ${i}: auth.json in the recreated home served`, async () => (await c.call('getAuth')).result?.token === a.access)
    await until(`round ${i}: authd.lock held in the new directory`, () => lockHeld(path.join(home, 'authd.lock')))
    t.pass(`round ${i}: served, and the new home is locked`)
    // Later writes are still seen (the watcher follows the new directory).
    const b = chatgptAuth(`q${i}b`)
    fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify(b.json), { mode: 0o600 })
    await until(`round ${i}: in-place write seen`, async () => (await c.call('getAuth')).result?.token === b.access)
  }
  const second = await runDaemonCommand(['--codex-home', home, '--socket', path.join(tempDir('cad-s-'), 's.sock')])
  t.equal(second.code, 3, 'a second daemon is refused')
  t.notOk(d.logs.some((l) => l.includes('could not be recreated')), 'no failed recreation logged')
})

/** Spawn `systemd-socket-activate`; resolves once it listens. */
async function socketActivate(t: Test, sock: string, env: Record<string, string>, daemonArgs: string[]): Promise<{ proc: ChildProcess; logs: string[]; exited: Promise<number | null> }> {
  const setenv = Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`])
  const proc = spawn('systemd-socket-activate', ['-l', sock, '--fdname=rpc', ...setenv, process.execPath, DAEMON_BIN, ...daemonArgs], {
    env: env as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  const logs: string[] = []
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => logs.push(...d.split('\n').filter(Boolean)))
  let err = ''
  await new Promise<void>((resolve, reject) => {
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d
      if (err.includes('Listening on')) resolve()
    })
    proc.once('error', reject)
    void exited.then((code) => reject(new Error(`systemd-socket-activate exited ${code}: ${err}`)))
  })
  return { proc, logs, exited }
}

t.test('systemd socket activation (systemd-socket-activate): serves fd 3, never re-binds or unlinks', async (t) => {
  const home = await makeHome()
  const a = chatgptAuth('act')
  writeAuth(home, a.json)
  // The path the daemon computes itself from XDG_RUNTIME_DIR, as a systemd user unit would have it.
  const rt = tempDir('cad-rt-')
  fs.mkdirSync(path.join(rt, 'codex-authd'), { mode: 0o700 })
  const id = createHash('sha256').update(home).digest('hex').slice(0, 16)
  const sock = path.join(rt, 'codex-authd', `${id}.sock`)
  const env = { ...isolatedEnv(home), XDG_RUNTIME_DIR: rt }
  const act = await socketActivate(t, sock, env, ['--codex-home', home])
  const ino = inode(sock)

  // The first connect makes systemd-socket-activate exec the daemon; the request waits in the
  // backlog meanwhile.
  const c = await connect(t, sock)
  const g = await c.call('getAuth')
  t.equal(g.result?.token, a.access, 'first request answered')
  const s = (await c.call('status')).result
  t.equal(s.daemon.activated, true, 'status.daemon.activated')
  t.equal(s.daemon.pid, act.proc.pid, 'systemd-socket-activate exec()ed the daemon')
  t.equal(s.daemon.socket, sock)
  t.equal(inode(sock), ino, 'the socket file was not re-bound')
  t.ok(act.logs.some((l) => l.includes('"activated":true') && l.includes('codex-authd started')), 'start-up log says activated')
  t.match(fs.readFileSync(path.join(home, 'authd.lock'), 'utf8'), /socket-activated/)

  // A second daemon for the same home is refused and names the activated socket.
  const second = await runDaemonCommand(['--codex-home', home, '--socket', path.join(tempDir('cad-s-'), 's.sock')])
  t.equal(second.code, 3)
  t.ok(second.stderr.includes(sock))

  const c2 = await connect(t, sock)
  t.ok((await c2.call('status')).result, 'later connections are served by the same daemon')

  act.proc.kill('SIGTERM')
  t.equal(await act.exited, 0, 'SIGTERM: exit 0')
  t.ok(fs.lstatSync(sock).isSocket(), 'the socket file is still there: systemd owns it')
  t.equal(inode(sock), ino, 'same socket file')
})

// The harness variant: docs/testing.md#socket-activation-without-systemd.
t.test('socket activation, harness variant: LISTEN_PID/LISTEN_FDS with an inherited fd', async (t) => {
  const home = await makeHome()
  const a = chatgptAuth('harness')
  writeAuth(home, a.json)
  const dir = tempDir('cad-h-')
  const sock = path.join(dir, 's.sock')
  const tmp = path.join(dir, 'tmp.sock')
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen({ path: tmp, backlog: 1024 }, () => resolve()))
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd
  const proc = spawn('sh', ['-c', 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=rpc exec "$0" "$@"', process.execPath, DAEMON_BIN, '--codex-home', home, '--socket', sock], {
    env: isolatedEnv(home),
    stdio: ['ignore', 'pipe', 'pipe', fd],
  })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  proc.stdout!.resume()
  proc.stderr!.resume()
  fs.renameSync(tmp, sock)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  const ino = inode(sock)

  const c = await connect(t, sock)
  const g = await c.call('getAuth')
  t.equal(g.result?.token, a.access, 'first request (queued while the daemon booted) answered')
  const s = (await c.call('status')).result
  t.equal(s.daemon.activated, true)
  t.equal(s.daemon.pid, proc.pid)
  proc.kill('SIGTERM')
  t.equal(await exited, 0)
  t.equal(inode(sock), ino, 'the inherited socket file is left alone')
})
