// A process-wide registry of the secrets a test file handed out or saw (API keys, access, refresh and
// id tokens, authorization codes, PKCE verifiers, device codes), and a scanner that says which of
// them appear in some text: the daemon's log lines and stderr, the CLI's output (issue 7, item 7).
//
// The scanner answers with LABELS only, never the values, so a failure message never prints the
// secret it found. Registering a value that is not actually secret (a fakeJwt payload) is harmless.
//
// Scanning is linear in the text: secrets are indexed by their first PREFIX characters, and the
// text is probed once per position (thousands of tokens times megabytes of logs stay fast).
import { parseAuthFile } from '../../src/codex/authfile.js'

/** Values shorter than this are not registered: they would match ordinary text. */
export const MIN_SECRET_LENGTH = 8
const PREFIX = MIN_SECRET_LENGTH

const byValue = new Map<string, string>()
const byPrefix = new Map<string, string[]>()

/** Remember `value` as a secret called `label` ("access token", "API key", …). */
export function registerSecret(value: unknown, label: string): void {
  if (typeof value !== 'string') return
  if (value.length < MIN_SECRET_LENGTH || byValue.has(value)) return
  byValue.set(value, label)
  const p = value.slice(0, PREFIX)
  const list = byPrefix.get(p)
  if (list) list.push(value)
  else byPrefix.set(p, [value])
}

/** Registers every secret field of an auth.json text (tokens, API key); ignores a text that does not parse. */
export function registerAuthJsonSecrets(text: string, origin = 'auth.json'): void {
  const parsed = parseAuthFile(text, origin)
  if (!parsed.ok) return
  const a = parsed.auth
  registerSecret(a.openaiApiKey ?? undefined, `API key (${origin})`)
  if (a.tokens) {
    registerSecret(a.tokens.accessToken, `access token (${origin})`)
    registerSecret(a.tokens.refreshToken, `refresh token (${origin})`)
    registerSecret(a.tokens.idToken, `id token (${origin})`)
  }
}

/** Registers the tokens of a token-endpoint JSON answer (access, refresh, id token). */
export function registerTokenAnswer(body: string, origin = 'token endpoint'): void {
  let j: unknown
  try {
    j = JSON.parse(body)
  } catch {
    return
  }
  if (!j || typeof j !== 'object') return
  const o = j as Record<string, unknown>
  registerSecret(o.access_token, `access token (${origin})`)
  registerSecret(o.refresh_token, `refresh token (${origin})`)
  registerSecret(o.id_token, `id token (${origin})`)
  registerSecret(o.device_code, `device code (${origin})`)
}

/** Number of registered secrets. */
export function secretCount(): number {
  return byValue.size
}

/** How many secrets are registered under each label (never the values). */
export function registeredLabels(): Record<string, number> {
  const out: Record<string, number> = {}
  for (const l of byValue.values()) out[l] = (out[l] ?? 0) + 1
  return out
}

/** Labels of the registered secrets that occur in `text` (each once), never the values. */
export function findSecrets(text: string): string[] {
  const found = new Set<string>()
  if (byValue.size === 0 || text.length < MIN_SECRET_LENGTH) return []
  const last = text.length - PREFIX
  for (let i = 0; i <= last; i++) {
    const list = byPrefix.get(text.slice(i, i + PREFIX))
    if (list === undefined) continue
    for (const v of list) {
      if (text.startsWith(v, i)) found.add(byValue.get(v)!)
    }
  }
  return [...found]
}

/** Test-only: forget everything (the scanner's own tests). */
export function clearSecrets(): void {
  byValue.clear()
  byPrefix.clear()
}

// ------------------------------------------------------------------------------------------------
// Leak bookkeeping: every leak found anywhere in this process is kept, so that a leak nobody threw
// for (a daemon that exited by itself, a test that never stopped it) still fails the file.

export interface Leak {
  /** where: "daemon pid 123 stdout", "codex-auth status stderr" */
  where: string
  labels: string[]
  /** true once a test was failed for it (an exception reached the test) */
  reported: boolean
}

export const leaks: Leak[] = []

export function recordLeak(where: string, labels: string[], reported: boolean): Leak {
  const l = { where, labels, reported }
  leaks.push(l)
  return l
}

export class SecretLeakError extends Error {
  constructor(where: string, labels: string[]) {
    super(`secret leak: ${where} contains ${labels.join(', ')} (values not shown)`)
    this.name = 'SecretLeakError'
  }
}

/** Scan `text`; if it holds a registered secret, record it and throw SecretLeakError. */
export function assertNoSecretsIn(text: string, where: string): void {
  const labels = findSecrets(text)
  if (labels.length === 0) return
  recordLeak(where, labels, true)
  throw new SecretLeakError(where, labels)
}

process.on('exit', () => {
  const unreported = leaks.filter((l) => !l.reported)
  if (unreported.length === 0) return
  for (const l of unreported) process.stderr.write(`not ok - secret leak: ${l.where} contains ${l.labels.join(', ')} (values not shown)\n`)
  process.exitCode = 1
})
