// Types of auth-files.mjs (plain JavaScript so that the bench scripts can import it too).

export interface FakeAuth {
  json: Record<string, unknown>
  text: string
  access: string
}

/** An obviously fake JWT (alg none, fake signature), not registered with the leak scanner. */
export function unsignedJwt(payload: object): string

/** A fresh ChatGPT auth.json (30-day token issued now, so no refresh is due) with `tag` in it. */
export function fakeAuth(tag: string, opts?: { apiKey?: string | null; jwt?: (payload: object) => string }): FakeAuth

/** Writes a temp file (0600) beside `file` and renames it into place, as Codex does. */
export function renameInto(file: string, text: string): void

/** Truncates and writes in place, as older Codex versions did (same inode). */
export function writeInPlace(file: string, text: string): void
