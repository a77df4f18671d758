// Pure parts of `codex-auth` (docs/contract.md#codex-auth): argument parsing, output wording, quoting, PATH lookup.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { UsageError, shellQuote } from '../cli-common.js'
import type { AuditResult, AuthGrant, Status } from '../rpc/contract.js'
import { escapeControls } from '../text.js'

export type Command = 'status' | 'token' | 'env' | 'exec' | 'login' | 'logout' | 'refresh' | 'watch' | 'audit' | 'help' | 'version'

export interface ParsedArgs {
  command: Command
  socket: string | null
  codexHome: string | null
  json: boolean
  minValidity: number | null
  device: boolean
  withApiKey: boolean
  noBrowser: boolean
  noRevoke: boolean
  /** exec: CMD and its arguments */
  argv: string[]
}

const COMMANDS: readonly Command[] = ['status', 'token', 'env', 'exec', 'login', 'logout', 'refresh', 'watch', 'audit']

/** Flags each command accepts besides the global ones. */
const COMMAND_FLAGS: Record<Command, readonly string[]> = {
  status: [],
  token: ['--min-validity'],
  env: ['--min-validity'],
  exec: ['--min-validity'],
  login: ['--device', '--with-api-key', '--no-browser'],
  logout: ['--no-revoke'],
  refresh: [],
  watch: [],
  audit: [],
  help: [],
  version: [],
}

export const HELP = `Usage: codex-auth [--socket PATH] [--codex-home DIR] [--json] COMMAND

Talks to codex-authd, which owns the Codex CLI's credentials. Never starts a daemon.

Commands:
  status                         how the daemon is logged in (exit 1 when nothing can be served)
  token [--min-validity S]       print the bearer token (API key or access token)
  env [--min-validity S]         print export lines for CODEX_AUTH_MODE and the credential
  exec [--min-validity S] -- CMD [ARG...]
                                 run CMD with the credential in its environment (never argv)
  login [--device | --with-api-key] [--no-browser]
                                 log in (browser by default; the API key is read from stdin)
  logout [--no-revoke]           log out (revoking the refresh token unless --no-revoke)
  refresh                        force a token refresh
  watch                          print one JSON line per auth change, until killed
  audit                          who was handed tokens, refreshed, logged in or out (pid, uid, program)

Options:
  --socket PATH       the daemon's socket (default: CODEX_AUTHD_SOCK, then the runtime directory)
  --codex-home DIR    the CODEX_HOME whose daemon to ask (default: CODEX_HOME, then ~/.codex)
  --json              machine-readable output
  -h, --help          this help
  --version           print the version

Exit status: 0 ok, 1 not logged in, 2 daemon unreachable, 3 daemon-side failure, 4 the socket
is not yours (CODEX_AUTH_ALLOW_SOCKET_OWNER allows a shared one), 64 usage error;
exec returns CMD's status (125 when codex-auth fails first, 126/127 when CMD cannot be run/found).
`

/** Parses argv (without node and the script). Throws UsageError. */
export function parseArgs(args: readonly string[]): ParsedArgs {
  const out: ParsedArgs = {
    command: 'help',
    socket: null,
    codexHome: null,
    json: false,
    minValidity: null,
    device: false,
    withApiKey: false,
    noBrowser: false,
    noRevoke: false,
    argv: [],
  }
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
          return { ...out, command: 'help' }
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
      }
      continue
    }
    if (command !== null) throw new UsageError(`unexpected argument '${arg}' for ${command}`, command)
    if (arg === 'help') return { ...out, command: 'help' }
    if (!(COMMANDS as readonly string[]).includes(arg)) throw new UsageError(`unknown command '${arg}'`)
    command = arg as Command
  }
  if (command === null) throw new UsageError('no command given')
  if (command === 'login' && out.device && out.withApiKey) {
    throw new UsageError('choose one login method: --device or --with-api-key', command)
  }
  if (command === 'exec' && out.argv.length === 0) throw new UsageError('exec needs a command: codex-auth exec -- CMD [ARG...]', command)
  return { ...out, command }
}

/** Codex's mask: first 8 and last 5 characters; keys of 13 characters or fewer show as "***". */
export function maskApiKey(key: string): string {
  const chars = [...key]
  if (chars.length <= 13) return '***'
  return `${chars.slice(0, 8).join('')}***${chars.slice(-5).join('')}`
}

/** The variables `env` prints and `exec` sets, in order (docs/contract.md#codex-auth). */
export function credentialEnv(grant: AuthGrant): Array<[string, string]> {
  const vars: Array<[string, string]> = [['CODEX_AUTH_MODE', grant.mode]]
  if (grant.mode === 'apikey') {
    vars.push(['OPENAI_API_KEY', grant.token], ['CODEX_API_KEY', grant.token])
  } else {
    vars.push(['CODEX_AUTH_TOKEN', grant.token])
    if (grant.accountId !== null) vars.push(['CODEX_AUTH_ACCOUNT_ID', grant.accountId])
  }
  return vars
}

/** Every variable that carries a credential; exec removes the inherited ones first. */
export const CREDENTIAL_VARS = ['CODEX_AUTH_MODE', 'OPENAI_API_KEY', 'CODEX_API_KEY', 'CODEX_AUTH_TOKEN', 'CODEX_AUTH_ACCOUNT_ID'] as const

export function envLines(grant: AuthGrant): string {
  return credentialEnv(grant)
    .map(([k, v]) => `export ${k}=${shellQuote(v)}\n`)
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

/** The lines after the headline: refresh trouble, then problems. Never a secret. */
export function statusDetails(status: Status): string[] {
  const lines: string[] = []
  const r = status.refresh
  if (r.state === 'failed' || r.state === 'backoff') {
    const why = r.lastError ? `${r.lastError.message} (${r.lastError.reason})` : 'unknown error'
    const next = r.state === 'backoff' && r.nextAttemptAt ? `; next attempt at ${r.nextAttemptAt}` : ''
    lines.push(`Token refresh ${r.state === 'failed' ? 'failed' : 'is backing off'}: ${why}${next}`)
  }
  for (const p of status.problems) {
    let where = ''
    if (p.file) where = ` [${p.file}${p.line !== null ? `:${p.line}${p.column !== null ? `:${p.column}` : ''}` : ''}]`
    lines.push(`Problem (${p.code}): ${p.message}${where}`)
  }
  return lines
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
