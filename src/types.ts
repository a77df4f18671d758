// Shared data types. Every module speaks in these; the RPC contract types (docs/contract.md) live in
// rpc/contract.ts so that the client library can import them without the daemon.

/** `problems[].code` (docs/contract.md#problems). */
export type ProblemCode =
  | 'home_invalid'
  | 'home_owned'
  | 'config_invalid'
  | 'auth_unreadable'
  | 'auth_permissions'
  | 'policy_conflict'
  | 'store_ephemeral'
  | 'keyring_unreachable'
  | 'keyring_entry_invalid'
  | 'auth_file_ignored'
  | 'mode_unsupported'
  | 'refresh_pending'

/** A reason the daemon cannot use something, shown in `status.problems`. Never holds a secret. */
export interface Problem {
  code: ProblemCode
  message: string
  file: string | null
  line: number | null
  column: number | null
  /** Only `keyring_unreachable` has details: why (docs/contract.md#problems). */
  details?: { cause: KeyringCause }
}

/** Why the keyring could not be used (`keyring_unreachable`'s `details.cause`). */
export type KeyringCause = 'no_session' | 'no_provider' | 'timeout' | 'locked' | 'binding_missing' | 'error'

export type PreferredAuthMethod = 'chatgpt' | 'apikey'
export type ForcedLoginMethod = 'chatgpt' | 'api'
export type CredentialsStore = 'file' | 'keyring' | 'auto' | 'ephemeral'

/** What config.toml plus `-c` overrides say about auth (docs/codex-compat.md#configuration). */
export interface Settings {
  preferredAuthMethod: PreferredAuthMethod
  forcedLoginMethod: ForcedLoginMethod | null
  /** `forced_chatgpt_workspace_id` as a list (a string becomes a one-element list). */
  forcedChatgptWorkspaceIds: string[] | null
  credentialsStore: CredentialsStore
}

export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  preferredAuthMethod: 'chatgpt',
  forcedLoginMethod: null,
  forcedChatgptWorkspaceIds: null,
  credentialsStore: 'file',
})

/** Result of reading config.toml and the overrides: settings always usable, problems listed. */
export interface SettingsResult {
  settings: Settings
  problems: Problem[]
}

/** `tokens` of auth.json. Unknown keys inside `tokens` are kept in `extra`, in file order. */
export interface TokenData {
  idToken: string
  accessToken: string
  refreshToken: string
  /** null when the key is absent or null in the file. */
  accountId: string | null
  extra: Record<string, unknown>
}

/**
 * auth.json as Codex 0.171 reads it, plus what Codex would drop: `extra` keeps unknown top-level
 * keys in file order so that our rewrites never lose them.
 */
export interface AuthFile {
  /** `auth_mode`; null when absent (Codex keeps it absent on rewrite). */
  authMode: string | null
  /** `OPENAI_API_KEY`; null when absent or null (always written, as null when absent). */
  openaiApiKey: string | null
  tokens: TokenData | null
  /** `last_refresh` exactly as in the file (RFC 3339), or null when absent. */
  lastRefresh: string | null
  extra: Record<string, unknown>
}

/** Claims Codex reads from the id_token (login/src/token_data.rs) and the access token. */
export interface IdTokenClaims {
  email: string | null
  planType: string | null
  userId: string | null
  accountId: string | null
}

export interface AccessTokenClaims {
  /** seconds since the epoch */
  exp: number | null
  iat: number | null
}

/** Where a stored credential was read: auth.json, or the keyring entry (docs/keyring.md). */
export type CredentialSource = 'auth.json' | 'keyring'

/** The credential the daemon serves, decided by resolve() (docs/codex-compat.md#which-credential-is-served). */
export type Resolved =
  | { kind: 'apikey'; apiKey: string; source: 'env' | CredentialSource }
  | {
      kind: 'chatgpt'
      source: CredentialSource
      tokens: TokenData
      idClaims: IdTokenClaims
      accessClaims: AccessTokenClaims
    }
  | { kind: 'none' }
  | { kind: 'forbidden'; message: string }
  | { kind: 'unsupported'; mode: string }
