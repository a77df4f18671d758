// `codex-auth doctor` (docs/contract.md#codex-auth-doctor), the pure core: the facts gathered about
// a set-up (src/client/doctor-gather.ts does the I/O) in, a list of checks out, each `ok`, `warn`
// or `fail` with what to run to fix it. No I/O here, so every verdict is tested on a table of
// fact sets. Facts never hold a secret: modes, owners, paths, versions, the daemon's Status.
import { judgeSocket, type OwnerStat } from '../os/socket-owner.js'
import type { SocketSource } from '../paths.js'
import type { Status, StatusProblem } from '../rpc/contract.js'
import { shellQuote } from '../cli-common.js'
import { statusHeadline } from './cli-util.js'

export type CheckStatus = 'ok' | 'warn' | 'fail'

/** One line of the report; `id` is stable (docs/contract.md#codex-auth-doctor). */
export interface Check {
  id: string
  status: CheckStatus
  summary: string
  /** What to run or change, when something is wrong. */
  fix?: string
  details?: Record<string, unknown>
}

export interface DoctorReport {
  checks: Check[]
  /** No check failed (warnings allowed). */
  ok: boolean
}

/** `doctor`'s exit status: 0 when nothing failed (warnings allowed), 1 when a check failed. */
export const DOCTOR_EXIT = { ok: 0, failed: 1 } as const

/** What a stat tells (followed unless said otherwise). */
export interface FileFacts {
  uid: number
  mode: number
  kind: 'file' | 'directory' | 'socket' | 'symlink' | 'other'
}

export type DaemonFacts =
  /**
   * `restricted`: the socket talked to is a restricted one (`placeholderList` answered -32008
   * `restricted`): a forwarded socket on a remote machine or in a container (docs/remote.md).
   */
  | { state: 'answered'; version: string; protocol: number | null; status: Status; elapsedMs: number; restricted: boolean }
  /** `code`: the codes of docs/contract.md#errors-as-json (`daemon_unreachable`, `socket_untrusted`, `timeout`, ...). */
  | { state: 'failed'; code: string; message: string; errno: string | null }

export interface SocketFacts {
  path: string
  source: SocketSource
  /** Over the platform's limit (`maxBytes`): libuv would cut it. */
  tooLong: boolean
  maxBytes: number
  /** lstat of the socket path; null when absent. */
  file: OwnerStat | null
  /** stat of its directory; null when absent. */
  dir: OwnerStat | null
  /** The uid CODEX_AUTH_ALLOW_SOCKET_OWNER names, null when unset. */
  allowed: number | null
  /** Why CODEX_AUTH_ALLOW_SOCKET_OWNER cannot be used, or null. */
  allowedError: string | null
}

export interface HomeFacts {
  /** The CODEX_HOME Codex started from this shell uses (--codex-home, CODEX_HOME, ~/.codex), as given. */
  shell: string
  /** Where it leads (symlinks resolved), or null when nowhere. */
  shellTarget: string | null
  /** Whether it is `~/.codex` (the socket's `default`). */
  shellIsDefault: boolean
  /** The home checked: the daemon's target when it answered, else this shell's. */
  checked: string
  stat: FileFacts | null
}

export type LocalAuthRead = { state: 'absent' } | { state: 'ok' } | { state: 'unreadable'; problem: StatusProblem }

export interface AuthFacts {
  path: string
  /** stat (followed); null when absent. */
  stat: FileFacts | null
  /** Read here with the daemon's own reader when the daemon did not answer; null otherwise. */
  local: LocalAuthRead | null
}

/** A file `service install` writes, as found (the shape of service/install.ts's InstalledFile). */
export interface ServiceFileFacts {
  file: string
  state: 'absent' | 'current' | 'different' | 'foreign'
  firstDifferentLine: number | null
}

export type ServiceFacts =
  | { manager: null }
  | {
      manager: 'systemd' | 'launchd'
      /** null when what install would write cannot be rendered (`renderError`). */
      files: ServiceFileFacts[] | null
      renderError: string | null
      /** systemd: whether the socket's enable link exists; null where not asked. */
      enabled: boolean | null
    }

/** What answered at an override URL: our listener, nothing, something else, or not asked. */
export type ProbeResult = 'listener' | 'refused' | 'other' | 'timeout' | 'error' | 'not_loopback' | 'invalid_url'

export interface OverrideFacts {
  variable: 'CODEX_REFRESH_TOKEN_URL_OVERRIDE' | 'CODEX_REVOKE_TOKEN_URL_OVERRIDE'
  /** scheme://host:port only: the path carries the listener's random prefix. */
  origin: string | null
  probe: ProbeResult
}

export interface BrokerFacts {
  /** The overrides set in this environment (unset or empty ones are left out). */
  overrides: OverrideFacts[]
  /** Basename of $SHELL, or null. */
  shell: string | null
  /** Where the README's alias line was found in the shell's rc files, or null. */
  alias: { file: string; line: number } | null
  /** The rc files looked at. */
  rcFiles: string[]
}

export type CodexCliFacts =
  | { state: 'absent' }
  | { state: 'ran'; path: string; version: string | null; output: string; elapsedMs: number }
  | { state: 'failed'; path: string; reason: string }

/**
 * This shell's CODEX_HOME/auth.json when its refresh token is a placeholder (docs/remote.md), read
 * for dates only: never a token.
 */
export interface PlaceholderFileFacts {
  path: string
  /** The access token's `exp` (ISO), null when it has none. */
  accessExpiresAt: string | null
  /** `last_refresh` as written, or null. */
  lastRefresh: string | null
}

/** The daemon's restricted socket as seen from here (only when the main socket answered). */
export interface RestrictedSocketFacts {
  /** `status.daemon.restrictedSocket`, else where the daemon would have bound it. */
  path: string
  served: boolean
  tooLong: boolean
  /** lstat of the path; null when absent. */
  file: OwnerStat | null
}

export interface DbusFacts {
  /** `DBUS_SESSION_BUS_ADDRESS` is set (non-empty) in this environment. */
  addressSet: boolean
  /** `$XDG_RUNTIME_DIR/bus` when it is a socket (the address to set), else null. */
  runtimeBus: string | null
}

export interface DoctorFacts {
  platform: string
  /** Now, ms since the epoch (the placeholder file's dates are judged against it). */
  now: number
  /** The uid running doctor. */
  me: number
  clientVersion: string
  clientProtocol: number
  socket: SocketFacts
  daemon: DaemonFacts
  home: HomeFacts
  auth: AuthFacts
  service: ServiceFacts
  broker: BrokerFacts
  codexCli: CodexCliFacts
  placeholder: PlaceholderFileFacts | null
  /** null when the daemon did not answer, or answered on a restricted socket. */
  restricted: RestrictedSocketFacts | null
  dbus: DbusFacts
  /** The Codex CLI release the file format was verified with (version.ts). */
  verifiedCodexVersion: string
}

// ---------------------------------------------------------------------------------------------
// Words

const mode = (m: number): string => `0${(m & 0o777).toString(8).padStart(3, '0')}`

/** A path or value as a shell word: bare when it needs no quoting, else single-quoted. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : shellQuote(s)
}

const SOCKET_SOURCE: Record<SocketSource, string> = {
  flag: 'given with --socket',
  env: 'from CODEX_AUTHD_SOCK',
  runtime: "in the runtime directory, named after this CODEX_HOME",
  home: 'in CODEX_HOME/run, as there is no runtime directory',
}

function dirOf(p: string): string {
  const i = p.lastIndexOf('/')
  return i <= 0 ? '/' : p.slice(0, i)
}

function kindWords(kind: FileFacts['kind']): string {
  return kind === 'file' ? 'a regular file' : kind === 'directory' ? 'a directory' : kind === 'socket' ? 'a socket' : kind === 'symlink' ? 'a symlink' : 'not a regular file'
}

/** How to start the daemon this client looks for. */
function startFix(f: DoctorFacts): string {
  const s = f.service
  if (s.manager === 'systemd' && s.files?.some((x) => x.state !== 'absent')) return 'systemctl --user start codex-authd.socket'
  if (s.manager === 'launchd' && s.files?.some((x) => x.state !== 'absent')) {
    const plist = s.files.find((x) => x.state !== 'absent')!.file
    return `launchctl bootstrap gui/$(id -u) ${shellWord(plist)}`
  }
  const args: string[] = []
  if (!f.home.shellIsDefault) args.push('--codex-home', shellWord(f.home.shell))
  if (f.socket.source === 'flag' || f.socket.source === 'env') args.push('--socket', shellWord(f.socket.path))
  const service = s.manager !== null ? ', or `codex-authd service install` to have it start with your session' : ''
  return `run \`codex-authd${args.length > 0 ? ` ${args.join(' ')}` : ''}\`${service}`
}

// ---------------------------------------------------------------------------------------------
// Checks

/** The daemon answered on a restricted socket: this is a remote machine or a container. */
function onRestricted(f: DoctorFacts): boolean {
  return f.daemon.state === 'answered' && f.daemon.restricted
}

/** The daemon's status when it answered on the main socket (its files are the ones checked here). */
function answeredOnMain(f: DoctorFacts): Status | null {
  return f.daemon.state === 'answered' && !f.daemon.restricted ? f.daemon.status : null
}

function socketPathCheck(f: DoctorFacts): Check {
  const s = f.socket
  const details = { path: s.path, source: s.source }
  if (s.tooLong) {
    return {
      id: 'socket.path',
      status: 'fail',
      summary: `${s.path} is longer than the ${s.maxBytes} bytes a socket path may have`,
      fix: 'set CODEX_AUTHD_SOCK (or --socket) to a shorter path, for the daemon and its clients',
      details,
    }
  }
  return { id: 'socket.path', status: 'ok', summary: `${s.path} (${SOCKET_SOURCE[s.source]})`, details }
}

function socketFileCheck(f: DoctorFacts): Check {
  const s = f.socket
  const id = 'socket.file'
  if (s.allowedError !== null) {
    return { id, status: 'fail', summary: s.allowedError, fix: 'set CODEX_AUTH_ALLOW_SOCKET_OWNER to a uid or a user name, or unset it' }
  }
  const sock = s.file
  if (sock === null) {
    const noDir = s.dir === null ? ` (nor its directory ${dirOf(s.path)})` : ''
    return { id, status: 'fail', summary: `no socket at ${s.path}${noDir}: the daemon is not running, or listens elsewhere`, fix: startFix(f) }
  }
  if (sock.kind === 'symlink') return { id, status: 'fail', summary: `${s.path} is a symlink`, fix: "give the socket's own path (CODEX_AUTHD_SOCK or --socket)" }
  if (sock.kind !== 'socket') {
    return { id, status: 'fail', summary: `${s.path} is ${sock.kind === 'directory' ? 'a directory' : 'a regular file'}, not a socket`, fix: `move it away (the daemon binds the socket there), then ${startFix(f)}` }
  }
  const details = { uid: sock.uid, mode: mode(sock.mode) }
  if (sock.uid !== f.me) {
    if (sock.uid !== 0 && sock.uid !== s.allowed) {
      return {
        id,
        status: 'fail',
        summary: `${s.path} is owned by uid ${sock.uid}, not by you (uid ${f.me}): codex-auth refuses it`,
        fix: `point CODEX_AUTHD_SOCK at your own daemon's socket; set CODEX_AUTH_ALLOW_SOCKET_OWNER=${sock.uid} only if it is shared on purpose`,
        details,
      }
    }
    const why = sock.uid === 0 ? 'root' : `uid ${sock.uid}, allowed by CODEX_AUTH_ALLOW_SOCKET_OWNER`
    return { id, status: 'warn', summary: `a socket owned by ${why}, not by you (uid ${f.me})`, details }
  }
  if ((sock.mode & 0o077) !== 0) {
    return { id, status: 'warn', summary: `a socket, yours, but mode ${mode(sock.mode)}: other users may connect`, fix: `chmod 600 ${shellWord(s.path)} (the daemon creates it 0600)`, details }
  }
  return { id, status: 'ok', summary: `a socket, yours, mode ${mode(sock.mode)}`, details }
}

function socketDirCheck(f: DoctorFacts): Check | null {
  const s = f.socket
  const dir = s.dir
  const path = dirOf(s.path)
  const id = 'socket.dir'
  if (dir === null) return null // said by socket.file
  const details = { path, uid: dir.uid, mode: mode(dir.mode) }
  if (dir.kind !== 'directory') return { id, status: 'fail', summary: `${path} is not a directory`, details }
  // The client's own rules (docs/contract.md#whom-the-client-talks-to), on the directory alone.
  const verdict = judgeSocket({ socketPath: s.path, socket: null, dir, me: f.me, allowed: s.allowed })
  if (!verdict.ok) return { id, status: 'fail', summary: `codex-auth refuses it: ${verdict.problem}`, fix: (dir.mode & 0o022) !== 0 ? `chmod go-w ${shellWord(path)}` : "use a socket in a directory of your own (CODEX_AUTHD_SOCK)", details }
  if (dir.uid !== f.me) return { id, status: 'warn', summary: `${path} is owned by ${dir.uid === 0 ? 'root' : `uid ${dir.uid}`}, not by you`, details }
  if ((dir.mode & 0o077) !== 0) {
    return { id, status: 'warn', summary: `${path} is yours, but group or other may list it (mode ${mode(dir.mode)})`, fix: `chmod 700 ${shellWord(path)} (the daemon creates it 0700)`, details }
  }
  return { id, status: 'ok', summary: `${path}: yours, mode ${mode(dir.mode)}`, details }
}

function daemonCheck(f: DoctorFacts): Check {
  const d = f.daemon
  const id = 'daemon'
  if (d.state === 'failed') {
    const fix =
      d.code === 'daemon_unreachable'
        ? startFix(f)
        : d.code === 'timeout'
          ? 'the daemon may be stuck: look at its log (journalctl --user -u codex-authd.service), then restart it'
          : d.code === 'version_mismatch'
            ? 'upgrade the older of codex-auth and codex-authd, then restart the daemon'
            : undefined
    // The client's own message says how to start a daemon; the fix here says it for this set-up.
    const summary = d.code === 'daemon_unreachable' && d.errno !== null ? `nothing answers on ${f.socket.path} (${d.errno})` : d.message
    return { id, status: 'fail', summary, ...(fix !== undefined ? { fix } : {}), details: { code: d.code, errno: d.errno } }
  }
  const st = d.status.daemon
  const details = { version: d.version, protocol: d.protocol, pid: st.pid, startedAt: st.startedAt, activated: st.activated, elapsedMs: d.elapsedMs }
  const how = `pid ${st.pid}${st.activated ? ', socket-activated' : ''}`
  if (d.protocol !== null && d.protocol !== f.clientProtocol) {
    return { id, status: 'fail', summary: `codex-authd ${d.version} speaks protocol ${d.protocol}, this codex-auth ${f.clientProtocol}`, fix: 'upgrade the older one, then restart the daemon', details }
  }
  if (d.version !== f.clientVersion) {
    return {
      id,
      status: 'warn',
      summary: `codex-authd ${d.version} answered in ${d.elapsedMs} ms (${how}), but this codex-auth is ${f.clientVersion}`,
      fix: 'restart the daemon so that it runs the installed version (systemctl --user restart codex-authd.service, or stop and start codex-authd)',
      details,
    }
  }
  return { id, status: 'ok', summary: `codex-authd ${d.version} answered in ${d.elapsedMs} ms (${how})`, details }
}

function loginCheck(status: Status): Check {
  const id = 'login'
  const details = { loggedIn: status.loggedIn, mode: status.mode, source: status.source, refresh: status.refresh.state }
  if (!status.loggedIn) return { id, status: 'fail', summary: 'not logged in: nothing is served', fix: 'codex-auth login (or --device, or --with-api-key)', details }
  const from = status.source === 'env' ? " (OPENAI_API_KEY in the daemon's environment)" : status.source !== null ? ` (from ${status.source})` : ''
  const headline = `${statusHeadline(status, null)}${from}`
  const r = status.refresh
  const why = r.lastError !== null ? `${r.lastError.message} (${r.lastError.reason})` : 'unknown error'
  if (r.state === 'failed') return { id, status: 'fail', summary: `${headline}, but the token refresh failed: ${why}`, fix: 'codex-auth login', details }
  if (r.state === 'backoff') {
    return { id, status: 'warn', summary: `${headline}; the token refresh is backing off: ${why}${r.nextAttemptAt !== null ? `; next attempt at ${r.nextAttemptAt}` : ''}`, details }
  }
  return { id, status: 'ok', summary: headline, details }
}

function homeCheck(f: DoctorFacts): Check {
  const h = f.home
  const id = 'codex_home'
  const st = h.stat
  if (st === null && onRestricted(f)) return { id, status: 'ok', summary: `CODEX_HOME ${h.checked} does not exist yet: \`codex-auth exec --remote\` creates it (0700)` }
  if (st === null) return { id, status: 'fail', summary: `CODEX_HOME ${h.checked} does not exist`, fix: `mkdir -m 700 ${shellWord(h.checked)} (or point CODEX_HOME at your Codex home)` }
  const details: Record<string, unknown> = { path: h.checked, uid: st.uid, mode: mode(st.mode) }
  if (st.kind !== 'directory') return { id, status: 'fail', summary: `CODEX_HOME ${h.checked} is not a directory`, details }
  const d = f.daemon
  if (d.state === 'answered' && !d.restricted) {
    const served = d.status.settings.codexHomeTarget ?? d.status.settings.codexHome
    const shell = h.shellTarget ?? h.shell
    details.servedByDaemon = served
    details.usedInThisShell = shell
    if (served !== shell) {
      return {
        id,
        status: 'warn',
        summary: `the daemon serves ${served}, but Codex started from this shell uses ${shell}`,
        fix: `run Codex and codex-auth with the same CODEX_HOME (the daemon's: CODEX_HOME=${shellWord(d.status.settings.codexHome)})`,
        details,
      }
    }
  }
  if (st.uid !== f.me) return { id, status: 'warn', summary: `${h.checked} is owned by uid ${st.uid}, not by you (uid ${f.me})`, details }
  if ((st.mode & 0o022) !== 0) return { id, status: 'warn', summary: `${h.checked} is writable by group or other (mode ${mode(st.mode)})`, fix: `chmod go-w ${shellWord(h.checked)}`, details }
  return { id, status: 'ok', summary: `${h.checked}: a directory, yours, mode ${mode(st.mode)}`, details }
}

function where(p: StatusProblem): string {
  if (p.file === null) return ''
  return ` [${p.file}${p.line !== null ? `:${p.line}${p.column !== null ? `:${p.column}` : ''}` : ''}]`
}

function authFileCheck(f: DoctorFacts): Check {
  const a = f.auth
  const id = 'auth_file'
  // On a restricted socket the daemon's status is about the workstation's file, not this one.
  const status = answeredOnMain(f)
  const problem = status !== null ? (status.problems.find((p) => p.code === 'auth_unreadable') ?? null) : a.local?.state === 'unreadable' ? a.local.problem : null
  if (a.stat === null && problem === null) {
    if (onRestricted(f)) return { id, status: 'ok', summary: `no ${a.path}: on a machine with a forwarded socket, \`codex-auth exec --remote -- codex\` writes one for Codex` }
    if (status?.loggedIn && status.source !== 'auth.json') {
      return { id, status: 'ok', summary: `no ${a.path}: the credential comes from ${status.source === 'env' ? "OPENAI_API_KEY in the daemon's environment" : (status.source ?? 'elsewhere')}` }
    }
    if (status !== null && status.settings.credentialsStore !== 'file' && status.settings.credentialsStore !== 'auto') {
      return { id, status: 'ok', summary: `no ${a.path} (credentials store: ${status.settings.credentialsStore})` }
    }
    return { id, status: 'warn', summary: `no ${a.path}: not logged in with a file`, fix: 'codex-auth login' }
  }
  const details: Record<string, unknown> = { path: a.path }
  if (a.stat !== null) Object.assign(details, { uid: a.stat.uid, mode: mode(a.stat.mode) })
  if (problem !== null) {
    details.problem = problem
    const served = status?.loggedIn ? ' The daemon still serves the last credential it read, but Codex cannot start with this file.' : ''
    return {
      id,
      status: 'fail',
      summary: `${problem.message}${where(problem)}.${served}`,
      fix: `repair ${shellWord(a.path)} at the place given (the daemon never overwrites a file it cannot parse), or move it aside and run codex-auth login`,
      details,
    }
  }
  const st = a.stat!
  if (st.kind !== 'file') return { id, status: 'fail', summary: `${a.path} is ${kindWords(st.kind)}`, details }
  if (st.uid !== f.me) return { id, status: 'warn', summary: `${a.path} is owned by uid ${st.uid}, not by you (uid ${f.me})`, details }
  if ((st.mode & 0o077) !== 0) {
    const who = (st.mode & 0o044) !== 0 ? 'read' : (st.mode & 0o022) !== 0 ? 'write' : 'open'
    return { id, status: 'warn', summary: `${a.path} has mode ${mode(st.mode)}: group or other can ${who} your credentials`, fix: `chmod 600 ${shellWord(a.path)}`, details }
  }
  const parsed = status !== null ? 'the daemon reads it without a problem' : 'parses as Codex reads it'
  return { id, status: 'ok', summary: `${a.path}: yours, mode ${mode(st.mode)}, ${parsed}`, details }
}

/**
 * How bad each problem code is while a credential is served (docs/contract.md#problems and the
 * keyring's codes); any code not listed is a warning, and every problem is a failure while
 * nothing is served.
 */
export const PROBLEM_SEVERITY: Readonly<Record<string, CheckStatus>> = {
  home_invalid: 'fail',
  home_owned: 'fail',
  config_invalid: 'warn',
  auth_unreadable: 'fail',
  auth_permissions: 'warn',
  policy_conflict: 'fail',
  mode_unsupported: 'fail',
  refresh_pending: 'warn',
  keyring_unreachable: 'fail',
  keyring_entry_invalid: 'fail',
  auth_file_ignored: 'warn',
  store_ephemeral: 'warn',
}

/**
 * Whether `auth_file` says this problem already: `auth_unreadable`, and `auth_permissions` about
 * auth.json itself while auth_file sees the same loose mode (the code also covers CODEX_HOME and
 * auth.lock, which stay listed).
 */
function folded(p: StatusProblem, auth: AuthFacts): boolean {
  if (p.code === 'auth_unreadable') return true
  return p.code === 'auth_permissions' && p.file === auth.path && auth.stat !== null && (auth.stat.mode & 0o077) !== 0
}

function problemChecks(status: Status, auth: AuthFacts): Check[] {
  return status.problems
    .filter((p) => !folded(p, auth))
    .map((p) => ({
      id: `problem.${p.code}`,
      status: !status.loggedIn ? 'fail' : (PROBLEM_SEVERITY[p.code] ?? 'warn'),
      summary: `${p.code}: ${p.message}${where(p)}`,
      details: { ...p },
    }))
}

/** Where the login being served comes from, in words. */
function sourceWords(status: Status): string {
  if (status.source === 'keyring') return 'the keyring entry'
  if (status.source === 'auth.json') return 'auth.json'
  if (status.source === 'env') return "OPENAI_API_KEY in the daemon's environment"
  return 'nothing (not logged in)'
}

/** What each store means (docs/keyring.md#what-is-built), and what serves the login now. */
function storeCheck(status: Status): Check {
  const store = status.settings.credentialsStore
  const head = `credentials store: ${store} (cli_auth_credentials_store)`
  const from = sourceWords(status)
  const what =
    store === 'file'
      ? `the login lives in auth.json; served from ${from}`
      : store === 'keyring'
        ? `the login lives in the Secret Service entry, auth.json is not used; served from ${from}`
        : store === 'auto'
          ? `the keyring entry when there is one, else auth.json; served from ${from}`
          : store === 'ephemeral'
            ? 'Codex keeps its login in its own memory only: the daemon has nothing to serve'
            : `served from ${from}`
  return { id: 'store', status: 'ok', summary: `${head}: ${what}`, details: { credentialsStore: store, source: status.source } }
}

/** `export NAME=value` in the syntax of the user's shell. */
function exportLine(shell: string | null, name: string, value: string): string {
  if (shell === 'fish') return `set -gx ${name} ${value}`
  if (shell === 'csh' || shell === 'tcsh') return `setenv ${name} ${value}`
  return `export ${name}=${value}`
}

/**
 * Under `keyring`/`auto` on Linux, Codex started from this shell reaches the Secret Service
 * through DBUS_SESSION_BUS_ADDRESS (docs/keyring.md): said for this shell and for the daemon (its
 * `keyring_unreachable` problem with cause `no_session`). Not on a restricted socket: there Codex
 * runs with the file store (`exec --remote` forces it).
 */
function dbusCheck(f: DoctorFacts, status: Status): Check | null {
  const store = status.settings.credentialsStore
  if (f.platform !== 'linux' || (store !== 'keyring' && store !== 'auto') || onRestricted(f)) return null
  const id = 'store.dbus'
  const daemonHasNone = status.problems.some((p) => p.code === 'keyring_unreachable' && p.details?.cause === 'no_session')
  const details = { shell: f.dbus.addressSet, daemon: !daemonHasNone, runtimeBus: f.dbus.runtimeBus }
  const without = store === 'keyring' ? 'cannot load or save the login' : 'falls back to auth.json'
  if (!f.dbus.addressSet) {
    const address = f.dbus.runtimeBus !== null ? `unix:path=${shellWord(f.dbus.runtimeBus)}` : 'unix:path=$XDG_RUNTIME_DIR/bus'
    return {
      id,
      status: 'warn',
      summary: `DBUS_SESSION_BUS_ADDRESS is not set in this shell${daemonHasNone ? ", nor in the daemon's environment" : ''}: Codex started here cannot reach the keyring and ${without}`,
      fix: `${exportLine(f.broker.shell, 'DBUS_SESSION_BUS_ADDRESS', address)} (in your shell's rc file)`,
      details,
    }
  }
  if (daemonHasNone) {
    return {
      id,
      status: 'warn',
      summary: "DBUS_SESSION_BUS_ADDRESS is set in this shell, but not in the daemon's environment: the daemon cannot reach the keyring",
      fix: 'start the daemon with DBUS_SESSION_BUS_ADDRESS set (the units `codex-authd service install` writes set it), then restart it',
      details,
    }
  }
  return { id, status: 'ok', summary: 'DBUS_SESSION_BUS_ADDRESS is set in this shell: Codex started here reaches the keyring', details }
}

/**
 * The restricted socket (docs/remote.md#the-restricted-socket): on a remote machine, that this
 * client talks to one; on the workstation, that the daemon serves it, and its file like the main
 * socket's.
 */
function restrictedCheck(f: DoctorFacts): Check | null {
  const id = 'socket.restricted'
  if (onRestricted(f)) {
    return { id, status: 'ok', summary: "talking to a restricted socket (remote machine): login, logout and refresh are refused here; the workstation's checks (service units, the daemon's CODEX_HOME) are left out" }
  }
  const r = f.restricted
  if (r === null) return null
  const details = { path: r.path, served: r.served }
  if (!r.served) {
    const why = r.tooLong
      ? { because: `${r.path} is longer than the ${f.socket.maxBytes} bytes a socket path may have`, fix: 'set CODEX_AUTHD_SOCK (or --socket) to a shorter path, then restart the daemon' }
      : r.file !== null
        ? { because: `something is already at ${r.path} (another daemon?)`, fix: `stop whatever listens at ${shellWord(r.path)}, then restart the daemon` }
        : { because: "the daemon's log says why (`the restricted socket is not served`)", fix: 'journalctl --user -u codex-authd.service, then restart the daemon' }
    return { id, status: 'warn', summary: `the daemon does not serve the restricted socket: no remote machine or container can be given one; ${why.because}`, fix: why.fix, details }
  }
  const st = r.file
  if (st === null || st.kind !== 'socket') return { id, status: 'warn', summary: `the daemon serves the restricted socket at ${r.path}, but ${st === null ? 'nothing is there' : 'it is not a socket'} as seen from here`, details }
  const owner = { ...details, uid: st.uid, mode: mode(st.mode) }
  if (st.uid !== f.me) return { id, status: 'warn', summary: `${r.path} is owned by uid ${st.uid}, not by you (uid ${f.me})`, details: owner }
  if ((st.mode & 0o077) !== 0) {
    return { id, status: 'warn', summary: `${r.path}: yours, but mode ${mode(st.mode)}: other users may connect`, fix: `chmod 600 ${shellWord(r.path)} (the daemon creates it 0600)`, details: owner }
  }
  return { id, status: 'ok', summary: `${r.path}: a socket, yours, mode ${mode(st.mode)} (for ssh -R or a container: docs/remote.md)`, details: owner }
}

/** Codex's proactive window: it refreshes by itself once the access token has 5 minutes left (docs/codex-compat.md#refresh-triggers). */
export const CODEX_REFRESH_WINDOW_MS = 5 * 60_000
/** Without `exp`, Codex refreshes once `last_refresh` is older than 8 days. */
const CODEX_STALE_LAST_REFRESH_MS = 8 * 24 * 3600_000

const SINK_CANNOT_COVER =
  "a Codex started without `codex-auth exec --remote` has no broker: when the backend answers 401 (a token revoked early), it sends the placeholder to OpenAI's token endpoint, which rejects it, and Codex asks to sign in again"

/**
 * This shell's auth.json holds a placeholder (docs/remote.md#what-a-sink-cannot-cover): warn when
 * Codex would refresh it by itself now (no sink keeps it fresh), else ok with the one case a sink
 * cannot cover.
 */
function placeholderCheck(f: DoctorFacts): Check | null {
  const p = f.placeholder
  if (p === null) return null
  const id = 'auth_file.placeholder'
  const dir = dirOf(p.path)
  const details = { path: p.path, accessExpiresAt: p.accessExpiresAt, lastRefresh: p.lastRefresh, note: SINK_CANNOT_COVER }
  const run = 'run Codex as `codex-auth exec --remote -- codex …`'
  const keep = `keep \`codex-auth sink --codex-home ${shellWord(dir)}\` running (a user service: README) so that it renews the file before Codex's 5-minute window`
  const exp = p.accessExpiresAt !== null ? Date.parse(p.accessExpiresAt) : NaN
  const last = p.lastRefresh !== null ? Date.parse(p.lastRefresh) : NaN
  const due = Number.isFinite(exp)
    ? exp - f.now <= CODEX_REFRESH_WINDOW_MS
      ? `its access token ${exp <= f.now ? 'expired' : 'expires'} at ${p.accessExpiresAt}, within Codex's 5-minute window`
      : null
    : Number.isFinite(last) && f.now - last > CODEX_STALE_LAST_REFRESH_MS
      ? `its last_refresh (${p.lastRefresh}) is older than 8 days`
      : null
  const what = `${p.path} holds a placeholder (written by \`codex-auth sink --codex-home\` or \`exec --remote\`)`
  if (due !== null) {
    return {
      id,
      status: 'warn',
      summary: `${what}; ${due}: nothing keeps it fresh, so a Codex started without \`codex-auth exec --remote\` refreshes by itself, sends the placeholder to OpenAI, and asks to sign in again`,
      fix: `${run}; ${keep}`,
      details,
    }
  }
  const until = p.accessExpiresAt !== null ? `, its access token valid until ${p.accessExpiresAt}` : ''
  return { id, status: 'ok', summary: `${what}${until}. The one case a sink cannot cover: ${SINK_CANNOT_COVER}; ${run}, and ${keep}`, details }
}

function serviceChecks(f: DoctorFacts): Check[] {
  const s = f.service
  if (s.manager === null) return [{ id: 'service.units', status: 'ok', summary: `no service manager codex-authd installs for on ${f.platform}` }]
  const install = 'codex-authd service install'
  const reload =
    s.manager === 'systemd'
      ? `${install}, then systemctl --user daemon-reload && systemctl --user try-restart codex-authd.service`
      : `${install}, then launchctl bootout gui/$(id -u)/com.github.codex-authd and launchctl bootstrap it again`
  if (s.files === null) return [{ id: 'service.units', status: 'warn', summary: `cannot tell whether the ${s.manager} files are current: ${s.renderError ?? 'unknown error'}` }]
  const details = { manager: s.manager, files: s.files }
  const present = s.files.filter((x) => x.state !== 'absent')
  const names = (xs: ServiceFileFacts[]) => xs.map((x) => x.file).join(', ')
  const out: Check[] = []
  if (present.length === 0) {
    out.push({ id: 'service.units', status: 'warn', summary: `not installed: the daemon does not start with your session (no ${names(s.files)})`, fix: install, details })
    return out
  }
  const absent = s.files.filter((x) => x.state === 'absent')
  const different = s.files.filter((x) => x.state === 'different')
  const foreign = s.files.filter((x) => x.state === 'foreign')
  if (absent.length > 0) out.push({ id: 'service.units', status: 'warn', summary: `partly installed: ${names(absent)} missing`, fix: install, details })
  else if (different.length > 0) {
    const lines = different.map((x) => `${x.file} (from line ${x.firstDifferentLine})`).join(', ')
    out.push({ id: 'service.units', status: 'warn', summary: `not current: ${lines} differs from what service install writes now`, fix: reload, details })
  } else if (foreign.length > 0) {
    out.push({ id: 'service.units', status: 'warn', summary: `${names(foreign)} has no "Written by codex-authd service install" line (edited?): not compared`, details })
  } else out.push({ id: 'service.units', status: 'ok', summary: `installed and current: ${names(s.files)}`, details })
  if (s.enabled === true) out.push({ id: 'service.enabled', status: 'ok', summary: 'codex-authd.socket is enabled' })
  else if (s.enabled === false) {
    out.push({ id: 'service.enabled', status: 'warn', summary: 'codex-authd.socket is not enabled: it does not start with your session', fix: 'systemctl --user enable --now codex-authd.socket' })
  }
  return out
}

/** `unset` in the syntax of the user's shell. */
function unsetLine(shell: string | null, vars: readonly string[]): string {
  if (shell === 'fish') return vars.map((v) => `set -e ${v}`).join('; ')
  if (shell === 'csh' || shell === 'tcsh') return vars.map((v) => `unsetenv ${v}`).join('; ')
  return `unset ${vars.join(' ')}`
}

const ALIAS_LINE = "alias codex='codex-auth exec -- codex'"
/** On a machine with a forwarded restricted socket Codex must run in remote mode (docs/remote.md#exec---remote). */
const REMOTE_ALIAS_LINE = "alias codex='codex-auth exec --remote -- codex'"

function brokerCheck(f: DoctorFacts): Check {
  const b = f.broker
  const id = 'broker'
  const details = { overrides: b.overrides, shell: b.shell, alias: b.alias, rcFiles: b.rcFiles }
  if (b.overrides.length === 0) {
    if (b.alias !== null) {
      return {
        id,
        status: 'ok',
        summary: `${b.alias.file}:${b.alias.line} aliases codex to codex-auth exec, so Codex started from an interactive ${b.shell ?? 'shell'} refreshes through the daemon (\`type codex\` shows what this shell runs)`,
        details,
      }
    }
    const alias = onRestricted(f) ? REMOTE_ALIAS_LINE : ALIAS_LINE
    const looked = b.rcFiles.length > 0 ? ` in ${b.rcFiles.join(', ')}` : ''
    return {
      id,
      status: 'warn',
      summary: `Codex started from this shell refreshes its tokens by itself: no CODEX_REFRESH_TOKEN_URL_OVERRIDE here, and no \`${alias}\`${looked} (an alias of this shell cannot be seen from here: \`type codex\` shows it)`,
      fix: `add ${alias} to your shell's rc file (README: ${onRestricted(f) ? '"Remote machines and containers"' : '"Codex\'s own refreshes"'})`,
      details,
    }
  }
  const set = b.overrides.map((o) => o.variable)
  const unset = unsetLine(b.shell, set)
  const bad = b.overrides.find((o) => o.probe === 'refused' || o.probe === 'invalid_url')
  if (bad !== undefined) {
    const what = bad.probe === 'refused' ? `${bad.origin}, where nothing listens any more (left over from a codex-auth exec that has ended?)` : 'something that is not a URL'
    return { id, status: 'fail', summary: `${bad.variable} points to ${what}: Codex's token refreshes from this shell would fail`, fix: unset, details }
  }
  const refresh = b.overrides.find((o) => o.variable === 'CODEX_REFRESH_TOKEN_URL_OVERRIDE')
  if (refresh === undefined) {
    return { id, status: 'warn', summary: "only CODEX_REVOKE_TOKEN_URL_OVERRIDE is set: Codex's refreshes go to OpenAI directly", fix: unset, details }
  }
  const odd = b.overrides.find((o) => o.probe !== 'listener')
  if (odd !== undefined) {
    const why =
      odd.probe === 'not_loopback'
        ? `${odd.origin}, not a codex-auth exec listener: Codex's requests go there, not through the daemon`
        : odd.probe === 'other'
          ? `${odd.origin}, where something other than a codex-auth exec listener answers`
          : `${odd.origin}, which did not answer in time`
    return { id, status: 'warn', summary: `${odd.variable} points to ${why}`, fix: `${unset} (unless you set it on purpose)`, details }
  }
  return { id, status: 'ok', summary: `this shell runs under codex-auth exec: Codex's refreshes go to its listener at ${refresh.origin}, then to the daemon`, details }
}

function codexCliCheck(f: DoctorFacts): Check {
  const c = f.codexCli
  const want = f.verifiedCodexVersion
  const id = 'codex_cli'
  if (c.state === 'absent') return { id, status: 'warn', summary: 'no codex on PATH', fix: `npm install -g @openai/codex@${want} (the version codex-authd was verified with)` }
  if (c.state === 'failed') return { id, status: 'warn', summary: `${c.path} --version failed: ${c.reason}`, details: { path: c.path } }
  const details = { path: c.path, version: c.version, verified: want, output: c.output, elapsedMs: c.elapsedMs }
  if (c.version === null) return { id, status: 'warn', summary: `${c.path} --version printed no version`, details }
  if (c.version !== want) {
    return {
      id,
      status: 'warn',
      summary: `Codex CLI ${c.version} at ${c.path}; codex-authd was verified with ${want}: auth.json's format or the refresh requests may differ`,
      fix: `watch codex-auth status for problems, or install @openai/codex@${want}`,
      details,
    }
  }
  return { id, status: 'ok', summary: `Codex CLI ${c.version} at ${c.path} (the version codex-authd was verified with)`, details }
}

/** Every check, in the order a person reads them: the socket, the daemon, the files, the service, this shell. */
export function diagnose(f: DoctorFacts): DoctorReport {
  const status = f.daemon.state === 'answered' ? f.daemon.status : null
  const present = (c: Check | null): Check[] => (c !== null ? [c] : [])
  const checks: Check[] = [socketPathCheck(f), socketFileCheck(f), ...present(socketDirCheck(f)), daemonCheck(f), ...present(restrictedCheck(f))]
  if (status !== null) checks.push(loginCheck(status))
  checks.push(homeCheck(f), authFileCheck(f), ...present(placeholderCheck(f)))
  if (status !== null) checks.push(storeCheck(status), ...present(dbusCheck(f, status)), ...problemChecks(status, f.auth))
  // The service units are the workstation's: nothing to install on a machine with a forwarded socket.
  if (!onRestricted(f)) checks.push(...serviceChecks(f))
  checks.push(brokerCheck(f), codexCliCheck(f))
  return { checks, ok: checks.every((c) => c.status !== 'fail') }
}

export function doctorExit(r: DoctorReport): number {
  return r.ok ? DOCTOR_EXIT.ok : DOCTOR_EXIT.failed
}

/** The text form: one line per check (status, id, summary), `fix:` under it, a count at the end. Escaped by the caller (humanLines). */
export function reportLines(r: DoctorReport): string[] {
  const width = Math.max(...r.checks.map((c) => c.id.length))
  const lines: string[] = []
  for (const c of r.checks) {
    lines.push(`${c.status.padEnd(5)} ${c.id.padEnd(width)}  ${c.summary}`)
    if (c.fix !== undefined) lines.push(`${' '.repeat(6 + width + 2)}fix: ${c.fix}`)
  }
  const n = (s: CheckStatus) => r.checks.filter((c) => c.status === s).length
  const fails = n('fail')
  const warns = n('warn')
  lines.push(`${fails} failed, ${warns} ${warns === 1 ? 'warning' : 'warnings'}, ${n('ok')} ok${fails > 0 ? ': fix the failures first' : ''}`)
  return lines
}
