// The keyring entry as Codex 0.171 names and fills it (docs/keyring.md#the-entry), and how a
// keyring failure is told apart: pure, so that it is tested without a Secret Service or the binding.
import { createHash } from 'node:crypto'
import { parseAuthFile, serializeAuthFile } from '../codex/authfile.js'
import type { AuthFile, KeyringCause, Problem } from '../types.js'

/** Codex's KEYRING_SERVICE. */
export const KEYRING_SERVICE = 'Codex Auth'
/** The keyring crate's target, which Codex searches first (docs/keyring.md#the-entry). */
export const KEYRING_TARGET = 'default'
/** Where the entry is shown in problems (it has no file). */
export const KEYRING_PLACE = 'keyring'

/**
 * The entry's account (`username` attribute): `cli|` + the first 16 hex digits of SHA-256 of the
 * canonical CODEX_HOME (Codex canonicalizes it: the target of a symlink; the raw path when that
 * fails). The caller passes the canonical path.
 */
export function keyringAccount(canonicalHome: string): string {
  return `cli|${createHash('sha256').update(canonicalHome).digest('hex').slice(0, 16)}`
}

/** The payload Codex writes: serde_json::to_string of auth.json's structure (compact, same field order). */
export function keyringPayload(auth: AuthFile): string {
  return JSON.stringify(JSON.parse(serializeAuthFile(auth)))
}

export type EntryParse = { ok: true; auth: AuthFile } | { ok: false; problem: Problem }

/**
 * The entry's value as Codex reads it. A `CODEX_CHUNKED:` value is what a newer Codex writes for a
 * long payload (split over several items, docs/keyring.md#checked-against-the-source): named as
 * such, never parsed as JSON. The message never quotes the value.
 */
export function parseKeyringValue(value: string, account: string): EntryParse {
  const where = `the keyring entry "${KEYRING_SERVICE}" / ${account}`
  if (value.startsWith('CODEX_CHUNKED:')) {
    return {
      ok: false,
      problem: entryInvalid(`${where} is split into chunks (CODEX_CHUNKED:), as a Codex newer than 0.171 writes long values; codex-authd cannot read it`),
    }
  }
  const parsed = parseAuthFile(value, where)
  if (parsed.ok) return parsed
  return { ok: false, problem: entryInvalid(parsed.problem.message) }
}

function entryInvalid(message: string): Problem {
  return { code: 'keyring_entry_invalid', message, file: KEYRING_PLACE, line: null, column: null }
}

/**
 * Why a keyring call failed, from the binding's message (the keyring crate's error text; the
 * binding gives no structured code). `timeout` also covers libdbus's own "no reply" (≈2 s).
 */
export function keyringCause(message: string): KeyringCause {
  const m = message.toLowerCase()
  if (m.includes('did not receive a reply') || m.includes('noreply') || m.includes('timed out')) return 'timeout'
  if (m.includes('failed to connect to socket') || m.includes('autolaunch') || m.includes('dbus_session_bus_address') || m.includes('dbus session')) {
    return 'no_session'
  }
  if (m.includes('serviceunknown') || m.includes('was not provided by any') || m.includes('no secret service provider')) return 'no_provider'
  if (m.includes('locked') || m.includes('prompt') || m.includes('dismissed')) return 'locked'
  return 'error'
}

/** What to do about it, said once for status, getAuth and the log (docs/keyring.md#problems). */
export function keyringUnreachable(cause: KeyringCause, detail: string, fallback: boolean): Problem {
  const what: Record<KeyringCause, string> = {
    no_session:
      'no D-Bus session bus: check DBUS_SESSION_BUS_ADDRESS (under systemd the unit needs DBUS_SESSION_BUS_ADDRESS=unix:path=%t/bus; run `codex-authd service install --force` to rewrite it)',
    no_provider: 'no Secret Service answers on the session bus: start one (gnome-keyring-daemon --start --components=secrets, or KeePassXC with Secret Service enabled)',
    timeout: 'the Secret Service did not answer in time: it may be locked behind a prompt or frozen; unlock the keyring (e.g. log in to the desktop) or restart gnome-keyring-daemon',
    locked: 'the keyring is locked: unlock it (log in to the desktop, or `gnome-keyring-daemon --unlock`)',
    binding_missing: 'the keyring binding (@napi-rs/keyring) cannot be loaded on this platform: reinstall codex-authd with its optional dependencies (npm install without --omit=optional)',
    error: 'the Secret Service refused the call',
  }
  const tail = fallback ? '; using auth.json, as Codex does with cli_auth_credentials_store = "auto"' : ''
  return {
    code: 'keyring_unreachable',
    message: `the keyring cannot be used (${cause}): ${what[cause]} [${detail}]${tail}`,
    file: KEYRING_PLACE,
    line: null,
    column: null,
    details: { cause },
  }
}
