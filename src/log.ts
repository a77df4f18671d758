// pino on stdout, synchronous (an async destination loses lines on SIGTERM/SIGKILL: docs/architecture.md#library-choices):
// JSON lines, or pino-pretty's coloured lines when stdout is a terminal (src/log-pretty.ts).
// Secrets are redacted by path as a second line of defence; the first is that no code puts a
// secret into a log object or message at all. Redaction happens before either form is written.
import { isatty } from 'node:tty'
import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

const SECRET_KEYS = [
  'token',
  'apiKey',
  'api_key',
  'OPENAI_API_KEY',
  'access_token',
  'refresh_token',
  'id_token',
  'accessToken',
  'refreshToken',
  'idToken',
  'code_verifier',
  'codeVerifier',
  'authorization',
  // A placeholder stands in for a refresh token (docs/remote.md): logged by its id only.
  'placeholder',
]

/** Every secret key at the top level, one level down and inside `tokens`/`auth.tokens`. */
export const REDACT_PATHS: string[] = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.tokens.${k}`),
  ...SECRET_KEYS.map((k) => `auth.tokens.${k}`),
]

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** `destination`: where the lines go instead of JSON on `fd` (terminalDestination's). */
export function createLogger(level: LevelWithSilent, fd = 1, destination: DestinationStream | null = null): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: fd, sync: true }),
  )
}

/**
 * The pretty destination when `fd` is a terminal, else null (JSON). Colours unless NO_COLOR is set
 * or TERM is `dumb` (no-color.org).
 */
export async function terminalDestination(fd: number, env: NodeJS.ProcessEnv): Promise<DestinationStream | null> {
  if (!isatty(fd)) return null
  const { prettyDestination } = await import('./log-pretty.js')
  return prettyDestination(fd, env.NO_COLOR === undefined && env.TERM !== 'dumb')
}
