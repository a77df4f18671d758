// The command lines as a user meets them (docs/contract.md#codex-auth, #usage-errors, #errors-as-json):
// per-command help, the other binary's commands, `--json` for results and errors, `env --shell`
// read back by real shells, and the completion script loaded in bash.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { CLIENT_COMMANDS } from '../src/cli-common.js'
import { HELP, commandHelp, cshQuote, envLines, fishQuote, jsonRequested, parseArgs, type Command } from '../src/client/cli-util.js'
import type { AuthGrant } from '../src/rpc/contract.js'
import { runCli, runDaemonCommand, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'

// A fake key with the characters each shell quotes differently. Compared, never printed.
const KEY = "sk-test-it's a \\ $HOME !x `y` 0123456789abcdef"

/** A socket path in a private directory where nothing listens. */
const nobody = () => path.join(tempDir('cad-hj-'), 'none.sock')

/** Every `--json` error has these fields, and the exit status of the text form. */
function jsonError(t: Test, text: string, code: string, exitCode: number, label: string): Record<string, unknown> {
  let v: Record<string, unknown> = {}
  try {
    v = JSON.parse(text) as Record<string, unknown>
  } catch {
    t.fail(`${label}: not one JSON object: ${JSON.stringify(text.slice(0, 200))}`)
    return v
  }
  t.equal(v.code, code, `${label}: code ${code}`)
  t.equal(v.exitCode, exitCode, `${label}: exitCode ${exitCode}`)
  t.type(v.message, 'string', `${label}: a message`)
  return v
}

t.test('jsonRequested: the options before exec\'s CMD only', async (t) => {
  t.ok(jsonRequested(['--json', 'frob']))
  t.ok(jsonRequested(['status', '--bogus', '--json']))
  t.ok(jsonRequested(['exec', '--json', '--', 'x']))
  t.notOk(jsonRequested(['exec', '--', 'x', '--json']), "CMD's own --json")
  t.notOk(jsonRequested(['exec', 'x', '--json']), "CMD's own --json, without --")
  t.notOk(jsonRequested(['status']))
})

t.test('per-command help: each command prints its own usage, exit 0', async (t) => {
  // The parser and the pages in-process for every command; the bundle for each way of asking.
  t.equal(commandHelp(null), HELP)
  for (const c of CLIENT_COMMANDS) {
    t.match(HELP, new RegExp(`^  ${c}\\b`, 'm'), `the global page lists ${c}`)
    for (const args of [[c, '--help'], ['help', c], ['-h', c]]) t.match(parseArgs(args), { command: 'help', helpFor: c }, args.join(' '))
    const page = commandHelp(c)
    t.match(page, new RegExp(`^Usage: codex-auth \\[--socket PATH\\] \\[--codex-home DIR\\] \\[--json\\] ${c}\\b`), `${c}: its usage`)
    t.notOk(page.includes('\nCommands:'), `${c}: not the global page`)
  }
  const forms = [['token', '--help'], ['help', 'login'], ['-h', 'exec'], ['exec', '-h', '--', 'x']]
  const results = await Promise.all(forms.map((args) => runCli(args, { socket: nobody() })))
  for (const [i, args] of forms.entries()) {
    const r = results[i]!
    const c = args.find((a) => (CLIENT_COMMANDS as readonly string[]).includes(a))!
    t.equal(r.code, 0, `${args.join(' ')}: exit 0`)
    t.equal(r.stdout, commandHelp(c as Command), `${args.join(' ')}: ${c}'s page`)
    t.equal(r.stderr, '')
  }
  const json = await runCli(['--json', 'token', '--help'])
  t.match(JSON.parse(json.stdout), { usage: /^Usage: codex-auth .* token \[--min-validity S\]/ })
  const v = await runCli(['-V'])
  t.match(v.stdout, /^codex-auth \d+\.\d+\.\d+/, 'codex-auth -V')
})

t.test('codex-authd: -V like codex-auth, a client command names the right binary (78)', async (t) => {
  const v = await runDaemonCommand(['-V'])
  t.equal(v.code, 0, 'codex-authd -V')
  t.match(v.stdout, /^codex-authd \d+\.\d+\.\d+\n$/)
  for (const c of ['status', 'completion']) {
    const r = await runDaemonCommand([c])
    t.equal(r.code, 78, `codex-authd ${c}: the daemon's usage status`)
    t.equal(r.stderr, `codex-authd: '${c}' is not a codex-authd command; did you mean \`codex-auth ${c}\`?\nTry 'codex-authd --help'.\n`)
    t.equal(r.stdout, '')
  }
  const typo = await runDaemonCommand(['servcie'])
  t.equal(typo.code, 78)
  t.match(typo.stderr, /^codex-authd: 'servcie' is not a codex-authd command; did you mean `codex-authd service`\?\n/)
  const other = await runDaemonCommand(['frobnicate'])
  t.equal(other.code, 78)
  t.match(other.stderr, /^codex-authd: unexpected argument 'frobnicate'\nTry 'codex-authd --help'\.\n$/)
  const back = await runCli(['service', 'install'], { socket: nobody() })
  t.equal(back.code, 64, 'and codex-auth service: 64')
  t.match(back.stderr, /did you mean `codex-authd service`\?/)
})

t.test('--json errors without a daemon: one object on stdout, the text form\'s status', async (t) => {
  const sock = nobody()
  const cases: Array<[string[], string, number]> = [
    [['--json', 'frob'], 'usage', 64],
    [['status', '--json', '--bogus'], 'usage', 64],
    [['--json', 'status'], 'daemon_unreachable', 2],
    [['--json', 'token'], 'daemon_unreachable', 2],
    [['--json', 'env'], 'daemon_unreachable', 2],
    [['--json', 'login', '--device'], 'daemon_unreachable', 2],
    [['--json', 'watch'], 'daemon_unreachable', 2],
  ]
  // Their text forms' statuses are test/client-cli.test.ts's: the same numbers here.
  const results = await Promise.all(cases.map(([args]) => runCli(args, { socket: sock })))
  for (const [i, [args, code, exit]] of cases.entries()) {
    const r = results[i]!
    t.equal(r.code, exit, `${args.join(' ')}: exit ${exit}`)
    t.equal(r.stderr, '', `${args.join(' ')}: nothing on stderr`)
    const v = jsonError(t, r.stdout, code, exit, args.join(' '))
    if (code === 'daemon_unreachable') t.match(v.details, { socket: sock, errno: 'ENOENT' })
  }

  // A socket in a directory others may write: refused before connecting (4).
  const open = fs.mkdtempSync(path.join(tempDir('cad-hj-'), 'w-'))
  fs.chmodSync(open, 0o777)
  const untrusted = await runCli(['--json', 'status'], { socket: path.join(open, 's.sock') })
  t.equal(untrusted.code, 4)
  jsonError(t, untrusted.stdout, 'socket_untrusted', 4, 'status in a world-writable directory')
})

t.test('exec --json: its own errors on stderr as JSON, stdout left to CMD', async (t) => {
  const sock = nobody()
  const dir = tempDir('cad-hj-')
  fs.writeFileSync(path.join(dir, 'plain'), 'x', { mode: 0o644 })
  const cases: Array<[string[], string, number]> = [
    [['exec', '--json'], 'usage', 125],
    [['exec', '--json', '--', 'no-such-command-xyz'], 'command_not_found', 127],
    [['exec', '--json', '--', path.join(dir, 'plain')], 'command_not_executable', 126],
    [['exec', '--json', '--', 'true'], 'daemon_unreachable', 125],
  ]
  for (const [args, code, exit] of cases) {
    const r = await runCli(args, { socket: sock })
    t.equal(r.code, exit, `${args.join(' ')}: exit ${exit}`)
    t.equal(r.stdout, '', `${args.join(' ')}: stdout untouched`)
    jsonError(t, r.stderr, code, exit, args.join(' '))
  }
})

t.test('env --shell: what each shell reads back is the exact credential', async (t) => {
  const grant: AuthGrant = { mode: 'apikey', token: KEY, accountId: null, expiresAt: null, email: null, planType: null }
  t.equal(fishQuote("a'b\\c"), "'a\\'b\\\\c'")
  t.equal(cshQuote("a'b!c"), "'a'\\''b\\!c'")
  const print = 'printf "%s|%s|%s" "$CODEX_AUTH_MODE" "$OPENAI_API_KEY" "$CODEX_API_KEY"'
  const want = `apikey|${KEY}|${KEY}`
  const posix = spawnSync('sh', ['-c', `eval "$1"; ${print}`, 'sh', envLines(grant, 'posix')], { encoding: 'utf8' })
  t.ok(posix.stdout === want, 'sh: eval "$(codex-auth env)"')
  // fish and tcsh are installed by scripts/test-deps.sh; their absence fails here, as it should.
  const fish = spawnSync('fish', ['--no-config', '-c', `${envLines(grant, 'fish')}\n${print}`], { encoding: 'utf8' })
  t.error(fish.error, 'fish runs')
  t.ok(fish.stdout === want, 'fish: codex-auth env --shell fish | source')
  // -f: no ~/.tcshrc; interactive history expansion is what `\!` guards, and `set histchars` shows it holds.
  const csh = spawnSync('tcsh', ['-f', '-c', `${envLines(grant, 'csh')} ${print}`], { encoding: 'utf8' })
  t.error(csh.error, 'tcsh runs')
  t.ok(csh.stdout === want, 'tcsh: eval `codex-auth env --shell csh`')
})

t.test('token --json, env --json and env --shell against the daemon', async (t) => {
  const d = stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: KEY } }))
  const tok = await runCli(['--json', 'token'], { socket: d.socket })
  t.equal(tok.code, 0)
  const g = JSON.parse(tok.stdout) as AuthGrant
  t.equal(g.mode, 'apikey')
  t.ok(g.token === KEY, 'the token, as a JSON string')
  const env = await runCli(['env', '--json'], { socket: d.socket })
  t.equal(env.code, 0)
  const vars = (JSON.parse(env.stdout) as { variables: Record<string, string> }).variables
  t.same(Object.keys(vars), ['CODEX_AUTH_MODE', 'CODEX_AUTH_TOKEN', 'OPENAI_API_KEY', 'CODEX_API_KEY'])
  t.ok(vars.OPENAI_API_KEY === KEY && vars.CODEX_AUTH_TOKEN === KEY && vars.CODEX_AUTH_MODE === 'apikey')
  const fish = await runCli(['env', '--shell', 'fish'], { socket: d.socket })
  t.match(fish.stdout, /^set -gx CODEX_AUTH_MODE 'apikey';\nset -gx CODEX_AUTH_TOKEN '/)
  const csh = await runCli(['env', '--shell=csh'], { socket: d.socket })
  t.match(csh.stdout, /^setenv CODEX_AUTH_MODE 'apikey';\nsetenv CODEX_AUTH_TOKEN '/)

  // A daemon-side refusal in JSON: the contract's reason as the code (1, as in text).
  const out = stopAtTeardown(t, await startDaemon())
  const r = await runCli(['--json', 'token'], { socket: out.socket })
  t.equal(r.code, 1)
  jsonError(t, r.stdout, 'not_logged_in', 1, 'token while logged out')
})

t.test('completion: the bash script loads in bash and completes names', async (t) => {
  const script = (await runCli(['completion', 'bash'])).stdout
  const file = path.join(tempDir('cad-hj-'), 'codex-auth.bash')
  fs.writeFileSync(file, script)
  // Completes as bash does on TAB: COMP_WORDS/COMP_CWORD set, the registered function called.
  const complete = (words: string[]) => {
    const r = spawnSync(
      'bash',
      ['--norc', '--noprofile', '-c', `source "$1"; shift; complete -p codex-auth; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _codex_auth; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', file, ...words],
      { encoding: 'utf8' },
    )
    t.equal(r.stderr, '', `${words.join(' ')}: no bash error`)
    const [registered, ...reply] = r.stdout.trim().split('\n')
    t.equal(registered, 'complete -F _codex_auth codex-auth', 'complete -p: registered for codex-auth')
    return reply.filter((l) => l !== '')
  }
  t.same(complete(['codex-auth', 'to']), ['token'], 'a command name')
  t.same(complete(['codex-auth', 'lo']).sort(), ['login', 'logout'])
  t.same(complete(['codex-auth', '--json', 'st']), ['status'], 'after a global flag')
  t.same(complete(['codex-auth', '--socket', '/s', 'au']), ['audit'], "after --socket's value")
  t.same(complete(['codex-auth', 'env', '--shell', 'f']), ['fish'])
  t.same(complete(['codex-auth', 'login', '--d']), ['--device'])
  t.same(complete(['codex-auth', 'completion', 'z']), ['zsh'])
  t.same(complete(['codex-auth', 'help', 'ex']), ['exec'])

  const zsh = await runCli(['completion', 'zsh'])
  t.match(zsh.stdout, /^#compdef codex-auth\n/)
  const fish = await runCli(['completion', 'fish'])
  const fishFile = path.join(tempDir('cad-hj-'), 'codex-auth.fish')
  fs.writeFileSync(fishFile, fish.stdout)
  const loaded = spawnSync('fish', ['--no-config', '-c', `source $argv[1]; complete -C 'codex-auth to'`, fishFile], { encoding: 'utf8' })
  t.match(loaded.stdout, /^token\t/m, 'fish completes a command name')
})
