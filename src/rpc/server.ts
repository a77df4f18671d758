// JSON-RPC 2.0 for the daemon, done by json-rpc-2.0 (docs/contract.md): it checks
// each request, looks the method up, runs batches and turns errors into answers. Set here, where
// the library's defaults differ from the contract:
// - it lets an id of any type, a non-string method and scalar params through; a middleware
//   answers those -32600 before the method is looked up;
// - it crashes on a `null` message (a batch member too): such members reach it as `{}`, which it
//   answers -32600 with id null, as any other non-object;
// - it answers a batch that yields one response with a bare object; the spec (and the contract)
//   want an array;
// - a plain Error thrown by a method would go out as code 0 with its message: only what `mapError`
//   recognises keeps its code, message and data; everything else is a bare -32603, logged here.
import { JSONRPCServer, createJSONRPCErrorResponse, type JSONRPCRequest, type JSONRPCResponse } from 'json-rpc-2.0'
import { ErrorCode } from './contract.js'
import type { RpcError } from './errors.js'
import type { Connection } from './transport.js'

export interface RpcServerHooks {
  /** The contract's error for what a method threw, or null for a fault of ours (-32603). */
  mapError(error: unknown): RpcError | null
  /** A method threw something mapError does not know: log it (the client sees only -32603). */
  onInternalError(method: string, error: unknown): void
  /** The error refusing a method this server has on this connection (the restricted socket), or null to run it. */
  refuse?(method: string, conn: Connection): RpcError | null
}

export type MethodHandler = (params: unknown, conn: Connection) => unknown

/** What a line carried: one answer, an array of answers for a batch, or nothing to send. */
export type Reply = JSONRPCResponse | JSONRPCResponse[] | null

const NOT_AN_OBJECT: JSONRPCRequest = Object.freeze({}) as JSONRPCRequest

export class RpcServer {
  private readonly server: JSONRPCServer<Connection>
  private readonly methods = new Set<string>()

  constructor(hooks: RpcServerHooks) {
    // The middleware reports internal errors (it knows the method); the default listener would
    // print every error, expected ones included, to stderr.
    this.server = new JSONRPCServer<Connection>({ errorListener: () => {} })
    this.server.mapErrorToJSONRPCErrorResponse = (id, error: unknown) => {
      const e = hooks.mapError(error)
      if (e === null) return createJSONRPCErrorResponse(id, ErrorCode.InternalError, 'Internal error')
      return createJSONRPCErrorResponse(id, e.code, e.message, e.data)
    }
    this.server.applyMiddleware((next, request, conn) => {
      const invalid = contractCheck(request)
      if (invalid !== null) return Promise.resolve(invalid)
      // Only methods we have: an unknown name stays -32601 wherever it is asked.
      const refused = this.methods.has(request.method) ? (hooks.refuse?.(request.method, conn) ?? null) : null
      // Rejected like a method's own error: answered with its code, and not at all for a notification.
      if (refused !== null) return Promise.reject(refused)
      const report = (error: unknown): never => {
        if (hooks.mapError(error) === null) hooks.onInternalError(request.method, error)
        throw error
      }
      let answer
      try {
        answer = next(request, conn)
      } catch (error) {
        return report(error)
      }
      return answer.then(undefined, report)
    })
  }

  addMethod(name: string, handler: MethodHandler): void {
    this.methods.add(name)
    this.server.addMethod(name, handler)
  }

  /** The reply to one parsed line: a request, a notification or a batch. */
  receive(message: unknown, conn: Connection): PromiseLike<Reply> {
    if (!Array.isArray(message)) return this.server.receive(asRequest(message), conn)
    // An empty batch is one -32600 (not in an array): the library does that as it is.
    if (message.length === 0) return this.server.receive([], conn)
    return this.server.receive(message.map(asRequest), conn).then((r) => (r === null || Array.isArray(r) ? r : [r]))
  }
}

function asRequest(m: unknown): JSONRPCRequest {
  return typeof m === 'object' && m !== null ? (m as JSONRPCRequest) : NOT_AN_OBJECT
}

/**
 * -32600 for what the library takes as a request and JSON-RPC 2.0 does not: an id that is not a
 * string, a finite number or null (answered with id null), a method that is not a string, params
 * that are neither an object nor an array. null when the request is well-formed.
 */
export function contractCheck(request: JSONRPCRequest): JSONRPCResponse | null {
  const { id, method, params } = request as { id?: unknown; method?: unknown; params?: unknown }
  const idOk = id === undefined || id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))
  if (!idOk) return createJSONRPCErrorResponse(null, ErrorCode.InvalidRequest, 'Invalid Request: bad id')
  const replyId = (id ?? null) as string | number | null
  if (typeof method !== 'string') return createJSONRPCErrorResponse(replyId, ErrorCode.InvalidRequest, 'Invalid Request: method must be a string')
  if (params !== undefined && (typeof params !== 'object' || params === null)) {
    return createJSONRPCErrorResponse(replyId, ErrorCode.InvalidRequest, 'Invalid Request: params must be an object or array')
  }
  return null
}
