// Who asked (issue 13, docs/contract.md#audit), and who else can reach the home (finding 5): every
// token handed out, forced refresh, login and logout is recorded with the peer's pid, uid and
// program and never a secret; a lock held by another user is named in the error; `status` warns
// about a home other users can reach, with the chmod to run.
import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { connect, makeHome, runCli, startDaemon, stopAtTeardown } from './support/daemon.js'
import { asUser } from './support/reliability.js'
import { until } from './support/until.js'
import { AuditLog } from '../src/daemon/audit.js'
import { flockHolderIn } from '../src/os/lockholder.js'
import { exposureProblems } from '../src/state/exposure.js'
import type { AuditResult } from '../src/rpc/contract.js'

const amRoot = process.getuid?.() === 0
const API_KEY = `sk-audit-${randomBytes(16).toString('hex')}`
const NODE_EXE = fs.realpathSync(process.execPath)

t.test('AuditLog: a ring of fixed size, oldest first, counting what it dropped', async (t) => {
  let n = 0
  const log = new AuditLog(3, () => new Date(Date.UTC(2026, 0, 1, 0, 0, n++)))
  const peer = { pid: 42, uid: 1000, exe: '/usr/bin/x' }
  for (const m of ['getAuth', 'refresh', 'login', 'logout', 'getAuth'] as const) log.record(m, peer, null, 'ok')
  const all = log.read(null)
  t.equal(all.capacity, 3)
  t.equal(all.recorded, 5)
  t.strictSame(all.entries.map((e) => e.method), ['login', 'logout', 'getAuth'], 'the newest three, oldest first')
  t.equal(all.entries[0]!.time, '2026-01-01T00:00:02.000Z')
  t.strictSame(log.read(1).entries.map((e) => e.method), ['getAuth'], 'limit keeps the newest')
  log.record('getAuth', null, null, 'not_logged_in')
  t.strictSame(log.read(1).entries[0]!.peer, { pid: null, uid: null, exe: null }, 'an unknown peer is nulls')
})

t.test('flockHolderIn: /proc/locks by device and inode, waiters skipped', async (t) => {
  // st_dev 0x801 is 8:1; 0xfd00 is 253:0.
  const text = [
    '1: POSIX  ADVISORY  WRITE 111 08:01:5678 0 EOF',
    '2: FLOCK  ADVISORY  WRITE 222 fd:00:5678 0 EOF',
    '2: -> FLOCK  ADVISORY  WRITE 333 08:01:5678 0 EOF',
    '3: FLOCK  ADVISORY  WRITE 444 08:01:5678 0 EOF',
  ].join('\n')
  t.equal(flockHolderIn(text, 0x801, 5678), 444, 'the flock on 8:1, not the POSIX lock nor the waiter')
  t.equal(flockHolderIn(text, 0xfd00, 5678), 222)
  t.equal(flockHolderIn(text, 0x801, 9999), null)
})

t.test('exposureProblems: a home others can enter with an auth.lock they can open', async (t) => {
  t.strictSame(exposureProblems('/h', 0o40700, 0o100644), [], 'a private home: its lock cannot be reached')
  t.strictSame(exposureProblems('/h', 0o40755, 0o100600), [], 'a private lock in an open home')
  t.match(exposureProblems('/h', 0o40755, 0o100644), [{ code: 'auth_permissions', file: '/h/auth.lock', message: /chmod 600 \/h\/auth.lock/ }], "Codex's defaults")
  t.match(exposureProblems('/h', 0o40777, null), [{ file: '/h', message: /chmod go-w \/h/ }])
})

t.test('every token, refresh, login and logout is recorded: pid, uid, program, no secret', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  const login = await runCli(['login', '--with-api-key'], { socket: d.socket, input: API_KEY + '\n' })
  t.equal(login.code, 0, 'logged in')
  const token = await runCli(['token'], { socket: d.socket })
  t.equal(token.stdout, API_KEY + '\n')
  // One call from this process, so that the recorded pid can be compared with a known one.
  const c = await connect(t, d)
  t.equal((await c.call('getAuth')).result?.token, API_KEY)
  t.equal((await c.call('refresh')).result?.mode, 'apikey')
  t.equal((await c.call('login', { method: 'nope' })).error?.code, -32602)
  const logout = await runCli(['logout'], { socket: d.socket })
  t.equal(logout.code, 0)
  t.equal((await c.call('getAuth')).error?.data?.reason, 'not_logged_in')

  const json = await runCli(['--json', 'audit'], { socket: d.socket })
  t.equal(json.code, 0)
  t.notOk(json.stdout.includes(API_KEY), 'no secret in the audit')
  const r = JSON.parse(json.stdout) as AuditResult
  t.strictSame(
    r.entries.map((e) => [e.method, e.detail, e.outcome]),
    [
      ['login', 'apikey', 'ok'],
      ['getAuth', null, 'ok'],
      ['getAuth', null, 'ok'],
      ['refresh', null, 'ok'],
      ['login', null, 'invalid_params'],
      ['logout', 'revoke', 'ok'],
      ['getAuth', null, 'not_logged_in'],
    ],
    'each call, in order, with its outcome',
  )
  for (const e of r.entries) {
    t.equal(e.peer.uid, process.getuid!(), `${e.method}: uid`)
    t.equal(e.peer.exe, NODE_EXE, `${e.method}: program`)
    t.type(e.peer.pid, 'number', `${e.method}: pid`)
  }
  t.equal(r.entries[2]!.peer.pid, process.pid, 'the pid is the caller')
  t.not(r.entries[1]!.peer.pid, process.pid, "the CLI's own pid for the CLI's call")
  t.equal(r.recorded, 7)

  const human = await runCli(['audit'], { socket: d.socket })
  t.equal(human.code, 0)
  t.match(human.stdout, new RegExp(`login \\(apikey\\)  ok  pid \\d+ uid ${process.getuid!()} ${NODE_EXE.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
  t.notOk(human.stdout.includes(API_KEY) || human.stderr.includes(API_KEY), 'no secret in the human output either')
  d.assertNoSecrets()
})

t.test("auth.lock held by nobody: status warns, and the lock timeout names the holder", { skip: amRoot ? false : 'needs root to run flock as nobody' }, async (t) => {
  const home = await makeHome()
  // Codex's own layout: ~/.codex 0755, auth.lock 0666 & ~022.
  fs.chmodSync(home, 0o755)
  const lock = path.join(home, 'auth.lock')
  fs.writeFileSync(lock, '')
  fs.chmodSync(lock, 0o644)
  const d = stopAtTeardown(t, await startDaemon({ home }))
  const status = await runCli(['--json', 'status'], { socket: d.socket })
  const problems = (JSON.parse(status.stdout) as { problems: Array<{ code: string; message: string; file: string }> }).problems
  t.match(problems, [{ code: 'auth_permissions', file: lock, message: new RegExp(`any of them can hold the lock.*run: chmod 600 ${lock}`) }], 'status names the problem and the chmod')
  const text = await runCli(['status'], { socket: d.socket })
  t.match(text.stdout + text.stderr, /chmod 600/, 'the human status shows it too')

  const [cmd, ...pre] = asUser({ name: 'nobody', uid: 65534, gid: 65534 })
  const holder = spawn(cmd!, [...pre, 'flock', lock, '-c', 'echo locked; read x'], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => {
    holder.kill('SIGKILL')
  })
  let out = ''
  holder.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s))
  await until('nobody holds auth.lock', () => out.includes('locked'), 20_000)

  const login = await runCli(['login', '--with-api-key'], { socket: d.socket, input: API_KEY + '\n' })
  t.equal(login.code, 3, 'the login fails after the lock timeout')
  t.match(login.stderr, new RegExp(`auth\\.lock held by pid ${holder.pid} \\(flock, uid 65534\\)`), 'naming the holder')
  const audit = JSON.parse((await runCli(['--json', 'audit'], { socket: d.socket })).stdout) as AuditResult
  t.match(audit.entries.at(-1), { method: 'login', detail: 'apikey', outcome: 'login_failed' }, 'the failed login is audited')
  holder.stdin!.end('\n')
})
