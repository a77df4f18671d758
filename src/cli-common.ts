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

/** One word for a POSIX shell: single-quoted, `'` as `'\''`. The result is always quoted. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`
}
