// The systemd unit's system-call filter against a whole daemon run. systemd is not PID 1 where the
// tests run, so the filter cannot be applied for real. Instead the installed unit's ExecStart runs
// under `strace -f`, socket-activated as codex-authd.socket would start it, through a browser
// login, a refresh, a logout, watched changes (auth.json replaced, CODEX_HOME deleted and
// recreated), the unit's ExecReload and a stop; every system call it makes must be one that the
// unit's SystemCallFilter= allows, as this machine's `systemd-analyze syscall-filter` expands it.
// A new system call (a new Node, libc or code path) fails here first: add it to the unit with a
// comment why, or avoid it. Needs strace, systemd-socket-activate and systemd-analyze
// (scripts/test-deps.sh installs them).

import t, { type Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { runServiceCommand } from '../src/service/install.js'
import { driveAuthorization } from './support/browser.js'
import { renameInto } from './support/auth-files.mjs'
import { DAEMON_BIN, ROOT, freePorts, tempDir } from './support/daemon.js'
import { connectRpc, followCallback } from './support/login-helpers.js'
import { onLines } from './support/lines.js'
import { DEFAULT_ACCOUNT, startProvider } from './support/provider.js'
import { chatgptAuth } from './support/tokens.js'
import { execArgv, readInstalledUnits, unitSetting } from './support/units.js'

/** The absolute path of a program on PATH, or a failed test naming the Debian package. */
function which(t: Test, program: string, pkg: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' })
  const found = r.stdout.trim()
  if (r.status !== 0 || !found) {
    t.fail(`${program} is missing; install the Debian package "${pkg}" (scripts/test-deps.sh does)`)
    return null
  }
  return found
}

/**
 * Every group `systemd-analyze syscall-filter` lists, with its members (system calls and nested
 * @groups), parsed from its output: a line `@name` opens a group, indented lines are members,
 * indented `#` lines are descriptions.
 */
function syscallGroups(analyze: string): Map<string, string[]> {
  const groups = new Map<string, string[]>()
  let current: string[] | null = null
  for (const line of analyze.split('\n')) {
    if (/^@[\w-]+$/.test(line)) groups.set(line, (current = []))
    else if (/^\S/.test(line)) current = null // a heading outside the groups, e.g. "# Unlisted ..."
    else if (current && /^\s+[@\w-]+$/.test(line)) current.push(line.trim())
  }
  return groups
}

/** The system calls a unit's SystemCallFilter= lines allow: an allow list, minus `~` lines. */
function allowedSyscalls(unit: string, groups: Map<string, string[]>): Set<string> {
  const expand = (item: string, seen = new Set<string>()): string[] => {
    if (!item.startsWith('@')) return [item.replace(/:.*$/, '')]
    if (seen.has(item)) return []
    seen.add(item)
    const members = groups.get(item)
    if (!members) throw new Error(`systemd-analyze does not know the group ${item}`)
    return members.flatMap((m) => expand(m, seen))
  }
  const allowed = new Set<string>()
  const lines = [...unit.matchAll(/^SystemCallFilter=(.*)$/gm)].map((m) => m[1]!.trim())
  if (lines.length === 0 || lines[0]!.startsWith('~')) throw new Error('the unit has no SystemCallFilter= allow list')
  for (const line of lines) {
    const deny = line.startsWith('~')
    for (const item of line.replace(/^~/, '').split(/\s+/).filter(Boolean)) {
      for (const call of expand(item)) deny ? allowed.delete(call) : allowed.add(call)
    }
  }
  return allowed
}

/** The system call names in an `strace -f -qq -o FILE` trace (`<pid> name(...`). */
function syscallsIn(trace: string): Map<string, number> {
  const counts = new Map<string, number>()
  for (const m of trace.matchAll(/^\d+\s+([a-z_][a-z0-9_]*)\(/gm)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1)
  return counts
}

t.test('every system call of a whole daemon run is in the unit\'s SystemCallFilter=', async (t) => {
  const strace = which(t, 'strace', 'strace')
  const activate = which(t, 'systemd-socket-activate', 'systemd')
  const analyzeBin = which(t, 'systemd-analyze', 'systemd')
  if (!strace || !activate || !analyzeBin) return

  const started = Date.now()
  const base = tempDir('cad-sc-')
  const home = path.join(base, 'home')
  const runtime = path.join(base, 'run')
  await fs.mkdir(runtime, { mode: 0o700 })
  const codexHome = path.join(home, '.codex')
  await fs.mkdir(codexHome, { recursive: true, mode: 0o700 })
  const env = { HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), XDG_RUNTIME_DIR: runtime, PATH: process.env.PATH ?? '/usr/bin:/bin' }

  // The units as `service install` writes them.
  const out: string[] = []
  const code = await runServiceCommand(['install', '--systemd'], {
    env,
    platform: 'linux',
    stdout: (s) => void out.push(s),
    stderr: (s) => void out.push(s),
    nodePath: process.execPath,
    daemonPath: DAEMON_BIN,
    packageRoot: ROOT,
  })
  t.equal(code, 0, 'service install --systemd', { output: out.join('') })
  const { service, execStart, listen } = await readInstalledUnits(env.XDG_CONFIG_HOME, runtime)
  t.same(execStart, [process.execPath, DAEMON_BIN], 'ExecStart runs this node on the built daemon')

  const provider = await startProvider()
  t.teardown(() => provider.stop())
  const ports = await freePorts(2)
  const trace = path.join(base, 'daemon.strace')

  // systemd-socket-activate binds the unit's socket and exec()s strace, which (-D) runs the
  // daemon in its own process, so LISTEN_PID still names the daemon, as under systemd. ExecStart
  // gets the test's provider and free login ports as arguments (the unit uses the defaults).
  const daemonArgs = [...execStart, '--issuer', provider.issuer, '--issuer-kind', 'openai', '--login-ports', ports.join(',')]
  const act = spawn(
    activate,
    ['-l', listen, ...Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`]), strace, '-D', '-f', '-qq', '-e', 'trace=all', '-o', trace, '--', ...daemonArgs],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  t.teardown(() => void act.kill('SIGKILL'))
  const exited = once(act, 'exit') as Promise<[number | null, string | null]>
  const logLines: string[] = []
  const logWaiters: Array<{ msg: string; resolve: () => void }> = []
  onLines(act.stdout, (line) => {
    logLines.push(line)
    for (let i = logWaiters.length - 1; i >= 0; i--) {
      if (line.includes(logWaiters[i]!.msg)) logWaiters.splice(i, 1)[0]!.resolve()
    }
  })
  const logged = (msg: string): Promise<void> =>
    logLines.some((l) => l.includes(msg)) ? Promise.resolve() : new Promise((resolve) => logWaiters.push({ msg, resolve }))
  let stderr = ''
  await new Promise<void>((resolve, reject) => {
    act.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      if (stderr.includes('Listening on')) resolve()
    })
    act.once('error', reject)
    void exited.then(([c]) => reject(new Error(`systemd-socket-activate exited ${c}: ${stderr}`)))
  })

  // A daemon that dies (a crash, a native module built for another Node) fails the test at once
  // with its stderr, instead of leaving the steps below waiting for answers.
  let stopping = false
  const died = exited.then(([c, sig]) => {
    if (stopping) return
    throw new Error(`the daemon exited early (${c ?? sig}); stderr: ${stderr}`)
  })
  const reloadTrace = path.join(base, 'reload.strace')
  const scenario = async (): Promise<void> => {
    // The first client starts the daemon (socket activation).
    const rpc = await connectRpc(listen)
    t.teardown(() => rpc.close())
    await rpc.ok('subscribe')
    const status = await rpc.ok('status')
    t.equal(status.daemon.activated, true, 'the daemon serves the inherited socket')
    t.equal(status.daemon.pid, act.pid, 'under strace, in the process systemd-socket-activate started')

    // A browser login: the loopback callback server, the code exchange, auth.json written and locked.
    const login = await rpc.ok('login', { method: 'browser' })
    await followCallback(await driveAuthorization(login.authUrl))
    t.match(await rpc.ok('awaitLogin', { loginId: login.loginId, timeoutSeconds: 30 }), { status: 'succeeded' })

    // A refresh through the token endpoint.
    const refreshesBefore = provider.countCalls({ endpoint: 'token', grantType: 'refresh_token', status: 200 })
    await rpc.ok('refresh')
    t.equal(provider.countCalls({ endpoint: 'token', grantType: 'refresh_token', status: 200 }), refreshesBefore + 1, 'refreshed')

    // Logout: revocation, auth.json removed.
    await rpc.ok('logout')
    await rpc.waitFor((n) => n.method === 'authChanged' && n.params.loggedIn === false)

    // Watching: auth.json appears (as Codex writes it), CODEX_HOME is deleted, then recreated.
    const seen = rpc.notifications.length
    const nextChange = (pred: (p: any) => boolean) => rpc.waitFor((n) => rpc.notifications.indexOf(n) >= seen && n.method === 'authChanged' && pred(n.params))
    renameInto(path.join(codexHome, 'auth.json'), chatgptAuth('watch-1').text)
    await nextChange((p) => p.account?.email === 'watch-1@example.com')
    await fs.rm(codexHome, { recursive: true, force: true })
    await nextChange((p) => p.loggedIn === false)
    await fs.mkdir(codexHome, { recursive: true, mode: 0o700 })
    renameInto(path.join(codexHome, 'auth.json'), chatgptAuth('watch-2').text)
    await nextChange((p) => p.account?.email === 'watch-2@example.com')
    t.pass(`logged in as ${DEFAULT_ACCOUNT.email}, refreshed, logged out, and saw auth.json and CODEX_HOME change`)

    // ExecReload, as systemd runs it (same filter): traced too.
    const reload = execArgv(unitSetting(service, 'ExecReload')).map((w) => (w === '$MAINPID' ? String(act.pid) : w))
    const reloaded = logged('SIGHUP: reloading configuration')
    const kill = spawnSync(strace, ['-f', '-qq', '-o', reloadTrace, '--', ...reload], { encoding: 'utf8' })
    t.equal(kill.status, 0, `${reload.join(' ')} ran`, { stderr: kill.stderr })
    await reloaded
  }
  await Promise.race([scenario(), died])

  // systemctl stop: SIGTERM, a clean exit.
  stopping = true
  act.kill('SIGTERM')
  const [exitCode] = await exited
  t.equal(exitCode, 0, 'the daemon stopped cleanly')

  const calls = syscallsIn(await fs.readFile(trace, 'utf8'))
  for (const [name, n] of syscallsIn(await fs.readFile(reloadTrace, 'utf8'))) calls.set(name, (calls.get(name) ?? 0) + n)
  // The run did reach the parts it is meant to cover (a trace of nothing would pass vacuously).
  // (Names vary by architecture: x86_64 has rename, aarch64 only renameat/renameat2.)
  for (const family of [['execve'], ['accept4'], ['connect'], ['flock'], ['rename', 'renameat', 'renameat2'], ['inotify_add_watch'], ['kill']]) {
    t.ok(family.some((c) => calls.has(c)), `the trace holds ${family.join(' or ')}`)
  }

  const analyze = spawnSync(analyzeBin, ['syscall-filter'], { encoding: 'utf8', env: { ...process.env, SYSTEMD_PAGER: '' } })
  t.equal(analyze.status, 0, 'systemd-analyze syscall-filter', { stderr: analyze.stderr })
  const allowed = allowedSyscalls(service, syscallGroups(analyze.stdout))
  t.ok(allowed.has('read') && allowed.has('epoll_wait'), 'the allow list expands to system calls')
  t.notOk(allowed.has('ptrace') || allowed.has('mount') || allowed.has('init_module'), 'and is not everything')

  const outside = [...calls.keys()].filter((c) => !allowed.has(c)).sort()
  t.same(outside, [], `all ${calls.size} distinct system calls are allowed by the unit`, {
    outside: Object.fromEntries(outside.map((c) => [c, calls.get(c)])),
  })
  t.comment(`${calls.size} distinct system calls (${[...calls.values()].reduce((a, b) => a + b, 0)} calls) in ${Date.now() - started} ms`)
})
