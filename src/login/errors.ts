// Why a login (or logout) ended badly, in the login's own words. `code` becomes ErrorInfo.reason
// of awaitLogin / loginCompleted; daemon/errors.ts maps a thrown LoginError to the contract's code.
// The message is shown to the user (CLI, browser page) and never holds a token, code, key or verifier.

export type LoginFailureReason =
  /** the issuer refused (access_denied, ...), the code exchange failed, or the answer is unusable */
  | 'login_failed'
  /** forced_login_method / forced_chatgpt_workspace_id */
  | 'forbidden_by_policy'
  /** auth.json could not be written or removed (lock timeout, I/O) */
  | 'store_failed'
  /** a browser or device login is already running (`loginId` names it) */
  | 'login_in_progress'
  /** a value given to the login (the API key) could not be written so that Codex reads it back (`field` names it) */
  | 'invalid_value'

export class LoginError extends Error {
  readonly code: LoginFailureReason
  /** login_in_progress: the running login */
  readonly loginId: string | null
  /** store_failed on a lock timeout: the lock's file name */
  readonly lock: string | null
  /** invalid_value: the param at fault */
  readonly field: string | null

  constructor(reason: LoginFailureReason, message: string, detail: { loginId?: string; lock?: string; field?: string } = {}) {
    super(message)
    this.name = 'LoginError'
    this.code = reason
    this.loginId = detail.loginId ?? null
    this.lock = detail.lock ?? null
    this.field = detail.field ?? null
  }
}

/** Only short identifier-like strings from a server (an OAuth `error` code) are quoted. */
const SAFE_CODE = /^[A-Za-z0-9_.:-]{1,64}$/

export function safeCode(v: unknown): string | null {
  return typeof v === 'string' && SAFE_CODE.test(v) ? v : null
}

/**
 * A server's `error_description` for a page or message: printable text only, cut to 200
 * characters. Descriptions are the issuer's words for the user, never credentials.
 */
export function safeDescription(v: unknown): string | null {
  if (typeof v !== 'string') return null
  const clean = v.replace(/[^\x20-\x7e\u00a0-\uffff]/g, ' ').trim()
  if (clean === '') return null
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean
}
