// Shared by the broker tests with the REAL Codex CLI 0.171.0 (test/broker-codex-*.test.ts): one
// provider (rotating refresh tokens; reuse revokes the grant) and one Codex world per file, a
// logged-in home whose access token the backend stand-in answers 401, and its daemon. Codex runs
// through `codex-auth exec` (the wrap), so the broker listener is inside Codex's namespace.
import fs from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import { parseAuthFile } from '../../src/codex/authfile.js'
import { CLI_BIN, connect } from './daemon.js'
import { mintTokens, startProvider, type TestProvider, type TokenCall } from './provider.js'
import { authFileFor, CODEX_UA, codexDaemon, codexHome, startCodexWorld, tokenId, writeAuthJson, type CodexRun, type CodexWorld } from './codex.js'

export const EXEC = ['exec', '--skip-git-repo-check', 'hi']
export const isRefresh = (c: TokenCall): boolean => c.endpoint === 'token' && c.grantType === 'refresh_token'

export interface BrokerCodex {
  provider: TestProvider
  world: CodexWorld
  refreshes(): number
  codexRefreshes(): number
  reused(): number
  /** What the provider saw, for failure messages: never tokens. */
  callSummary(): string
  /**
   * A logged-in home whose access token the stand-in rejects, its daemon, a connection, and the exec
   * wrap. `accessTtlSec` sets the minted access token's lifetime (default: the provider's hour).
   */
  rejectedLogin(t: Test, opts?: { accessTtlSec?: number; socket?: string }): Promise<{ home: string; minted: Awaited<ReturnType<typeof mintTokens>>; d: Awaited<ReturnType<typeof codexDaemon>>; c: Awaited<ReturnType<typeof connect>>; wrap: string[] }>
  close(): Promise<void>
}

export async function startBrokerCodex(): Promise<BrokerCodex> {
  const provider = await startProvider({ ttl: { authorizationCode: 3600, refreshToken: 3600 } })
  const world = await startCodexWorld(provider)
  let mints: Promise<unknown> = Promise.resolve()
  return {
    provider,
    world,
    refreshes: () => provider.countCalls(isRefresh),
    codexRefreshes: () => provider.countCalls((c) => isRefresh(c) && CODEX_UA.test(c.userAgent)),
    reused: () => provider.countCalls((c) => c.refreshTokenReuse === true),
    callSummary: () =>
      provider.calls
        .map((c) => `${c.endpoint} ${c.grantType ?? ''} ${c.refreshReason ?? ''} ${c.userAgent.split(' ')[0]} -> ${c.status}${c.error ? ` ${c.error}` : ''}${c.refreshTokenReuse ? ' REUSED' : ''}`)
        .join('\n'),
    async rejectedLogin(t, opts = {}) {
      const home = await codexHome(world)
      // setTtl is the provider's: serialise the mints so parallel set-ups cannot mix lifetimes.
      const mint = mints.then(async () => {
        if (opts.accessTtlSec === undefined) return mintTokens(provider)
        provider.setTtl({ authorizationCode: opts.accessTtlSec })
        try {
          return await mintTokens(provider)
        } finally {
          provider.setTtl({ authorizationCode: 3600 })
        }
      })
      mints = mint.catch(() => undefined)
      const minted = await mint
      writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) }))
      world.stub.rejected.add(tokenId(minted.accessToken))
      if (opts.accessTtlSec === undefined) provider.resetCalls()
      const d = await codexDaemon(t, world, home, opts.socket)
      const c = await connect(t, d)
      return { home, minted, d, c, wrap: [process.execPath, CLI_BIN, '--socket', d.socket, 'exec', '--'] }
    },
    async close() {
      await world.close()
      await provider.stop()
    },
  }
}

export function fileTokens(home: string) {
  const parsed = parseAuthFile(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'), 'auth.json')
  if (!parsed.ok || parsed.auth.tokens === null) throw new Error('auth.json is not a ChatGPT file')
  return parsed.auth.tokens
}

export { shown } from './codex.js'
