// The refresh journal (docs/refresh.md#the-journal): a token answer is recorded durably the
// moment it arrives, before any lock is waited for, so that a daemon killed before its commit
// lands can commit it when it starts again. One journal per CODEX_HOME, in the home
// (`authd.pending.json`, the name the older shutdown-only park used) or, when the home's disk
// cannot take it, in a fallback directory of the daemon's own (the runtime directory).
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { parseAuthFile, serializeAuthFile } from '../codex/authfile.js'
import type { AuthFile } from '../types.js'
import { writeFileAtomic } from './atomic-write.js'
import { sha256Hex } from './authstore.js'
import { errCode, errText } from './textfile.js'

/** What a restarted daemon needs to commit a refresh result (never the spent token itself). */
export interface JournalRecord {
  /** SHA-256 (hex) of the refresh token auth.json must still hold for the result to land. */
  fileRefreshTokenSha256: string
  /** The account auth.json must still hold. */
  accountId: string | null
  /** auth.json as it should be once committed. */
  auth: AuthFile
  /** When the answer arrived (ms since the epoch): the newer of two journals wins. */
  receivedAtMs: number
}

export interface JournalPlaces {
  home: string
  /** A directory of the daemon's own off the home's disk (the runtime directory), or null. */
  fallbackDir: string | null
}

export interface StoredJournal {
  record: JournalRecord
  path: string
}

/** Errors that mean "this disk cannot take it": try the fallback. */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT', 'EROFS'])

export function journalPath(home: string): string {
  return join(home, 'authd.pending.json')
}

/** The fallback is shared by every home's daemon: the file is named by the home. */
export function fallbackJournalPath(dir: string, home: string): string {
  return join(dir, `authd.pending-${sha256Hex(home).slice(0, 16)}.json`)
}

function places(p: JournalPlaces): string[] {
  return p.fallbackDir === null ? [journalPath(p.home)] : [journalPath(p.home), fallbackJournalPath(p.fallbackDir, p.home)]
}

export type JournalWrite =
  | { ok: true; path: string; fallback: boolean; homeError: string | null }
  | { ok: false; homeError: string; fallbackError: string | null }

/**
 * Writes the record durably: temp file 0600, fsync, rename, fsync of the directory. In the home
 * first; on a full or read-only disk (ENOSPC, EDQUOT, EROFS) in the fallback. The other place's
 * older journal is removed so that a start finds one. Never throws.
 */
export async function writeJournal(p: JournalPlaces, record: JournalRecord): Promise<JournalWrite> {
  const text = JSON.stringify({
    version: 1,
    spent_refresh_token_sha256: record.fileRefreshTokenSha256,
    account_id: record.accountId,
    received_at_ms: record.receivedAtMs,
    auth: serializeAuthFile(record.auth),
  })
  const [primary, fallback] = places(p)
  let homeError: string
  try {
    await writeFileAtomic(primary!, text, { mode: 0o600, syncDir: true })
    if (fallback !== undefined) await rm(fallback, { force: true }).catch(() => {})
    return { ok: true, path: primary!, fallback: false, homeError: null }
  } catch (e) {
    homeError = `${errCode(e) ?? 'error'}: ${errText(e)}`
    if (!DISK_FULL.has(errCode(e) ?? '') || fallback === undefined) return { ok: false, homeError, fallbackError: null }
  }
  try {
    await writeFileAtomic(fallback, text, { mode: 0o600, syncDir: true })
    // A journal of an earlier refresh in the home would be stale now.
    await rm(primary!, { force: true }).catch(() => {})
    return { ok: true, path: fallback, fallback: true, homeError }
  } catch (e) {
    return { ok: false, homeError, fallbackError: `${errCode(e) ?? 'error'}: ${errText(e)}` }
  }
}

/**
 * Every journal found for this home, newest first. A file that cannot be parsed is reported in
 * `bad` (with its path) and left alone for the user; it is never a reason not to start.
 */
export async function readJournals(p: JournalPlaces): Promise<{ journals: StoredJournal[]; bad: string[] }> {
  const journals: StoredJournal[] = []
  const bad: string[] = []
  for (const path of places(p)) {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch {
      continue // absent (or unreadable: nothing we could commit)
    }
    const record = parseJournal(text, path)
    if (record === null) bad.push(path)
    else journals.push({ record, path })
  }
  journals.sort((a, b) => b.record.receivedAtMs - a.record.receivedAtMs)
  return { journals, bad }
}

function parseJournal(text: string, path: string): JournalRecord | null {
  try {
    const r = JSON.parse(text) as Record<string, unknown>
    if (typeof r.spent_refresh_token_sha256 !== 'string' || typeof r.auth !== 'string') return null
    const parsed = parseAuthFile(r.auth, path)
    if (!parsed.ok || parsed.auth.tokens === null) return null
    return {
      fileRefreshTokenSha256: r.spent_refresh_token_sha256,
      accountId: typeof r.account_id === 'string' ? r.account_id : null,
      auth: parsed.auth,
      // The shutdown park of earlier versions had no time: oldest.
      receivedAtMs: typeof r.received_at_ms === 'number' ? r.received_at_ms : 0,
    }
  } catch {
    return null
  }
}

/** Removes the journal from both places (the result is settled). Never throws. */
export async function deleteJournals(p: JournalPlaces): Promise<void> {
  for (const path of places(p)) await rm(path, { force: true }).catch(() => {})
}
