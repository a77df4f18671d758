// auth.json as Codex 0.171 reads and writes it (docs/codex-compat.md#file-format, #what-codex-rejects). Pure: the
// caller reads and writes the bytes. Problems never quote secret values: only key names, JSON
// types and positions.
import { isCodexValidIdToken } from './jwt.js'
import { describeNode, JsonSyntaxError, lineColumn, parseJson, setOwn, toPlain, type JsonNode } from './json-reader.js'
import type { AuthFile, Problem, TokenData } from '../types.js'
import { hasLoneSurrogate, hasUnsafeChars } from '../text.js'

/** How problems place a position (serde_json's line and column); kept here for existing importers. */
export { lineColumn }

export type AuthFileParse = { ok: true; auth: AuthFile } | { ok: false; problem: Problem }

/** `auth_mode` values Codex 0.171 deserializes; any other string makes it reject the file. */
export const CODEX_AUTH_MODES: readonly string[] = Object.freeze([
  'apikey',
  'chatgpt',
  'chatgptAuthTokens',
  'headers',
  'agentIdentity',
  'personalAccessToken',
  'bedrockApiKey',
  'bedrockAccessKeys',
])

// ---------------------------------------------------------------------------------------------
// Validation, field by field as serde derives it for Codex's AuthDotJson / TokenData.

class Invalid extends Error {
  readonly code = 'auth_invalid'
  constructor(
    readonly reason: string,
    readonly offset: number | null,
  ) {
    super(reason)
  }
}

/**
 * RFC 3339 as chrono's `DateTime<Utc>` deserializer accepts it: `T`, `t` or a space between date
 * and time, optional fraction, `Z`/`z` or a numeric offset. Ranges are checked, leap second allowed.
 */
export function isRfc3339(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):?(\d{2}))$/.exec(s)
  if (!m) return false
  const [y, mo, d, h, mi, se, oh, om] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x))) as number[]
  if (mo! < 1 || mo! > 12 || d! < 1 || h! > 23 || mi! > 59 || se! > 60 || oh! > 23 || om! > 59) return false
  const daysInMonth = new Date(Date.UTC(y!, mo!, 0)).getUTCDate()
  return d! <= daysInMonth
}

const SAFE_ENUM_TEXT = /^[A-Za-z0-9_.-]{1,40}$/

function optString(node: JsonNode, name: string): string | null {
  if (node.kind === 'null') return null
  if (node.kind === 'string') return node.value
  throw new Invalid(`${name} must be a string or null, found ${describeNode(node)}`, node.end)
}

function reqString(node: JsonNode, name: string): string {
  if (node.kind === 'string') return node.value
  throw new Invalid(`${name} must be a string, found ${describeNode(node)}`, node.end)
}

function checkDuplicate(seen: Set<string>, key: string, known: readonly string[], name: string, offset: number): void {
  if (!known.includes(key)) return
  if (seen.has(key)) throw new Invalid(`duplicate key ${name}${key}`, offset)
  seen.add(key)
}

const TOKEN_KEYS = ['id_token', 'access_token', 'refresh_token', 'account_id'] as const

function parseTokens(node: JsonNode): TokenData | null {
  if (node.kind === 'null') return null
  if (node.kind !== 'object') throw new Invalid(`tokens must be an object or null, found ${describeNode(node)}`, node.end)
  const seen = new Set<string>()
  let idToken: string | undefined
  let accessToken: string | undefined
  let refreshToken: string | undefined
  let accountId: string | null = null
  const extra: Record<string, unknown> = {}
  for (const e of node.entries) {
    checkDuplicate(seen, e.key, TOKEN_KEYS, 'tokens.', e.keyEnd)
    switch (e.key) {
      case 'id_token':
        idToken = reqString(e.value, 'tokens.id_token')
        if (!isCodexValidIdToken(idToken)) {
          throw new Invalid(
            'tokens.id_token is not a JWT Codex accepts (three non-empty dot-separated parts with a base64url JSON-object payload)',
            e.value.end,
          )
        }
        break
      case 'access_token':
        accessToken = reqString(e.value, 'tokens.access_token')
        break
      case 'refresh_token':
        refreshToken = reqString(e.value, 'tokens.refresh_token')
        break
      case 'account_id':
        accountId = optString(e.value, 'tokens.account_id')
        break
      default:
        setOwn(extra, e.key, toPlain(e.value))
    }
  }
  // serde reports missing fields at the end of the object, in declaration order.
  if (idToken === undefined) throw new Invalid('tokens.id_token is missing', node.end)
  if (accessToken === undefined) throw new Invalid('tokens.access_token is missing', node.end)
  if (refreshToken === undefined) throw new Invalid('tokens.refresh_token is missing', node.end)
  return { idToken, accessToken, refreshToken, accountId, extra }
}

const TOP_KEYS = ['auth_mode', 'OPENAI_API_KEY', 'tokens', 'last_refresh'] as const

function parseTop(node: JsonNode): AuthFile {
  if (node.kind !== 'object') throw new Invalid(`the top level must be a JSON object, found ${describeNode(node)}`, node.start)
  const seen = new Set<string>()
  const auth: AuthFile = { authMode: null, openaiApiKey: null, tokens: null, lastRefresh: null, extra: {} }
  for (const e of node.entries) {
    checkDuplicate(seen, e.key, TOP_KEYS, '', e.keyEnd)
    switch (e.key) {
      case 'auth_mode': {
        const mode = optString(e.value, 'auth_mode')
        if (mode !== null && !CODEX_AUTH_MODES.includes(mode)) {
          const shown = SAFE_ENUM_TEXT.test(mode) ? ` "${mode}"` : ''
          throw new Invalid(`unknown auth_mode value${shown} (Codex knows ${CODEX_AUTH_MODES.join(', ')})`, e.value.end)
        }
        auth.authMode = mode
        break
      }
      case 'OPENAI_API_KEY':
        auth.openaiApiKey = optString(e.value, 'OPENAI_API_KEY')
        break
      case 'tokens':
        auth.tokens = parseTokens(e.value)
        break
      case 'last_refresh': {
        const v = optString(e.value, 'last_refresh')
        if (v !== null && !isRfc3339(v)) {
          throw new Invalid('last_refresh is not an RFC 3339 timestamp (like 2026-11-26T13:40:37.393253877Z)', e.value.end)
        }
        auth.lastRefresh = v
        break
      }
      default:
        setOwn(auth.extra, e.key, toPlain(e.value))
    }
  }
  return auth
}

/**
 * Parses auth.json exactly as strictly as Codex 0.171 (docs/codex-compat.md#what-codex-rejects): what Codex rejects is
 * `auth_unreadable`, what it accepts parses, unknown keys are kept in `extra`.
 */
export function parseAuthFile(text: string, file: string): AuthFileParse {
  const problem = (reason: string, offset: number | null): AuthFileParse => {
    const pos = offset === null ? null : lineColumn(text, offset)
    const where = pos ? ` at line ${pos.line} column ${pos.column}` : ''
    return {
      ok: false,
      problem: {
        code: 'auth_unreadable',
        message: `${file} is not credential JSON Codex accepts: ${reason}${where}`,
        file,
        line: pos?.line ?? null,
        column: pos?.column ?? null,
      },
    }
  }
  if (text.trim() === '') return problem('the file is empty', null)
  let root: JsonNode
  try {
    root = parseJson(text)
  } catch (err) {
    if (err instanceof JsonSyntaxError) return problem(`invalid JSON (${err.message})`, err.offset)
    throw err
  }
  try {
    return { ok: true, auth: parseTop(root) }
  } catch (err) {
    if (err instanceof Invalid) return problem(err.reason, err.offset)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Writing: serde_json::to_string_pretty of Codex's struct, plus the unknown keys we keep.

function indentJson(value: unknown, indent: string): string {
  return JSON.stringify(value, null, 2).replace(/\n/g, `\n${indent}`)
}

function writeObject(entries: [string, unknown][], indent: string): string {
  const kept = entries.filter(([, v]) => v !== undefined)
  if (kept.length === 0) return '{}'
  const inner = indent + '  '
  const body = kept.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${v instanceof RawObject ? v.text : indentJson(v, inner)}`)
  return `{\n${body.join(',\n')}\n${indent}}`
}

/** An already-written nested object, so writeObject keeps our key order instead of JS's. */
class RawObject {
  constructor(readonly text: string) {}
}

/**
 * auth.json in Codex 0.171's format: 2-space indent, no trailing newline, keys `auth_mode`
 * (omitted when null), `OPENAI_API_KEY` (always), `tokens` (omitted when null; `account_id`
 * always written, as null when absent, since Codex has no skip_serializing_if on it),
 * `last_refresh` (omitted when null), then unknown keys in file order (Codex would drop these).
 */
export function serializeAuthFile(auth: AuthFile): string {
  const top: [string, unknown][] = []
  if (auth.authMode !== null) top.push(['auth_mode', auth.authMode])
  top.push(['OPENAI_API_KEY', auth.openaiApiKey])
  if (auth.tokens !== null) {
    const t = auth.tokens
    const tokenEntries: [string, unknown][] = [
      ['id_token', t.idToken],
      ['access_token', t.accessToken],
      ['refresh_token', t.refreshToken],
      ['account_id', t.accountId],
    ]
    for (const [k, v] of Object.entries(t.extra)) {
      if (!(TOKEN_KEYS as readonly string[]).includes(k)) tokenEntries.push([k, v])
    }
    top.push(['tokens', new RawObject(writeObject(tokenEntries, '  '))])
  }
  if (auth.lastRefresh !== null) top.push(['last_refresh', auth.lastRefresh])
  for (const [k, v] of Object.entries(auth.extra)) {
    if (!(TOP_KEYS as readonly string[]).includes(k)) top.push([k, v])
  }
  return writeObject(top, '')
}

/**
 * `last_refresh` as Codex writes it: UTC, `Z`, nine fractional digits. `nanos` (0..999999999)
 * replaces the sub-second part of `date` when the caller has a finer clock.
 */
export function formatLastRefresh(date: Date, nanos?: number): string {
  const iso = date.toISOString() // YYYY-MM-DDTHH:MM:SS.sssZ
  const sub = nanos ?? date.getUTCMilliseconds() * 1_000_000
  const frac = String(Math.max(0, Math.min(999_999_999, Math.trunc(sub)))).padStart(9, '0')
  return iso.replace(/\.\d{3}Z$/, `.${frac}Z`)
}

/**
 * "Changed" as Codex's compare under auth.lock means it (docs/codex-compat.md#locks): a different
 * access or refresh token (no tokens on both sides = same).
 */
export function sameCredentials(a: AuthFile | null, b: AuthFile | null): boolean {
  const ta = a?.tokens ?? null
  const tb = b?.tokens ?? null
  if (ta === null || tb === null) return ta === tb
  return ta.accessToken === tb.accessToken && ta.refreshToken === tb.refreshToken
}

// ---------------------------------------------------------------------------------------------
// Before writing: nothing goes into auth.json that Codex or the daemon could not read back.

/** Why a value may not be written, naming the auth.json field (never quoting the value). */
export interface UnwritableValue {
  field: string
  reason: string
}

/** A string Codex reads with serde_json must be valid UTF-8 once written: no lone surrogate. */
function stringProblem(field: string, v: string | null): UnwritableValue | null {
  if (v !== null && hasLoneSurrogate(v)) return { field, reason: `${field} holds a lone UTF-16 surrogate, which UTF-8 (and so Codex) cannot represent` }
  return null
}

/**
 * The first value of `auth` that Codex or the daemon could not read back once written, or null:
 * a lone surrogate in any string (serde_json refuses it), a control or bidi character in the API
 * key (it goes into an HTTP header; no key holds one), an id_token Codex would reject, and, as the
 * last word, the written text parsed back exactly as Codex parses it must give the same values.
 */
export function unwritableValue(auth: AuthFile): UnwritableValue | null {
  const key = auth.openaiApiKey
  if (key !== null && hasUnsafeChars(key)) {
    return { field: 'OPENAI_API_KEY', reason: 'OPENAI_API_KEY holds a control character, a bidi mark or a lone surrogate; Codex could not read or send it' }
  }
  const t = auth.tokens
  const problem =
    stringProblem('auth_mode', auth.authMode) ??
    stringProblem('last_refresh', auth.lastRefresh) ??
    (t === null
      ? null
      : (stringProblem('tokens.id_token', t.idToken) ??
        stringProblem('tokens.access_token', t.accessToken) ??
        stringProblem('tokens.refresh_token', t.refreshToken) ??
        stringProblem('tokens.account_id', t.accountId)))
  if (problem !== null) return problem
  if (t !== null && !isCodexValidIdToken(t.idToken)) {
    return { field: 'tokens.id_token', reason: 'tokens.id_token is not a JWT whose claims Codex can read' }
  }
  const back = parseAuthFile(serializeAuthFile(auth), 'auth.json')
  if (!back.ok) return { field: 'auth.json', reason: `the file would not read back: ${back.problem.message}` }
  const same =
    back.auth.authMode === auth.authMode &&
    back.auth.openaiApiKey === auth.openaiApiKey &&
    back.auth.lastRefresh === auth.lastRefresh &&
    sameTokens(back.auth.tokens, t)
  return same ? null : { field: 'auth.json', reason: 'the file would not read back with the same values' }
}

function sameTokens(a: TokenData | null, b: TokenData | null): boolean {
  if (a === null || b === null) return a === b
  return a.idToken === b.idToken && a.accessToken === b.accessToken && a.refreshToken === b.refreshToken && a.accountId === b.accountId
}
