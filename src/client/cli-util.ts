// Pure parts of `codex-auth` (docs/contract.md#codex-auth): argument parsing, output wording, quoting, PATH lookup.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { CLIENT_COMMANDS, UsageError, nearestWord, otherBinaryHint, shellQuote } from '../cli-common.js'
import type { AuditResult, AuthGrant, PlaceholderInfo, Status } from '../rpc/contract.js'
import { escapeControls } from '../text.js'

export type Command = (typeof CLIENT_COMMANDS)[number] | 'help' | 'version'

/** What `env` prints for: POSIX sh (bash, zsh, dash...), fish, or csh/tcsh. */
export type EnvShell = 'posix' | 'fish' | 'csh'
export const ENV_SHELLS: readonly EnvShell[] = ['posix', 'fish', 'csh']
/** The shells `completion` writes a script for. */
export type CompletionShell = 'bash' | 'zsh' | 'fish'
export const COMPLETION_SHELLS: readonly CompletionShell[] = ['bash', 'zsh', 'fish']

export interface ParsedArgs {
  command: Command
  /** `help`: the command whose usage to print (`codex-auth token --help`, `codex-auth help token`); null: the global page. */
  helpFor: Command | null
  socket: string | null
  codexHome: string | null
  json: boolean
  minValidity: number | null
  device: boolean
  withApiKey: boolean
  noBrowser: boolean
  noRevoke: boolean
  /** env: the shell syntax of the lines */
  shell: EnvShell
  /** completion: the shell to write the script for */
  completionShell: CompletionShell | null
  /** exec: CMD and its arguments */
  argv: string[]
  /** exec --remote (or CODEX_AUTH_REMOTE=1): the daemon is elsewhere; prepare this machine's CODEX_HOME (docs/remote.md) */
  remote: boolean
  /** exec --remote, sink: replace a login of the home's own */
  force: boolean
  /** sink --token-file PATH */
  tokenFile: string | null
  /** placeholders revoke ID: the id; null: list them */
  revokeId: string | null
}

/** Flags each command accepts besides the global ones. */
const COMMAND_FLAGS: Record<Command, readonly string[]> = {
  status: [],
  token: ['--min-validity'],
  env: ['--min-validity', '--shell'],
  exec: ['--min-validity', '--remote', '--force'],
  sink: ['--token-file', '--force'],
  login: ['--device', '--with-api-key', '--no-browser'],
  logout: ['--no-revoke'],
  refresh: [],
  watch: [],
  audit: [],
  doctor: [],
  placeholders: [],
  completion: [],
  help: [],
  version: [],
}

const GLOBAL_OPTIONS = `Options:
  --socket PATH       the daemon's socket (default: CODEX_AUTHD_SOCK, then the runtime directory)
  --codex-home DIR    the CODEX_HOME whose daemon to ask (default: CODEX_HOME, then ~/.codex)
  --json              machine-readable output, errors too (a JSON object with a stable "code")
  -h, --help          help (after a command: that command's)
  -V, --version       print the version
`

const EXIT_STATUS = `Exit status: 0 ok, 1 not logged in, 2 daemon unreachable, 3 daemon-side failure, 4 the socket
is not yours (CODEX_AUTH_ALLOW_SOCKET_OWNER allows a shared one), 5 sink: the home holds a login of
its own (--force replaces it), 64 usage error;
exec returns CMD's status (125 when codex-auth fails first, 126/127 when CMD cannot be run/found).
`

/** Each command's usage line and what it does: the global page lists them, `CMD --help` prints one. */
const USAGE: Record<(typeof CLIENT_COMMANDS)[number], { synopsis: string; summary: string; details: string }> = {
  status: {
    synopsis: 'status',
    summary: 'how the daemon is logged in (exit 1 when nothing can be served)',
    details:
      'Prints problems first, with what to run; then the login method, account and plan, token expiry and\nnext refresh, where an API key comes from, the credential store and the daemon (pid, socket).\n--json prints the daemon\'s Status object, problems first.\n',
  },
  token: {
    synopsis: 'token [--min-validity S]',
    summary: 'print the bearer token (API key or access token)',
    details: 'Prints the token and a newline, nothing else. --min-validity S: refresh first unless the token is\nvalid for S more seconds (0 to 3600; default 60). --json prints {mode, token, accountId, expiresAt, ...}.\n',
  },
  env: {
    synopsis: 'env [--min-validity S] [--shell posix|fish|csh]',
    summary: 'print lines that set CODEX_AUTH_MODE and the credential',
    details: 'eval "$(codex-auth env)" in sh, bash or zsh; codex-auth env --shell fish | source in fish;\neval `codex-auth env --shell csh` in csh or tcsh. --json prints {"variables": {NAME: value}}.\n',
  },
  exec: {
    synopsis: 'exec [--min-validity S] -- CMD [ARG...]',
    summary: 'run CMD with the credential in its environment (never argv)',
    details:
      "CMD's own token refreshes go to the daemon (docs/broker.md). With --json, codex-auth's own errors\ngo to stderr as JSON (stdout is CMD's).\n" +
      '--remote (or CODEX_AUTH_REMOTE=1): the daemon is on another machine (its socket forwarded, docs/remote.md).\n' +
      'CMD must be codex: its CODEX_HOME (--codex-home, CODEX_HOME, ~/.codex) gets an auth.json with the current\n' +
      'tokens and an expiring placeholder for the refresh token, kept fresh while it runs, and codex is run with\n' +
      '-c cli_auth_credentials_store="file". A login of that home\'s own is never replaced without --force.\n',
  },
  sink: {
    synopsis: 'sink [--token-file PATH] [--codex-home DIR] [--force]',
    summary: 'keep a token file and/or a Codex auth.json fresh, until killed',
    details:
      '--token-file PATH: the bearer token and a newline (0600, replaced atomically). --codex-home DIR: DIR/auth.json\n' +
      'in Codex\'s format with an expiring placeholder for the refresh token (docs/remote.md). Renewed before\n' +
      'expiry and on every change; when the daemon or the forward goes away the files stay as they are and\n' +
      'sink reconnects. Here --codex-home names the home to write, not the daemon: give the socket with\n' +
      '--socket or CODEX_AUTHD_SOCK. A login of that home\'s own is never replaced without --force.\n',
  },
  login: {
    synopsis: 'login [--device | --with-api-key] [--no-browser]',
    summary: 'log in (browser by default; the API key is read from stdin)',
    details: '--device: a URL, a one-time code and a QR code, for a machine without a browser. --with-api-key: reads\nthe key from stdin (never argv), e.g. printenv OPENAI_API_KEY | codex-auth login --with-api-key.\n--no-browser: print the URL without opening a browser. While waiting, a line shows the time elapsed\nand the time left; Ctrl-C cancels the login.\n',
  },
  logout: {
    synopsis: 'logout [--no-revoke]',
    summary: 'log out (revoking the refresh token unless --no-revoke)',
    details: 'Removes the stored credentials; exits 0 whether or not something was logged in.\n',
  },
  refresh: { synopsis: 'refresh', summary: 'force a token refresh', details: 'Refreshes the ChatGPT tokens now, whatever their expiry.\n' },
  watch: { synopsis: 'watch', summary: 'print one JSON line per auth change, until killed', details: 'Follows a restarted daemon.\n' },
  audit: {
    synopsis: 'audit',
    summary: 'who was handed tokens, refreshed, logged in or out (pid, uid, program)',
    details: 'One line per record, oldest first. --json prints the audit result.\n',
  },
  doctor: {
    synopsis: 'doctor',
    summary: 'check the set-up end to end: socket, daemon, files, service, this shell, Codex',
    details:
      'One line per check: ok, warn or fail, with what to run to fix it. Exits 1 when a check fails\n(warnings allowed). --json prints {checks: [{id, status, summary, fix?, details?}], ok}.\n',
  },
  placeholders: {
    synopsis: 'placeholders [revoke ID]',
    summary: 'list the placeholders given to remote machines, or revoke one',
    details:
      'One line per placeholder, oldest first: id, state, socket, label, uses, last use, expiry, who asked.\nrevoke ID revokes that placeholder and every one rotated from it (docs/remote.md). --json prints\nthe placeholderList result (never the placeholder strings), or {"revoked": true|false}.\n',
  },
  completion: {
    synopsis: 'completion bash|zsh|fish',
    summary: 'print a shell completion script',
    details:
      'bash: source <(codex-auth completion bash), or save it in ~/.local/share/bash-completion/completions/codex-auth.\nzsh: save it as _codex-auth in a directory of $fpath. fish: codex-auth completion fish > ~/.config/fish/completions/codex-auth.fish.\n',
  },
}

function commandLines(): string {
  return CLIENT_COMMANDS.map((c) => {
    const { synopsis, summary } = USAGE[c]
    return synopsis.length <= 30 ? `  ${synopsis.padEnd(31)}${summary}\n` : `  ${synopsis}\n  ${' '.repeat(31)}${summary}\n`
  }).join('')
}

export const HELP = `Usage: codex-auth [--socket PATH] [--codex-home DIR] [--json] COMMAND

Talks to codex-authd, which owns the Codex CLI's credentials. Never starts a daemon.

Commands:
${commandLines()}
${GLOBAL_OPTIONS}
${EXIT_STATUS}`

/** `codex-auth CMD --help`: that command's usage, what it does, the global options and the exit status. */
export function commandHelp(command: Command | null): string {
  if (command === null || command === 'help' || command === 'version') return HELP
  const u = USAGE[command]
  return `Usage: codex-auth [--socket PATH] [--codex-home DIR] [--json] ${u.synopsis}\n\n${u.summary[0]?.toUpperCase()}${u.summary.slice(1)}.\n\n${u.details}\n${GLOBAL_OPTIONS}\n${EXIT_STATUS}`
}

/**
 * Whether `--json` was given, for reporting a command line that does not parse: the options up
 * to exec's CMD (or `--`), never CMD's own arguments.
 */
export function jsonRequested(args: readonly string[]): boolean {
  let exec = false
  for (const arg of args) {
    if (arg === '--' || (exec && !arg.startsWith('-'))) return false
    if (arg === '--json') return true
    if (arg === 'exec') exec = true
  }
  return false
}

/** Parses argv (without node and the script). Throws UsageError. */
export function parseArgs(args: readonly string[]): ParsedArgs {
  const out: ParsedArgs = {
    command: 'help',
    helpFor: null,
    socket: null,
    codexHome: null,
    json: false,
    minValidity: null,
    device: false,
    withApiKey: false,
    noBrowser: false,
    noRevoke: false,
    shell: 'posix',
    completionShell: null,
    argv: [],
    remote: false,
    force: false,
    tokenFile: null,
    revokeId: null,
  }
  let revoke = false
  let help = false
  let command: Command | null = null
  let i = 0
  const takeValue = (flag: string, inline: string | undefined): string => {
    if (inline !== undefined) return inline
    const v = args[i + 1]
    if (v === undefined) throw new UsageError(`${flag} needs a value`, command)
    i++
    return v
  }
  for (; i < args.length; i++) {
    const arg = args[i] as string
    if (command === 'exec' && (arg === '--' || !arg.startsWith('-'))) {
      out.argv = args.slice(arg === '--' ? i + 1 : i)
      break
    }
    if (arg === '--') throw new UsageError("'--' is only allowed after exec", command)
    if (arg.startsWith('-')) {
      const eq = arg.indexOf('=')
      const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg
      const inline = arg.startsWith('--') && eq > 0 ? arg.slice(eq + 1) : undefined
      const noValue = () => {
        if (inline !== undefined) throw new UsageError(`${name} takes no value`, command)
      }
      switch (name) {
        case '--socket':
          out.socket = takeValue(name, inline)
          if (out.socket === '') throw new UsageError('--socket needs a non-empty path', command)
          continue
        case '--codex-home':
          out.codexHome = takeValue(name, inline)
          if (out.codexHome === '') throw new UsageError('--codex-home needs a non-empty path', command)
          continue
        case '--json':
          noValue()
          out.json = true
          continue
        case '-h':
        case '--help':
          noValue()
          // Noted, not returned: `token --help` prints token's usage, even before the command word.
          help = true
          continue
        case '--version':
        case '-V':
          noValue()
          return { ...out, command: 'version' }
      }
      if (command === null || !COMMAND_FLAGS[command].includes(name)) {
        throw new UsageError(`unknown option ${name}${command ? ` for ${command}` : ''}`, command)
      }
      switch (name) {
        case '--min-validity': {
          const v = takeValue(name, inline)
          if (!/^\d+$/.test(v) || Number(v) > 3600) {
            throw new UsageError('--min-validity takes whole seconds from 0 to 3600', command)
          }
          out.minValidity = Number(v)
          break
        }
        case '--device':
          noValue()
          out.device = true
          break
        case '--with-api-key':
          noValue()
          out.withApiKey = true
          break
        case '--no-browser':
          noValue()
          out.noBrowser = true
          break
        case '--no-revoke':
          noValue()
          out.noRevoke = true
          break
        case '--remote':
          noValue()
          out.remote = true
          break
        case '--force':
          noValue()
          out.force = true
          break
        case '--token-file':
          out.tokenFile = takeValue(name, inline)
          if (out.tokenFile === '') throw new UsageError('--token-file needs a non-empty path', command)
          break
        case '--shell': {
          const v = takeValue(name, inline)
          if (!(ENV_SHELLS as readonly string[]).includes(v)) throw new UsageError(`--shell takes ${ENV_SHELLS.join(', ')}, not '${v}'`, command)
          out.shell = v as EnvShell
          break
        }
      }
      continue
    }
    if (command === 'completion' && out.completionShell === null && !help) {
      if (!(COMPLETION_SHELLS as readonly string[]).includes(arg)) throw new UsageError(`completion takes ${COMPLETION_SHELLS.join(', ')}, not '${arg}'`, command)
      out.completionShell = arg as CompletionShell
      continue
    }
    if (command === 'placeholders' && !help) {
      if (!revoke && arg !== 'revoke') throw new UsageError(`placeholders takes 'revoke ID' or nothing, not '${arg}'`, command)
      if (!revoke) revoke = true
      else if (out.revokeId === null) out.revokeId = arg
      else throw new UsageError(`unexpected argument '${arg}' for placeholders revoke`, command)
      continue
    }
    if (command === 'help' && out.helpFor === null && (CLIENT_COMMANDS as readonly string[]).includes(arg)) {
      out.helpFor = arg as Command // `codex-auth help token`
      continue
    }
    if (command !== null) throw new UsageError(`unexpected argument '${arg}' for ${command}`, command)
    if (arg === 'help') {
      command = 'help'
      continue
    }
    if (!(CLIENT_COMMANDS as readonly string[]).includes(arg)) {
      const near = nearestWord(arg, [...CLIENT_COMMANDS, 'help'])
      const hint = otherBinaryHint(arg, 'codex-authd') ?? (near !== null ? `did you mean \`codex-auth ${near}\`?` : null)
      throw new UsageError(`unknown command '${arg}'${hint ? `; ${hint}` : ''}`)
    }
    command = arg as Command
  }
  if (help || command === 'help') return { ...out, command: 'help', helpFor: command === 'help' ? out.helpFor : command }
  if (command === null) throw new UsageError('no command given')
  if (command === 'completion' && out.completionShell === null) throw new UsageError(`completion needs a shell: ${COMPLETION_SHELLS.join(', ')}`, command)
  if (command === 'login' && out.device && out.withApiKey) {
    throw new UsageError('choose one login method: --device or --with-api-key', command)
  }
  if (command === 'placeholders' && revoke && out.revokeId === null) throw new UsageError('placeholders revoke needs an ID (see codex-auth placeholders)', command)
  if (command === 'exec' && out.argv.length === 0) throw new UsageError('exec needs a command: codex-auth exec -- CMD [ARG...]', command)
  if (command === 'sink' && out.tokenFile === null && out.codexHome === null) throw new UsageError('sink needs --token-file PATH, --codex-home DIR or both', command)
  return { ...out, command }
}

/** Codex's mask: first 8 and last 5 characters; keys of 13 characters or fewer show as "***". */
export function maskApiKey(key: string): string {
  const chars = [...key]
  if (chars.length <= 13) return '***'
  return `${chars.slice(0, 8).join('')}***${chars.slice(-5).join('')}`
}

/**
 * The variables `env` prints and `exec` sets, in order (docs/contract.md#codex-auth). In every
 * mode CODEX_AUTH_MODE and CODEX_AUTH_TOKEN, the bearer token `codex-auth token` prints (so a
 * script needs one variable whatever the login); then, for an API key, OPENAI_API_KEY and
 * CODEX_API_KEY (what OpenAI's SDKs and `codex exec` read), for ChatGPT the account id.
 */
export function credentialEnv(grant: AuthGrant): Array<[string, string]> {
  const vars: Array<[string, string]> = [
    ['CODEX_AUTH_MODE', grant.mode],
    ['CODEX_AUTH_TOKEN', grant.token],
  ]
  if (grant.mode === 'apikey') vars.push(['OPENAI_API_KEY', grant.token], ['CODEX_API_KEY', grant.token])
  else if (grant.accountId !== null) vars.push(['CODEX_AUTH_ACCOUNT_ID', grant.accountId])
  return vars
}

/** Every variable that carries a credential; exec removes the inherited ones first. */
export const CREDENTIAL_VARS = ['CODEX_AUTH_MODE', 'OPENAI_API_KEY', 'CODEX_API_KEY', 'CODEX_AUTH_TOKEN', 'CODEX_AUTH_ACCOUNT_ID'] as const

/** One word for fish: single-quoted, where only `\` and `'` are escaped. */
export function fishQuote(value: string): string {
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`
}

/**
 * One word for csh/tcsh: single-quoted; `'` as `'\''`, `!` (history, expanded even inside quotes)
 * as `\!`, a newline as backslash-newline (a bare one ends the command).
 */
export function cshQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`).replace(/!/g, '\\!').replace(/\n/g, '\\\n')}'`
}

/** What `env` prints: one line per variable of credentialEnv, in the shell's syntax. */
export function envLines(grant: AuthGrant, shell: EnvShell = 'posix'): string {
  return credentialEnv(grant)
    .map(([k, v]) => {
      if (shell === 'fish') return `set -gx ${k} ${fishQuote(v)};\n`
      if (shell === 'csh') return `setenv ${k} ${cshQuote(v)};\n`
      return `export ${k}=${shellQuote(v)}\n`
    })
    .join('')
}

/** The child's environment: the parent's minus inherited credentials, plus the grant's. */
export function childEnv(parent: NodeJS.ProcessEnv, grant: AuthGrant): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...parent }
  for (const k of CREDENTIAL_VARS) delete env[k]
  for (const [k, v] of credentialEnv(grant)) env[k] = v
  return env
}

/**
 * Lines for a person, as codex-auth prints them: each escaped whole (text.ts escapeControls: ESC,
 * other controls, bidi marks, a newline inside a value) and ended with a newline. The one way
 * every human line of codex-auth is written, whatever it quotes (claims, config values, paths).
 */
export function humanLines(lines: readonly string[]): string {
  return lines.map((l) => `${escapeControls(l)}\n`).join('')
}

/** The first line of `status`, in Codex 0.171's words. `apiKey` is needed for the mask. */
export function statusHeadline(status: Status, apiKey: string | null): string {
  if (!status.loggedIn || status.mode === null) return 'Not logged in'
  if (status.mode === 'apikey') return apiKey === null ? 'API key configured' : `API key configured - ${maskApiKey(apiKey)}`
  const email = status.account?.email ?? null
  const plan = status.account?.planType ?? null
  const detail = [email, plan].filter((x): x is string => x !== null && x !== '')
  return detail.length > 0 ? `Logged in using ChatGPT (${detail.join(', ')})` : 'Logged in using ChatGPT'
}

export type CommandLookup = { ok: true; file: string } | { ok: false; status: 126 | 127; reason: string }

/** Finds CMD as execvp would (PATH search when it has no slash). 127 not found, 126 not runnable. */
export function lookupCommand(cmd: string, envPath: string | undefined, cwd: string): CommandLookup {
  if (cmd === '') return { ok: false, status: 127, reason: 'empty command name' }
  const check = (file: string): 'ok' | 'missing' | 'denied' | 'dir' => {
    let st: fs.Stats
    try {
      st = fs.statSync(file)
    } catch {
      return 'missing'
    }
    if (st.isDirectory()) return 'dir'
    if (!st.isFile()) return 'denied'
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return 'ok'
    } catch {
      return 'denied'
    }
  }
  if (cmd.includes('/')) {
    const file = path.resolve(cwd, cmd)
    const r = check(file)
    if (r === 'ok') return { ok: true, file }
    if (r === 'missing') return { ok: false, status: 127, reason: `${cmd}: No such file or directory` }
    if (r === 'dir') return { ok: false, status: 126, reason: `${cmd}: Is a directory` }
    return { ok: false, status: 126, reason: `${cmd}: Permission denied` }
  }
  let denied = false
  for (const dir of (envPath ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const file = path.resolve(cwd, dir === '' ? '.' : dir, cmd)
    const r = check(file)
    if (r === 'ok') return { ok: true, file }
    if (r === 'denied') denied = true
  }
  if (denied) return { ok: false, status: 126, reason: `${cmd}: Permission denied` }
  return { ok: false, status: 127, reason: `${cmd}: command not found` }
}

/** `codex-auth audit`: one line per record, oldest first; the program path with control characters escaped. */
export function auditLines(r: AuditResult): string[] {
  const lines = r.entries.map((e) => {
    const who = [
      e.peer.pid !== null ? `pid ${e.peer.pid}` : 'pid ?',
      e.peer.uid !== null ? `uid ${e.peer.uid}` : 'uid ?',
      e.peer.exe !== null ? escapeControls(e.peer.exe) : '(program unknown)',
    ].join(' ')
    return `${e.time}  ${e.method}${e.detail !== null ? ` (${e.detail})` : ''}  ${e.outcome}  ${who}`
  })
  const dropped = r.recorded - r.entries.length
  if (r.entries.length === 0) lines.push('No records yet.')
  else if (dropped > 0) lines.push(`(${dropped} older records not shown; the daemon keeps the last ${r.capacity})`)
  return lines
}

/** `codex-auth placeholders`: one line per placeholder, oldest first (printed through say(), which escapes them). */
export function placeholderLines(list: readonly PlaceholderInfo[]): string[] {
  if (list.length === 0) return ['No placeholders.']
  return list.map((p) => {
    const who = p.peer === null ? 'peer unknown' : `pid ${p.peer.pid ?? '?'} uid ${p.peer.uid ?? '?'} ${p.peer.exe ?? '(program unknown)'}`
    const used = p.lastUsedAt !== null ? `last used ${p.lastUsedAt}` : 'never used'
    return `${p.id}  ${p.state.padEnd(7)}  ${p.socket.padEnd(10)}  ${p.label}  uses ${p.uses}, ${used}, expires ${p.expiresAt}  ${who}`
  })
}

// ---------------------------------------------------------------------------------------------
// Shell completion (`codex-auth completion bash|zsh|fish`), written from the command table above
// ---------------------------------------------------------------------------------------------

const GLOBAL_FLAGS = ['--socket', '--codex-home', '--json', '--help', '--version'] as const

/** bash (zsh loads the same script through bashcompinit). Only command and option names: never a call to the daemon. */
function bashCompletion(): string {
  const cases = CLIENT_COMMANDS.map((c) => {
    const words = [...COMMAND_FLAGS[c], '--json', '--help'].join(' ')
    if (c === 'exec') return `    exec) if [[ $dashdash == 1 ]]; then COMPREPLY=($(compgen -c -- "$cur")); else COMPREPLY=($(compgen -W "${words} --" -- "$cur")); fi ;;`
    if (c === 'completion') return `    completion) COMPREPLY=($(compgen -W "${COMPLETION_SHELLS.join(' ')} --help" -- "$cur")) ;;`
    return `    ${c}) COMPREPLY=($(compgen -W "${words}" -- "$cur")) ;;`
  })
  return `# codex-auth completion for bash: source <(codex-auth completion bash)
_codex_auth() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd= dashdash=0 i w
  case $prev in
    --socket|--codex-home|--token-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --shell) COMPREPLY=($(compgen -W "${ENV_SHELLS.join(' ')}" -- "$cur")); return ;;
    --min-validity) COMPREPLY=(); return ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    if [[ -n $cmd ]]; then [[ $w == -- ]] && dashdash=1; continue; fi
    case $w in
      --socket|--codex-home) ((i++)) ;;
      -*) ;;
      *) cmd=$w ;;
    esac
  done
  case $cmd in
    '') COMPREPLY=($(compgen -W "${CLIENT_COMMANDS.join(' ')} help ${GLOBAL_FLAGS.join(' ')}" -- "$cur")) ;;
    help) COMPREPLY=($(compgen -W "${CLIENT_COMMANDS.join(' ')}" -- "$cur")) ;;
${cases.join('\n')}
  esac
}
complete -F _codex_auth codex-auth
`
}

function fishCompletion(): string {
  const esc = (s: string) => fishQuote(s)
  const lines = [
    '# codex-auth completion for fish: codex-auth completion fish > ~/.config/fish/completions/codex-auth.fish',
    'complete -c codex-auth -f',
    'complete -c codex-auth -l socket -r -F -d "the daemon\'s socket"',
    'complete -c codex-auth -l codex-home -r -F -d "the CODEX_HOME whose daemon to ask"',
    'complete -c codex-auth -l json -d "machine-readable output"',
    'complete -c codex-auth -s h -l help -d "help"',
    'complete -c codex-auth -s V -l version -d "print the version"',
  ]
  for (const c of CLIENT_COMMANDS) {
    lines.push(`complete -c codex-auth -n __fish_use_subcommand -a ${c} -d ${esc(USAGE[c].summary)}`)
    for (const f of COMMAND_FLAGS[c]) {
      const takes = f === '--min-validity' ? ' -x' : f === '--shell' ? ` -x -a ${esc(ENV_SHELLS.join(' '))}` : f === '--token-file' ? ' -r -F' : ''
      lines.push(`complete -c codex-auth -n '__fish_seen_subcommand_from ${c}' -l ${f.slice(2)}${takes}`)
    }
  }
  lines.push(`complete -c codex-auth -n '__fish_seen_subcommand_from completion' -a ${esc(COMPLETION_SHELLS.join(' '))}`)
  lines.push(`complete -c codex-auth -n '__fish_seen_subcommand_from help' -a ${esc(CLIENT_COMMANDS.join(' '))}`)
  return lines.join('\n') + '\n'
}

/** The completion script for `shell`. */
export function completionScript(shell: CompletionShell): string {
  if (shell === 'fish') return fishCompletion()
  if (shell === 'zsh') return `#compdef codex-auth\n# codex-auth completion for zsh: save as _codex-auth in a directory of $fpath\nautoload -U +X bashcompinit && bashcompinit\n${bashCompletion()}`
  return bashCompletion()
}
