// One login's life: pending until it succeeds, fails, is cancelled or expires. The first end wins;
// while the result is being committed (`busy`) cancel and expiry are refused, so a login that
// wrote auth.json always reports success.
import { randomUUID } from 'node:crypto'
import type { ErrorInfo, LoginErrorReason, LoginMethod, LoginResult, LoginStatus } from '../rpc/contract.js'
import { orTimeout } from '../timeout.js'

export type EndStatus = Exclude<LoginStatus, 'pending'>

/**
 * `LoginResult.error.reason` of a browser login ended by a GET /cancel on its login server (a
 * new `codex login`, or any local program: they cannot be told apart), not by cancelLogin.
 */
export const CANCELLED_FROM_OUTSIDE: LoginErrorReason = 'cancelled_from_outside'

export interface SuccessInfo {
  email: string | null
  planType: string | null
  accountId: string | null
}

export class LoginSession {
  readonly id: string
  readonly method: LoginMethod
  status: LoginStatus = 'pending'
  error: ErrorInfo | null = null
  success: SuccessInfo | null = null
  /** Set while the result is being written: cancel and expiry wait for it. */
  busy = false
  /** Aborted when the login ends, whatever the reason. */
  readonly abort = new AbortController()
  readonly done: Promise<LoginResult>
  private resolveDone!: (r: LoginResult) => void
  /**
   * awaitLogin callers, each removed when it is answered (the end, its timeout, or its connection
   * gone): not reactions on `done`, which could not be taken back and would pile up until the
   * login ends (15 minutes) however many callers had left.
   */
  private readonly waiters = new Set<() => void>()

  constructor(method: LoginMethod, id: string = randomUUID()) {
    this.id = id
    this.method = method
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve
    })
  }

  get pending(): boolean {
    return this.status === 'pending'
  }

  /** Open for cancel or expiry: pending and not committing. */
  get cancellable(): boolean {
    return this.status === 'pending' && !this.busy
  }

  result(): LoginResult {
    return { loginId: this.id, status: this.status, error: this.error }
  }

  /** Ends the login; false when it had already ended. */
  end(status: EndStatus, error: ErrorInfo | null = null, success: SuccessInfo | null = null): boolean {
    if (this.status !== 'pending') return false
    this.status = status
    this.error = error
    this.success = success
    this.busy = false
    this.abort.abort()
    this.resolveDone(this.result())
    for (const answer of [...this.waiters]) answer()
    return true
  }

  /**
   * The result once the login ends, or as it is (`pending`) after timeoutMs (null: wait for the
   * end) or as soon as `cancel` aborts (the caller is gone: nothing of the wait is kept).
   */
  wait(timeoutMs: number | null, cancel?: AbortSignal): Promise<LoginResult> {
    if (this.status !== 'pending' || cancel?.aborted) return Promise.resolve(this.result())
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null
      const answer = (): void => {
        this.waiters.delete(answer)
        if (timer !== null) clearTimeout(timer)
        cancel?.removeEventListener('abort', answer)
        resolve(this.result())
      }
      this.waiters.add(answer)
      if (timeoutMs !== null) timer = setTimeout(answer, timeoutMs)
      cancel?.addEventListener('abort', answer, { once: true })
    })
  }
}
