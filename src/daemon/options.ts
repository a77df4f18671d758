// `codex-authd` command line (docs/contract.md#codex-authd), validated once at start.
import { parseArgs } from 'node:util'
import type { LevelWithSilent } from 'pino'
import { CLIENT_COMMANDS, DAEMON_COMMANDS, UsageError, nearestWord, otherBinaryHint } from '../cli-common.js'
import { parseConfigOverride, type ConfigOverride } from '../codex/config.js'
import type { IssuerKind } from '../net/issuer.js'
import { DEFAULT_KEYRING_TIMEOUT_MS } from '../store/keyring-backend.js'

export const DEFAULT_ISSUER = 'https://auth.openai.com'
export const DEFAULT_CLIENT_ID = 'app_EMoamEEZ73f0CkXaXp7hrann'
export const DEFAULT_LOGIN_PORTS = [1455, 1457]

export interface DaemonOptions {
  codexHome: string | null
  socket: string | null
  overrides: ConfigOverride[]
  issuer: string
  issuerKind: IssuerKind
  clientId: string
  loginPorts: number[]
  logLevel: LevelWithSilent
}

export type Command =
  | { kind: 'run'; options: DaemonOptions }
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'service'; args: string[] }

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

export const HELP = `Usage: codex-authd [options]
       codex-authd service install|uninstall [--systemd | --launchd] [--force]

Owns the Codex CLI's credentials ($CODEX_HOME/auth.json) and serves them over a Unix socket.

Options:
  --codex-home DIR        CODEX_HOME to serve (default: $CODEX_HOME, else ~/.codex)
  --socket PATH           socket path (default: $CODEX_AUTHD_SOCK, else a runtime directory)
  -c key=value            config.toml override, as codex -c (repeatable)
  --issuer URL            OAuth issuer (default ${DEFAULT_ISSUER})
  --issuer-kind KIND      openai | oidc (default: openai for the default issuer, else oidc)
  --client-id ID          OAuth client id (default ${DEFAULT_CLIENT_ID})
  --login-ports P1,P2     browser-login callback ports (default ${DEFAULT_LOGIN_PORTS.join(',')})
  --log-level LEVEL       fatal|error|warn|info|debug|trace|silent (default info)
  -V, --version           print the version
  -h, --help              print this help

The client commands (status, token, login, ...) are codex-auth's: run \`codex-auth --help\`.

Exit codes: 0 stopped, 1 crashed, 3 another daemon owns this CODEX_HOME,
4 unusable socket path or directory, 78 invalid CODEX_HOME or arguments (usage).
`

export function parseDaemonArgs(argv: string[]): Command {
  if (argv[0] === 'service') return { kind: 'service', args: argv.slice(1) }
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'codex-home': { type: 'string' },
        socket: { type: 'string' },
        config: { type: 'string', short: 'c', multiple: true },
        issuer: { type: 'string' },
        'issuer-kind': { type: 'string' },
        'client-id': { type: 'string' },
        'login-ports': { type: 'string' },
        'log-level': { type: 'string' },
        version: { type: 'boolean', short: 'V' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  const v = parsed.values
  const word = parsed.positionals[0]
  if (word !== undefined) {
    // A client command given to the daemon's binary is the likely slip: name the right one.
    const near = nearestWord(word, [...CLIENT_COMMANDS, ...DAEMON_COMMANDS])
    const hint =
      otherBinaryHint(word, 'codex-auth') ?? (near === null ? null : `did you mean \`${(DAEMON_COMMANDS as readonly string[]).includes(near) ? 'codex-authd' : 'codex-auth'} ${near}\`?`)
    throw new UsageError(hint ? `'${word}' is not a codex-authd command; ${hint}` : `unexpected argument '${word}'`)
  }
  if (v.help) return { kind: 'help' }
  if (v.version) return { kind: 'version' }

  const issuer = v.issuer ?? DEFAULT_ISSUER
  let issuerUrl: URL
  try {
    issuerUrl = new URL(issuer)
  } catch {
    throw new UsageError(`--issuer is not a URL: ${issuer}`)
  }
  if (issuerUrl.protocol !== 'https:' && issuerUrl.protocol !== 'http:') throw new UsageError('--issuer must be an http(s) URL')
  const kindArg = v['issuer-kind']
  if (kindArg !== undefined && kindArg !== 'openai' && kindArg !== 'oidc') {
    throw new UsageError(`--issuer-kind must be openai or oidc, not ${kindArg}`)
  }
  const issuerKind: IssuerKind = kindArg ?? (issuer.replace(/\/+$/, '') === DEFAULT_ISSUER ? 'openai' : 'oidc')

  const loginPorts = v['login-ports'] === undefined ? DEFAULT_LOGIN_PORTS : parsePorts(v['login-ports'])
  const logLevel = v['log-level'] ?? 'info'
  if (!LEVELS.has(logLevel)) throw new UsageError(`--log-level must be one of ${[...LEVELS].join(', ')}`)

  const overrides: ConfigOverride[] = []
  for (const arg of v.config ?? []) {
    try {
      overrides.push(parseConfigOverride(arg))
    } catch (e) {
      throw new UsageError((e as Error).message)
    }
  }
  if (v.socket === '') throw new UsageError('--socket must not be empty')
  if (v['codex-home'] === '') throw new UsageError('--codex-home must not be empty')

  return {
    kind: 'run',
    options: {
      codexHome: v['codex-home'] ?? null,
      socket: v.socket ?? null,
      overrides,
      issuer: issuer.replace(/\/+$/, ''),
      issuerKind,
      clientId: v['client-id'] ?? DEFAULT_CLIENT_ID,
      loginPorts,
      logLevel: logLevel as LevelWithSilent,
    },
  }
}

function parsePorts(s: string): number[] {
  const ports = s.split(',').map((p) => Number(p.trim()))
  if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
    throw new UsageError(`--login-ports must be a comma-separated list of ports, not ${s}`)
  }
  return ports
}

/**
 * Hidden, for tests: CODEX_AUTHD_RECOVERY_SCALE multiplies the broker's spacing of recovery
 * spends (docs/broker.md#a-backend-that-rejects-every-token); default 1.
 */
export function recoveryScaleFromEnv(env: NodeJS.ProcessEnv): number {
  const scale = Number(env.CODEX_AUTHD_RECOVERY_SCALE ?? NaN)
  return Number.isFinite(scale) && scale > 0 ? scale : 1
}

/**
 * CODEX_AUTHD_KEYRING_REREAD_MS: how old a read of a keyring entry may be when getAuth serves it
 * (default 5000, src/state/cache.ts); CODEX_AUTHD_KEYRING_TIMEOUT_MS: the deadline of each keyring call (docs/keyring.md#plan-for-the-store);
 * default 3000 ms (libdbus itself gives up after about 2 s on a Secret Service that does not answer).
 */
export function keyringRereadFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const ms = Number(env.CODEX_AUTHD_KEYRING_REREAD_MS ?? NaN)
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined
}

export function keyringTimeoutFromEnv(env: NodeJS.ProcessEnv): number {
  const ms = Number(env.CODEX_AUTHD_KEYRING_TIMEOUT_MS ?? NaN)
  return Number.isFinite(ms) && ms > 0 ? ms : DEFAULT_KEYRING_TIMEOUT_MS
}
