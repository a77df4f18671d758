// `codex-authd service install|uninstall [--systemd | --launchd] [--force]` (docs/contract.md#codex-authd).
//
// Writes the shipped unit templates (<packageRoot>/systemd, <packageRoot>/launchd) with absolute
// paths to this installation's node and daemon into the user's service-manager directory, marks
// every file it writes, and never overwrites or removes a file it did not write unless --force.
// It only writes files and prints the commands to run next; it never calls systemctl/launchctl.

import { promises as fs } from 'node:fs'
import path from 'node:path'
import { writeFileAtomic } from '../store/atomic-write.js'
import { UsageError, shellQuote } from '../cli-common.js'
import { LAUNCHD_LABEL, LAUNCHD_PLIST, SYSTEMD_SERVICE_UNIT, SYSTEMD_SOCKET_UNIT } from '../service-names.js'

export interface ServiceContext {
  env: NodeJS.ProcessEnv
  platform: NodeJS.Platform
  stdout: (s: string) => void
  stderr: (s: string) => void
  /** Absolute path to the node binary to run the daemon with (process.execPath). */
  nodePath: string
  /** Absolute path to the bundled daemon (`<packageRoot>/dist/codex-authd.cjs`). */
  daemonPath: string
  /** The package root, holding the `systemd/` and `launchd/` templates. */
  packageRoot: string
}

export type ServiceManager = 'systemd' | 'launchd'

/** What rendering the service files needs (`service install`, and `codex-auth doctor` comparing them). */
export type RenderContext = Pick<ServiceContext, 'env' | 'nodePath' | 'daemonPath' | 'packageRoot'>

/** Every file `service install` writes carries this text in its first lines. */
export const SERVICE_MARKER = 'Written by codex-authd service install'
export { LAUNCHD_LABEL, LAUNCHD_PLIST, SYSTEMD_SERVICE_UNIT, SYSTEMD_SOCKET_UNIT }
export const SYSTEMD_UNITS = [SYSTEMD_SOCKET_UNIT, SYSTEMD_SERVICE_UNIT] as const

/** The placeholders in the shipped templates that `service install` replaces. */
export const TEMPLATE_PLACEHOLDERS = {
  systemdExecStart: 'ExecStart=/usr/bin/node /usr/lib/node_modules/codex-authd/dist/codex-authd.cjs',
  launchdNode: '/usr/local/bin/node',
  launchdDaemon: '/usr/local/lib/node_modules/codex-authd/dist/codex-authd.cjs',
  launchdSocket: '/Users/you/.codex/run/authd.sock',
  launchdLog: '/Users/you/Library/Logs/codex-authd.log',
} as const

export const EXIT_OK = 0
export const EXIT_REFUSED = 1
export const EXIT_USAGE = 64

const USAGE = `usage: codex-authd service install|uninstall [--systemd | --launchd] [--force]

  install     write the user service definitions for this installation
  uninstall   remove the service definitions that install wrote
  --systemd   systemd user units in $XDG_CONFIG_HOME/systemd/user (default on Linux)
  --launchd   a launchd agent in ~/Library/LaunchAgents (default on macOS)
  --force     overwrite or remove files that service install did not write, and write
              definitions for a service manager that this platform does not run
`

/** The one platform each service manager runs on. */
const MANAGER_PLATFORM: Readonly<Record<ServiceManager, NodeJS.Platform>> = { systemd: 'linux', launchd: 'darwin' }

/** A refusal or I/O failure: exit 1, message on stderr. */
class Refusal extends Error {}

interface Options {
  action: 'install' | 'uninstall'
  manager: ServiceManager
  force: boolean
  /** The manager does not run on this platform (only reachable with an explicit --systemd/--launchd). */
  elsewhere: boolean
}

interface Target {
  file: string
  content: string
}

/** A file `service install` writes, as found on disk: `foreign` has no marker (edited on purpose, or not ours). */
export interface InstalledFile {
  file: string
  state: 'absent' | 'current' | 'different' | 'foreign'
  /** `different`: the first line (1-based) where the file and what install would write now differ. */
  firstDifferentLine: number | null
}

/** The files `service install` would write for `manager` now, with this node and daemon. Throws when it would refuse. */
async function renderServiceFiles(ctx: RenderContext, manager: ServiceManager): Promise<Target[]> {
  return manager === 'systemd' ? systemdTargets(ctx) : [await launchdTarget(ctx)]
}

/**
 * Each file `service install` would write for `manager`, compared with what is on disk: whether
 * the installed units are current (`codex-auth doctor`). Throws as renderServiceFiles does.
 */
export async function compareInstalled(ctx: RenderContext, manager: ServiceManager): Promise<InstalledFile[]> {
  const out: InstalledFile[] = []
  for (const t of await renderServiceFiles(ctx, manager)) {
    const st = await lstatOrNull(t.file)
    if (st === null) {
      out.push({ file: t.file, state: 'absent', firstDifferentLine: null })
    } else if (!(await isWrittenByUs(t.file))) {
      out.push({ file: t.file, state: 'foreign', firstDifferentLine: null })
    } else {
      const old = await fs.readFile(t.file, 'utf8')
      if (old === t.content) out.push({ file: t.file, state: 'current', firstDifferentLine: null })
      else {
        const a = old.split('\n')
        const b = t.content.split('\n')
        let i = 0
        while (i < a.length && i < b.length && a[i] === b[i]) i++
        out.push({ file: t.file, state: 'different', firstDifferentLine: i + 1 })
      }
    }
  }
  return out
}

/**
 * Runs `codex-authd service ...`; `args` are the words after `service`.
 * Returns the exit status: 0 ok, 64 usage error, 1 refusal or I/O error.
 */
export async function runServiceCommand(args: string[], ctx: ServiceContext): Promise<number> {
  try {
    if (args.includes('--help') || args.includes('-h')) {
      ctx.stdout(USAGE)
      return EXIT_OK
    }
    const opts = parseArgs(args, ctx.platform)
    if (opts.elsewhere) checkElsewhere(ctx, opts)
    if (opts.manager === 'systemd') {
      return opts.action === 'install' ? await installSystemd(ctx, opts) : await uninstallSystemd(ctx, opts)
    }
    return opts.action === 'install' ? await installLaunchd(ctx, opts) : await uninstallLaunchd(ctx, opts)
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.stderr(`codex-authd service: ${err.message}\n${USAGE}`)
      return EXIT_USAGE
    }
    if (err instanceof Refusal) {
      ctx.stderr(`codex-authd service: ${err.message}\n`)
      return EXIT_REFUSED
    }
    const e = err as NodeJS.ErrnoException
    ctx.stderr(`codex-authd service: ${e.path ? `${e.path}: ` : ''}${e.message ?? String(err)}\n`)
    return EXIT_REFUSED
  }
}

function parseArgs(args: string[], platform: NodeJS.Platform): Options {
  let action: Options['action'] | undefined
  let manager: ServiceManager | undefined
  let force = false
  for (const arg of args) {
    if (arg === 'install' || arg === 'uninstall') {
      if (action) throw new UsageError(`unexpected argument '${arg}'`)
      action = arg
    } else if (arg === '--systemd' || arg === '--launchd') {
      const m = arg === '--systemd' ? 'systemd' : 'launchd'
      if (manager && manager !== m) throw new UsageError('--systemd and --launchd are mutually exclusive')
      manager = m
    } else if (arg === '--force') {
      force = true
    } else if (arg.startsWith('-')) {
      throw new UsageError(`unknown option '${arg}'`)
    } else {
      throw new UsageError(`unexpected argument '${arg}'`)
    }
  }
  if (!action) throw new UsageError('expected install or uninstall')
  if (!manager) {
    if (platform === 'linux') manager = 'systemd'
    else if (platform === 'darwin') manager = 'launchd'
    else throw new UsageError(`no supported service manager on platform '${platform}'; pass --systemd or --launchd`)
  }
  return { action, manager, force, elsewhere: MANAGER_PLATFORM[manager] !== platform }
}

/**
 * `--launchd` on Linux or `--systemd` on macOS: the files would land where no service manager
 * reads them. Installing refuses unless --force (then says so); uninstalling goes ahead, since
 * removing what install wrote is how a forced install is undone, but says nothing is running.
 */
function checkElsewhere(ctx: ServiceContext, opts: Options): void {
  const where = `${opts.manager} does not run on ${ctx.platform} (it runs on ${MANAGER_PLATFORM[opts.manager]})`
  if (opts.action === 'uninstall') {
    ctx.stderr(`note: ${where}: removing the files only, there is no service to stop here.\n`)
  } else if (!opts.force) {
    throw new Refusal(
      `${where}, so nothing here would read the ${opts.manager === 'systemd' ? 'units' : 'agent'} that install writes. ` +
        `Run \`codex-authd service install\` on the machine that runs the service, or pass --force to write ` +
        'the files anyway (they name this machine\'s node and daemon paths).',
    )
  } else {
    ctx.stderr(`warning: ${where}: writing the files anyway (--force); nothing on this machine will read them.\n`)
  }
}

// ---------------------------------------------------------------------------------------------
// Locations

function homeDir(env: NodeJS.ProcessEnv): string {
  const home = env.HOME
  if (!home || !path.isAbsolute(home)) throw new Refusal('HOME is not set to an absolute path')
  return path.resolve(home)
}

/** `$XDG_CONFIG_HOME`, else `~/.config`; a relative XDG_CONFIG_HOME is ignored, as the spec says. */
function configHome(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_CONFIG_HOME
  return xdg && path.isAbsolute(xdg) ? xdg : path.join(homeDir(env), '.config')
}

export function systemdUserDir(env: NodeJS.ProcessEnv): string {
  return path.join(configHome(env), 'systemd', 'user')
}

/** The unit's `EnvironmentFile=-%E/codex-authd/env` (%E: the user manager's configuration home). */
export function systemdEnvFile(env: NodeJS.ProcessEnv): string {
  return path.join(configHome(env), 'codex-authd', 'env')
}

/** The link `systemctl --user enable` makes for the socket unit: enabled while it exists. */
export function systemdEnableLink(env: NodeJS.ProcessEnv): string {
  return path.join(systemdUserDir(env), 'sockets.target.wants', SYSTEMD_SOCKET_UNIT)
}

export function launchAgentsDir(env: NodeJS.ProcessEnv): string {
  return path.join(homeDir(env), 'Library', 'LaunchAgents')
}

/** The socket clients compute on macOS for the default CODEX_HOME (docs/contract.md#socket-path, rule 3). */
export function launchdSocketPath(env: NodeJS.ProcessEnv): string {
  return path.join(homeDir(env), '.codex', 'run', 'authd.sock')
}

export function launchdLogPath(env: NodeJS.ProcessEnv): string {
  return path.join(homeDir(env), 'Library', 'Logs', 'codex-authd.log')
}

// ---------------------------------------------------------------------------------------------
// systemd

/** The systemd units as `service install` writes them now: each file's path and content. */
async function systemdTargets(ctx: RenderContext): Promise<Target[]> {
  const dir = systemdUserDir(ctx.env)
  const { nodePath, daemonPath } = await checkProgramPaths(ctx)
  const header = await markerLine(ctx, '# ')
  const execStart = `ExecStart=${systemdQuote(nodePath)} ${systemdQuote(daemonPath)}`
  const targets: Target[] = []
  for (const unit of SYSTEMD_UNITS) {
    let text = await readTemplate(ctx, 'systemd', unit)
    if (unit === SYSTEMD_SERVICE_UNIT) text = replaceExactlyOnce(text, TEMPLATE_PLACEHOLDERS.systemdExecStart, execStart, unit)
    targets.push({ file: path.join(dir, unit), content: `${header}\n${text}` })
  }
  return targets
}

async function installSystemd(ctx: ServiceContext, opts: Options): Promise<number> {
  const dir = systemdUserDir(ctx.env)
  await installFiles(ctx, dir, await systemdTargets(ctx), opts.force)
  noteCodexHome(
    ctx,
    `To serve that home, set CODEX_HOME in ${systemdEnvFile(ctx.env)}, and CODEX_AUTHD_SOCK=$XDG_RUNTIME_DIR/codex-authd/default.sock for clients`,
  )
  nextSteps(ctx, opts, [
    'Next, run:',
    `  systemctl --user daemon-reload && systemctl --user enable --now ${SYSTEMD_SOCKET_UNIT}`,
    `If codex-authd was already running, also: systemctl --user try-restart ${SYSTEMD_SERVICE_UNIT}`,
  ])
  return EXIT_OK
}

async function uninstallSystemd(ctx: ServiceContext, opts: Options): Promise<number> {
  const dir = systemdUserDir(ctx.env)
  const stop = `systemctl --user disable --now ${SYSTEMD_SOCKET_UNIT} ${SYSTEMD_SERVICE_UNIT}`
  // `systemctl --user enable` links the socket into sockets.target.wants; once the unit file is
  // gone, `systemctl disable` can no longer find it, so ask for it to be disabled first.
  const wants = systemdEnableLink(ctx.env)
  const enabled = (await lstatOrNull(wants)) !== null
  if (enabled && !opts.force) {
    throw new Refusal(
      `${SYSTEMD_SOCKET_UNIT} is still enabled (${wants} exists). Stop and disable it first:\n` +
        `  ${stop}\nthen run \`codex-authd service uninstall\` again (or pass --force to remove the units anyway).`,
    )
  }
  const removed = await removeFiles(ctx, SYSTEMD_UNITS.map((u) => path.join(dir, u)), opts.force)
  if (enabled) ctx.stderr(`warning: the enable link ${wants} is left behind; remove it with: rm ${shellQuote(wants)}\n`)
  if (removed > 0) {
    nextSteps(ctx, opts, [
      'If codex-authd is still running, stop it, then reload systemd:',
      `  systemctl --user stop ${SYSTEMD_SOCKET_UNIT} ${SYSTEMD_SERVICE_UNIT}`,
      '  systemctl --user daemon-reload',
    ])
  }
  return EXIT_OK
}

/**
 * Quotes one ExecStart= word: `%` and `$` are specifiers/variables; spaces need quotes. systemd's
 * quoting, not a shell's (backslash escapes hold inside quotes too), hence not shellQuote.
 */
export function systemdQuote(word: string): string {
  if (/[\x00-\x1f\x7f]/.test(word)) throw new Refusal(`path contains a control character: ${JSON.stringify(word)}`)
  const s = word.replace(/%/g, '%%').replace(/\$/g, () => '$$')
  if (!/[\s"'\\;]/.test(s)) return s
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

// ---------------------------------------------------------------------------------------------
// launchd

/** The launchd agent as `service install` writes it now: its path and content. */
async function launchdTarget(ctx: RenderContext): Promise<Target> {
  const file = path.join(launchAgentsDir(ctx.env), LAUNCHD_PLIST)
  const { nodePath, daemonPath } = await checkProgramPaths(ctx)
  const socket = launchdSocketPath(ctx.env)
  const log = launchdLogPath(ctx.env)
  let text = await readTemplate(ctx, 'launchd', LAUNCHD_PLIST)
  const P = TEMPLATE_PLACEHOLDERS
  text = replaceExactlyOnce(text, xmlString(P.launchdNode), xmlString(nodePath), LAUNCHD_PLIST)
  text = replaceExactlyOnce(text, xmlString(P.launchdDaemon), xmlString(daemonPath), LAUNCHD_PLIST)
  text = replaceExactlyOnce(text, xmlString(P.launchdSocket), xmlString(socket), LAUNCHD_PLIST)
  text = replaceAll(text, xmlString(P.launchdLog), xmlString(log), 2, LAUNCHD_PLIST)
  // The marker goes right after the XML declaration, which must stay first.
  const decl = /^<\?xml[^>]*\?>\n/.exec(text)
  if (!decl) throw new Refusal(`template ${LAUNCHD_PLIST} does not start with an XML declaration`)
  const marker = await markerLine(ctx, '')
  text = `${decl[0]}<!-- ${marker} -->\n${text.slice(decl[0].length)}`
  return { file, content: text }
}

async function installLaunchd(ctx: ServiceContext, opts: Options): Promise<number> {
  const dir = launchAgentsDir(ctx.env)
  const { file, content } = await launchdTarget(ctx)
  const socket = launchdSocketPath(ctx.env)
  const log = launchdLogPath(ctx.env)
  if (Buffer.byteLength(socket) > 103) {
    ctx.stderr(
      `warning: the socket path ${socket} is longer than macOS allows (104 bytes with its NUL); ` +
        'the daemon will refuse it. Set CODEX_AUTHD_SOCK to a shorter path and pass it as --socket.\n',
    )
  }
  await installFiles(ctx, dir, [{ file, content }], opts.force)
  // launchd does not create the log's directory.
  await fs.mkdir(path.dirname(log), { recursive: true })
  noteCodexHome(
    ctx,
    `To serve that home, add --codex-home DIR to ProgramArguments in ${file}, set --socket to DIR/run/authd.sock, and delete the marker line`,
  )
  nextSteps(ctx, opts, [
    'Next, run:',
    `  launchctl bootstrap gui/$(id -u) ${shellQuote(file)}`,
    `If it is already loaded, first: launchctl bootout gui/$(id -u)/${LAUNCHD_LABEL}`,
  ])
  return EXIT_OK
}

async function uninstallLaunchd(ctx: ServiceContext, opts: Options): Promise<number> {
  const file = path.join(launchAgentsDir(ctx.env), LAUNCHD_PLIST)
  nextSteps(ctx, opts, ['Stop the agent first if it is loaded (this works after removal too):', `  launchctl bootout gui/$(id -u)/${LAUNCHD_LABEL}`])
  await removeFiles(ctx, [file], opts.force)
  return EXIT_OK
}

function xmlString(value: string): string {
  return `<string>${xmlEscape(value)}</string>`
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;')
}

// ---------------------------------------------------------------------------------------------
// Shared

async function checkProgramPaths(ctx: RenderContext): Promise<{ nodePath: string; daemonPath: string }> {
  for (const [what, p] of [
    ['node', ctx.nodePath],
    ['daemon', ctx.daemonPath],
  ] as const) {
    if (!path.isAbsolute(p)) throw new Refusal(`the ${what} path is not absolute: ${p}`)
    const st = await fs.stat(p).catch(() => null)
    if (!st?.isFile()) {
      throw new Refusal(`the ${what} is not a file at ${p}${what === 'daemon' ? ' (is the package built? run `npm run build`)' : ''}`)
    }
  }
  return { nodePath: path.resolve(ctx.nodePath), daemonPath: path.resolve(ctx.daemonPath) }
}

async function markerLine(ctx: RenderContext, prefix: string): Promise<string> {
  let version = ''
  try {
    const pkg = JSON.parse(await fs.readFile(path.join(ctx.packageRoot, 'package.json'), 'utf8')) as { version?: unknown }
    if (typeof pkg.version === 'string') version = ` (codex-authd ${pkg.version})`
  } catch {
    // The version is informative only.
  }
  return `${prefix}${SERVICE_MARKER}${version}. Delete this line to keep your edits: install will then refuse to overwrite the file.`
}

async function readTemplate(ctx: RenderContext, sub: string, name: string): Promise<string> {
  const file = path.join(ctx.packageRoot, sub, name)
  try {
    return await fs.readFile(file, 'utf8')
  } catch (err) {
    throw new Refusal(`cannot read the template ${file}: ${(err as Error).message}`)
  }
}

function replaceExactlyOnce(text: string, from: string, to: string, name: string): string {
  return replaceAll(text, from, to, 1, name)
}

function replaceAll(text: string, from: string, to: string, expected: number, name: string): string {
  const parts = text.split(from)
  if (parts.length - 1 !== expected) {
    throw new Refusal(`template ${name}: expected ${expected} occurrence(s) of '${from}', found ${parts.length - 1}`)
  }
  return parts.join(to)
}

/** True if `file` is a regular file whose first lines carry our marker. */
export async function isWrittenByUs(file: string): Promise<boolean> {
  const st = await lstatOrNull(file)
  if (!st?.isFile()) return false
  const head = (await fs.readFile(file, 'utf8')).split('\n', 5).join('\n')
  return head.includes(SERVICE_MARKER)
}

async function lstatOrNull(file: string) {
  try {
    return await fs.lstat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/** Refuses (before writing anything) if a target exists that we did not write, unless force. */
async function installFiles(ctx: ServiceContext, dir: string, targets: Target[], force: boolean): Promise<void> {
  const foreign: string[] = []
  for (const t of targets) {
    const st = await lstatOrNull(t.file)
    if (st && !(await isWrittenByUs(t.file))) {
      if (st.isDirectory()) throw new Refusal(`${t.file} is a directory`)
      foreign.push(t.file)
    }
  }
  if (foreign.length && !force) {
    throw new Refusal(
      `refusing to overwrite ${foreign.join(', ')}: not written by codex-authd service install ` +
        '(pass --force to replace it)',
    )
  }
  await fs.mkdir(dir, { recursive: true })
  for (const t of targets) {
    const old = await fs.readFile(t.file, 'utf8').catch(() => null)
    if (old === t.content && !foreign.includes(t.file)) {
      ctx.stdout(`unchanged ${t.file}\n`)
      continue
    }
    await writeFileAtomic(t.file, t.content, { mode: 0o644 })
    ctx.stdout(`${foreign.includes(t.file) ? 'replaced' : 'wrote'} ${t.file}\n`)
  }
}

/** Refuses (before removing anything) if a file exists that we did not write, unless force. */
async function removeFiles(ctx: ServiceContext, files: string[], force: boolean): Promise<number> {
  const present: string[] = []
  const foreign: string[] = []
  for (const file of files) {
    const st = await lstatOrNull(file)
    if (!st) continue
    if (st.isDirectory()) throw new Refusal(`${file} is a directory`)
    present.push(file)
    if (!(await isWrittenByUs(file))) foreign.push(file)
  }
  if (foreign.length && !force) {
    throw new Refusal(
      `refusing to remove ${foreign.join(', ')}: not written by codex-authd service install (pass --force to remove it)`,
    )
  }
  for (const file of files) {
    if (!present.includes(file)) {
      ctx.stdout(`not present ${file}\n`)
      continue
    }
    await fs.unlink(file)
    ctx.stdout(`removed ${file}\n`)
  }
  return present.length
}

/** The systemctl/launchctl commands to run next: only where that manager runs (see checkElsewhere). */
function nextSteps(ctx: ServiceContext, opts: Options, lines: string[]): void {
  if (!opts.elsewhere) ctx.stdout(`${lines.join('\n')}\n`)
}

function noteCodexHome(ctx: ServiceContext, advice: string): void {
  const codexHome = ctx.env.CODEX_HOME
  if (!codexHome) return
  if (path.resolve(codexHome) === path.join(homeDir(ctx.env), '.codex')) return
  ctx.stderr(
    `note: CODEX_HOME is set to ${codexHome}, but the service serves the default ~/.codex. ${advice} ` +
      '(see "Run it as a service" in the README).\n',
  )
}

