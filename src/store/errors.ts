// The credential store cannot be used: auth.json is unparsable, or the configured store
// (cli_auth_credentials_store) is one codex-authd cannot read or write yet.

export class StoreError extends Error {
  readonly reason: 'unreadable' | 'unsupported'
  /** Where an unreadable file fails, when known. */
  readonly file: string | null
  readonly line: number | null
  readonly column: number | null

  constructor(
    reason: 'unreadable' | 'unsupported',
    message: string,
    where: { file: string | null; line: number | null; column: number | null } = { file: null, line: null, column: null },
  ) {
    super(message)
    this.name = 'StoreError'
    this.reason = reason
    this.file = where.file
    this.line = where.line
    this.column = where.column
  }
}
