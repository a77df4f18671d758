// `codex-auth doctor` (docs/contract.md#codex-auth-doctor): the pure core on a table of fact sets,
// then the bundle end to end against one real daemon in several states — no daemon, healthy,
// auth.json 0644, auth.json broken while the key is still served, a stale override and a live
// `codex-auth exec` listener, a `codex` of another version, the restricted socket with a
// placeholder auth.json written by hand (a remote machine), service units installed then edited.
import t, { type Test } from 'tap'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { diagnose, reportLines, type Check, type CheckStatus, type DoctorFacts } from '../src/client/doctor.js'
import { rcFilesFor } from '../src/client/doctor-gather.js'
import { commandHelp, completionScript, parseArgs } from '../src/client/cli-util.js'
import type { Status } from '../src/rpc/contract.js'
import { CODEX_VERIFIED_VERSION } from '../src/version.js'
import { restrictedSocketPath } from '../src/paths.js'
import { CODEX_BIN, codexBin } from './support/codex.js'
import { connect } from '../src/client/index.js'
import { CLI_BIN, ROOT, runCli, runDaemonCommand, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { registerSecret } from './support/secrets.js'
import { until } from './support/until.js'

// ---------------------------------------------------------------------------------------------
// The pure core
// ---------------------------------------------------------------------------------------------

const ME = 1000
const NOW = Date.parse('2026-11-30T12:00:00Z')
const iso = (ms: number): string => new Date(ms).toISOString()

/** The facts of a forwarded restricted socket on a remote machine: `placeholderList` refused. */
const remote = (f: DoctorFacts): void => {
  if (f.daemon.state === 'answered') f.daemon.restricted = true
  f.restricted = null
  f.home = { shell: '/r/.codex', shellTarget: '/r/.codex', shellIsDefault: true, checked: '/r/.codex', stat: { uid: ME, mode: 0o40700, kind: 'directory' } }
  f.auth = { path: '/r/.codex/auth.json', stat: { uid: ME, mode: 0o100600, kind: 'file' }, local: { state: 'ok' } }
}

function status(over: Partial<Status> = {}): Status {
  return {
    loggedIn: true,
    mode: 'apikey',
    source: 'auth.json',
    account: null,
    tokens: null,
    refresh: { state: 'idle', lastError: null, nextAttemptAt: null },
    settings: { codexHome: '/h/.codex', codexHomeTarget: '/h/.codex', preferredAuthMethod: 'chatgpt', forcedLoginMethod: null, credentialsStore: 'file' },
    problems: [],
    daemon: { version: '1.2.3', pid: 42, startedAt: '2026-11-30T00:00:00Z', socket: '/run/user/1000/codex-authd/default.sock', restrictedSocket: '/run/user/1000/codex-authd/default.restricted.sock', activated: true },
    counters: { refreshTokenSpends: {}, broker: { requestsByReason: {}, answers: {} }, placeholderReuse: 0, placeholders: { issued: 0, rotated: 0, refused: 0, active: 0 } },
    ...over,
  }
}

/** A healthy set-up: every check ok. Each row of the table changes what it is about. */
function healthy(): DoctorFacts {
  return {
    platform: 'linux',
    now: NOW,
    me: ME,
    clientVersion: '1.2.3',
    clientProtocol: 1,
    socket: {
      path: '/run/user/1000/codex-authd/default.sock',
      source: 'runtime',
      tooLong: false,
      maxBytes: 107,
      file: { uid: ME, mode: 0o140600, kind: 'socket' },
      dir: { uid: ME, mode: 0o40700, kind: 'directory' },
      allowed: null,
      allowedError: null,
    },
    daemon: { state: 'answered', version: '1.2.3', protocol: 1, status: status(), elapsedMs: 3, restricted: false },
    home: { shell: '/h/.codex', shellTarget: '/h/.codex', shellIsDefault: true, checked: '/h/.codex', stat: { uid: ME, mode: 0o40700, kind: 'directory' } },
    auth: { path: '/h/.codex/auth.json', stat: { uid: ME, mode: 0o100600, kind: 'file' }, local: null },
    service: {
      manager: 'systemd',
      files: [
        { file: '/h/.config/systemd/user/codex-authd.socket', state: 'current', firstDifferentLine: null },
        { file: '/h/.config/systemd/user/codex-authd.service', state: 'current', firstDifferentLine: null },
      ],
      renderError: null,
      enabled: true,
    },
    broker: { overrides: [], shell: 'bash', alias: { file: '/h/.bashrc', line: 12 }, rcFiles: ['/h/.bashrc'] },
    codexCli: { state: 'ran', path: '/usr/bin/codex', version: CODEX_VERIFIED_VERSION, output: `codex-cli ${CODEX_VERIFIED_VERSION}`, elapsedMs: 50 },
    placeholder: null,
    restricted: { path: '/run/user/1000/codex-authd/default.restricted.sock', served: true, tooLong: false, file: { uid: ME, mode: 0o140600, kind: 'socket' } },
    dbus: { addressSet: true, runtimeBus: '/run/user/1000/bus' },
    verifiedCodexVersion: CODEX_VERIFIED_VERSION,
  }
}

const down = (f: DoctorFacts, errno = 'ENOENT'): void => {
  f.daemon = { state: 'failed', code: 'daemon_unreachable', message: 'codex-authd is not running: ...', errno }
}

interface Row {
  name: string
  change: (f: DoctorFacts) => void
  /** The statuses expected of these ids (a missing id: `absent`); all others ok. */
  want: Record<string, CheckStatus | 'absent'>
  /** Regexps the summary and fix of the checks named must match. */
  say?: Record<string, { summary?: RegExp; fix?: RegExp }>
}

const ROWS: Row[] = [
  { name: 'healthy', change: () => {}, want: {} },
  {
    name: 'no daemon, no socket, no directory',
    change: (f) => {
      down(f)
      f.socket.file = null
      f.socket.dir = null
    },
    want: { 'socket.file': 'fail', 'socket.dir': 'absent', daemon: 'fail', login: 'absent', store: 'absent' },
    say: {
      'socket.file': { summary: /no socket at \/run\/user\/1000\/codex-authd\/default\.sock \(nor its directory/, fix: /^systemctl --user start codex-authd\.socket$/ },
      daemon: { summary: /^nothing answers on \/run\/user\/1000\/codex-authd\/default\.sock \(ENOENT\)$/, fix: /^systemctl --user start codex-authd\.socket$/ },
    },
  },
  {
    name: 'no daemon, no units, another home by --socket: the command line to run',
    change: (f) => {
      down(f, 'ECONNREFUSED')
      f.socket.source = 'flag'
      f.socket.path = '/tmp/x y/s.sock'
      f.home.shell = '/h/other'
      f.home.shellIsDefault = false
      f.service = { manager: 'systemd', files: f.service.manager !== null ? f.service.files!.map((x) => ({ ...x, state: 'absent' as const })) : [], renderError: null, enabled: false }
    },
    want: { daemon: 'fail', 'service.units': 'warn', 'service.enabled': 'absent', 'socket.path': 'ok' },
    say: {
      daemon: { summary: /\(ECONNREFUSED\)$/, fix: /^run `codex-authd --codex-home \/h\/other --socket '\/tmp\/x y\/s\.sock'`, or `codex-authd service install`/ },
      'service.units': { summary: /^not installed/, fix: /^codex-authd service install$/ },
    },
  },
  {
    name: 'the socket path is too long',
    change: (f) => {
      f.socket.tooLong = true
    },
    want: { 'socket.path': 'fail' },
    say: { 'socket.path': { fix: /CODEX_AUTHD_SOCK/ } },
  },
  {
    name: 'the socket belongs to another user; its directory is group-writable',
    change: (f) => {
      f.socket.file = { uid: 1001, mode: 0o140600, kind: 'socket' }
      f.socket.dir = { uid: ME, mode: 0o40770, kind: 'directory' }
      f.daemon = { state: 'failed', code: 'socket_untrusted', message: 'refusing to use ...', errno: null }
    },
    want: { 'socket.file': 'fail', 'socket.dir': 'fail', daemon: 'fail', login: 'absent', store: 'absent' },
    say: { 'socket.file': { summary: /owned by uid 1001, not by you/, fix: /CODEX_AUTH_ALLOW_SOCKET_OWNER=1001/ }, 'socket.dir': { fix: /^chmod go-w / } },
  },
  {
    name: 'a shared socket, allowed; a socket 0666; a listable directory',
    change: (f) => {
      f.socket.allowed = 1001
      f.socket.file = { uid: 1001, mode: 0o140666, kind: 'socket' }
      f.socket.dir = { uid: ME, mode: 0o40755, kind: 'directory' }
    },
    want: { 'socket.file': 'warn', 'socket.dir': 'warn' },
    say: { 'socket.file': { summary: /allowed by CODEX_AUTH_ALLOW_SOCKET_OWNER/ }, 'socket.dir': { fix: /^chmod 700 / } },
  },
  {
    name: 'a regular file where the socket should be; a bad CODEX_AUTH_ALLOW_SOCKET_OWNER',
    change: (f) => {
      f.socket.file = { uid: ME, mode: 0o100600, kind: 'other' }
    },
    want: { 'socket.file': 'fail' },
    say: { 'socket.file': { summary: /a regular file, not a socket/ } },
  },
  {
    name: 'CODEX_AUTH_ALLOW_SOCKET_OWNER names nobody',
    change: (f) => {
      f.socket.allowedError = 'CODEX_AUTH_ALLOW_SOCKET_OWNER=nosuch: no such user'
    },
    want: { 'socket.file': 'fail' },
  },
  {
    name: 'the daemon runs another version; then another protocol',
    change: (f) => {
      if (f.daemon.state === 'answered') f.daemon.version = '1.2.2'
    },
    want: { daemon: 'warn' },
    say: { daemon: { summary: /codex-authd 1\.2\.2 .* this codex-auth is 1\.2\.3/, fix: /restart/ } },
  },
  {
    name: 'another protocol',
    change: (f) => {
      if (f.daemon.state === 'answered') f.daemon.protocol = 2
    },
    want: { daemon: 'fail' },
  },
  {
    name: 'not logged in, with problems: every problem fails',
    change: (f) => {
      f.daemon = {
        state: 'answered',
        version: '1.2.3',
        protocol: 1,
        elapsedMs: 1,
        restricted: false,
        status: status({ loggedIn: false, mode: null, source: null, problems: [{ code: 'config_invalid', message: 'bad value', file: '/h/.codex/config.toml', line: 3, column: 7 }] }),
      }
      f.auth.stat = null
    },
    want: { login: 'fail', 'problem.config_invalid': 'fail', auth_file: 'warn' },
    say: { login: { fix: /^codex-auth login/ }, 'problem.config_invalid': { summary: /^config_invalid: bad value \[\/h\/\.codex\/config\.toml:3:7\]$/ }, auth_file: { fix: /^codex-auth login$/ } },
  },
  {
    name: 'problems while a key is served: known severities, unknown codes warn',
    change: (f) => {
      const p = (code: string) => ({ code, message: `m ${code}`, file: null, line: null, column: null })
      if (f.daemon.state === 'answered') {
        f.daemon.status.problems = ['config_invalid', 'keyring_unreachable', 'store_ephemeral', 'something_new', 'policy_conflict'].map(p)
      }
    },
    want: { 'problem.config_invalid': 'warn', 'problem.keyring_unreachable': 'fail', 'problem.store_ephemeral': 'warn', 'problem.something_new': 'warn', 'problem.policy_conflict': 'fail' },
  },
  {
    name: 'auth.json broken while the daemon still serves the key (the daemon says so)',
    change: (f) => {
      if (f.daemon.state === 'answered') {
        f.daemon.status.problems = [{ code: 'auth_unreadable', message: 'expected value', file: '/h/.codex/auth.json', line: 1, column: 2 }]
      }
    },
    want: { auth_file: 'fail', 'problem.auth_unreadable': 'absent', login: 'ok' },
    say: { auth_file: { summary: /^expected value \[\/h\/\.codex\/auth\.json:1:2\]\. The daemon still serves/, fix: /^repair / } },
  },
  {
    name: 'auth.json broken, no daemon: read here with the daemon\'s reader',
    change: (f) => {
      down(f)
      f.auth.local = { state: 'unreadable', problem: { code: 'auth_unreadable', message: 'trailing characters', file: '/h/.codex/auth.json', line: 2, column: 1 } }
    },
    want: { auth_file: 'fail', daemon: 'fail', login: 'absent', store: 'absent' },
    say: { auth_file: { summary: /^trailing characters \[\/h\/\.codex\/auth\.json:2:1\]\.$/ } },
  },
  {
    name: 'auth.json 0644, owned by you; CODEX_HOME group-writable',
    change: (f) => {
      f.auth.stat = { uid: ME, mode: 0o100644, kind: 'file' }
      f.home.stat = { uid: ME, mode: 0o40775, kind: 'directory' }
    },
    want: { auth_file: 'warn', codex_home: 'warn' },
    say: { auth_file: { summary: /mode 0644: group or other can read/, fix: /^chmod 600 \/h\/\.codex\/auth\.json$/ }, codex_home: { fix: /^chmod go-w / } },
  },
  {
    name: 'auth_permissions: about auth.json, said once (auth_file); about auth.lock, listed',
    change: (f) => {
      f.auth.stat = { uid: ME, mode: 0o100644, kind: 'file' }
      const p = (file: string) => ({ code: 'auth_permissions', message: `${file} is readable by group or other`, file, line: null, column: null })
      if (f.daemon.state === 'answered') f.daemon.status.problems = [p('/h/.codex/auth.json'), p('/h/.codex/auth.lock')]
    },
    want: { auth_file: 'warn', 'problem.auth_permissions': 'warn' },
    say: { 'problem.auth_permissions': { summary: /auth\.lock/ } },
  },
  {
    name: 'no auth.json: the key comes from the daemon\'s environment',
    change: (f) => {
      f.auth.stat = null
      if (f.daemon.state === 'answered') f.daemon.status.source = 'env'
    },
    want: {},
    say: { auth_file: { summary: /OPENAI_API_KEY in the daemon's environment/ } },
  },
  {
    name: 'the daemon serves another home than this shell\'s Codex uses',
    change: (f) => {
      f.home.shell = '/h/work'
      f.home.shellTarget = '/h/work'
    },
    want: { codex_home: 'warn' },
    say: { codex_home: { summary: /the daemon serves \/h\/\.codex, but Codex started from this shell uses \/h\/work/ } },
  },
  {
    name: 'CODEX_HOME missing (no daemon)',
    change: (f) => {
      down(f)
      f.home.stat = null
    },
    want: { codex_home: 'fail', daemon: 'fail', login: 'absent', store: 'absent' },
    say: { codex_home: { fix: /^mkdir -m 700 / } },
  },
  {
    name: 'units installed but not current, socket not enabled',
    change: (f) => {
      if (f.service.manager !== null) {
        f.service.files![1] = { ...f.service.files![1]!, state: 'different', firstDifferentLine: 9 }
        f.service.enabled = false
      }
    },
    want: { 'service.units': 'warn', 'service.enabled': 'warn' },
    say: {
      'service.units': { summary: /^not current: .*codex-authd\.service \(from line 9\)/, fix: /^codex-authd service install, then systemctl --user daemon-reload/ },
      'service.enabled': { fix: /^systemctl --user enable --now codex-authd\.socket$/ },
    },
  },
  {
    name: 'units edited by hand (marker gone); units that cannot be rendered',
    change: (f) => {
      if (f.service.manager !== null) f.service.files![0] = { ...f.service.files![0]!, state: 'foreign' }
    },
    want: { 'service.units': 'warn' },
    say: { 'service.units': { summary: /not compared/ } },
  },
  {
    name: 'units cannot be rendered',
    change: (f) => {
      f.service = { manager: 'systemd', files: null, renderError: 'the daemon is not a file', enabled: null }
    },
    want: { 'service.units': 'warn', 'service.enabled': 'absent' },
  },
  {
    name: 'no service manager on this platform',
    change: (f) => {
      f.platform = 'freebsd'
      f.service = { manager: null }
    },
    want: { 'service.enabled': 'absent' },
  },
  {
    name: 'no override, no alias found: warn, with the alias to add',
    change: (f) => {
      f.broker = { overrides: [], shell: 'zsh', alias: null, rcFiles: ['/h/.zshrc'] }
    },
    want: { broker: 'warn' },
    say: { broker: { summary: /refreshes its tokens by itself.*in \/h\/\.zshrc.*type codex/, fix: /^add alias codex='codex-auth exec -- codex'/ } },
  },
  {
    name: 'a stale override (connection refused), in fish',
    change: (f) => {
      f.broker = {
        overrides: [
          { variable: 'CODEX_REFRESH_TOKEN_URL_OVERRIDE', origin: 'http://127.0.0.1:9', probe: 'refused' },
          { variable: 'CODEX_REVOKE_TOKEN_URL_OVERRIDE', origin: 'http://127.0.0.1:9', probe: 'refused' },
        ],
        shell: 'fish',
        alias: null,
        rcFiles: [],
      }
    },
    want: { broker: 'fail' },
    say: { broker: { summary: /nothing listens/, fix: /^set -e CODEX_REFRESH_TOKEN_URL_OVERRIDE; set -e CODEX_REVOKE_TOKEN_URL_OVERRIDE$/ } },
  },
  {
    name: 'an override that is not a URL, in bash',
    change: (f) => {
      f.broker = { overrides: [{ variable: 'CODEX_REFRESH_TOKEN_URL_OVERRIDE', origin: null, probe: 'invalid_url' }], shell: 'bash', alias: null, rcFiles: [] }
    },
    want: { broker: 'fail' },
    say: { broker: { fix: /^unset CODEX_REFRESH_TOKEN_URL_OVERRIDE$/ } },
  },
  {
    name: 'an override to a remote endpoint; a live exec listener',
    change: (f) => {
      f.broker = { overrides: [{ variable: 'CODEX_REFRESH_TOKEN_URL_OVERRIDE', origin: 'https://auth.example', probe: 'not_loopback' }], shell: 'bash', alias: null, rcFiles: [] }
    },
    want: { broker: 'warn' },
    say: { broker: { summary: /not a codex-auth exec listener/ } },
  },
  {
    name: 'a live exec listener',
    change: (f) => {
      f.broker = {
        overrides: [
          { variable: 'CODEX_REFRESH_TOKEN_URL_OVERRIDE', origin: 'http://127.0.0.1:4000', probe: 'listener' },
          { variable: 'CODEX_REVOKE_TOKEN_URL_OVERRIDE', origin: 'http://127.0.0.1:4000', probe: 'listener' },
        ],
        shell: 'bash',
        alias: null,
        rcFiles: [],
      }
    },
    want: {},
    say: { broker: { summary: /runs under codex-auth exec/ } },
  },
  {
    name: 'only the revoke override',
    change: (f) => {
      f.broker = { overrides: [{ variable: 'CODEX_REVOKE_TOKEN_URL_OVERRIDE', origin: 'http://127.0.0.1:4000', probe: 'listener' }], shell: 'bash', alias: null, rcFiles: [] }
    },
    want: { broker: 'warn' },
  },
  {
    name: 'another Codex version; then none; then one that fails',
    change: (f) => {
      f.codexCli = { state: 'ran', path: '/usr/bin/codex', version: '0.180.0', output: 'codex-cli 0.180.0', elapsedMs: 1 }
    },
    want: { codex_cli: 'warn' },
    say: { codex_cli: { summary: new RegExp(`0\\.180\\.0 .*verified with ${CODEX_VERIFIED_VERSION.replace(/\./g, '\\.')}`) } },
  },
  {
    name: 'a placeholder in auth.json, its access token fresh: ok, with the case a sink cannot cover',
    change: (f) => {
      f.placeholder = { path: '/h/.codex/auth.json', accessExpiresAt: iso(NOW + 50 * 60_000), lastRefresh: iso(NOW - 10 * 60_000) }
    },
    want: { 'auth_file.placeholder': 'ok' },
    say: { 'auth_file.placeholder': { summary: /holds a placeholder .*valid until 2026-11-30T12:50:00\.000Z\. The one case a sink cannot cover: a Codex started without `codex-auth exec --remote` .*401.*asks to sign in again; run Codex as `codex-auth exec --remote -- codex …`, and keep `codex-auth sink --codex-home \/h\/\.codex` running/ } },
  },
  {
    name: 'a placeholder whose access token is within Codex\'s 5-minute window: warn, nothing keeps it fresh',
    change: (f) => {
      f.placeholder = { path: '/h/.codex/auth.json', accessExpiresAt: iso(NOW + 4 * 60_000), lastRefresh: null }
    },
    want: { 'auth_file.placeholder': 'warn' },
    say: { 'auth_file.placeholder': { summary: /expires at 2026-11-30T12:04:00\.000Z, within Codex's 5-minute window: nothing keeps it fresh/, fix: /^run Codex as `codex-auth exec --remote -- codex …`; keep `codex-auth sink --codex-home \/h\/\.codex` running/ } },
  },
  {
    name: 'a placeholder whose access token has expired',
    change: (f) => {
      f.placeholder = { path: '/h/.codex/auth.json', accessExpiresAt: iso(NOW - 1000), lastRefresh: null }
    },
    want: { 'auth_file.placeholder': 'warn' },
    say: { 'auth_file.placeholder': { summary: /its access token expired at / } },
  },
  {
    name: 'a placeholder without exp, last_refresh 9 days old',
    change: (f) => {
      f.placeholder = { path: '/h/.codex/auth.json', accessExpiresAt: null, lastRefresh: iso(NOW - 9 * 24 * 3600_000) }
    },
    want: { 'auth_file.placeholder': 'warn' },
    say: { 'auth_file.placeholder': { summary: /last_refresh \(.*\) is older than 8 days/ } },
  },
  {
    name: 'talking to a restricted socket: said; no units, no daemon home; the placeholder in this shell\'s home',
    change: (f) => {
      remote(f)
      f.placeholder = { path: '/r/.codex/auth.json', accessExpiresAt: iso(NOW + 50 * 60_000), lastRefresh: null }
    },
    want: { 'socket.restricted': 'ok', 'service.units': 'absent', 'service.enabled': 'absent', 'auth_file.placeholder': 'ok' },
    say: {
      'socket.restricted': { summary: /^talking to a restricted socket \(remote machine\)/ },
      codex_home: { summary: /^\/r\/\.codex: a directory/ },
      auth_file: { summary: /^\/r\/\.codex\/auth\.json: yours, mode 0600, parses as Codex reads it$/ },
    },
  },
  {
    name: 'a restricted socket, no alias: the exec --remote alias to add',
    change: (f) => {
      remote(f)
      f.broker.alias = null
    },
    want: { 'socket.restricted': 'ok', broker: 'warn', 'service.units': 'absent' },
    say: { broker: { fix: /^add alias codex='codex-auth exec --remote -- codex' to your shell's rc file \(README: "Remote machines and containers"\)$/ } },
  },
  {
    name: 'a restricted socket, no home yet, no auth.json: ok (exec --remote makes them); the daemon\'s store home not compared',
    change: (f) => {
      remote(f)
      f.home.stat = null
      f.auth = { path: '/r/.codex/auth.json', stat: null, local: { state: 'absent' } }
      if (f.daemon.state === 'answered') f.daemon.status.settings.codexHomeTarget = '/elsewhere'
    },
    want: { 'socket.restricted': 'ok', 'service.units': 'absent' },
    say: { auth_file: { summary: /exec --remote -- codex` writes one/ }, codex_home: { summary: /does not exist yet/ } },
  },
  {
    name: 'the restricted socket is not served: its path is too long',
    change: (f) => {
      if (f.daemon.state === 'answered') f.daemon.status.daemon.restrictedSocket = null
      f.restricted = { path: '/run/user/1000/codex-authd/default.restricted.sock', served: false, tooLong: true, file: null }
    },
    want: { 'socket.restricted': 'warn' },
    say: { 'socket.restricted': { summary: /does not serve the restricted socket.*longer than the 107 bytes/, fix: /CODEX_AUTHD_SOCK/ } },
  },
  {
    name: 'the restricted socket is not served: something else is there; then: not known why',
    change: (f) => {
      f.restricted = { path: '/run/user/1000/codex-authd/default.restricted.sock', served: false, tooLong: false, file: { uid: ME, mode: 0o140600, kind: 'socket' } }
    },
    want: { 'socket.restricted': 'warn' },
    say: { 'socket.restricted': { summary: /something is already at .*another daemon/ } },
  },
  {
    name: 'the restricted socket is not served, not known why: the log',
    change: (f) => {
      f.restricted = { path: '/run/user/1000/codex-authd/default.restricted.sock', served: false, tooLong: false, file: null }
    },
    want: { 'socket.restricted': 'warn' },
    say: { 'socket.restricted': { summary: /the restricted socket is not served/, fix: /^journalctl --user -u codex-authd\.service/ } },
  },
  {
    name: 'the restricted socket 0666',
    change: (f) => {
      f.restricted!.file = { uid: ME, mode: 0o140666, kind: 'socket' }
    },
    want: { 'socket.restricted': 'warn' },
    say: { 'socket.restricted': { fix: /^chmod 600 \/run\/user\/1000\/codex-authd\/default\.restricted\.sock/ } },
  },
  {
    name: 'a daemon too old for the restricted socket: no line',
    change: (f) => void (f.restricted = null),
    want: { 'socket.restricted': 'absent' },
  },
  {
    name: 'the keyring store, served from the entry; DBUS set here',
    change: (f) => {
      if (f.daemon.state === 'answered') f.daemon.status = status({ mode: 'chatgpt', source: 'keyring', settings: { ...status().settings, credentialsStore: 'keyring' } })
    },
    want: { 'store.dbus': 'ok' },
    say: { store: { summary: /^credentials store: keyring \(cli_auth_credentials_store\): the login lives in the Secret Service entry, auth\.json is not used; served from the keyring entry$/ } },
  },
  {
    name: 'auto, served from auth.json; DBUS unset in this fish shell: warn, with the set -gx',
    change: (f) => {
      if (f.daemon.state === 'answered') f.daemon.status = status({ settings: { ...status().settings, credentialsStore: 'auto' } })
      f.dbus = { addressSet: false, runtimeBus: '/run/user/1000/bus' }
      f.broker.shell = 'fish'
    },
    want: { 'store.dbus': 'warn' },
    say: {
      store: { summary: /auto .*: the keyring entry when there is one, else auth\.json; served from auth\.json$/ },
      'store.dbus': { summary: /^DBUS_SESSION_BUS_ADDRESS is not set in this shell: Codex started here cannot reach the keyring and falls back to auth\.json$/, fix: /^set -gx DBUS_SESSION_BUS_ADDRESS unix:path=\/run\/user\/1000\/bus / },
    },
  },
  {
    name: 'keyring: DBUS set here, not in the daemon (keyring_unreachable no_session)',
    change: (f) => {
      const problems = [{ code: 'keyring_unreachable', message: 'no session bus', file: null, line: null, column: null, details: { cause: 'no_session' } }]
      if (f.daemon.state === 'answered') f.daemon.status = status({ mode: 'chatgpt', source: null, loggedIn: false, problems, settings: { ...status().settings, credentialsStore: 'keyring' } })
      f.auth.stat = null
      f.dbus = { addressSet: false, runtimeBus: null }
    },
    want: { 'store.dbus': 'warn', login: 'fail', 'problem.keyring_unreachable': 'fail' },
    say: { 'store.dbus': { summary: /not set in this shell, nor in the daemon's environment: .*cannot load or save the login/, fix: /^export DBUS_SESSION_BUS_ADDRESS=unix:path=\$XDG_RUNTIME_DIR\/bus/ } },
  },
  {
    name: 'keyring, DBUS set here but the daemon has none',
    change: (f) => {
      const problems = [{ code: 'keyring_unreachable', message: 'no session bus', file: null, line: null, column: null, details: { cause: 'no_session' } }]
      if (f.daemon.state === 'answered') f.daemon.status = status({ problems, settings: { ...status().settings, credentialsStore: 'keyring' } })
    },
    want: { 'store.dbus': 'warn', 'problem.keyring_unreachable': 'fail' },
    say: { 'store.dbus': { summary: /set in this shell, but not in the daemon's environment/, fix: /service install/ } },
  },
  {
    name: 'the ephemeral store: no DBUS line',
    change: (f) => {
      if (f.daemon.state === 'answered') f.daemon.status = status({ settings: { ...status().settings, credentialsStore: 'ephemeral' } })
      f.dbus = { addressSet: false, runtimeBus: null }
    },
    want: { 'store.dbus': 'absent' },
    say: { store: { summary: /ephemeral .*in its own memory only: the daemon has nothing to serve/ } },
  },
  {
    name: 'keyring on macOS: no DBUS line',
    change: (f) => {
      f.platform = 'darwin'
      f.service = { manager: null }
      if (f.daemon.state === 'answered') f.daemon.status = status({ source: 'keyring', settings: { ...status().settings, credentialsStore: 'keyring' } })
      f.dbus = { addressSet: false, runtimeBus: null }
    },
    want: { 'store.dbus': 'absent' },
  },
  { name: 'no codex on PATH', change: (f) => void (f.codexCli = { state: 'absent' }), want: { codex_cli: 'warn' } },
  { name: 'codex --version fails', change: (f) => void (f.codexCli = { state: 'failed', path: '/usr/bin/codex', reason: 'exit status 2' }), want: { codex_cli: 'warn' } },
]

t.test('diagnose: a table of fact sets', async (t) => {
  for (const row of ROWS) {
    const f = healthy()
    row.change(f)
    const r = diagnose(f)
    const byId = new Map<string, Check>()
    for (const c of r.checks) if (!byId.has(c.id)) byId.set(c.id, c)
    for (const c of r.checks) {
      const want = row.want[c.id] ?? 'ok'
      t.equal(c.status, want, `${row.name}: ${c.id} is ${want} (${c.summary})`)
      if (c.status !== 'ok') t.ok(c.summary.length > 0, `${row.name}: ${c.id} says why`)
    }
    for (const [id, want] of Object.entries(row.want)) {
      if (want === 'absent') t.notOk(byId.has(id), `${row.name}: no ${id}`)
      else t.ok(byId.has(id), `${row.name}: ${id} present`)
    }
    for (const [id, say] of Object.entries(row.say ?? {})) {
      const c = byId.get(id)
      if (say.summary) t.match(c?.summary, say.summary, `${row.name}: ${id} summary`)
      if (say.fix) t.match(c?.fix, say.fix, `${row.name}: ${id} fix`)
    }
    t.equal(r.ok, !r.checks.some((c) => c.status === 'fail'), `${row.name}: ok iff nothing failed`)
  }
})

t.test('reportLines: status, id, summary, the fix under it, a count', async (t) => {
  const f = healthy()
  f.auth.stat = { uid: ME, mode: 0o100640, kind: 'file' }
  down(f)
  const lines = reportLines(diagnose(f))
  t.match(lines, [/^ok    socket\.path +\/run\/user/])
  const warn = lines.findIndex((l) => /^warn  auth_file /.test(l))
  t.ok(warn > 0, 'the warn line')
  t.match(lines[warn + 1], /^ +fix: chmod 600 \/h\/\.codex\/auth\.json$/, 'its fix under it')
  t.match(lines.at(-1), /^1 failed, 1 warning, \d+ ok: fix the failures first$/)
})

t.test('registered in the command table: help, completion, did-you-mean', async (t) => {
  t.match(parseArgs(['doctor', '--json']), { command: 'doctor', json: true })
  t.match(parseArgs(['help', 'doctor']), { command: 'help', helpFor: 'doctor' })
  t.match(commandHelp('doctor'), /^Usage: codex-auth .* doctor\n\nCheck the set-up end to end/)
  t.throws(() => parseArgs(['doctr']), /did you mean `codex-auth doctor`\?/)
  t.throws(() => parseArgs(['doctor', '--device']), /unknown option --device for doctor/)
  t.match(completionScript('bash'), /^ {4}doctor\) COMPREPLY=/m)
  t.match(completionScript('fish'), /-a doctor -d /)
})

t.test('the verified Codex version is the one the interop tests install', async (t) => {
  const pin = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'codex-cli', 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  t.equal(pin.dependencies['@openai/codex'], CODEX_VERIFIED_VERSION, 'test/codex-cli/package.json pins src/version.ts CODEX_VERIFIED_VERSION')
})

t.test('rcFilesFor: where each shell keeps its aliases', async (t) => {
  const env = { HOME: '/h' }
  t.same(rcFilesFor('bash', env).slice(0, 2), ['/h/.bashrc', '/h/.bash_aliases'])
  t.same(rcFilesFor('zsh', { ...env, ZDOTDIR: '/z' })[0], '/z/.zshrc')
  t.same(rcFilesFor('fish', env), ['/h/.config/fish/config.fish'])
  t.same(rcFilesFor('tcsh', env), ['/h/.tcshrc', '/h/.cshrc'])
  t.same(rcFilesFor(null, env), ['/h/.profile'])
})

// ---------------------------------------------------------------------------------------------
// End to end: the bundle, one real daemon
// ---------------------------------------------------------------------------------------------

// A fake key. Registered: no output of doctor may hold it.
const KEY = 'sk-doctor-test-0123456789abcdefghij'
registerSecret(KEY, 'API key (auth.json)')

interface Run {
  code: number | null
  text: string
  json: { checks: Check[]; ok: boolean }
}

function writeAuth(home: string, text: string, mode = 0o600): void {
  const tmp = path.join(home, `.auth.json.${process.pid}.tmp`)
  fs.writeFileSync(tmp, text, { mode })
  fs.chmodSync(tmp, mode)
  fs.renameSync(tmp, path.join(home, 'auth.json'))
}

/** A loopback port where nothing listens: bound, then closed. */
async function closedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

function check(t: Test, r: Run, id: string): Check {
  const c = r.json.checks.find((x) => x.id === id)
  t.ok(c, `${id} is reported`)
  return c ?? { id, status: 'ok', summary: '' }
}

t.test('end to end', async (t) => {
  const user = tempDir('cad-dr-') // HOME: rc files, ~/.config
  const config = path.join(user, '.config')
  const bin = tempDir('cad-drb-')
  // A `codex` that prints the verified version as the real one does (a shell script starts
  // faster than the real CLI's Node wrapper; the real one runs in the healthy case).
  const sameCodex = tempDir('cad-drc-')
  fs.writeFileSync(path.join(sameCodex, 'codex'), `#!/bin/sh\necho "codex-cli ${CODEX_VERIFIED_VERSION}"\n`, { mode: 0o755 })
  const systemPath = process.env.PATH ?? '/usr/bin:/bin'
  const basePath = `${sameCodex}:${systemPath}`
  const d = stopAtTeardown(t, await startDaemon())
  writeAuth(d.home, JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: KEY }, null, 2))
  const client = await connect({ socket: d.socket }) // reconnects should the daemon close it as idle
  t.teardown(() => client.close())
  /** Waits until the daemon's status shows (or no longer shows) a problem: in-process, no CLI spawned per poll. */
  const problems = async (what: string, pred: (codes: string[]) => boolean): Promise<void> => {
    await until(what, async () => pred((await client.status()).problems.map((p) => p.code)), 30_000, 20)
  }
  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    HOME: user,
    XDG_CONFIG_HOME: config,
    CODEX_HOME: d.home,
    SHELL: '/bin/bash',
    PATH: basePath,
    ...extra,
  })
  /** doctor twice, text and --json: the same checks, the same exit status. */
  const doctor = async (t: Test, socket: string, extra: Record<string, string> = {}): Promise<Run> => {
    const [text, json] = await Promise.all([runCli(['doctor'], { socket, env: env(extra) }), runCli(['doctor', '--json'], { socket, env: env(extra) })])
    t.equal(text.stderr, '', 'nothing on stderr')
    t.equal(json.code, text.code, 'text and --json: the same exit status')
    const parsed = JSON.parse(json.stdout) as Run['json']
    const textIds = text.stdout
      .split('\n')
      .filter((l) => /^(ok|warn|fail) /.test(l))
      .map((l) => l.split(/\s+/).slice(0, 2).join(' '))
    t.same(textIds, parsed.checks.map((c) => `${c.status} ${c.id}`), 'text and --json: the same checks')
    t.equal(parsed.ok, text.code === 0, 'ok iff exit 0')
    return { code: text.code, text: text.stdout, json: parsed }
  }

  await t.test('no daemon: fail, and what to run', async (t) => {
    const sock = path.join(tempDir('cad-drn-'), 'none.sock')
    const r = await doctor(t, sock)
    t.equal(r.code, 1, 'exit 1')
    const daemon = check(t, r, 'daemon')
    t.equal(daemon.status, 'fail')
    t.match(daemon.summary, `nothing answers on ${sock} (ENOENT)`)
    t.match(daemon.fix, `codex-authd --codex-home ${d.home} --socket ${sock}`, 'the command line that serves this home on this socket')
    t.equal(check(t, r, 'socket.file').status, 'fail')
    t.equal(check(t, r, 'auth_file').status, 'ok', "auth.json read here, with the daemon's reader")
    t.match(r.text, /^fail  daemon +nothing answers on /m)
    t.match(r.text, /^ +fix: run `codex-authd --codex-home /m)
  })

  fs.writeFileSync(path.join(user, '.bashrc'), "# mine\nalias ll='ls -l'\nalias codex='codex-auth exec -- codex'    # codex-authd\n")

  await t.test('daemon up and healthy: nothing fails; every warning says why', async (t) => {
    // The real Codex CLI first on PATH: its own `--version`.
    const r = await doctor(t, d.socket, { PATH: `${path.dirname(codexBin())}:${systemPath}` })
    t.equal(r.code, 0, 'exit 0')
    for (const id of ['socket.path', 'socket.file', 'socket.dir', 'daemon', 'socket.restricted', 'login', 'codex_home', 'auth_file', 'store', 'broker', 'codex_cli']) {
      t.equal(check(t, r, id).status, 'ok', `${id} ok: ${check(t, r, id).summary}`)
    }
    t.match(check(t, r, 'socket.path').summary, `${d.socket} (given with --socket)`)
    t.match(check(t, r, 'broker').summary, `${path.join(user, '.bashrc')}:3 aliases codex`)
    t.match(check(t, r, 'codex_cli').summary, `Codex CLI ${CODEX_VERIFIED_VERSION} at ${CODEX_BIN}`)
    t.match(check(t, r, 'login').summary, /^API key configured \(from auth\.json\)$/)
    t.match(check(t, r, 'socket.restricted').summary, `${restrictedSocketPath(d.socket)}: a socket, yours, mode 0600`)
    t.notOk(r.json.checks.some((c) => c.id === 'auth_file.placeholder'), 'no placeholder line for a login of its own')
    // Units not installed here: a warning with what to run.
    t.match(check(t, r, 'service.units'), { status: 'warn', fix: 'codex-authd service install' })
    for (const c of r.json.checks) if (c.status === 'warn') t.ok(c.fix !== undefined || /:/.test(c.summary), `${c.id}: a reason`)
    t.match(r.text, /^\d+ failed, \d+ warnings?, \d+ ok$/m)
  })

  await t.test('a live codex-auth exec listener in the environment: broker ok', async (t) => {
    // doctor run by exec: its environment carries the listener's overrides.
    const r = await runCli(['exec', '--', process.execPath, CLI_BIN, '--socket', d.socket, 'doctor', '--json'], { socket: d.socket, env: env() })
    t.equal(r.code, 0, r.stderr)
    const v = JSON.parse(r.stdout) as Run['json']
    const broker = v.checks.find((c) => c.id === 'broker')
    t.match(broker, { status: 'ok', summary: /this shell runs under codex-auth exec: Codex's refreshes go to its listener at http:\/\/127\.0\.0\.1:\d+,/ })
    t.notMatch(r.stdout, KEY, 'no key in the report')
  })

  await t.test('a stale CODEX_REFRESH_TOKEN_URL_OVERRIDE to a closed port: fail, with what to unset', async (t) => {
    const port = await closedPort()
    const r = await doctor(t, d.socket, { CODEX_REFRESH_TOKEN_URL_OVERRIDE: `http://127.0.0.1:${port}/abc/oauth/token` })
    t.equal(r.code, 1, 'exit 1')
    t.match(check(t, r, 'broker'), { status: 'fail', summary: new RegExp(`CODEX_REFRESH_TOKEN_URL_OVERRIDE points to http://127\\.0\\.0\\.1:${port}, where nothing listens`), fix: 'unset CODEX_REFRESH_TOKEN_URL_OVERRIDE' })
    t.match(r.text, /^ +fix: unset CODEX_REFRESH_TOKEN_URL_OVERRIDE$/m)
  })

  await t.test('a codex of another version on PATH: warn', async (t) => {
    const fake = path.join(bin, 'codex')
    fs.writeFileSync(fake, '#!/bin/sh\necho "codex-cli 0.170.9"\n', { mode: 0o755 })
    const r = await doctor(t, d.socket, { PATH: `${bin}:${basePath}` })
    t.equal(r.code, 0, 'a warning only')
    t.match(check(t, r, 'codex_cli'), { status: 'warn', summary: `Codex CLI 0.170.9 at ${fake}; codex-authd was verified with ${CODEX_VERIFIED_VERSION}` })
    t.match(r.text, /^warn  codex_cli +Codex CLI 0\.170\.9 /m)
  })

  await t.test('auth.json 0644: warn, with the chmod', async (t) => {
    fs.chmodSync(path.join(d.home, 'auth.json'), 0o644)
    t.teardown(() => fs.chmodSync(path.join(d.home, 'auth.json'), 0o600))
    await problems('the daemon reports auth_permissions', (codes) => codes.includes('auth_permissions'))
    const r = await doctor(t, d.socket)
    t.equal(r.code, 0, 'warnings only')
    t.match(check(t, r, 'auth_file'), { status: 'warn', summary: /mode 0644: group or other can read/, fix: `chmod 600 ${path.join(d.home, 'auth.json')}` })
    t.notOk(r.json.checks.some((c) => c.id === 'problem.auth_permissions'), "the daemon's auth_permissions about auth.json: said once, by auth_file")
  })

  await t.test('auth.json broken while the key is still served: doctor fails, status exits 0', async (t) => {
    writeAuth(d.home, '{"auth_mode": "apikey", "OPENAI_API_KEY": ')
    await problems('the daemon reports auth_unreadable', (codes) => codes.includes('auth_unreadable'))
    const st = await runCli(['status'], { socket: d.socket })
    t.equal(st.code, 0, 'status: a credential is still served')
    const r = await doctor(t, d.socket)
    t.equal(r.code, 1, 'doctor: exit 1')
    const auth = check(t, r, 'auth_file')
    t.equal(auth.status, 'fail')
    t.match(auth.summary, /The daemon still serves the last credential it read/)
    t.match(auth.details, { problem: { code: 'auth_unreadable', line: 1 } })
    t.equal(check(t, r, 'login').status, 'ok')
    writeAuth(d.home, JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: KEY }, null, 2))
    await problems('the daemon reads auth.json again', (codes) => codes.length === 0)
  })

  await t.test('a remote machine: the restricted socket, a sink-written auth.json whose token has expired', async (t) => {
    // What `sink --codex-home` or `exec --remote` writes, by hand: Codex's format, a placeholder refresh token.
    const remoteHome = tempDir('cad-drr-')
    const jwt = (claims: Record<string, unknown>): string => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
    const expired = Math.floor(Date.now() / 1000) - 60
    const access = jwt({ exp: expired, sub: 'u' })
    const placeholder = `codex-authd-ph.${Buffer.alloc(32, 7).toString('base64url')}`
    registerSecret(access, 'access token (placeholder auth.json)')
    registerSecret(placeholder, 'placeholder (placeholder auth.json)')
    const tokens = { id_token: jwt({ exp: expired, email: 'r@example.com' }), access_token: access, refresh_token: placeholder, account_id: 'acc' }
    writeAuth(remoteHome, JSON.stringify({ auth_mode: 'chatgpt', OPENAI_API_KEY: null, tokens, last_refresh: new Date().toISOString() }, null, 2))
    const r = await doctor(t, restrictedSocketPath(d.socket), { CODEX_HOME: remoteHome })
    t.equal(r.code, 0, 'warnings only')
    t.match(check(t, r, 'socket.restricted'), { status: 'ok', summary: /^talking to a restricted socket \(remote machine\)/ })
    t.notOk(r.json.checks.some((c) => c.id.startsWith('service.')), 'no service checks: the units are the workstation\'s')
    t.match(check(t, r, 'codex_home'), { status: 'ok', summary: `${remoteHome}: a directory` })
    t.match(check(t, r, 'auth_file'), { status: 'ok', summary: `${path.join(remoteHome, 'auth.json')}: yours, mode 0600` })
    t.match(check(t, r, 'auth_file.placeholder'), {
      status: 'warn',
      summary: `its access token expired at ${new Date(expired * 1000).toISOString()}, within Codex's 5-minute window`,
      fix: `run Codex as \`codex-auth exec --remote -- codex …\`; keep \`codex-auth sink --codex-home ${remoteHome}\``,
    })
    t.match(r.text, /^warn  auth_file\.placeholder +/m)
  })

  await t.test('service units installed, enabled, then edited: warn, not current', async (t) => {
    const installed = await runDaemonCommand(['service', 'install', '--systemd'], { env: { HOME: user, XDG_CONFIG_HOME: config } })
    t.equal(installed.code, 0, installed.stderr)
    const unitDir = path.join(config, 'systemd', 'user')
    let r = await doctor(t, d.socket)
    t.match(check(t, r, 'service.units'), { status: 'ok', summary: /^installed and current: / })
    t.match(check(t, r, 'service.enabled'), { status: 'warn', fix: 'systemctl --user enable --now codex-authd.socket' })
    // What `systemctl --user enable` makes.
    fs.mkdirSync(path.join(unitDir, 'sockets.target.wants'))
    fs.symlinkSync(path.join(unitDir, 'codex-authd.socket'), path.join(unitDir, 'sockets.target.wants', 'codex-authd.socket'))
    const service = path.join(unitDir, 'codex-authd.service')
    fs.appendFileSync(service, 'Environment=EDITED=1\n')
    r = await doctor(t, d.socket)
    t.equal(r.code, 0, 'warnings only')
    t.match(check(t, r, 'service.enabled'), { status: 'ok' })
    t.match(check(t, r, 'service.units'), { status: 'warn', summary: `not current: ${service} (from line`, fix: /^codex-authd service install, then systemctl --user daemon-reload/ })
    t.match(r.text, /^warn  service\.units +not current: /m)
  })
})
