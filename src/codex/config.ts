// The auth settings of config.toml plus Codex-style `-c key=value` overrides (docs/codex-compat.md#configuration).
// Pure: the caller reads the file. config.toml holds no secrets, so messages may quote it, cut to a
// sane length (text.ts quoteValue).
import { parse as parseToml, TomlError } from 'smol-toml'
import { DEFAULT_SETTINGS } from '../types.js'
import { clip, quoteValue } from '../text.js'
import type { CredentialsStore, ForcedLoginMethod, PreferredAuthMethod, Problem, Settings, SettingsResult } from '../types.js'

/** One `-c key=value`: `path` is the dotted key split on `.`, `value` the parsed TOML value. */
export interface ConfigOverride {
  path: string[]
  value: unknown
  raw: string
}

export class ConfigOverrideError extends Error {
  readonly code = 'config_override_invalid'
  constructor(message: string) {
    super(message)
    this.name = 'ConfigOverrideError'
  }
}

/** What `Problem.file` says for a value that came from a `-c` override. */
export const OVERRIDE_SOURCE = '-c'

/**
 * Parses `-c key=value` as Codex does (common/src/config_override.rs): split on the first `=`,
 * trim both halves, parse the value as TOML (`_x_ = <value>`), else keep the trimmed text as a
 * string (so `-c preferred_auth_method=apikey` works without quotes).
 */
export function parseConfigOverride(arg: string): ConfigOverride {
  const eq = arg.indexOf('=')
  if (eq < 0) throw new ConfigOverrideError(`Invalid override (missing '='): ${arg}`)
  const key = arg.slice(0, eq).trim()
  const valueText = arg.slice(eq + 1).trim()
  if (key === '') throw new ConfigOverrideError(`Empty key in override: ${arg}`)
  let value: unknown
  try {
    const table = parseToml(`_x_ = ${valueText}`)
    value = Object.hasOwn(table, '_x_') ? table._x_ : valueText
  } catch {
    value = valueText
  }
  return { path: key.split('.'), value, raw: arg }
}

type Tree = Record<string, unknown>

function isTable(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)
}

function setOwn(obj: Tree, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
}

/** Codex's apply_single_override: creates (or replaces non-table) intermediates as needed. */
export function applyOverride(root: Tree, path: readonly string[], value: unknown): void {
  let current = root
  path.forEach((part, i) => {
    if (i === path.length - 1) {
      setOwn(current, part, value)
      return
    }
    let next = Object.hasOwn(current, part) ? current[part] : undefined
    if (!isTable(next)) {
      next = {}
      setOwn(current, part, next)
    }
    current = next as Tree
  })
}

/** First line and value column of a top-level `key = value` (before any `[table]` header). */
function findKey(text: string, key: string): { line: number; column: number } | null {
  const lines = text.split('\n')
  const re = new RegExp(`^(\\s*(?:${key}|"${key}"|'${key}')\\s*=\\s*)`)
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i] as string
    if (/^\s*\[/.test(l)) return null
    const m = re.exec(l)
    if (m) return { line: i + 1, column: (m[1] as string).length + 1 }
  }
  return null
}

const KEYS = {
  preferred: 'preferred_auth_method',
  forced: 'forced_login_method',
  workspace: 'forced_chatgpt_workspace_id',
  store: 'cli_auth_credentials_store',
} as const

/**
 * Settings from config.toml text (null when the file is absent) and overrides. Never throws: a
 * broken file means defaults (overrides still apply), a bad value means that key's default.
 */
export function resolveSettings(tomlText: string | null, file: string, overrides: ConfigOverride[]): SettingsResult {
  const problems: Problem[] = []
  let tree: Tree = {}
  if (tomlText !== null) {
    try {
      tree = parseToml(tomlText, { integersAsBigInt: 'asNeeded' }) as Tree
    } catch (err) {
      if (!(err instanceof TomlError)) throw err
      const reason = clip(err.message.split('\n\n')[0] ?? err.message, 200)
      problems.push({
        code: 'config_invalid',
        message: `${file} could not be parsed (${reason} at line ${err.line} column ${err.column}); using defaults`,
        file,
        line: err.line,
        column: err.column,
      })
      tree = {}
    }
  }
  for (const o of overrides) applyOverride(tree, o.path, o.value)

  const overridden = (key: string): boolean => overrides.some((o) => o.path[0] === key)
  const present = (key: string): boolean => Object.hasOwn(tree, key)
  const invalid = (key: string, expected: string, fallback: string): void => {
    const fromOverride = overridden(key)
    const pos = !fromOverride && tomlText !== null ? findKey(tomlText, key) : null
    const v = tree[key]
    // Quoted cut to a sane length: the message goes into status, authChanged and the log.
    const shown = typeof v === 'string' ? quoteValue(v) : isTable(v) ? 'a table' : Array.isArray(v) ? 'an array' : clip(String(v))
    problems.push({
      code: 'config_invalid',
      message: `${key} = ${shown} is not valid (expected ${expected}${fromOverride ? ', from -c' : ''}); using ${fallback}`,
      file: fromOverride ? OVERRIDE_SOURCE : file,
      line: pos?.line ?? null,
      column: pos?.column ?? null,
    })
  }
  const where = (key: string): Pick<Problem, 'file' | 'line' | 'column'> => {
    if (overridden(key)) return { file: OVERRIDE_SOURCE, line: null, column: null }
    const pos = tomlText !== null ? findKey(tomlText, key) : null
    return { file, line: pos?.line ?? null, column: pos?.column ?? null }
  }

  const settings: Settings = { ...DEFAULT_SETTINGS }

  if (present(KEYS.preferred)) {
    const v = tree[KEYS.preferred]
    if (v === 'chatgpt' || v === 'apikey') settings.preferredAuthMethod = v as PreferredAuthMethod
    else invalid(KEYS.preferred, '"chatgpt" or "apikey"', `"${DEFAULT_SETTINGS.preferredAuthMethod}"`)
  }

  if (present(KEYS.forced)) {
    const v = tree[KEYS.forced]
    if (v === 'chatgpt' || v === 'api') settings.forcedLoginMethod = v as ForcedLoginMethod
    else invalid(KEYS.forced, '"chatgpt" or "api"', 'no forced method')
  }

  if (present(KEYS.workspace)) {
    const v = tree[KEYS.workspace]
    if (typeof v === 'string') settings.forcedChatgptWorkspaceIds = [v]
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) settings.forcedChatgptWorkspaceIds = [...(v as string[])]
    else invalid(KEYS.workspace, 'a string or a list of strings', 'no workspace restriction')
  }

  if (present(KEYS.store)) {
    const v = tree[KEYS.store]
    if (v === 'file' || v === 'keyring' || v === 'auto' || v === 'ephemeral') {
      settings.credentialsStore = v as CredentialsStore
      if (v === 'ephemeral') problems.push({ code: 'store_ephemeral', message: EPHEMERAL_MESSAGE, ...where(KEYS.store) })
    } else {
      invalid(KEYS.store, '"file", "keyring", "auto" or "ephemeral"', '"file"')
    }
  }

  return { settings, problems }
}

/**
 * `ephemeral`: credentials only inside the Codex process that logged in (docs/keyring.md); `file`,
 * `keyring` and `auto` are all served (store/credential-store.ts).
 */
export const EPHEMERAL_MESSAGE =
  'cli_auth_credentials_store = "ephemeral": the credentials live only inside the Codex process that logged in; codex-authd cannot read, share, refresh or write them (use "file", "keyring" or "auto")'
