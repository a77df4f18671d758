// Shared by the refresher's end-to-end files (refresh-e2e, refresh-failures): a provider of the
// test's own recording every answer, auth.json written as Codex writes it, and a daemon on it.
// No token is ever printed: token comparisons use t.ok(a === b), never t.equal.
import type { Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { formatLastRefresh, serializeAuthFile } from '../../src/codex/authfile.js'
import { readAuth } from '../../src/store/authstore.js'
import type { AuthFile } from '../../src/types.js'
import { makeHome, startDaemon, stopAtTeardown, type RunningDaemon } from './daemon.js'
import { mintTokens, startProvider, type EndpointAnswer, type ProviderOptions, type TestProvider, type TokenSet } from './provider.js'
import type { RawConnection } from './rpc.js'
import { until } from './until.js'

export interface World {
  provider: TestProvider
  /** every answer the token endpoint sent */
  answers: EndpointAnswer[]
}

/** A provider of this test's own, stopped at teardown, recording every answer. */
export async function provider(t: Test, opts: ProviderOptions = {}): Promise<World> {
  const answers: EndpointAnswer[] = []
  const p = await startProvider({ ...opts, onAnswer: (a) => answers.push(a) })
  t.teardown(() => p.stop())
  return { provider: p, answers }
}

/** The token sets of the successful refresh answers, in order. */
export function refreshAnswers(w: World): Array<{ access_token: string; refresh_token: string; id_token: string }> {
  return w.answers
    .filter((a) => a.call.grantType === 'refresh_token' && a.status === 200 && !a.call.injected)
    .map((a) => JSON.parse(a.body) as { access_token: string; refresh_token: string; id_token: string })
}

export const refreshCalls = (p: TestProvider): number => p.countCalls({ endpoint: 'token', grantType: 'refresh_token' })

/** auth.json as Codex writes it, for a minted token set. */
export function authFileFor(tokens: TokenSet, lastRefresh: Date | null = new Date(Date.now() - 60_000)): AuthFile {
  return {
    authMode: 'chatgpt',
    openaiApiKey: null,
    tokens: { idToken: tokens.idToken, accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, accountId: tokens.accountId, extra: {} },
    lastRefresh: lastRefresh === null ? null : formatLastRefresh(lastRefresh),
    extra: {},
  }
}

/** Write auth.json the way Codex does: temp file 0600, rename. Returns the bytes written. */
export function writeAuthFile(home: string, auth: AuthFile): Buffer {
  const text = serializeAuthFile(auth)
  const file = path.join(home, 'auth.json')
  const tmp = path.join(home, `.auth-test-${process.pid}-${Math.random().toString(36).slice(2)}`)
  fs.writeFileSync(tmp, text, { mode: 0o600 })
  fs.renameSync(tmp, file)
  return fs.readFileSync(file)
}

export async function fileTokens(home: string) {
  const r = await readAuth(home)
  if (r.state !== 'ok' || r.auth.tokens === null) throw new Error(`auth.json is ${r.state}`)
  return r.auth.tokens
}

export function daemonArgs(p: TestProvider, kind: 'openai' | 'oidc' = 'openai'): string[] {
  return ['--issuer', p.issuer, '--issuer-kind', kind]
}

export async function daemon(t: Test, home: string, p: TestProvider, opts: { kind?: 'openai' | 'oidc'; env?: Record<string, string>; socket?: string } = {}): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ home, socket: opts.socket, args: daemonArgs(p, opts.kind), env: opts.env }))
}


/** A provider of this test's own and a login minted there, written to a fresh CODEX_HOME as Codex writes it. */
export async function loggedIn(t: Test, ttl: ProviderOptions['ttl'], lastRefresh?: Date): Promise<{ w: World; p: TestProvider; minted: TokenSet; home: string; bytes: Buffer }> {
  const w = await provider(t, { ttl })
  const p = w.provider
  const minted = await mintTokens(p)
  const home = await makeHome()
  const bytes = writeAuthFile(home, authFileFor(minted, lastRefresh))
  return { w, p, minted, home, bytes }
}

/** Polls until auth.json's refresh token is no longer `spent`; resolves with the file's tokens. */
export function rotatedInFile(what: string, home: string, spent: string, timeoutMs?: number): ReturnType<typeof fileTokens> {
  return until(what, async () => {
    const f = await fileTokens(home)
    return f.refreshToken !== spent ? f : null
  }, timeoutMs)
}

export async function status(c: RawConnection): Promise<any> {
  const res = await c.call('status')
  if (res.error) throw new Error(`status failed: ${JSON.stringify(res.error)}`)
  return res.result
}

/** A stripped summary of an answer, safe to print (no token). */
export function shape(res: any): string {
  if (res?.error) return `error ${res.error.code} ${JSON.stringify(res.error.data ?? {})}`
  return `result mode=${res?.result?.mode}`
}

