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
export const CLIENT_COMMANDS = ['status', 'token', 'env', 'exec', 'sink', 'login', 'logout', 'refresh', 'watch', 'audit', 'placeholders', 'doctor', 'completion'] as const
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

/** The candidate nearest to a mistyped `word` (at most 2 edits: `stauts`, `tokne`), or null. */
export function nearestWord(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null
  let bestDistance = 3
  for (const c of candidates) {
    const d = editDistance(word, c)
    if (d < bestDistance) {
      best = c
      bestDistance = d
    }
  }
  return best
}

/** Levenshtein distance with adjacent transpositions counted as one edit (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}
