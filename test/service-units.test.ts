// The shipped service definitions and `codex-authd service install|uninstall`.
// systemd-analyze is required (CI installs Debian's `systemd` package): missing means FAIL.

import t from 'tap'
import { spawnSync } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import plist from 'plist'
import {
  LAUNCHD_LABEL,
  LAUNCHD_PLIST,
  SERVICE_MARKER,
  SYSTEMD_UNITS,
  TEMPLATE_PLACEHOLDERS,
  runServiceCommand,
  type ServiceContext,
} from '../src/service/install.js'
import { execArgv, readInstalledUnits, unitSetting } from './support/units.js'

/** The subtest type (the last overload of t.test takes just the callback). */
type TT = Parameters<Parameters<typeof t.test>[0]>[0]

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const shippedSystemd = SYSTEMD_UNITS.map((u) => path.join(packageRoot, 'systemd', u))
const shippedPlist = path.join(packageRoot, 'launchd', LAUNCHD_PLIST)

async function tempDir(t: TT, name: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `codex-authd-${name}-`))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  return dir
}

/** A fake installation: node reached through a path with a space and a '%', a daemon file. */
async function fakeInstall(t: TT) {
  const root = await tempDir(t, 'pkg')
  const binDir = path.join(root, 'node 100%')
  await fs.mkdir(binDir)
  const nodePath = path.join(binDir, 'node')
  await fs.symlink(process.execPath, nodePath)
  const daemonPath = path.join(root, 'pkg $dir', 'dist', 'codex-authd.cjs')
  await fs.mkdir(path.dirname(daemonPath), { recursive: true })
  await fs.writeFile(daemonPath, '// fake daemon\n')
  return { nodePath, daemonPath }
}

function makeCtx(
  env: NodeJS.ProcessEnv,
  prog: { nodePath: string; daemonPath: string },
  platform: NodeJS.Platform = 'linux',
) {
  const out: string[] = []
  const err: string[] = []
  const ctx: ServiceContext = {
    env,
    platform,
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    nodePath: prog.nodePath,
    daemonPath: prog.daemonPath,
    packageRoot,
  }
  return {
    ctx,
    out: () => out.join(''),
    err: () => err.join(''),
    reset: () => {
      out.length = 0
      err.length = 0
    },
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => true,
    () => false,
  )
}

/**
 * `systemd-analyze --user verify` with a private 0700 runtime dir (docs/testing.md#unit-files). Unknown keys only
 * warn with status 0, so stderr is checked too: every line must match one of `allowed`.
 */
async function analyze(t: TT, files: string[], allowed: RegExp[] = []) {
  const runtime = await tempDir(t, 'rt')
  await fs.chmod(runtime, 0o700)
  const home = await tempDir(t, 'ahome')
  const r = spawnSync('systemd-analyze', ['--user', 'verify', ...files], {
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: runtime, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), SYSTEMD_PAGER: '' },
  })
  if (r.error) {
    t.fail(`systemd-analyze could not run (${r.error.message}); install the Debian package "systemd"`)
    return
  }
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '')
  const unexpected = lines.filter((l) => !allowed.some((re) => re.test(l)))
  t.same(unexpected, [], 'systemd-analyze printed no unexpected warnings', { stderr: r.stderr })
  if (lines.length === 0) t.equal(r.status, 0, 'systemd-analyze exit status', { stdout: r.stdout })
  else t.ok(r.status === 0 || r.status === 1, 'status 0, or 1 for the allowed warnings only')
}

t.test('shipped systemd units pass systemd-analyze --user verify', async (t) => {
  // The template's ExecStart is a placeholder: where /usr/bin/node does not exist, that is the one
  // message allowed.
  const [, placeholderNode] = /^ExecStart=(\S+)/.exec(TEMPLATE_PLACEHOLDERS.systemdExecStart) ?? []
  t.ok(placeholderNode)
  const esc = placeholderNode!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
  await analyze(t, shippedSystemd, [
    new RegExp(`^codex-authd\\.service: Command ${esc} is not executable: No such file or directory$`),
  ])
})

t.test('shipped systemd units hold the required settings', async (t) => {
  const socket = await fs.readFile(shippedSystemd[0]!, 'utf8')
  const service = await fs.readFile(shippedSystemd[1]!, 'utf8')
  const has = (text: string, line: string) => t.match(text, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm'), line)
  has(socket, 'ListenStream=%t/codex-authd/default.sock')
  has(socket, 'ListenStream=%t/codex-authd/default.restricted.sock')
  has(socket, 'SocketMode=0600')
  has(socket, 'DirectoryMode=0700')
  has(socket, 'RemoveOnStop=yes')
  has(socket, 'WantedBy=sockets.target')
  has(service, TEMPLATE_PLACEHOLDERS.systemdExecStart)
  has(service, 'Restart=on-failure')
  has(service, 'RestartPreventExitStatus=3 4 78')
  has(service, 'EnvironmentFile=-%E/codex-authd/env')
  has(service, 'ExecReload=/bin/kill -HUP $MAINPID')
  has(service, 'UMask=0077')
  has(service, 'SystemCallFilter=@system-service @pkey')
  has(service, 'SystemCallErrorNumber=EPERM')
  has(service, 'NoNewPrivileges=yes')
  has(service, 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6')
  has(service, 'LockPersonality=yes')
  t.match(service, /^StartLimitBurst=\d+$/m)
  t.match(service, /^StartLimitIntervalSec=\d+$/m)
  t.notMatch(service, /^MemoryDenyWriteExecute=/m, 'no MemoryDenyWriteExecute (breaks V8)')
  t.notMatch(service, /^WantedBy=/m, 'the socket, not the service, owns start-up')
  t.notMatch(socket + service, new RegExp(SERVICE_MARKER), 'templates carry no marker')
  t.match(service, /^# Supported Node versions: 20 to 26\./m, 'the unit says which Node versions run it')
})

t.test('service install --systemd', async (t) => {
  const prog = await fakeInstall(t)
  const home = await tempDir(t, 'home')
  const config = path.join(home, 'xdg config')
  const env = { HOME: home, XDG_CONFIG_HOME: config }
  const dir = path.join(config, 'systemd', 'user')
  const [socketFile, serviceFile] = SYSTEMD_UNITS.map((u) => path.join(dir, u)) as [string, string]
  const { ctx, out, err, reset } = makeCtx(env, prog)

  t.equal(await runServiceCommand(['install', '--systemd'], ctx), 0, err())
  t.match(out(), `wrote ${socketFile}`)
  t.match(out(), `wrote ${serviceFile}`)
  t.match(out(), 'systemctl --user daemon-reload && systemctl --user enable --now codex-authd.socket')

  const service = await fs.readFile(serviceFile, 'utf8')
  const socket = await fs.readFile(socketFile, 'utf8')
  t.ok(service.startsWith(`# ${SERVICE_MARKER}`), 'service marked')
  t.ok(socket.startsWith(`# ${SERVICE_MARKER}`), 'socket marked')
  const execStarts = service.match(/^ExecStart=.*$/gm)
  t.same(execStarts, [`ExecStart="${prog.nodePath.replace(/%/g, '%%')}" "${prog.daemonPath.replace(/\$/g, '$$$$')}"`])
  t.ok(path.isAbsolute(prog.nodePath) && path.isAbsolute(prog.daemonPath))
  // Apart from the marker and ExecStart, the installed units are the templates.
  const body = (s: string) => s.split('\n').slice(1).join('\n')
  t.equal(body(socket), await fs.readFile(shippedSystemd[0]!, 'utf8'))
  t.equal(
    body(service).replace(/^ExecStart=.*$/m, TEMPLATE_PLACEHOLDERS.systemdExecStart),
    await fs.readFile(shippedSystemd[1]!, 'utf8'),
  )
  t.equal((await fs.stat(serviceFile)).mode & 0o777, 0o644)

  await t.test('installed units pass systemd-analyze with no warning at all', (t) => analyze(t, [socketFile, serviceFile]))

  await t.test('the environment file follows XDG_CONFIG_HOME, as the install note says', async (t) => {
    const [, file] = /^EnvironmentFile=-(.*)$/m.exec(service) ?? []
    // %E in a user manager is $XDG_CONFIG_HOME (systemd.unit(5), "Specifiers").
    t.equal(file?.replace(/%E/g, config), path.join(config, 'codex-authd', 'env'))
    const other = makeCtx({ ...env, CODEX_HOME: path.join(home, 'elsewhere') }, prog)
    t.equal(await runServiceCommand(['install', '--systemd'], other.ctx), 0, other.err())
    t.match(other.err(), `set CODEX_HOME in ${path.join(config, 'codex-authd', 'env')}`)
  })

  await t.test('reinstall over our own files', async (t) => {
    reset()
    t.equal(await runServiceCommand(['install', '--systemd'], ctx), 0, err())
    t.match(out(), `unchanged ${serviceFile}`)
  })

  await t.test('uninstall refuses while the socket is enabled', async (t) => {
    const wants = path.join(dir, 'sockets.target.wants')
    await fs.mkdir(wants)
    await fs.symlink(socketFile, path.join(wants, 'codex-authd.socket'))
    reset()
    t.equal(await runServiceCommand(['uninstall', '--systemd'], ctx), 1)
    t.match(err(), 'systemctl --user disable --now codex-authd.socket codex-authd.service')
    t.ok(await exists(serviceFile), 'nothing removed')
    await fs.rm(wants, { recursive: true })
  })

  await t.test('uninstall removes what install wrote', async (t) => {
    reset()
    t.equal(await runServiceCommand(['uninstall', '--systemd'], ctx), 0, err())
    t.match(out(), `removed ${socketFile}`)
    t.match(out(), `removed ${serviceFile}`)
    t.match(out(), 'systemctl --user daemon-reload')
    t.notOk(await exists(socketFile))
    t.notOk(await exists(serviceFile))
    reset()
    t.equal(await runServiceCommand(['uninstall', '--systemd'], ctx), 0, 'nothing left: still 0')
    t.match(out(), 'not present')
  })
})

t.test('service install --systemd refuses a file it did not write', async (t) => {
  const prog = await fakeInstall(t)
  const home = await tempDir(t, 'home')
  const dir = path.join(home, '.config', 'systemd', 'user') // default XDG_CONFIG_HOME
  const serviceFile = path.join(dir, 'codex-authd.service')
  const socketFile = path.join(dir, 'codex-authd.socket')
  await fs.mkdir(dir, { recursive: true })
  const foreign = '[Service]\nExecStart=/bin/true\n'
  await fs.writeFile(serviceFile, foreign)
  const { ctx, out, err, reset } = makeCtx({ HOME: home }, prog)

  t.equal(await runServiceCommand(['install'], ctx), 1, 'linux defaults to systemd, and refuses')
  t.match(err(), `refusing to overwrite ${serviceFile}`)
  t.match(err(), '--force')
  t.equal(await fs.readFile(serviceFile, 'utf8'), foreign, 'foreign file untouched')
  t.notOk(await exists(socketFile), 'nothing written when refusing')

  reset()
  t.equal(await runServiceCommand(['uninstall'], ctx), 1, 'uninstall refuses a foreign file too')
  t.equal(await fs.readFile(serviceFile, 'utf8'), foreign)

  reset()
  t.equal(await runServiceCommand(['install', '--force'], ctx), 0, err())
  t.match(out(), `replaced ${serviceFile}`)
  t.match(out(), `wrote ${socketFile}`)
  t.ok((await fs.readFile(serviceFile, 'utf8')).startsWith(`# ${SERVICE_MARKER}`), 'overwritten with ours')

  // Our file with its marker line deleted counts as the user's.
  const edited = (await fs.readFile(serviceFile, 'utf8')).split('\n').slice(1).join('\n')
  await fs.writeFile(serviceFile, edited)
  reset()
  t.equal(await runServiceCommand(['install'], ctx), 1)

  reset()
  t.equal(await runServiceCommand(['uninstall', '--force'], ctx), 0, err())
  t.notOk(await exists(serviceFile))
  t.notOk(await exists(socketFile))
})

t.test('shipped launchd plist parses and holds the keys', async (t) => {
  const doc = plist.parse(await fs.readFile(shippedPlist, 'utf8')) as Record<string, unknown>
  t.equal(doc.Label, LAUNCHD_LABEL)
  t.same(doc.ProgramArguments, [
    TEMPLATE_PLACEHOLDERS.launchdNode,
    TEMPLATE_PLACEHOLDERS.launchdDaemon,
    '--socket',
    TEMPLATE_PLACEHOLDERS.launchdSocket,
  ])
  t.equal(doc.RunAtLoad, true)
  t.same(doc.KeepAlive, { SuccessfulExit: false })
  t.equal(doc.Umask, 0o077, 'Umask 0077, as the systemd unit')
  t.match(await fs.readFile(shippedPlist, 'utf8'), /^ {2}Supported Node versions: 20 to 26\./m, 'the agent says which Node versions run it')
  t.equal(doc.StandardOutPath, TEMPLATE_PLACEHOLDERS.launchdLog)
  t.equal(doc.StandardErrorPath, TEMPLATE_PLACEHOLDERS.launchdLog)
  t.match(String(doc.StandardOutPath), /\/Library\/Logs\/codex-authd\.log$/)
  t.notMatch(await fs.readFile(shippedPlist, 'utf8'), SERVICE_MARKER, 'template carries no marker')
})

t.test('service install --launchd', async (t) => {
  const prog = await fakeInstall(t)
  // '&' and '<' must come out XML-escaped and parse back to the same path.
  const home = path.join(await tempDir(t, 'home'), 'Jane & <Co>')
  await fs.mkdir(home)
  const file = path.join(home, 'Library', 'LaunchAgents', LAUNCHD_PLIST)
  {
    const { ctx, out, err } = makeCtx({ HOME: home }, prog, 'darwin')
    t.equal(await runServiceCommand(['install'], ctx), 0, err())
    t.match(out(), file)
    t.match(out(), `launchctl bootstrap gui/$(id -u) '${file}'`)
    t.equal(err(), '', 'nothing to warn about on macOS')
  }
  const text = await fs.readFile(file, 'utf8')
  t.ok(text.startsWith('<?xml'), 'XML declaration stays first')
  t.match(text.split('\n')[1], `<!-- ${SERVICE_MARKER}`)
  const doc = plist.parse(text) as Record<string, unknown>
  t.equal(doc.Label, LAUNCHD_LABEL)
  t.same(doc.ProgramArguments, [prog.nodePath, prog.daemonPath, '--socket', path.join(home, '.codex', 'run', 'authd.sock')])
  t.equal(doc.StandardOutPath, path.join(home, 'Library', 'Logs', 'codex-authd.log'))
  t.equal(doc.StandardErrorPath, path.join(home, 'Library', 'Logs', 'codex-authd.log'))
  t.equal(doc.RunAtLoad, true)
  t.same(doc.KeepAlive, { SuccessfulExit: false })
  t.ok(await exists(path.join(home, 'Library', 'Logs')), 'log directory created')

  const { ctx, out, err, reset } = makeCtx({ HOME: home }, prog, 'darwin')
  t.equal(await runServiceCommand(['uninstall'], ctx), 0, err())
  t.match(out(), `removed ${file}`)
  t.match(out(), `launchctl bootout gui/$(id -u)/${LAUNCHD_LABEL}`)
  t.notOk(await exists(file))

  // A plist we did not write is neither overwritten nor removed without --force.
  const foreign = '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict/></plist>\n'
  await fs.writeFile(file, foreign)
  reset()
  t.equal(await runServiceCommand(['install'], ctx), 1)
  t.match(err(), 'refusing to overwrite')
  reset()
  t.equal(await runServiceCommand(['uninstall'], ctx), 1)
  t.equal(await fs.readFile(file, 'utf8'), foreign)
  reset()
  t.equal(await runServiceCommand(['install', '--force'], ctx), 0, err())
  t.equal((plist.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>).Label, LAUNCHD_LABEL)
  reset()
  t.equal(await runServiceCommand(['uninstall'], ctx), 0, err())
  t.notOk(await exists(file))
})

t.test('a service manager this platform does not run: install refuses unless --force, and says so', async (t) => {
  const prog = await fakeInstall(t)
  for (const { platform, manager, other, file, command } of [
    {
      platform: 'linux',
      manager: 'launchd',
      other: 'darwin',
      file: (home: string) => path.join(home, 'Library', 'LaunchAgents', LAUNCHD_PLIST),
      command: 'launchctl',
    },
    {
      platform: 'darwin',
      manager: 'systemd',
      other: 'linux',
      file: (home: string) => path.join(home, '.config', 'systemd', 'user', 'codex-authd.service'),
      command: 'systemctl',
    },
  ] as const) {
    await t.test(`--${manager} on ${platform}`, async (t) => {
      const home = await tempDir(t, 'home')
      const { ctx, out, err, reset } = makeCtx({ HOME: home }, prog, platform)

      t.equal(await runServiceCommand(['install', `--${manager}`], ctx), 1, 'refused')
      t.match(err(), `${manager} does not run on ${platform} (it runs on ${other})`)
      t.match(err(), '--force')
      t.equal(out(), '')
      t.same(await fs.readdir(home), [], 'nothing written')

      reset()
      t.equal(await runServiceCommand(['install', `--${manager}`, '--force'], ctx), 0, err())
      t.match(err(), `warning: ${manager} does not run on ${platform}`)
      t.match(err(), 'nothing on this machine will read them')
      t.match(out(), `wrote ${file(home)}`)
      t.notMatch(out(), command, `no ${command} command that cannot run here`)
      t.ok(await exists(file(home)))

      reset()
      t.equal(await runServiceCommand(['uninstall', `--${manager}`], ctx), 0, 'uninstall needs no --force')
      t.match(err(), `note: ${manager} does not run on ${platform} (it runs on ${other}): removing the files only`)
      t.match(out(), `removed ${file(home)}`)
      t.notMatch(out(), command)
      t.notOk(await exists(file(home)))
    })
  }
})

t.test('usage errors exit 64, refusals exit 1', async (t) => {
  const prog = await fakeInstall(t)
  const home = await tempDir(t, 'home')
  const usage: [string[], NodeJS.Platform][] = [
    [[], 'linux'],
    [['install', '--systemd', '--launchd'], 'linux'],
    [['install', '--bogus'], 'linux'],
    [['install', 'uninstall'], 'linux'],
    [['reinstall'], 'linux'],
    [['install'], 'win32'],
  ]
  for (const [args, platform] of usage) {
    const { ctx, err } = makeCtx({ HOME: home }, prog, platform)
    t.equal(await runServiceCommand(args, ctx), 64, `${platform}: ${args.join(' ')}`)
    t.match(err(), 'usage: codex-authd service')
  }
  const help = makeCtx({ HOME: home }, prog)
  t.equal(await runServiceCommand(['--help'], help.ctx), 0)
  t.match(help.out(), 'usage:')

  const missing = makeCtx({ HOME: home }, { ...prog, daemonPath: path.join(home, 'nope.cjs') })
  t.equal(await runServiceCommand(['install'], missing.ctx), 1)
  t.match(missing.err(), 'npm run build')
  const noHome = makeCtx({}, prog)
  t.equal(await runServiceCommand(['install'], noHome.ctx), 1)
  t.match(noHome.err(), 'HOME')
  t.notOk(await exists(path.join(home, '.config')), 'nothing written')
})

t.test('socket activation with the installed units: the first codex-auth status starts the daemon', async (t) => {
  const home = await tempDir(t, 'acthome')
  const runtime = await tempDir(t, 'actrt')
  await fs.chmod(runtime, 0o700)
  const env = { HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), XDG_RUNTIME_DIR: runtime, PATH: process.env.PATH ?? '/usr/bin:/bin' }
  const daemonPath = path.join(packageRoot, 'dist', 'codex-authd.cjs')
  const { ctx, err } = makeCtx(env, { nodePath: process.execPath, daemonPath })
  t.equal(await runServiceCommand(['install', '--systemd'], ctx), 0, err())
  const { service, execStart: argv, listen, listens } = await readInstalledUnits(env.XDG_CONFIG_HOME, runtime)
  t.same(listens, [listen, listen.replace(/\.sock$/, '.restricted.sock')], 'the main socket, then the restricted one')
  t.same(argv, [process.execPath, daemonPath], 'ExecStart runs this node on this daemon')

  // The exact ExecStart command behind systemd-socket-activate, as the socket unit would run it.
  const { spawn } = await import('node:child_process')
  const act = spawn('systemd-socket-activate', [...listens.flatMap((l) => ['-l', l]), ...Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`]), ...argv], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => void act.kill('SIGKILL'))
  let logs = ''
  act.stdout.setEncoding('utf8').on('data', (d: string) => (logs += d))
  await new Promise<void>((resolve, reject) => {
    let e = ''
    act.stderr.setEncoding('utf8').on('data', (d: string) => {
      e += d
      if ((e.match(/Listening on/g) ?? []).length === listens.length) resolve()
    })
    act.once('error', reject)
    act.once('exit', (code) => reject(new Error(`systemd-socket-activate exited ${code}: ${e}`)))
  })
  t.notOk(logs.includes('codex-authd started'), 'nothing runs before the first client')

  // codex-auth computes the same socket path on its own (XDG_RUNTIME_DIR, default CODEX_HOME).
  const cli = spawnSync(process.execPath, [path.join(packageRoot, 'dist', 'codex-auth.cjs'), 'status', '--json'], { env, encoding: 'utf8' })
  t.equal(cli.status, 1, 'answered: not logged in (exit 1)')
  const status = JSON.parse(cli.stdout) as { loggedIn: boolean; daemon: { activated: boolean; pid: number } }
  t.equal(status.loggedIn, false)
  t.equal(status.daemon.activated, true, 'the daemon serves the inherited socket')
  t.equal(status.daemon.pid, act.pid, 'systemd-socket-activate exec()ed the installed ExecStart')
  t.ok((await fs.lstat(listen)).isSocket(), 'the socket is still the one systemd bound')
  const restricted = spawnSync(process.execPath, [path.join(packageRoot, 'dist', 'codex-auth.cjs'), '--socket', listens[1]!, 'logout', '--json'], { env, encoding: 'utf8' })
  t.match(JSON.parse(restricted.stdout), { code: 'restricted' }, 'the second fd is served as the restricted socket')

  // `systemctl --user reload`: the installed ExecReload, with $MAINPID as systemd expands it.
  const reload = execArgv(unitSetting(service, 'ExecReload')).map((w) => (w === '$MAINPID' ? String(act.pid) : w))
  const reloaded = new Promise<void>((resolve) => {
    const seen = (): void => {
      if (logs.includes('SIGHUP: reloading configuration')) {
        act.stdout.off('data', seen)
        resolve()
      }
    }
    act.stdout.on('data', seen)
  })
  const kill = spawnSync(reload[0]!, reload.slice(1), { encoding: 'utf8' })
  t.equal(kill.status, 0, `${reload.join(' ')} ran`, { stderr: kill.stderr })
  await reloaded
  t.pass('the daemon reloaded on the unit\'s ExecReload')
  t.equal(act.exitCode, null, 'and kept running')
})
