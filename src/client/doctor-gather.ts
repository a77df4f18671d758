// `codex-auth doctor`, the I/O edge: gathers the facts src/client/doctor.ts judges (stats, the
// daemon's answer, the service files, the override URLs, `codex --version`, the shell's rc files)
// and prints the report. Loaded by cli.ts only for `doctor`: it brings in the daemon's own
// auth.json reader and `service install`'s rendering (no second parser, no copy of the units),
// which no other command needs (docs/architecture.md#layers).
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { AuthdError, AuthdTimeoutError, ConnectionClosedError, DaemonUnreachableError, SocketTrustError, VersionMismatchError, connect, socketPathFor } from './index.js'
import { ErrorCode, PROTOCOL_VERSION } from '../rpc/contract.js'
import { allowedOwnerFrom, socketFacts } from '../os/socket-owner.js'
import { defaultCodexHomeFor, givenCodexHome, restrictedSocketPath, socketPathMax, socketPathTooLong } from '../paths.js'
import { isPlaceholder } from '../placeholder.js'
import { readAuth } from '../store/authstore.js'
import { compareInstalled, systemdEnableLink, type ServiceManager } from '../service/install.js'
import { jsonForTerminal } from '../text.js'
import { CODEX_VERIFIED_VERSION, VERSION } from '../version.js'
import { humanLines, lookupCommand, type ParsedArgs } from './cli-util.js'
import {
  diagnose,
  doctorExit,
  reportLines,
  type AuthFacts,
  type BrokerFacts,
  type CodexCliFacts,
  type DaemonFacts,
  type DbusFacts,
  type DoctorFacts,
  type FileFacts,
  type LocalAuthRead,
  type OverrideFacts,
  type PlaceholderFileFacts,
  type ProbeResult,
  type RestrictedSocketFacts,
  type ServiceFacts,
} from './doctor.js'

/** Bounds: the daemon's answer, an override URL's, `codex --version` (a Node wrapper starting a binary). */
export const DOCTOR_TIMEOUTS_MS = { daemon: 5_000, probe: 5_000, codex: 10_000 } as const

export interface GatherInput {
  socket: string | null
  codexHome: string | null
  env: NodeJS.ProcessEnv
  cwd: string
  platform: NodeJS.Platform
  me: number
  /** This codex-auth's bundle (`<package>/dist/codex-auth.cjs`): the package whose units install would write. */
  scriptPath: string
  nodePath: string
}

function statFacts(p: string, follow = true): FileFacts | null {
  try {
    const st = follow ? fs.statSync(p) : fs.lstatSync(p)
    const kind = st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSocket() ? 'socket' : 'other'
    return { uid: st.uid, mode: st.mode, kind }
  } catch {
    return null
  }
}

function realOrNull(p: string): string | null {
  try {
    return fs.realpathSync(p)
  } catch {
    return null
  }
}

/** The daemon's version and status, within a bound; never a token (only `hello` and `status` are asked). */
async function askDaemon(i: GatherInput): Promise<DaemonFacts> {
  const started = performance.now()
  let client
  try {
    client = await connect({
      ...(i.socket !== null ? { socket: i.socket } : {}),
      ...(i.codexHome !== null ? { codexHome: i.codexHome } : {}),
      env: i.env,
      reconnect: false,
      timeoutMs: DOCTOR_TIMEOUTS_MS.daemon,
      clientName: 'codex-auth doctor',
    })
  } catch (e) {
    return daemonFailure(e)
  }
  try {
    let version: string | null = null
    let protocol: number | null = null
    try {
      const h = await client.hello()
      version = h.daemon.version
      protocol = h.daemon.protocol
    } catch (e) {
      // A daemon older than the handshake: its version is in status.
      if (!(e instanceof AuthdError && e.code === ErrorCode.MethodNotFound)) throw e
    }
    const status = await client.status()
    const elapsedMs = Math.round(performance.now() - started)
    return { state: 'answered', version: version ?? status.daemon.version, protocol, status, elapsedMs, restricted: await onRestrictedSocket(client) }
  } catch (e) {
    return daemonFailure(e)
  } finally {
    client.close()
  }
}

/**
 * Whether the socket is a restricted one (docs/remote.md#the-restricted-socket): `placeholderList`
 * is refused there with -32008. On the main socket it answers ids, labels and dates (never a
 * placeholder); a daemon older than placeholders answers method-not-found: not restricted either.
 */
async function onRestrictedSocket(client: Awaited<ReturnType<typeof connect>>): Promise<boolean> {
  try {
    await client.placeholderList()
    return false
  } catch (e) {
    if (e instanceof AuthdError && (e.code === ErrorCode.Restricted || e.code === ErrorCode.MethodNotFound)) return e.code === ErrorCode.Restricted
    throw e
  }
}

/** The payload's `exp` of a JWT as an ISO time, or null; nothing else of the token is kept. */
function jwtExpiry(jwt: unknown): string | null {
  if (typeof jwt !== 'string') return null
  try {
    const exp = (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown }).exp
    return typeof exp === 'number' && Number.isFinite(exp) ? new Date(exp * 1000).toISOString() : null
  } catch {
    return null
  }
}

/**
 * This shell's auth.json when its refresh token is a placeholder: the access token's `exp` and
 * `last_refresh` only (at most 1 MiB read; anything unreadable is left to `auth_file`).
 */
function placeholderFile(home: string): PlaceholderFileFacts | null {
  const file = path.join(home, 'auth.json')
  try {
    const st = fs.statSync(file)
    if (!st.isFile() || st.size > 1024 * 1024) return null
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { tokens?: { refresh_token?: unknown; access_token?: unknown }; last_refresh?: unknown }
    const refresh = j.tokens?.refresh_token
    if (typeof refresh !== 'string' || !isPlaceholder(refresh)) return null
    return { path: file, accessExpiresAt: jwtExpiry(j.tokens?.access_token), lastRefresh: typeof j.last_refresh === 'string' ? j.last_refresh : null }
  } catch {
    return null
  }
}

/** The daemon's restricted socket, as seen from here; null when the daemon did not answer on its main socket. */
function restrictedFacts(daemon: DaemonFacts, platform: NodeJS.Platform): RestrictedSocketFacts | null {
  if (daemon.state !== 'answered' || daemon.restricted) return null
  const d = daemon.status.daemon
  // A daemon older than the restricted socket has no such field: nothing to say.
  if (d.restrictedSocket === undefined) return null
  const p = d.restrictedSocket ?? restrictedSocketPath(d.socket)
  const st = statFacts(p, false)
  const file = st === null ? null : { uid: st.uid, mode: st.mode, kind: st.kind === 'file' ? ('other' as const) : st.kind }
  return { path: p, served: d.restrictedSocket !== null, tooLong: socketPathTooLong(p, platform), file }
}

function dbusFacts(env: NodeJS.ProcessEnv): DbusFacts {
  const runtime = env.XDG_RUNTIME_DIR
  const bus = runtime !== undefined && path.isAbsolute(runtime) ? path.join(runtime, 'bus') : null
  return { addressSet: (env.DBUS_SESSION_BUS_ADDRESS ?? '') !== '', runtimeBus: bus !== null && statFacts(bus)?.kind === 'socket' ? bus : null }
}

function daemonFailure(e: unknown): DaemonFacts {
  const message = e instanceof Error ? e.message : String(e)
  if (e instanceof DaemonUnreachableError) return { state: 'failed', code: 'daemon_unreachable', message, errno: e.errno }
  if (e instanceof SocketTrustError) return { state: 'failed', code: 'socket_untrusted', message, errno: null }
  if (e instanceof VersionMismatchError) return { state: 'failed', code: 'version_mismatch', message, errno: null }
  if (e instanceof AuthdTimeoutError) return { state: 'failed', code: 'timeout', message, errno: null }
  if (e instanceof ConnectionClosedError) return { state: 'failed', code: 'connection_lost', message, errno: null }
  if (e instanceof AuthdError) return { state: 'failed', code: e.reason ?? 'daemon_error', message, errno: null }
  return { state: 'failed', code: 'client_error', message, errno: null }
}

/** auth.json read with the daemon's own reader (used only when the daemon did not answer). */
async function readAuthHere(home: string): Promise<LocalAuthRead> {
  try {
    const r = await readAuth(home)
    if (r.state === 'absent') return { state: 'absent' }
    if (r.state === 'unreadable') return { state: 'unreadable', problem: r.problem }
    return { state: 'ok' }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error'
    return { state: 'unreadable', problem: { code: 'auth_unreadable', message: `cannot read ${path.join(home, 'auth.json')}: ${code}`, file: null, line: null, column: null } }
  }
}

async function serviceFacts(i: GatherInput): Promise<ServiceFacts> {
  const manager: ServiceManager | null = i.platform === 'linux' ? 'systemd' : i.platform === 'darwin' ? 'launchd' : null
  if (manager === null) return { manager: null }
  // As `codex-authd service install` finds its package: from the bundle that runs.
  const packageRoot = path.dirname(path.dirname(realOrNull(i.scriptPath) ?? i.scriptPath))
  const ctx = { env: i.env, nodePath: i.nodePath, daemonPath: path.join(packageRoot, 'dist', 'codex-authd.cjs'), packageRoot }
  let enabled: boolean | null = null
  if (manager === 'systemd') {
    try {
      enabled = statFacts(systemdEnableLink(i.env), false) !== null
    } catch {
      enabled = null // no HOME: nothing to look at
    }
  }
  try {
    return { manager, files: await compareInstalled(ctx, manager), renderError: null, enabled }
  } catch (e) {
    return { manager, files: null, renderError: e instanceof Error ? e.message : String(e), enabled }
  }
}

const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '[::1]'])

/**
 * What answers at an override URL. Only loopback http URLs are asked, with a GET: an exec
 * listener answers 405 `method_not_allowed` to it (src/client/broker-listener.ts) and reads no
 * body; nothing is sent anywhere else.
 */
async function probeOverride(variable: OverrideFacts['variable'], value: string): Promise<OverrideFacts> {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return { variable, origin: null, probe: 'invalid_url' }
  }
  const origin = url.origin
  if (url.protocol !== 'http:' || !LOOPBACK_HOSTS.has(url.hostname)) return { variable, origin, probe: 'not_loopback' }
  const probe = await new Promise<ProbeResult>((resolve) => {
    const req = http.get(url, { agent: false, timeout: DOCTOR_TIMEOUTS_MS.probe }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        if (body.length < 4096) body += c
      })
      res.on('end', () => {
        let code: unknown
        try {
          code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code
        } catch {
          code = undefined
        }
        resolve(res.statusCode === 405 && code === 'method_not_allowed' ? 'listener' : 'other')
      })
      res.on('error', () => resolve('other'))
    })
    req.on('timeout', () => {
      req.destroy()
      resolve('timeout')
    })
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : 'error'))
  })
  return { variable, origin, probe }
}

/** The README's alias line, as sh, fish or csh write it (`alias codex='codex-auth exec -- codex'`). */
const ALIAS_RE = /^\s*alias\s+codex(?:=|\s+)(['"]?)codex-auth\s+exec\b.*\bcodex\b/

/** The rc files an interactive shell of this kind reads. */
export function rcFilesFor(shell: string | null, env: NodeJS.ProcessEnv): string[] {
  const home = env.HOME || os.homedir()
  const inHome = (...names: string[]) => names.map((n) => path.join(home, n))
  switch (shell) {
    case 'bash':
      return inHome('.bashrc', '.bash_aliases', '.bash_profile', '.bash_login', '.profile')
    case 'zsh': {
      const dir = env.ZDOTDIR || home
      return ['.zshrc', '.zshenv', '.zprofile', '.zlogin'].map((n) => path.join(dir, n))
    }
    case 'fish':
      return [path.join(env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(home, '.config'), 'fish', 'config.fish')]
    case 'csh':
    case 'tcsh':
      return inHome('.tcshrc', '.cshrc')
    default:
      return inHome('.profile')
  }
}

/** Reads the rc files (read-only, each at most 256 KiB) for the alias line. */
function findAlias(files: string[]): { alias: { file: string; line: number } | null; read: string[] } {
  const read: string[] = []
  for (const file of files) {
    let text: string
    try {
      const st = fs.statSync(file)
      if (!st.isFile() || st.size > 256 * 1024) continue
      text = fs.readFileSync(file, 'utf8')
    } catch {
      continue
    }
    read.push(file)
    const lines = text.split('\n')
    const i = lines.findIndex((l) => ALIAS_RE.test(l))
    if (i !== -1) return { alias: { file, line: i + 1 }, read }
  }
  return { alias: null, read }
}

async function brokerFacts(env: NodeJS.ProcessEnv): Promise<BrokerFacts> {
  const vars = ['CODEX_REFRESH_TOKEN_URL_OVERRIDE', 'CODEX_REVOKE_TOKEN_URL_OVERRIDE'] as const
  const overrides = await Promise.all(vars.filter((v) => (env[v] ?? '') !== '').map((v) => probeOverride(v, env[v]!)))
  const shell = env.SHELL ? path.basename(env.SHELL) : null
  const { alias, read } = overrides.length === 0 ? findAlias(rcFilesFor(shell, env)) : { alias: null, read: [] }
  return { overrides, shell, alias, rcFiles: read }
}

async function codexCliFacts(env: NodeJS.ProcessEnv, cwd: string): Promise<CodexCliFacts> {
  const found = lookupCommand('codex', env.PATH, cwd)
  if (!found.ok) return found.status === 127 ? { state: 'absent' } : { state: 'failed', path: 'codex', reason: found.reason }
  const file = found.file
  const started = performance.now()
  return new Promise<CodexCliFacts>((resolve) => {
    execFile(file, ['--version'], { env, timeout: DOCTOR_TIMEOUTS_MS.codex, maxBuffer: 64 * 1024, encoding: 'utf8' }, (err, stdout) => {
      if (err !== null) {
        const reason = err.killed ? `no answer within ${DOCTOR_TIMEOUTS_MS.codex} ms` : typeof err.code === 'number' ? `exit status ${err.code}` : String(err.code ?? err.message)
        return resolve({ state: 'failed', path: file, reason })
      }
      const output = (stdout.split('\n')[0] ?? '').trim().slice(0, 200)
      const version = /\b(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)\b/.exec(output)?.[1] ?? null
      resolve({ state: 'ran', path: file, version, output, elapsedMs: Math.round(performance.now() - started) })
    })
  })
}

/** Every fact doctor judges; the independent ones concurrently. */
export async function gatherFacts(i: GatherInput): Promise<DoctorFacts> {
  const sock = socketPathFor({ ...(i.socket !== null ? { socket: i.socket } : {}), ...(i.codexHome !== null ? { codexHome: i.codexHome } : {}), env: i.env })
  let allowed: number | null = null
  let allowedError: string | null = null
  try {
    allowed = allowedOwnerFrom(i.env)
  } catch (e) {
    allowedError = (e as Error).message
  }
  const files = socketFacts(sock.path, i.me, allowed)
  const [daemon, service, broker, codexCli] = await Promise.all([askDaemon(i), serviceFacts(i), brokerFacts(i.env), codexCliFacts(i.env, i.cwd)])

  const shell = givenCodexHome(i.env, i.codexHome)
  // On the main socket the daemon's home is checked; on a restricted one (a remote machine) the daemon's is elsewhere: this shell's.
  const onMain = daemon.state === 'answered' && !daemon.restricted
  const checked = onMain ? (daemon.status.settings.codexHomeTarget ?? daemon.status.settings.codexHome) : shell
  const authPath = path.join(checked, 'auth.json')
  const auth: AuthFacts = { path: authPath, stat: statFacts(authPath), local: onMain ? null : await readAuthHere(checked) }
  return {
    platform: i.platform,
    now: Date.now(),
    me: i.me,
    clientVersion: VERSION,
    clientProtocol: PROTOCOL_VERSION,
    socket: {
      path: sock.path,
      source: sock.source,
      tooLong: socketPathTooLong(sock.path, i.platform),
      maxBytes: socketPathMax(i.platform),
      file: files.socket,
      dir: files.dir,
      allowed,
      allowedError,
    },
    daemon,
    home: {
      shell,
      shellTarget: realOrNull(shell),
      shellIsDefault: shell === path.resolve(defaultCodexHomeFor(i.env)),
      checked,
      stat: statFacts(checked),
    },
    auth,
    service,
    broker,
    codexCli,
    placeholder: placeholderFile(shell),
    restricted: restrictedFacts(daemon, i.platform),
    dbus: dbusFacts(i.env),
    verifiedCodexVersion: CODEX_VERIFIED_VERSION,
  }
}

/** `codex-auth doctor [--json]`: prints the report; 0 when nothing failed, 1 otherwise. */
export async function runDoctor(a: ParsedArgs): Promise<number> {
  const facts = await gatherFacts({
    socket: a.socket,
    codexHome: a.codexHome,
    env: process.env,
    cwd: process.cwd(),
    platform: process.platform,
    me: typeof process.getuid === 'function' ? process.getuid() : 0,
    scriptPath: process.argv[1] ?? '',
    nodePath: process.execPath,
  })
  const report = diagnose(facts)
  if (a.json) process.stdout.write(jsonForTerminal(report, 2) + '\n')
  else process.stdout.write(humanLines(reportLines(report)))
  return doctorExit(report)
}
