// The one place where what went wrong becomes a contract error code (docs/contract.md). The domain
// throws its own errors (LoginError, RefreshError, StoreError, NotServedError); params checks
// throw RpcError already. Anything else is a fault of ours: the client sees a bare -32603.
import { ErrorCode } from '../rpc/contract.js'
import { RpcError } from '../rpc/errors.js'
import { LoginError } from '../login/errors.js'
import { RefreshError } from '../refresh/errors.js'
import { StoreError } from '../store/errors.js'
import { NotServedError } from './views.js'
import { PlaceholderLimitError } from '../broker/placeholders.js'

/** The contract's error for what a method threw, or null when it is not one the contract names. */
export function toRpcError(e: unknown): RpcError | null {
  if (e instanceof RpcError) return e
  if (e instanceof NotServedError) {
    const data = e.problem !== null ? { problem: e.problem } : undefined
    return new RpcError(e.reason === 'forbidden_by_policy' ? ErrorCode.ForbiddenByPolicy : ErrorCode.NotLoggedIn, e.message, data)
  }
  if (e instanceof StoreError) {
    // A keyring problem names itself (docs/contract.md#errors): data.problem, and data.details for keyring_unreachable.
    const named = e.problem !== null ? { problem: e.problem, ...(e.details ? { details: e.details } : {}) } : {}
    return new RpcError(ErrorCode.StoreUnreadable, e.message, { file: e.file, line: e.line, column: e.column, ...named })
  }
  if (e instanceof PlaceholderLimitError) return new RpcError(ErrorCode.ServerBusy, e.message)
  if (e instanceof RefreshError) return new RpcError(ErrorCode.RefreshFailed, e.message, { kind: e.kind })
  if (e instanceof LoginError) {
    switch (e.code) {
      case 'forbidden_by_policy':
        return new RpcError(ErrorCode.ForbiddenByPolicy, e.message)
      case 'login_in_progress':
        return new RpcError(ErrorCode.LoginInProgress, e.message, e.loginId !== null ? { loginId: e.loginId } : undefined)
      case 'invalid_value':
        return new RpcError(ErrorCode.InvalidParams, e.message, { field: e.field ?? 'params' })
      case 'login_failed':
      case 'store_failed':
        return new RpcError(ErrorCode.LoginFailed, e.message, e.lock !== null ? { lock: e.lock } : undefined)
    }
  }
  return null
}
