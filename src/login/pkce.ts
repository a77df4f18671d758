// PKCE (RFC 7636, S256) and the OAuth `state`, made exactly as Codex makes them (docs/codex-compat.md#browser-login):
// the verifier is 64 random bytes and the state 32 random bytes, both base64url without padding;
// the challenge is base64url-no-pad of SHA-256 of the verifier. The verifier and state are
// secrets of one login: never logged, never put in an error.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

export const PKCE_VERIFIER_BYTES = 64
export const STATE_BYTES = 32

export interface Pkce {
  verifier: string
  challenge: string
}

/** S256: base64url(sha256(ascii(verifier))), no padding. */
export function codeChallenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url')
}

/** A PKCE pair from the given random bytes (pure; generatePkce supplies the randomness). */
export function pkceFromBytes(bytes: Uint8Array): Pkce {
  const verifier = Buffer.from(bytes).toString('base64url')
  return { verifier, challenge: codeChallenge(verifier) }
}

export function generatePkce(): Pkce {
  return pkceFromBytes(randomBytes(PKCE_VERIFIER_BYTES))
}

export function generateState(): string {
  return randomBytes(STATE_BYTES).toString('base64url')
}

/** Constant-time comparison of the state we sent with the one that came back. */
export function statesMatch(expected: string, received: string | null): boolean {
  if (received === null) return false
  const a = Buffer.from(expected, 'utf8')
  const b = Buffer.from(received, 'utf8')
  return a.length === b.length && timingSafeEqual(a, b)
}
