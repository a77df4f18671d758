// Writing what a login or logout decided, under Codex's two locks (store/authstore.ts). An
// explicit login or logout may replace or remove an auth.json we cannot read (docs/watching.md#files-the-daemon-cannot-use).
// Unknown top-level fields of the old file are kept (docs/codex-compat.md#file-format: unknown fields survive our
// rewrites); everything else is exactly what Codex 0.171 writes.
import { formatLastRefresh, unwritableValue } from '../codex/authfile.js'
import { AuthWriteError, type CommitResult } from '../store/authstore.js'
import type { CredentialStore } from '../store/credential-store.js'
import type { AuthFile } from '../types.js'
import { LoginError } from './errors.js'
import type { LoginTokens } from './oauth.js'
import { describeHolder, type LockHolder } from '../os/lockholder.js'

const LOCK_TIMEOUT_MESSAGE = 'credential commit lock timed out'

/** The lock-timeout message, naming the lock and, when it can be found, the process holding it. */
export function lockTimeoutMessage(lock: string, holder: LockHolder | null): string {
  return `${LOCK_TIMEOUT_MESSAGE} (${lock}${holder !== null ? ` held by ${describeHolder(holder)}` : ''})`
}

/** The file a ChatGPT login writes: auth_mode chatgpt, OPENAI_API_KEY null, tokens, last_refresh now. */
export function chatgptAuthFile(tokens: LoginTokens, accountId: string | null, now: Date, keep: AuthFile | null): AuthFile {
  return {
    authMode: 'chatgpt',
    openaiApiKey: null,
    tokens: {
      idToken: tokens.idToken,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      accountId,
      extra: {},
    },
    lastRefresh: formatLastRefresh(now),
    extra: { ...(keep?.extra ?? {}) },
  }
}

/** The file an API-key login writes: {"auth_mode":"apikey","OPENAI_API_KEY":key} (tokens dropped). */
export function apiKeyAuthFile(apiKey: string, keep: AuthFile | null): AuthFile {
  return { authMode: 'apikey', openaiApiKey: apiKey, tokens: null, lastRefresh: null, extra: { ...(keep?.extra ?? {}) } }
}

/** A commit that could not be made, as a LoginError (store_failed); never quotes contents. */
function commitFailure(r: CommitResult): LoginError {
  if (r.outcome === 'lock_timeout') return new LoginError('store_failed', lockTimeoutMessage(r.lock, r.holder), { lock: r.lock })
  if (r.outcome === 'keyring_failed') return new LoginError('store_failed', `the login could not be saved: ${r.problem.message}`)
  return new LoginError('store_failed', 'auth.json could not be written')
}

async function commit(store: CredentialStore, build: (current: AuthFile | null) => AuthFile, lockTimeoutMs?: number): Promise<{ previous: AuthFile | null; written: AuthFile }> {
  let previous: AuthFile | null = null
  let result: CommitResult
  try {
    result = await store.commit({
      overwriteUnreadable: true,
      lockTimeoutMs,
      update: (current) => {
        previous = current
        return build(current)
      },
    })
  } catch (e) {
    if (e instanceof AuthWriteError) throw new LoginError('store_failed', `auth.json could not be written (${(e.cause as NodeJS.ErrnoException | undefined)?.code ?? 'I/O error'})`)
    throw e
  }
  if (result.outcome !== 'written') throw commitFailure(result)
  return { previous, written: result.auth }
}

/**
 * Writes a ChatGPT login; returns the file it replaced (to revoke a superseded refresh token).
 * Tokens that would not read back (docs/codex-compat.md#what-codex-rejects) fail the login before
 * any lock is taken: the file on disk, and the credential served, stay as they were.
 */
export function persistChatgptLogin(store: CredentialStore, tokens: LoginTokens, accountId: string | null, now: Date, lockTimeoutMs?: number) {
  // The fields checked are all ours; the unknown fields kept from the current file were read back already.
  const bad = unwritableValue(chatgptAuthFile(tokens, accountId, now, null))
  if (bad !== null) return Promise.reject(new LoginError('login_failed', `The issuer's answer cannot be saved so that Codex reads it back: ${bad.reason}`))
  return commit(store, (current) => chatgptAuthFile(tokens, accountId, now, current), lockTimeoutMs)
}

/** Writes an API-key login; a key Codex could not read back is `invalid_value` (field apiKey), nothing touched. */
export function persistApiKeyLogin(store: CredentialStore, apiKey: string, lockTimeoutMs?: number) {
  const bad = unwritableValue(apiKeyAuthFile(apiKey, null))
  if (bad !== null) {
    const message = 'apiKey holds a control character, a bidi mark or a lone surrogate: Codex could not read it back from auth.json; nothing was written'
    return Promise.reject(new LoginError('invalid_value', message, { field: 'apiKey' }))
  }
  return commit(store, (current) => apiKeyAuthFile(apiKey, current), lockTimeoutMs)
}

/** Logout's delete: under both locks, whatever the store holds (Codex does not compare). */
export async function removeCredential(store: CredentialStore, lockTimeoutMs?: number): Promise<{ existed: boolean }> {
  let r: CommitResult
  try {
    r = await store.commit({ overwriteUnreadable: true, lockTimeoutMs, update: () => null })
  } catch (e) {
    if (e instanceof AuthWriteError) throw new LoginError('store_failed', `auth.json could not be removed (${(e.cause as NodeJS.ErrnoException | undefined)?.code ?? 'I/O error'})`)
    throw e
  }
  if (r.outcome === 'deleted') return { existed: r.existed }
  // update always returns null: a lock timeout or an unreachable keyring is all that can come back.
  throw commitFailure(r)
}
