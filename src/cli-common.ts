// What the command lines (`codex-auth`, `codex-authd`, `codex-authd service`) share: the error for
// bad arguments and POSIX shell quoting for what they print.

/** Bad arguments: the command prints the message with a pointer to its help and exits with its usage status. */
export class UsageError extends Error {
  /** The subcommand being parsed when it went wrong, when known (`codex-auth exec` exits 125, not 64). */
  readonly command: string | null

  constructor(message: string, command: string | null = null) {
    super(message)
    this.name = 'UsageError'
    this.command = command
  }
}

/**
 * Both binaries' words for a command line they cannot use (docs/contract.md#usage-errors): the
 * reason, then where the help is — the command's own page when the error is about a command.
 * Nothing goes to stdout; the binary exits with its usage status (codex-auth 64, codex-authd 78).
 */
export function usageLines(binary: 'codex-auth' | 'codex-authd', message: string, command: string | null): [string, string] {
  return [`${binary}: ${message}`, `Try '${binary} ${command !== null ? `${command} ` : ''}--help'.`]
}

/** One word for a POSIX shell: single-quoted, `'` as `'\''`. The result is always quoted. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`
}

/** The commands of `codex-auth`, for its parser and for `codex-authd`'s "did you mean" hint. */
export const CLIENT_COMMANDS = ['status', 'token', 'env', 'exec', 'login', 'logout', 'refresh', 'watch', 'audit', 'completion'] as const
/** The commands of `codex-authd` besides running the daemon. */
export const DAEMON_COMMANDS = ['service'] as const

/**
 * The hint for a command typed to the wrong binary (`codex-authd status`, `codex-auth service`),
 * or null when `word` is no command of the other one.
 */
export function otherBinaryHint(word: string, other: 'codex-auth' | 'codex-authd'): string | null {
  const commands: readonly string[] = other === 'codex-auth' ? CLIENT_COMMANDS : DAEMON_COMMANDS
  return commands.includes(word) ? `did you mean \`${other} ${word}\`?` : null
}
