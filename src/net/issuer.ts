// Where the OAuth endpoints are (docs/contract.md#codex-authd, --issuer-kind). Kind `openai` derives
// every URL from the issuer as Codex does and makes no discovery request; kind `oidc` discovers them.
import type { Configuration } from 'openid-client'
import { proxiedFetchFor } from './http.js'

export type IssuerKind = 'openai' | 'oidc'

/**
 * The `originator` header and authorize parameter of every OAuth request (refresh, code exchange,
 * device flow, revocation, the authorize URL): Codex's rule, CODEX_INTERNAL_ORIGINATOR_OVERRIDE
 * else codex_cli_rs (docs/codex-compat.md#refresh-request).
 */
export function originator(env: NodeJS.ProcessEnv): string {
  return env.CODEX_INTERNAL_ORIGINATOR_OVERRIDE || 'codex_cli_rs'
}

export interface IssuerConfig {
  issuer: string
  kind: IssuerKind
  clientId: string
}

export interface OpenAiEndpoints {
  authorize: string
  token: string
  /** Refresh goes here: Codex's CODEX_REFRESH_TOKEN_URL_OVERRIDE, else the token endpoint. */
  refresh: string
  revoke: string
  deviceUserCode: string
  deviceToken: string
  deviceCallback: string
  deviceVerification: string
}

/** Codex's URLs for an issuer; the two override variables behave as in Codex (docs/codex-compat.md#environment-overrides). */
export function openAiEndpoints(issuer: string, env: NodeJS.ProcessEnv): OpenAiEndpoints {
  const base = issuer.replace(/\/+$/, '')
  const refreshOverride = env.CODEX_REFRESH_TOKEN_URL_OVERRIDE || null
  let revoke = `${base}/oauth/revoke`
  if (env.CODEX_REVOKE_TOKEN_URL_OVERRIDE) revoke = env.CODEX_REVOKE_TOKEN_URL_OVERRIDE
  else if (refreshOverride !== null) {
    // Codex keeps the override's origin, replaces the path and drops the query.
    try {
      revoke = `${new URL(refreshOverride).origin}/oauth/revoke`
    } catch {
      // an unparsable override: keep the issuer's
    }
  }
  return {
    authorize: `${base}/oauth/authorize`,
    token: `${base}/oauth/token`,
    refresh: refreshOverride ?? `${base}/oauth/token`,
    revoke,
    deviceUserCode: `${base}/api/accounts/deviceauth/usercode`,
    deviceToken: `${base}/api/accounts/deviceauth/token`,
    deviceCallback: `${base}/deviceauth/callback`,
    deviceVerification: `${base}/codex/device`,
  }
}

/**
 * openid-client's view of the issuer. Kind `openai` gets a static server description (no
 * discovery request, as Codex makes none); kind `oidc` discovers. `tap` sees every raw answer.
 */
export async function oidcConfiguration(
  cfg: IssuerConfig,
  env: NodeJS.ProcessEnv,
  tap?: (status: number, text: string) => void,
): Promise<Configuration> {
  const client = await import('openid-client')
  const customFetch = proxiedFetchFor(tap) as unknown as typeof fetch
  const insecure = new URL(cfg.issuer).protocol === 'http:'
  let config: Configuration
  if (cfg.kind === 'openai') {
    const e = openAiEndpoints(cfg.issuer, env)
    config = new client.Configuration(
      {
        issuer: cfg.issuer,
        authorization_endpoint: e.authorize,
        token_endpoint: e.token,
        revocation_endpoint: e.revoke,
      },
      cfg.clientId,
      undefined,
      client.None(),
    )
    if (insecure) client.allowInsecureRequests(config)
  } else {
    config = await client.discovery(new URL(cfg.issuer), cfg.clientId, undefined, client.None(), {
      execute: insecure ? [client.allowInsecureRequests] : [],
      [client.customFetch]: customFetch,
    })
  }
  config[client.customFetch] = customFetch
  return config
}
