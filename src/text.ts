// Text that came from outside (id_token claims, config.toml, file contents, another process's
// name) on its way to a person: the characters a terminal or a reader could be fooled by, and the
// one way each place escapes or cuts them. Shared by the daemon (config values quoted in problem
// messages, values it refuses to write) and the client (every human line codex-auth prints).

/**
 * Characters never shown raw: C0 controls (ESC starts terminal sequences; a newline would forge a
 * line), DEL, C1 controls (U+0080–U+009F; some terminals act on them), the bidirectional marks,
 * embeddings, overrides and isolates (they reorder what is displayed, "Trojan Source"), the line
 * and paragraph separators, and UTF-16 surrogates standing alone (not text at all: they cannot
 * be written as UTF-8, and serde_json, which Codex reads with, refuses them).
 */
const UNSAFE =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g
/** The same class without `g`: `test` keeps no state between calls. */
const ANY_UNSAFE = new RegExp(UNSAFE.source)
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

function escapeOne(c: string): string {
  const named = NAMED[c]
  if (named !== undefined) return named
  const code = c.charCodeAt(0)
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
}

/**
 * The text with every unsafe character written as a visible escape (`\x1b`, `\n`, `\u202e`):
 * what codex-auth prints for a person. Everything else, other scripts and emoji included, stays.
 */
export function escapeControls(s: string): string {
  return s.replace(UNSAFE, escapeOne)
}

/** Whether the text holds a character `escapeControls` would escape. */
export function hasUnsafeChars(s: string): boolean {
  return ANY_UNSAFE.test(s)
}

/** Whether the string holds a surrogate standing alone: UTF-8 and serde_json cannot carry it. */
export function hasLoneSurrogate(s: string): boolean {
  return LONE_SURROGATE.test(s)
}

/** How many characters of an outside value a message quotes. */
export const QUOTE_MAX_CHARS = 80

/** The first `max` characters (code points: a pair is never split) and "…" when it was longer. */
export function clip(s: string, max: number = QUOTE_MAX_CHARS): string {
  if (s.length <= max) return s
  const chars = Array.from(s)
  return chars.length <= max ? s : `${chars.slice(0, max).join('')}…`
}

/**
 * A string value as a message quotes it: JSON-quoted, cut to QUOTE_MAX_CHARS characters, the
 * unsafe characters JSON leaves raw (C1, bidi) escaped too. A 10 KB config value costs a
 * status message, an authChanged notification and a log line about 90 characters.
 */
export function quoteValue(s: string): string {
  const cut = clip(s)
  // The "…" goes inside the quotes, so that it reads as "the value went on".
  const quoted = cut === s ? JSON.stringify(s) : `${JSON.stringify(cut.slice(0, -1)).slice(0, -1)}…"`
  return escapeControls(quoted)
}

/**
 * JSON for a terminal: the same JSON value, with the unsafe characters JSON.stringify leaves raw
 * (C1, bidi, separators) written as `\uXXXX`. Outside strings JSON text has only ASCII, so
 * only the layout's own newlines are kept as they are.
 */
export function jsonForTerminal(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(UNSAFE, (c) => (c === '\n' ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))
}
