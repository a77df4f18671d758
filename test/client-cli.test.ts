// `codex-auth` (docs/contract.md#codex-auth): the pure parts, then the bundle end to end — first without a daemon
// (usage, unreachable, exec failures before connecting), then against the real daemon.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { UsageError, shellQuote } from '../src/cli-common.js'
import { childEnv, envLines, lookupCommand, maskApiKey, parseArgs, statusHeadline } from '../src/client/cli-util.js'
import { attentionLines, relativeTime, statusJson, statusLines } from '../src/client/status-view.js'
import { browserLoginLines, browserOpener, formatDuration, loginOutcome, progressLine } from '../src/client/login-view.js'
import { serviceSetup, startHint } from '../src/client/service-hint.js'
import type { AuthGrant, Status } from '../src/rpc/contract.js'
import { CLI_BIN, makeHome, runCli, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { chatgptAuth, fakeJwt } from './support/tokens.js'
import { until } from './support/until.js'

// A fake key with a quote and a space, to exercise shell quoting. Compared, never printed.
const KEY = "sk-test-it's a 0123456789abcdef"
const MASKED = `API key configured - ${KEY.slice(0, 8)}***${KEY.slice(-5)}`

const nobody = () => path.join(tempDir('cad-nd-'), 'none.sock')

function writeApiKeyAuth(home: string, key: string): void {
  const tmp = path.join(home, `.auth.json.${process.pid}.tmp`)
  fs.writeFileSync(tmp, JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key }, null, 2), { mode: 0o600 })
  fs.renameSync(tmp, path.join(home, 'auth.json'))
}

function baseStatus(over: Partial<Status> = {}): Status {
  return {
    loggedIn: true,
    mode: 'chatgpt',
    source: 'auth.json',
    account: { email: 'a@example.com', planType: 'plus', accountId: 'acc' },
    tokens: null,
    refresh: { state: 'idle', lastError: null, nextAttemptAt: null },
    settings: { codexHome: '/h', codexHomeTarget: '/h', preferredAuthMethod: 'chatgpt', forcedLoginMethod: null, credentialsStore: 'file' },
    problems: [],
    daemon: { version: '0', pid: 1, startedAt: '', socket: '/s', restrictedSocket: null, activated: false },
    counters: { refreshTokenSpends: {}, broker: { requestsByReason: {}, answers: {} }, placeholderReuse: 0, placeholders: { issued: 0, rotated: 0, refused: 0, active: 0 } },
    ...over,
  }
}

// ---------------------------------------------------------------------------------------------
// pure parts
// ---------------------------------------------------------------------------------------------

t.test('parseArgs', async (t) => {
  const ok: Array<[string[], Record<string, unknown>]> = [
    [['status'], { command: 'status', json: false, socket: null }],
    [['--json', 'status'], { command: 'status', json: true }],
    [['status', '--json', '--socket', '/s', '--codex-home=/h'], { command: 'status', json: true, socket: '/s', codexHome: '/h' }],
    [['--socket=/x', 'token', '--min-validity', '600'], { command: 'token', socket: '/x', minValidity: 600 }],
    [['token', '--min-validity=0'], { command: 'token', minValidity: 0 }],
    [['login'], { command: 'login', device: false, withApiKey: false, noBrowser: false }],
    [['login', '--device', '--no-browser'], { command: 'login', device: true, noBrowser: true }],
    [['login', '--with-api-key'], { command: 'login', withApiKey: true }],
    [['logout', '--no-revoke'], { command: 'logout', noRevoke: true }],
    [['exec', '--', 'cmd', '--json', '-x'], { command: 'exec', argv: ['cmd', '--json', '-x'], json: false }],
    [['exec', 'cmd', '--', 'a'], { command: 'exec', argv: ['cmd', '--', 'a'] }],
    [['--socket', '/s', 'exec', '--min-validity', '5', '--', 'env'], { command: 'exec', socket: '/s', minValidity: 5, argv: ['env'] }],
    [['--help'], { command: 'help' }],
    [['status', '-h'], { command: 'help', helpFor: 'status' }],
    [['-h', 'token'], { command: 'help', helpFor: 'token' }],
    [['help'], { command: 'help', helpFor: null }],
    [['help', 'exec'], { command: 'help', helpFor: 'exec' }],
    [['exec', '--help'], { command: 'help', helpFor: 'exec' }],
    [['-V'], { command: 'version' }],
    [['env', '--shell', 'fish'], { command: 'env', shell: 'fish' }],
    [['env', '--shell=csh'], { command: 'env', shell: 'csh' }],
    [['env'], { command: 'env', shell: 'posix' }],
    [['completion', 'zsh'], { command: 'completion', completionShell: 'zsh' }],
    [['--version'], { command: 'version' }],
    [['watch'], { command: 'watch' }],
    [['refresh'], { command: 'refresh' }],
    [['env'], { command: 'env' }],
  ]
  for (const [args, want] of ok) t.match(parseArgs(args), want, args.join(' '))
  const bad: Array<[string[], RegExp]> = [
    [[], /no command/],
    [['frobnicate'], /unknown command/],
    [['status', 'extra'], /unexpected argument/],
    [['status', '--device'], /unknown option --device for status/],
    [['--bogus', 'status'], /unknown option --bogus/],
    [['token', '--min-validity'], /needs a value/],
    [['token', '--min-validity', 'ten'], /0 to 3600/],
    [['token', '--min-validity', '3601'], /0 to 3600/],
    [['token', '--min-validity', '-5'], /0 to 3600/],
    [['login', '--device', '--with-api-key'], /choose one/],
    [['exec'], /needs a command/],
    [['exec', '--'], /needs a command/],
    [['--socket'], /needs a value/],
    [['--socket=', 'status'], /non-empty/],
    [['--json=yes', 'status'], /takes no value/],
    [['status', '--', 'x'], /only allowed after exec/],
    [['service'], /did you mean `codex-authd service`\?/],
    [['stauts'], /unknown command 'stauts'; did you mean `codex-auth status`\?/],
    [['tokne'], /did you mean `codex-auth token`\?/],
    [['logot'], /did you mean `codex-auth logout`\?/],
    [['xyzzy'], /^unknown command 'xyzzy'$/],
    [['env', '--shell', 'pwsh'], /--shell takes posix, fish, csh, not 'pwsh'/],
    [['token', '--shell', 'fish'], /unknown option --shell for token/],
    [['completion'], /completion needs a shell/],
    [['completion', 'ksh'], /completion takes bash, zsh, fish/],
    [['completion', 'bash', 'zsh'], /unexpected argument 'zsh'/],
  ]
  for (const [args, re] of bad) t.throws(() => parseArgs(args), { name: 'UsageError', message: re }, args.join(' ') || '(none)')
  t.type((() => { try { parseArgs(['exec']) } catch (e) { return e } })(), UsageError)
})

t.test("maskApiKey: Codex's mask", async (t) => {
  const cases: Array<[string, string]> = [
    ['sk-proj-0123456789abcde', 'sk-proj-***abcde'],
    ['sk-test-1234567890', 'sk-test-***67890'],
    ['12345678901234', '12345678***01234'], // 14 chars: masked
    ['1234567890123', '***'], // 13 chars
    ['short', '***'],
    ['', '***'],
  ]
  for (const [k, want] of cases) t.equal(maskApiKey(k), want, `${k.length} chars`)
})

t.test('shellQuote round-trips through sh', async (t) => {
  for (const v of ['plain', "it's", "''", 'a b\tc\nd', '$HOME `x` "q" \\', '']) {
    const r = spawnSync('sh', ['-c', `printf %s ${shellQuote(v)}`], { encoding: 'utf8' })
    t.equal(r.stdout, v, JSON.stringify(v))
  }
})

t.test('env lines and the child environment', async (t) => {
  const api: AuthGrant = { mode: 'apikey', token: 'k1', accountId: null, expiresAt: null, email: null, planType: null }
  const gpt: AuthGrant = { mode: 'chatgpt', token: 'at', accountId: 'acc-1', expiresAt: null, email: null, planType: null }
  t.equal(envLines(api), "export CODEX_AUTH_MODE='apikey'\nexport CODEX_AUTH_TOKEN='k1'\nexport OPENAI_API_KEY='k1'\nexport CODEX_API_KEY='k1'\n", 'CODEX_AUTH_TOKEN in every mode')
  t.equal(envLines(gpt), "export CODEX_AUTH_MODE='chatgpt'\nexport CODEX_AUTH_TOKEN='at'\nexport CODEX_AUTH_ACCOUNT_ID='acc-1'\n")
  t.equal(envLines({ ...gpt, accountId: null }), "export CODEX_AUTH_MODE='chatgpt'\nexport CODEX_AUTH_TOKEN='at'\n")
  const parent = { PATH: '/bin', OPENAI_API_KEY: 'stale', CODEX_AUTH_TOKEN: 'stale', CODEX_AUTH_ACCOUNT_ID: 'stale', KEEP: '1' }
  t.strictSame(childEnv(parent, api), { PATH: '/bin', KEEP: '1', CODEX_AUTH_MODE: 'apikey', CODEX_AUTH_TOKEN: 'k1', OPENAI_API_KEY: 'k1', CODEX_API_KEY: 'k1' })
  t.strictSame(childEnv(parent, gpt), { PATH: '/bin', KEEP: '1', CODEX_AUTH_MODE: 'chatgpt', CODEX_AUTH_TOKEN: 'at', CODEX_AUTH_ACCOUNT_ID: 'acc-1' })
  t.equal(parent.OPENAI_API_KEY, 'stale', 'parent untouched')
})

t.test("status wording (Codex 0.171's lines)", async (t) => {
  t.equal(statusHeadline(baseStatus({ loggedIn: false, mode: null, account: null }), null), 'Not logged in')
  t.equal(statusHeadline(baseStatus(), null), 'Logged in using ChatGPT (a@example.com, plus)')
  t.equal(statusHeadline(baseStatus({ account: { email: null, planType: 'pro', accountId: null } }), null), 'Logged in using ChatGPT (pro)')
  t.equal(statusHeadline(baseStatus({ account: null }), null), 'Logged in using ChatGPT')
  t.equal(statusHeadline(baseStatus({ mode: 'apikey', account: null }), 'sk-proj-0123456789abcde'), 'API key configured - sk-proj-***abcde')
  t.equal(statusHeadline(baseStatus({ mode: 'apikey', account: null }), null), 'API key configured')
  t.strictSame(attentionLines(baseStatus()), [])
  const troubled = baseStatus({
    refresh: { state: 'failed', lastError: { reason: 'reused', message: 'refresh token was already used' }, nextAttemptAt: null },
    problems: [
      { code: 'auth_permissions', message: 'auth.json is readable by others', file: '/h/auth.json', line: null, column: null },
      { code: 'config_invalid', message: 'invalid value', file: '/h/config.toml', line: 2, column: 19 },
      { code: 'auth_file_ignored', message: 'auth.json is ignored under the keyring store', file: '/h/auth.json', line: null, column: null },
    ],
  })
  t.strictSame(attentionLines(troubled), [
    'Token refresh failed: refresh token was already used (reused)',
    '  Run `codex-auth login` to log in again.',
    'Problem (auth_permissions): auth.json is readable by others [/h/auth.json]',
    'Problem (config_invalid): invalid value [/h/config.toml:2:19]',
    '  Fix /h/config.toml (defaults are used meanwhile); codex-authd reads it again when it changes.',
    'Problem (auth_file_ignored): auth.json is ignored under the keyring store [/h/auth.json]',
  ])
  const ctx = { now: Date.parse('2030-01-01T00:00:00Z'), setup: { kind: 'none' } as const }
  const lines = statusLines(troubled, null, ctx)
  t.equal(lines[0], 'Token refresh failed: refresh token was already used (reused)', 'trouble stands out at the top')
  t.equal(lines[attentionLines(troubled).length + 1], 'Logged in using ChatGPT (a@example.com, plus)', "then Codex's headline")
  t.strictSame(Object.keys(statusJson(troubled))[0], 'problems', '--json: problems first')
  t.strictSame(statusJson(troubled), troubled, '--json: the same Status')
  t.match(statusLines(baseStatus({ refresh: { state: 'backoff', lastError: null, nextAttemptAt: '2030-01-01T00:00:30Z' } }), null, ctx), [
    'Logged in using ChatGPT (a@example.com, plus)',
    /Method: +ChatGPT/,
    /Account: +a@example\.com, plan plus, account acc/,
    /Refresh: +backing off after: unknown error; next attempt 2030-01-01T00:00:30Z \(in 30 s\)\. `codex-auth refresh` tries now\./,
    /Credentials: +served from auth\.json; store "file"; CODEX_HOME \/h$/,
    /Daemon: +codex-authd 0, pid 1, socket \/s, since/,
  ])
  const chatgpt = statusLines(
    baseStatus({ tokens: { expiresAt: '2030-01-01T01:00:00Z', lastRefresh: '2029-12-31T22:00:00Z', nextRefreshAt: '2030-01-01T00:55:00Z' } }),
    null,
    ctx,
  )
  t.match(chatgpt, ['Logged in using ChatGPT (a@example.com, plus)', /Method/, /Account/, /Access token: +valid until 2030-01-01T01:00:00Z \(in 1 h\)/, /Next refresh: +2030-01-01T00:55:00Z \(in 55 min\)/, /Last refresh: +2029-12-31T22:00:00Z \(2 h ago\)/])
  const out = statusLines(baseStatus({ loggedIn: false, mode: null, source: null, account: null }), null, ctx)
  t.equal(out[0], 'Not logged in')
  t.match(out[1], /codex-auth login/, 'says what to run')
  t.match(out.join('\n'), /Credentials: +none served; store "file"/)
  const env = statusLines(baseStatus({ mode: 'apikey', source: 'env', account: null }), 'sk-proj-0123456789abcde', ctx)
  t.match(env, ['API key configured - sk-proj-***abcde', /Method: +API key/, /API key: +from codex-authd's environment \(OPENAI_API_KEY\)/, /restart codex-authd with another OPENAI_API_KEY, or none/])
  const sysd = statusLines(baseStatus({ mode: 'apikey', source: 'env', account: null }), null, { ...ctx, setup: { kind: 'systemd' } })
  t.match(sysd.join('\n'), /systemctl --user restart codex-authd\.service/, 'systemd: how to change the unit environment')
  const file = statusLines(baseStatus({ mode: 'apikey', source: 'auth.json', account: null }), null, ctx)
  t.match(file.join('\n'), /API key: +from auth\.json; `codex-auth login --with-api-key` replaces it, `codex-auth logout` removes it/)
  for (const [iso, want] of [['2030-01-01T00:00:05Z', 'in 5 s'], ['2029-12-31T23:50:00Z', '10 min ago'], ['2030-01-05T00:00:00Z', 'in 4 days'], ['bogus', 'unknown']] as const) {
    t.equal(relativeTime(iso, ctx.now), want, iso)
  }
})

t.test('login wording: the live line, the browser, the ending', async (t) => {
  t.equal(formatDuration(0), '0:00')
  t.equal(formatDuration(42_900), '0:42')
  t.equal(formatDuration(14 * 60_000 + 18_000), '14:18')
  t.equal(formatDuration(3_723_000), '1:02:03')
  t.equal(formatDuration(-5000), '0:00', 'never negative')
  t.equal(progressLine(0, 42_000, 900_000), 'Waiting for the login to complete: 0:42 elapsed, 14:18 left (Ctrl-C to cancel)')
  t.equal(progressLine(0, 42_000, null), 'Waiting for the login to complete: 0:42 elapsed (Ctrl-C to cancel)')
  t.match(browserOpener('http://x', 'linux', {}), { ok: false, reason: /neither DISPLAY nor WAYLAND_DISPLAY/ })
  t.strictSame(browserOpener('http://x', 'linux', { WAYLAND_DISPLAY: 'wayland-0' }), { ok: true, command: 'xdg-open', args: ['http://x'] })
  t.strictSame(browserOpener('http://x', 'darwin', {}), { ok: true, command: 'open', args: ['http://x'] })
  const started = { loginId: 'L', method: 'browser', authUrl: 'http://127.0.0.1:9/authorize?x=1', callbackUrl: 'http://localhost:1455/auth/callback', expiresAt: '' } as const
  t.strictSame(browserLoginLines(started, { kind: 'open' }).slice(0, 2), ['Starting local login server on http://localhost:1455.', 'Opening your browser. If it did not open, navigate to this URL to authenticate:'])
  t.equal(browserLoginLines(started, { kind: 'not-asked' })[1], 'Navigate to this URL to authenticate:')
  t.match(browserLoginLines(started, { kind: 'none', reason: 'no graphical session here' }).join('\n'), /No browser can be opened: no graphical session here\.\n.*ssh -L 1455:localhost:1455.*\n.*codex-auth login --device/)
  t.strictSame(loginOutcome({ loginId: 'L', status: 'succeeded', error: null }), { ok: true, line: 'Successfully logged in' })
  t.strictSame(loginOutcome({ loginId: 'L', status: 'cancelled', error: { reason: 'cancelled', message: 'Login cancelled' } }), { ok: false, line: 'Login cancelled' })
  t.strictSame(loginOutcome({ loginId: 'L', status: 'cancelled', error: { reason: 'cancelled_from_outside', message: 'a new codex login (pid 7)' } }), { ok: false, line: 'Login cancelled: a new codex login (pid 7) (cancelled_from_outside)' })
  t.strictSame(loginOutcome({ loginId: 'L', status: 'expired', error: { reason: 'expired', message: 'not completed within 15 minutes' } }), { ok: false, line: 'Login expired: not completed within 15 minutes (expired)' })
})

t.test('how to start the daemon here', async (t) => {
  const only = (file: string) => (f: string) => f === file
  t.strictSame(serviceSetup('linux', { HOME: '/home/u' }, only('/home/u/.config/systemd/user/codex-authd.socket')), { kind: 'systemd' })
  t.strictSame(serviceSetup('linux', { HOME: '/home/u', XDG_CONFIG_HOME: '/x' }, only('/x/systemd/user/codex-authd.socket')), { kind: 'systemd' })
  t.strictSame(serviceSetup('linux', {}, only('/usr/lib/systemd/user/codex-authd.socket')), { kind: 'systemd' }, "a package's unit")
  t.strictSame(serviceSetup('linux', { HOME: '/home/u' }, () => false), { kind: 'none' })
  const plist = '/Users/u/Library/LaunchAgents/com.github.codex-authd.plist'
  t.strictSame(serviceSetup('darwin', { HOME: '/Users/u' }, only(plist)), { kind: 'launchd', plist })
  t.strictSame(serviceSetup('darwin', { HOME: '/Users/u' }, () => false), { kind: 'none' })
  t.strictSame(serviceSetup('freebsd', { HOME: '/home/u' }, () => true), { kind: 'none' }, 'no systemctl off Linux')
  t.match(startHint({ kind: 'systemd' }), /^Start it with `systemctl --user start codex-authd\.socket`/)
  t.match(startHint({ kind: 'launchd', plist }), /^Start it with `launchctl kickstart gui\/\$\(id -u\)\/com\.github\.codex-authd`.*launchctl bootstrap gui\/\$\(id -u\) \/Users\/u\/Library/)
  t.match(startHint({ kind: 'none' }), /^Start it with `codex-authd` .*`npm start`.*`codex-authd service install`/)
})

t.test('lookupCommand (execvp rules)', async (t) => {
  const dir = tempDir('cad-lk-')
  const exe = path.join(dir, 'runme')
  fs.writeFileSync(exe, '#!/bin/sh\n', { mode: 0o755 })
  const noexec = path.join(dir, 'plain')
  fs.writeFileSync(noexec, 'x', { mode: 0o644 })
  fs.mkdirSync(path.join(dir, 'sub'))
  t.match(lookupCommand('runme', `/nonexistent:${dir}`, '/'), { ok: true, file: exe })
  t.match(lookupCommand('./runme', '', dir), { ok: true, file: exe })
  t.match(lookupCommand(exe, '', '/'), { ok: true })
  t.match(lookupCommand('sh', process.env.PATH, '/'), { ok: true })
  t.match(lookupCommand('no-such-cmd-xyz', dir, '/'), { ok: false, status: 127 })
  t.match(lookupCommand(path.join(dir, 'nope'), dir, '/'), { ok: false, status: 127 })
  t.match(lookupCommand('sub', dir, '/'), { ok: false, status: 127 }, 'a directory in PATH is skipped')
  t.match(lookupCommand(path.join(dir, 'sub'), dir, '/'), { ok: false, status: 126 })
  t.match(lookupCommand('', dir, '/'), { ok: false, status: 127 })
  if (process.getuid?.() !== 0) {
    t.match(lookupCommand(noexec, dir, '/'), { ok: false, status: 126 })
    t.match(lookupCommand('plain', dir, '/'), { ok: false, status: 126 })
  } else {
    // root passes access(X_OK) only when some x bit is set: a 0644 file is still not executable
    t.match(lookupCommand(noexec, dir, '/'), { ok: false, status: 126 })
  }
})

// ---------------------------------------------------------------------------------------------
// the bundle, no daemon
// ---------------------------------------------------------------------------------------------

t.test('bundle: help, version, usage errors (64)', async (t) => {
  const help = await runCli(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /Usage: codex-auth/)
  const v = await runCli(['--version'])
  t.equal(v.code, 0)
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  t.equal(v.stdout, `codex-auth ${pkg.version}\n`)
  const usage = [[], ['frob'], ['status', '--bogus'], ['token', '--min-validity', 'x'], ['login', '--device', '--with-api-key']]
  const results = await Promise.all(usage.map((args) => runCli(args, { socket: nobody() })))
  for (const [i, args] of usage.entries()) {
    const r = results[i]!
    t.equal(r.code, 64, `${args.join(' ') || '(none)'} -> 64`)
    t.match(r.stderr, /^codex-auth: .*\nTry 'codex-auth (\w+ )?--help'/)
    t.equal(r.stdout, '')
  }
  const empty = await runCli(['login', '--with-api-key'], { socket: nobody(), input: ' \n' })
  t.equal(empty.code, 64, 'empty key on stdin')
  t.match(empty.stderr, /no API key provided via stdin\nTry 'codex-auth login --help'/)
})

t.test('bundle: --with-api-key refuses a TTY (64)', async (t) => {
  const r = spawnSync('script', ['-qec', `${process.execPath} ${CLI_BIN} --socket ${nobody()} login --with-api-key`, '/dev/null'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // script(1) gives the CLI a pseudo-terminal; scripts/test-deps.sh installs it (bsdutils).
  t.error(r.error, 'script(1) runs (scripts/test-deps.sh installs bsdutils)')
  t.equal(r.status, 64)
  t.match(r.stdout + r.stderr, /--with-api-key expects the API key on stdin\. Try piping it, e\.g\. `printenv OPENAI_API_KEY \| codex-auth login --with-api-key`\./)
})

t.test('bundle: daemon unreachable (2), exec setup failure (125)', async (t) => {
  const sock = nobody()
  // (with --json the same failure is a JSON object on stdout: test/cli-help-json.test.ts)
  const cmds = [['status'], ['token'], ['env'], ['refresh'], ['logout'], ['watch'], ['login', '--device']]
  // No unit installed (an empty config home): the daemon itself; with the socket unit in
  // $XDG_CONFIG_HOME/systemd/user: systemctl --user.
  const noUnit = { XDG_CONFIG_HOME: tempDir('cad-xdg-'), XDG_DATA_HOME: tempDir('cad-xdg-') }
  const withUnit = { ...noUnit, XDG_CONFIG_HOME: tempDir('cad-xdg-') }
  fs.mkdirSync(path.join(withUnit.XDG_CONFIG_HOME, 'systemd', 'user'), { recursive: true })
  fs.writeFileSync(path.join(withUnit.XDG_CONFIG_HOME, 'systemd', 'user', 'codex-authd.socket'), '[Socket]\n')
  const results = await Promise.all(cmds.map((args) => runCli(args, { socket: sock, env: noUnit })))
  for (const [i, args] of cmds.entries()) {
    const r = results[i]!
    t.equal(r.code, 2, `${args.join(' ')} -> 2`)
    t.match(r.stderr, /Start it with `codex-authd` \(with the same --codex-home\/--socket; in a checkout: `npm start`\), or install it as a service: `codex-authd service install`\./)
    t.notMatch(r.stderr, /systemctl/, 'no systemctl hint without the unit')
    t.equal(r.stdout, '')
  }
  const unit = await runCli(['status'], { socket: sock, env: withUnit })
  t.match(unit.stderr, /Start it with `systemctl --user start codex-authd\.socket`, or run `codex-authd`/, 'the unit installed: systemctl --user')
  const viaEnv = await runCli(['status'], { env: { CODEX_AUTHD_SOCK: sock } })
  t.equal(viaEnv.code, 2, 'CODEX_AUTHD_SOCK is honoured')
  t.match(viaEnv.stderr, sock)
  const home = await makeHome()
  const viaHome = await runCli(['--codex-home', home, 'status'], { env: { HOME: '/nonexistent' } })
  t.equal(viaHome.code, 2)
  t.match(viaHome.stderr, home, 'socket path derived from --codex-home')
  t.notOk(fs.existsSync(path.join(home, 'run')), 'the client creates nothing')

  const e = await runCli(['exec', '--', 'true'], { socket: sock })
  t.equal(e.code, 125, 'exec: daemon unreachable -> 125')
  t.match(e.stderr, /codex-authd is not running/)
})

t.test('bundle: exec fails before connecting (125/126/127)', async (t) => {
  const sock = nobody() // nothing listens: these must not need the daemon
  const dir = tempDir('cad-ex-')
  fs.writeFileSync(path.join(dir, 'plain'), 'x', { mode: 0o644 })
  const cases: Array<[string[], number, RegExp]> = [
    [['exec'], 125, /needs a command/],
    [['exec', '--'], 125, /needs a command/],
    [['exec', '--', 'no-such-command-xyz'], 127, /no-such-command-xyz: command not found/],
    [['exec', '--', path.join(dir, 'missing')], 127, /No such file or directory/],
    [['exec', '--', path.join(dir, 'plain')], 126, /Permission denied/],
    [['exec', '--', dir], 126, /Is a directory/],
  ]
  const results = await Promise.all(cases.map(([args]) => runCli(args, { socket: sock })))
  for (const [i, [args, code, re]] of cases.entries()) {
    const r = results[i]!
    t.equal(r.code, code, `${args.slice(2).join(' ') || args.join(' ')} -> ${code}`)
    t.match(r.stderr, re)
  }
})

// ---------------------------------------------------------------------------------------------
// against the real daemon
// ---------------------------------------------------------------------------------------------

t.test('logged out: status 1, token/env 1, exec 125', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  const s = await runCli(['status'], { socket: d.socket })
  t.equal(s.code, 1)
  const lines = s.stdout.split('\n')
  t.equal(lines[0], 'Not logged in')
  t.match(lines[1], /Log in with `codex-auth login` \(a browser\), `codex-auth login --device`/, 'says what to run')
  t.match(s.stdout, new RegExp(`Credentials: +none served; store "file"; CODEX_HOME ${d.home}\n`))
  t.match(s.stdout, new RegExp(`Daemon: +codex-authd \\S+, pid ${d.pid}, socket ${d.socket}, since `), "the daemon's pid and socket")
  t.equal(s.stderr, '')
  const j = await runCli(['status', '--json'], { socket: d.socket })
  t.equal(j.code, 1)
  const st = JSON.parse(j.stdout) as Status
  t.match(st, { loggedIn: false, mode: null, daemon: { pid: d.pid, socket: d.socket }, settings: { codexHome: d.home } })
  const lo = await runCli(['logout'], { socket: d.socket })
  t.equal(lo.code, 0)
  t.equal(lo.stdout, 'Not logged in\n', 'logout with nothing to remove')
  const loj = await runCli(['logout', '--json'], { socket: d.socket })
  t.strictSame(JSON.parse(loj.stdout), { wasLoggedIn: false, revoked: false })
  for (const cmd of ['token', 'env']) {
    const r = await runCli([cmd], { socket: d.socket })
    t.equal(r.code, 1, `${cmd} -> 1`)
    t.equal(r.stdout, '')
    t.match(r.stderr, /Not logged in/)
  }
  const e = await runCli(['exec', '--', 'true'], { socket: d.socket })
  t.equal(e.code, 125)
  t.match(e.stderr, /Not logged in/)
  const home = await runCli(['--codex-home', d.home, 'status'], { env: { CODEX_AUTHD_SOCK: d.socket } })
  t.equal(home.code, 1, 'CODEX_AUTHD_SOCK finds the daemon')
})

t.test('API key from the daemon env: status, token, env, exec', async (t) => {
  const d = stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: KEY } }))
  const s = await runCli(['status'], { socket: d.socket })
  t.equal(s.code, 0)
  t.equal(s.stdout.split('\n')[0], MASKED, 'masked as Codex does')
  t.match(s.stdout, /API key: +from codex-authd's environment \(OPENAI_API_KEY\), not from a file\n +To change or remove it, restart codex-authd with another OPENAI_API_KEY, or none, in its environment\./)
  t.match(s.stdout, /Credentials: +served from env; store "file"/)
  t.notOk(s.stdout.includes(KEY) || s.stderr.includes(KEY), 'no key in status output')

  // logout cannot remove a key from the daemon's environment: it says where the key comes from,
  // never "Not logged in" while status says "API key configured".
  const lo = await runCli(['logout'], { socket: d.socket })
  t.equal(lo.code, 0)
  t.match(lo.stdout, /^No auth\.json to remove\nAn API key from codex-authd's environment \(OPENAI_API_KEY\) is still served: logout cannot remove it\.\nTo change or remove it, restart codex-authd/)
  t.notMatch(lo.stdout, /Not logged in/)
  t.equal((await runCli(['status'], { socket: d.socket })).code, 0, 'still served after logout')

  const j = await runCli(['--json', 'status'], { socket: d.socket })
  t.equal(j.code, 0)
  t.match(JSON.parse(j.stdout), { loggedIn: true, mode: 'apikey', source: 'env' })
  t.notOk(j.stdout.includes(KEY))

  const tok = await runCli(['token'], { socket: d.socket })
  t.equal(tok.code, 0)
  t.ok(tok.stdout === KEY + '\n', 'token prints only the key and a newline')
  t.equal(tok.stderr, '')
  const tok2 = await runCli(['token', '--min-validity', '3600'], { socket: d.socket })
  t.equal(tok2.code, 0)
  t.ok(tok2.stdout === KEY + '\n')

  const env = await runCli(['env'], { socket: d.socket })
  t.equal(env.code, 0)
  t.match(env.stdout, /^export CODEX_AUTH_MODE='apikey'\nexport CODEX_AUTH_TOKEN='.*'\nexport OPENAI_API_KEY='.*'\nexport CODEX_API_KEY='.*'\n$/)
  const evald = spawnSync('sh', ['-c', `${env.stdout}\nprintf '%s\\n%s\\n%s\\n%s' "$CODEX_AUTH_MODE" "$CODEX_AUTH_TOKEN" "$OPENAI_API_KEY" "$CODEX_API_KEY"`], { encoding: 'utf8' })
  t.ok(evald.stdout === `apikey\n${KEY}\n${KEY}\n${KEY}`, 'eval of env gives back the exact key (quoting), CODEX_AUTH_TOKEN included')

  // exec: the child sees the credential in its environment only
  const probe =
    'process.stdout.write(JSON.stringify({mode: process.env.CODEX_AUTH_MODE, openai: process.env.OPENAI_API_KEY, codex: process.env.CODEX_API_KEY, token: process.env.CODEX_AUTH_TOKEN ?? null, argv: process.argv, keep: process.env.KEEP_ME}))'
  const ex = await runCli(['exec', '--', process.execPath, '-e', probe, 'arg1'], {
    socket: d.socket,
    env: { CODEX_AUTH_TOKEN: 'stale-token', KEEP_ME: 'yes' },
  })
  t.equal(ex.code, 0)
  const child = JSON.parse(ex.stdout) as { mode: string; openai: string; codex: string; token: string | null; argv: string[]; keep: string }
  t.equal(child.mode, 'apikey')
  t.ok(child.openai === KEY && child.codex === KEY, 'OPENAI_API_KEY and CODEX_API_KEY set')
  t.ok(child.token === KEY, 'CODEX_AUTH_TOKEN is the key (the inherited one replaced)')
  t.equal(child.keep, 'yes', 'the rest of the environment is inherited')
  t.equal(child.argv[child.argv.length - 1], 'arg1')
  t.notOk(child.argv.some((a) => a.includes(KEY)), 'no secret in argv')
  t.notOk(ex.stderr.includes(KEY))

  const st7 = await runCli(['exec', '--', 'sh', '-c', 'exit 7'], { socket: d.socket })
  t.equal(st7.code, 7, "the child's exit status")
  const sig = await runCli(['exec', '--', 'sh', '-c', 'kill -TERM $$'], { socket: d.socket })
  t.equal(sig.code, 128 + 15, 'killed by SIGTERM -> 143')
  const viaPath = await runCli(['exec', 'sh', '-c', 'test "$CODEX_AUTH_MODE" = apikey'], { socket: d.socket })
  t.equal(viaPath.code, 0, 'exec without -- and with a PATH lookup')
})

t.test('watch prints one JSON line per authChanged', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  const p = spawn(process.execPath, [CLI_BIN, '--socket', d.socket, 'watch'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    p.kill('SIGKILL')
  })
  let out = ''
  let err = ''
  const lines: string[] = []
  let onLine: (() => void) | null = null
  p.stdout.setEncoding('utf8').on('data', (s: string) => {
    out += s
    let i: number
    while ((i = out.indexOf('\n')) !== -1) {
      lines.push(out.slice(0, i))
      out = out.slice(i + 1)
      onLine?.()
    }
  })
  await new Promise<void>((resolve, reject) => {
    p.stderr.setEncoding('utf8').on('data', (s: string) => {
      err += s
      if (err.includes('Watching')) resolve()
    })
    p.once('exit', (code) => reject(new Error(`watch exited ${code}: ${err}`)))
  })
  const nextLine = (pred: (s: Status) => boolean) =>
    new Promise<Status>((resolve) => {
      const check = () => {
        for (const l of lines) {
          const s = JSON.parse(l) as Status
          if (pred(s)) {
            onLine = null
            return resolve(s)
          }
        }
      }
      onLine = check
      check()
    })
  writeApiKeyAuth(d.home, KEY)
  const s = await nextLine((x) => x.loggedIn)
  t.match(s, { loggedIn: true, mode: 'apikey', source: 'auth.json' })
  t.ok(lines.every((l) => !l.includes('\n') && !l.includes(KEY)), 'one JSON object per line, no secret')
  fs.rmSync(path.join(d.home, 'auth.json'))
  t.match(await nextLine((x) => !x.loggedIn), { loggedIn: false })
  p.kill('SIGTERM')
})

t.test('login, logout, refresh against the real daemon', async (t) => {
  // Logged in before the daemon starts: it reads the file at start, no watcher race.
  const home = await makeHome()
  writeApiKeyAuth(home, KEY)
  const d = stopAtTeardown(t, await startDaemon({ home }))

  const st = await runCli(['status'], { socket: d.socket })
  t.equal(st.code, 0)
  t.equal(st.stdout.split('\n')[0], MASKED)
  t.match(st.stdout, /API key: +from auth\.json; `codex-auth login --with-api-key` replaces it, `codex-auth logout` removes it\n/)
  t.match(JSON.parse((await runCli(['status', '--json'], { socket: d.socket })).stdout), { mode: 'apikey', source: 'auth.json' })

  const ref = await runCli(['refresh'], { socket: d.socket })
  t.equal(ref.code, 0, `refresh in API-key mode answers the API-key grant (${ref.stderr.trim()})`)
  t.equal(ref.stdout, 'Refreshed (an API key is being served)\n', 'no expiry: an API key is served')
  t.notOk(ref.stdout.includes(KEY))

  const lo = await runCli(['logout', '--no-revoke'], { socket: d.socket })
  t.equal(lo.code, 0, `logout (${lo.stderr.trim()})`)
  t.equal(lo.stdout, 'Successfully logged out\n')
  t.notOk(fs.existsSync(path.join(d.home, 'auth.json')), 'auth.json removed')
  const again = await runCli(['logout'], { socket: d.socket })
  t.equal(again.code, 0, 'a second logout is not an error')
  t.equal(again.stdout, 'Not logged in\n')
  const refOut = await runCli(['refresh'], { socket: d.socket })
  t.equal(refOut.code, 1, 'refresh while logged out -> 1')
  t.match(refOut.stderr, /Not logged in/)

  const key2 = 'sk-test-second-key-0123456789'
  const li = await runCli(['login', '--with-api-key'], { socket: d.socket, input: `  ${key2}\n` })
  t.notOk(li.stdout.includes(key2) || li.stderr.includes(key2), 'the key is never echoed')
  t.equal(li.code, 0, `login --with-api-key (${li.stderr.trim()})`)
  t.match(li.stdout, /Successfully logged in/)
  const tok = await runCli(['token'], { socket: d.socket })
  t.ok(tok.stdout === key2 + '\n', 'the trimmed key is served')

  // The daemon's issuer is the discard port: the device-code request is refused, and the login
  // fails as a daemon-side error (exit 3), naming the reason.
  const dev = await runCli(['login', '--device'], { socket: d.socket })
  t.equal(dev.code, 3, `login --device with an unreachable issuer -> 3 (${dev.stderr.trim()})`)
  t.match(dev.stderr, /login failed: Device code request failed: network error reaching 127\.0\.0\.1:9 \(bad port\)/, 'the host is named')
  t.equal((await runCli(['token'], { socket: d.socket })).stdout, key2 + '\n', 'the failed login left the key in place')
})

t.test('ChatGPT, a broken auth.json, a refresh backing off: status in words and JSON', async (t) => {
  // One daemon, three states in turn. Its issuer is the discard port, so a due refresh backs off;
  // CODEX_AUTHD_BACKOFF_SCALE makes that backoff last minutes, longer than any loaded machine needs.
  const home = await makeHome()
  const auth = chatgptAuth('words')
  fs.writeFileSync(path.join(home, 'auth.json'), auth.text, { mode: 0o600 })
  const d = stopAtTeardown(t, await startDaemon({ home, env: { CODEX_AUTHD_BACKOFF_SCALE: '300' } }))
  const status = async () => JSON.parse((await runCli(['status', '--json'], { socket: d.socket })).stdout) as Status

  const s = await runCli(['status'], { socket: d.socket })
  t.equal(s.code, 0)
  t.match(s.stdout, /^Logged in using ChatGPT \(words@example\.com, plus\)\n {2}Method: +ChatGPT\n {2}Account: +words@example\.com, plan plus, account acc-words\n {2}Access token: +valid until \S+ \(in (29|30) days\)\n/)
  t.match(s.stdout, /Next refresh: +\S+ \(in \d+ days\)/)
  t.match(s.stdout, /Credentials: +served from auth\.json; store "file"/)
  const j = await runCli(['status', '--json'], { socket: d.socket })
  t.equal(j.code, 0)
  t.equal(Object.keys(JSON.parse(j.stdout))[0], 'problems', '--json: problems first')

  // A broken file: the last good credential is still served (exit 0), and the problem comes first.
  fs.writeFileSync(path.join(home, 'auth.json'), '{"auth_mode": "chatgpt", "tokens": ', { mode: 0o600 })
  await until('the daemon to report auth.json unreadable', async () => (await status()).problems.some((p) => p.code === 'auth_unreadable'))
  const broken = await runCli(['status'], { socket: d.socket })
  t.equal(broken.code, 0, 'a credential is still served: exit 0')
  const lines = broken.stdout.split('\n')
  t.match(lines[0], new RegExp(`^Problem \\(auth_unreadable\\): .*\\[${home}/auth\\.json`), 'the problem is the first line')
  t.match(lines[1], /^ {2}Fix .*auth\.json, or replace it: `codex-auth login` writes a new one, `codex-auth logout` removes it\.$/, 'with what to run')
  t.ok(lines.includes('Logged in using ChatGPT (words@example.com, plus)'), 'then the headline')
  const bj = await runCli(['status', '--json'], { socket: d.socket })
  t.equal(bj.code, 0)
  const first = Object.entries(JSON.parse(bj.stdout))[0]!
  t.match(first, ['problems', [{ code: 'auth_unreadable', file: `${home}/auth.json` }]], '--json: the problem at the top')

  // An access token that has expired: the refresh against the dead issuer backs off.
  const now = Math.floor(Date.now() / 1000)
  const tokens = auth.json.tokens as Record<string, string>
  // last_refresh an hour ago: a refresh within the last 30 s would hold the next one back (loop guard).
  const expired = {
    ...auth.json,
    tokens: { ...tokens, access_token: fakeJwt({ exp: now - 60, iat: now - 3600, 'https://api.openai.com/auth': { chatgpt_account_id: 'acc-words' } }) },
    last_refresh: new Date((now - 3600) * 1000).toISOString(),
  }
  fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify(expired, null, 2), { mode: 0o600 })
  await until('the refresh to back off', async () => (await status()).refresh.state === 'backoff', 30_000)
  const off = await runCli(['status'], { socket: d.socket })
  t.equal(off.code, 0, 'still logged in while backing off')
  t.match(off.stdout, /Access token: +expired at \S+ \(\d+ (s|min) ago\)/)
  t.match(off.stdout, /Refresh: +backing off after: Failed to refresh token: network error reaching 127\.0\.0\.1:9 \(bad port\) \(transient\); next attempt \S+ \(in \d+ (s|min)\)\. `codex-auth refresh` tries now\./)
  t.notOk(off.stdout.includes(tokens.refresh_token!), 'no refresh token in the output')
  t.match(JSON.parse((await runCli(['status', '--json'], { socket: d.socket })).stdout), { refresh: { state: 'backoff', lastError: { reason: 'transient' } } })
})

// ---------------------------------------------------------------------------------------------
// against a scripted daemon: flows the real one may not serve yet, and daemon-side errors
// ---------------------------------------------------------------------------------------------

type Script = (msg: { id: number; method: string; params?: any }, send: (m: unknown) => void) => void

async function scriptedDaemon(t: { teardown(fn: () => unknown): void }, script: Script): Promise<{ socket: string; calls: Array<{ method: string; params?: unknown }> }> {
  const { createServer } = await import('node:net')
  const socket = path.join(tempDir('cad-sd-'), 's.sock')
  const calls: Array<{ method: string; params?: unknown }> = []
  const conns = new Set<import('node:net').Socket>()
  const server = createServer((sock) => {
    conns.add(sock)
    sock.on('close', () => conns.delete(sock))
    sock.on('error', () => {})
    let buf = ''
    sock.setEncoding('utf8').on('data', (d: string) => {
      buf += d
      let i: number
      while ((i = buf.indexOf('\n')) !== -1) {
        const msg = JSON.parse(buf.slice(0, i))
        buf = buf.slice(i + 1)
        calls.push({ method: msg.method, params: msg.params })
        script(msg, (m) => sock.write(JSON.stringify(m) + '\n'))
      }
    })
  })
  await new Promise<void>((r) => server.listen(socket, r))
  t.teardown(() => {
    for (const c of conns) c.destroy()
    server.close()
  })
  return { socket, calls }
}

const ok = (id: number, result: unknown) => ({ jsonrpc: '2.0', id, result })
const fail = (id: number, code: number, message: string, data?: unknown) => ({ jsonrpc: '2.0', id, error: { code, message, data } })

t.test('scripted: browser login waits and succeeds', async (t) => {
  const { socket, calls } = await scriptedDaemon(t, (m, send) => {
    if (m.method === 'subscribe') send(ok(m.id, { subscribed: true }))
    else if (m.method === 'login')
      send(ok(m.id, { loginId: 'L1', method: 'browser', authUrl: 'http://127.0.0.1:9/oauth/authorize?state=s', callbackUrl: 'http://127.0.0.1:1455/auth/callback', expiresAt: new Date(Date.now() + 15 * 60_000).toISOString() }))
    else if (m.method === 'awaitLogin') setTimeout(() => send(ok(m.id, { loginId: 'L1', status: 'succeeded', error: null })), 20)
  })
  const r = await runCli(['login', '--no-browser'], { socket })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /Starting local login server on http:\/\/127\.0\.0\.1:1455\.\nNavigate to this URL to authenticate:\n\nhttp:\/\/127\.0\.0\.1:9\/oauth\/authorize\?state=s\n/)
  t.notMatch(r.stdout, /did not open/, '--no-browser: no word of a browser that did not open')
  t.match(r.stderr, /^Waiting for the login to complete: 0:\d\d elapsed, 1[45]:\d\d left \(Ctrl-C to cancel\)\n/, 'not a terminal: a plain progress line, with the time left')
  t.notMatch(r.stderr, /\r|\x1b/, 'not a terminal: no carriage return, no escape sequence')
  t.match(r.stdout, /Successfully logged in\n$/)
  t.match(r.stderr, /Waiting/)
  t.match(calls, [{ method: 'subscribe' }, { method: 'login', params: { method: 'browser' } }, { method: 'awaitLogin', params: { loginId: 'L1' } }])
})

t.test('scripted: device login fails by notification (3)', async (t) => {
  const { socket } = await scriptedDaemon(t, (m, send) => {
    if (m.method === 'subscribe') send(ok(m.id, { subscribed: true }))
    else if (m.method === 'login')
      send(ok(m.id, { loginId: 'D1', method: 'device', verificationUrl: 'http://127.0.0.1:9/codex/device', userCode: 'ABCD-EFGH', expiresAt: '2030-01-01T00:15:00Z' }))
    else if (m.method === 'awaitLogin') {
      // never answered: the notification decides
      send({ jsonrpc: '2.0', method: 'loginCompleted', params: { loginId: 'other', status: 'succeeded', error: null } })
      send({ jsonrpc: '2.0', method: 'loginCompleted', params: { loginId: 'D1', status: 'failed', error: { reason: 'access_denied', message: 'the user said no' } } })
    }
  })
  const r = await runCli(['login', '--device'], { socket })
  t.equal(r.code, 3)
  t.match(r.stdout, /http:\/\/127\.0\.0\.1:9\/codex\/device/)
  t.match(r.stdout, /ABCD-EFGH/)
  t.match(r.stderr, /Login failed: the user said no \(access_denied\)/)
  t.notMatch(r.stdout, /█/, 'no QR code when stdout is not a terminal')
  t.match(r.stderr, /^Waiting for the login to complete: 0:\d\d elapsed, \d+:\d\d:\d\d left/, "the time left until the daemon's expiresAt")

  const j = await runCli(['--json', 'login', '--device'], { socket })
  t.equal(j.code, 3)
  const [started, result] = j.stdout.trim().split('\n').map((l) => JSON.parse(l))
  t.match(started, { loginId: 'D1', method: 'device', userCode: 'ABCD-EFGH' })
  t.match(result, { loginId: 'D1', status: 'failed' })
})

t.test('scripted: logout wording and the revocation note', async (t) => {
  let was = true
  const { socket, calls } = await scriptedDaemon(t, (m, send) => {
    if (m.method === 'status') send(ok(m.id, baseStatus({ tokens: { expiresAt: null, lastRefresh: null, nextRefreshAt: null } })))
    else if (m.method === 'logout') {
      send(ok(m.id, { wasLoggedIn: was, revoked: false }))
      was = false
    }
  })
  const r = await runCli(['logout'], { socket })
  t.equal(r.code, 0)
  t.equal(r.stdout, 'Successfully logged out\n')
  t.match(r.stderr, /could not be revoked/)
  t.match(calls.find((c) => c.method === 'logout'), { params: { revoke: true } })
  const again = await runCli(['logout', '--no-revoke'], { socket })
  t.equal(again.code, 0)
  t.equal(again.stdout, 'Not logged in\n')
  t.equal(again.stderr, '')
  t.match(calls.filter((c) => c.method === 'logout')[1], { params: { revoke: false } })
})

t.test('scripted: refresh output never carries the token', async (t) => {
  const grant = { mode: 'chatgpt', token: 'secret-access-token', accountId: 'acc', expiresAt: '2030-01-01T00:00:00Z', email: 'a@example.com', planType: 'plus' }
  const { socket } = await scriptedDaemon(t, (m, send) => send(ok(m.id, grant)))
  const r = await runCli(['refresh'], { socket })
  t.equal(r.code, 0)
  t.equal(r.stdout, 'Token refreshed; valid until 2030-01-01T00:00:00Z\n')
  const j = await runCli(['refresh', '--json'], { socket })
  t.strictSame(JSON.parse(j.stdout), { mode: 'chatgpt', accountId: 'acc', expiresAt: '2030-01-01T00:00:00Z', email: 'a@example.com', planType: 'plus' })
  const e = await runCli(['env'], { socket })
  t.equal(e.stdout, "export CODEX_AUTH_MODE='chatgpt'\nexport CODEX_AUTH_TOKEN='secret-access-token'\nexport CODEX_AUTH_ACCOUNT_ID='acc'\n")
  const ex = await runCli(['exec', '--', 'sh', '-c', 'printf "%s|%s|%s|%s" "$CODEX_AUTH_MODE" "$CODEX_AUTH_TOKEN" "$CODEX_AUTH_ACCOUNT_ID" "${OPENAI_API_KEY-unset}"'], {
    socket,
    env: { OPENAI_API_KEY: 'inherited' },
  })
  t.equal(ex.stdout, 'chatgpt|secret-access-token|acc|unset', 'chatgpt variables; inherited API key removed')
})

t.test('scripted: a daemon older than the client says so, naming both versions (3)', async (t) => {
  const { socket, calls } = await scriptedDaemon(t, (m, send) => {
    if (m.method === 'status') send(ok(m.id, baseStatus({ daemon: { version: '0.0.1', pid: 1, startedAt: '', socket: '/s', restrictedSocket: null, activated: false } })))
    else send(fail(m.id, -32601, 'Method not found'))
  })
  const r = await runCli(['refresh'], { socket })
  t.equal(r.code, 3)
  t.match(r.stderr, /^codex-auth: codex-authd 0\.0\.1 does not know `refresh`, which codex-auth \d+\.\d+\.\d+\S* uses: upgrade codex-authd \(it predates the version handshake\)\n$/)
  t.match(calls, [{ method: 'refresh' }, { method: 'hello', params: { client: { name: 'codex-auth' }, protocol: 1 } }, { method: 'status' }])
})

t.test('scripted: daemon-side errors map to exit 3 (and -32001 to 1)', async (t) => {
  const answers: Record<string, [number, string, unknown]> = {
    '-32001': [-32001, 'Not logged in', { reason: 'not_logged_in' }],
    '-32002': [-32002, 'refresh token was already used', { reason: 'refresh_failed', kind: 'reused' }],
    '-32003': [-32003, 'a login is running', { reason: 'login_in_progress', loginId: 'L9' }],
    '-32004': [-32004, 'could not complete', { reason: 'login_failed' }],
    '-32005': [-32005, 'forced_login_method = api', { reason: 'forbidden_by_policy' }],
    '-32006': [-32006, 'auth.json is not valid JSON', { reason: 'store_unreadable', file: '/h/auth.json', line: 3, column: 7 }],
    '-32603': [-32603, 'Internal error', undefined],
  }
  // --min-validity N selects the N-th answer, so the runs can go in parallel
  const codes = Object.keys(answers)
  const { socket } = await scriptedDaemon(t, (m, send) => {
    const [code, message, data] = answers[codes[m.params?.minValiditySeconds ?? 2]!]!
    send(fail(m.id, code, message, data))
  })
  const want: Record<string, [number, RegExp]> = {
    '-32001': [1, /Not logged in/],
    '-32002': [3, /token refresh failed \(reused\): refresh token was already used/],
    '-32003': [3, /already in progress \(L9\)/],
    '-32004': [3, /login failed: could not complete/],
    '-32005': [3, /forbidden by policy: forced_login_method = api/],
    '-32006': [3, /credential store unreadable: auth\.json is not valid JSON \[\/h\/auth\.json:3:7\]/],
    '-32603': [3, /internal daemon error/],
  }
  const runs = await Promise.all(
    codes.map((_, i) => Promise.all([runCli(['token', '--min-validity', String(i)], { socket }), runCli(['exec', '--min-validity', String(i), '--', 'true'], { socket })])),
  )
  for (const [i, code] of codes.entries()) {
    const [r, ex] = runs[i]!
    t.equal(r.code, want[code]![0], `token: ${code} -> ${want[code]![0]}`)
    t.match(r.stderr, want[code]![1])
    t.equal(r.stdout, '')
    t.equal(ex.code, 125, `exec: ${code} -> 125`)
    t.match(ex.stderr, want[code]![1])
  }
  const li = await runCli(['login'], { socket })
  t.equal(li.code, 3, 'login while another runs -> 3')
})
