// What a placeholder looks like (docs/remote.md#the-restricted-socket-and-placeholders): the
// daemon issues them (src/broker/placeholders.ts), the client's sinks and `doctor` recognise one
// in an auth.json. Shared by both sides, so it lives here.

/** Every placeholder starts with this: anyone can tell one from a real refresh token. */
export const PLACEHOLDER_PREFIX = 'codex-authd-ph.'

export function isPlaceholder(token: string): boolean {
  return token.startsWith(PLACEHOLDER_PREFIX)
}
