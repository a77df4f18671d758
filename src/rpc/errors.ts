import { ErrorCode, ErrorReason, type ErrorCodeValue } from './contract.js'

/**
 * An error meant for the client: its code, message and data go on the wire as they are, so the
 * message must never hold a secret or an internal detail. Params checks throw it; the daemon makes
 * one from a domain error (daemon/errors.ts). Anything else thrown by a method is answered as a
 * bare -32603 (rpc/server.ts; the library's default would send code 0 and the raw message).
 */
export class RpcError extends Error {
  readonly code: ErrorCodeValue
  readonly data: Record<string, unknown> | undefined

  constructor(code: ErrorCodeValue, message: string, data?: Record<string, unknown>) {
    super(message)
    this.name = 'RpcError'
    this.code = code
    const reason = (ErrorReason as Record<number, string>)[code]
    this.data = reason !== undefined ? { reason, ...data } : data
  }
}

export function invalidParams(field: string, message: string): RpcError {
  return new RpcError(ErrorCode.InvalidParams, message, { field })
}
