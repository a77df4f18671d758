// A CODEX_HOME on a machine whose daemon is elsewhere (docs/remote.md#sinks): auth.json in Codex's
// exact format, its refresh token a codex-authd placeholder, written under Codex's two locks by
// the store's own compare-and-write (no second serializer, no second lock order). Everything else
// in the home (config.toml, sessions) is left alone; a login of the machine's own is never
// replaced unless asked.
import * as fs from 'node:fs'
import { parseAuthFile } from '../codex/authfile.js'
import { commitAuth, readAuth, type AuthRead } from '../store/authstore.js'
import type { AuthFile } from '../types.js'
import { isPlaceholder } from '../placeholder.js'

export { isPlaceholder }


/** What a sink may replace: nothing, or a file whose only credential is a placeholder. Pure. */
export function sinkMayReplace(read: AuthRead): { ok: true } | { ok: false; holds: string } {
  if (read.state === 'absent') return { ok: true }
  if (read.state === 'unreadable') return { ok: false, holds: 'something Codex cannot read (it is left as it is)' }
  const a = read.auth
  if (a.openaiApiKey !== null) return { ok: false, holds: 'an API key' }
  if (a.tokens !== null && !isPlaceholder(a.tokens.refreshToken)) return { ok: false, holds: 'a login of its own (a refresh token, not a codex-authd placeholder)' }
  return { ok: true }
}

/** The daemon's auth.json object as the store's AuthFile, checked exactly as Codex would read it. */
export function authFileFromWire(obj: object): AuthFile {
  const parsed = parseAuthFile(JSON.stringify(obj), 'auth.json')
  if (!parsed.ok) throw new Error(`codex-authd sent an auth.json Codex would reject: ${parsed.problem.message}`)
  const t = parsed.auth.tokens
  if (t === null || !isPlaceholder(t.refreshToken)) throw new Error('codex-authd sent an auth.json without a placeholder refresh token; nothing was written')
  return parsed.auth
}

export type PlaceholderWrite =
  | { outcome: 'written' }
  | { outcome: 'refused'; file: string; holds: string }
  | { outcome: 'failed'; message: string }

/**
 * Writes `auth` as `home`/auth.json (0600, atomic, under auth.lock and auth.json.lock), creating
 * `home` (0700) when missing. Unless `force`, only over nothing or a placeholder file, checked
 * again under the locks.
 */
export async function writePlaceholderAuth(home: string, auth: AuthFile, force: boolean): Promise<PlaceholderWrite> {
  fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  const file = `${home}/auth.json`
  let refusedFor: string | null = null
  const r = await commitAuth(home, {
    overwriteUnreadable: force,
    precondition: force
      ? undefined
      : (current) => {
          const may = sinkMayReplace(current)
          refusedFor = may.ok ? null : may.holds
          return may.ok
        },
    update: () => auth,
  })
  switch (r.outcome) {
    case 'written':
      return { outcome: 'written' }
    case 'precondition_failed':
      return { outcome: 'refused', file, holds: refusedFor ?? 'a login of its own' }
    case 'unreadable':
      return { outcome: 'refused', file, holds: 'something Codex cannot read (it is left as it is)' }
    case 'lock_timeout':
      return { outcome: 'failed', message: `${r.lock} in ${home} stayed locked; auth.json was not written` }
    default:
      return { outcome: 'failed', message: `auth.json in ${home} was not written (${r.outcome})` }
  }
}

/** Whether `home`/auth.json may be written without --force, read without locks (a first look). */
export async function firstLook(home: string): Promise<{ ok: true } | { ok: false; holds: string }> {
  return sinkMayReplace(await readAuth(home))
}
