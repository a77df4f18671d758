// What a caller of the refresher sees when no good-enough token could be had (docs/contract.md).
import type { RefreshFailureKind } from '../rpc/contract.js'
import type { RefreshFailure } from './policy.js'

/** A refresh failed, or could not make the token valid for as long as the caller asked. */
export class RefreshError extends Error {
  readonly kind: RefreshFailureKind

  constructor(failure: Pick<RefreshFailure, 'kind' | 'message'>) {
    super(failure.message)
    this.name = 'RefreshError'
    this.kind = failure.kind
  }
}
