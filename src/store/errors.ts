// The credential store cannot be used: auth.json or the keyring entry is unparsable, the keyring
// cannot be reached, or the configured store (cli_auth_credentials_store) is one codex-authd cannot
// read or write (ephemeral).
import type { Problem, ProblemCode } from '../types.js'

export class StoreError extends Error {
  readonly reason: 'unreadable' | 'unsupported'
  /** Where an unreadable file fails, when known. */
  readonly file: string | null
  readonly line: number | null
  readonly column: number | null
  /** The problem code behind it (keyring_unreachable, keyring_entry_invalid, store_ephemeral), when one is. */
  readonly problem: ProblemCode | null
  readonly details: Problem['details'] | null

  constructor(
    reason: 'unreadable' | 'unsupported',
    message: string,
    where: { file: string | null; line: number | null; column: number | null } = { file: null, line: null, column: null },
    problem: ProblemCode | null = null,
    details: Problem['details'] | null = null,
  ) {
    super(message)
    this.name = 'StoreError'
    this.reason = reason
    this.file = where.file
    this.line = where.line
    this.column = where.column
    this.problem = problem
    this.details = details
  }
}
