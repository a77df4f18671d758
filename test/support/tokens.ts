// Obviously fake JWTs for tests: header {alg:'none'}, base64url JSON payload, fake signature.
// Nothing here is signed or secret; shared by every test that needs a token. Every fake JWT is
// still registered with the leak scanner (secrets.ts): tests use them as credentials, and
// registering one that is not used as a credential is harmless.
import { fakeAuth, unsignedJwt, type FakeAuth } from './auth-files.mjs'
import { registerSecret } from './secrets.js'

export function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url')
}

/** A JWT-shaped string Codex accepts as an id_token or access token. */
export function fakeJwt(payload: object): string {
  const jwt = unsignedJwt(payload)
  registerSecret(jwt, 'fake JWT (tokens.ts)')
  return jwt
}

/** A fresh ChatGPT auth.json (auth-files.mjs's fakeAuth) whose tokens are registered like every fakeJwt. */
export function chatgptAuth(tag: string, apiKey: string | null = null): FakeAuth {
  return fakeAuth(tag, { apiKey, jwt: fakeJwt })
}
