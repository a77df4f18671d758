// Obviously fake JWTs for tests: header {alg:'none'}, base64url JSON payload, fake signature.
// Nothing here is signed or secret; shared by every test that needs a token.

export function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url')
}

/** A JWT-shaped string Codex accepts as an id_token or access token. */
export function fakeJwt(payload: object): string {
  return `${base64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${base64url(JSON.stringify(payload))}.fake-signature`
}
