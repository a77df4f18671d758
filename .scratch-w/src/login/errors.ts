// Why a login ended badly. `reason` becomes ErrorInfo.reason of awaitLogin / loginCompleted; the
// message is shown to the user (CLI, browser page) and never holds a token, code, key or verifier.

export type LoginFailureReason =
  /** the issuer refused (access_denied, ...), the code exchange failed, or the answer is unusable */
  | 'login_failed'
  /** forced_login_method / forced_chatgpt_workspace_id */
  | 'forbidden_by_policy'
  /** auth.json could not be written (lock timeout, I/O) */
  | 'store_failed'

export class LoginError extends Error {
  readonly code: LoginFailureReason
  constructor(reason: LoginFailureReason, message: string) {
    super(message)
    this.name = 'LoginError'
    this.code = reason
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
