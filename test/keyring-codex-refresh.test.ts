// Issue 15, refreshes shared with the REAL Codex CLI 0.171.0 through the Secret Service
// (docs/keyring.md#signals-what-can-be-watched, docs/refresh.md#adopting-another-writers-refresh):
//
//  - `keyring`: a ChatGPT login in the entry; the backend stand-in answers its access token with
//    401, so Codex refreshes on its own (unauthorized_recovery) and saves with SetSecret, which
//    emits no signal. A caller then needs more validity than the old token has: the daemon must
//    re-read the entry and adopt Codex's tokens, never spend the rotated refresh token again.
//  - `keyring`: the daemon's `refresh` RPC writes the entry; the next Codex sends the new access
//    token to the backend without refreshing.
//  - `auto` with a ChatGPT auth.json: Codex's refresh saves to the keyring and deletes auth.json;
//    the daemon never loses the login (getAuth answers all along) and authChanged says "keyring".
//
// The provider rotates refresh tokens and revokes the grant on reuse, so a double spend shows as
// REUSED. Codex runs in a loopback-only namespace (test/support/codex.ts) and reaches the private
// Secret Service (test/support/secret-service.ts) over its path socket. No token is printed.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, nextAuthChanged, subscribe } from './support/daemon.js'
import { mintTokens, startProvider, type EndpointAnswer, type TokenCall } from './support/provider.js'
import { authFileFor, CODEX_UA, codexHome, DAEMON_UA, requireCodex, startCodexWorld, tokenId, writeAuthJson, type CodexRun, shown } from './support/codex.js'
import { until } from './support/until.js'
import { entryAuth, entryPayload, keyringDaemon, startSecretService, useCodexStore, type SecretService } from './support/secret-service.js'

await requireCodex()

let ss: SecretService
t.before(async () => {
  ss = await startSecretService()
})
t.teardown(() => ss?.stop())

const EXEC = ['exec', '--skip-git-repo-check', 'hi']
const isRefresh = (c: TokenCall): boolean => c.endpoint === 'token' && c.grantType === 'refresh_token'

const entryTokens = async (home: string) => entryAuth(await ss.codexEntry(home)).tokens

/**
 * A provider and a Codex world of one test's own, so that the two tests run in parallel and each
 * counts only its own token-endpoint calls.
 */
async function side(t: Test) {
  const answers: EndpointAnswer[] = []
  // Logins last 15 minutes: not due for the daemon (exp − 10 min is 5 minutes away) and outside
  // Codex's 300 s window, so only a 401 makes Codex refresh. Refreshed tokens last an hour.
  const provider = await startProvider({ ttl: { authorizationCode: 900, refreshToken: 3600 }, onAnswer: (a) => answers.push(a) })
  const world = await startCodexWorld(provider)
  t.teardown(async () => {
    await world.close()
    await provider.stop()
  })
  const refreshes = (ua: RegExp): TokenCall[] => provider.calls.filter((c) => isRefresh(c) && ua.test(c.userAgent))
  return {
    provider,
    world,
    codexRefreshes: () => refreshes(CODEX_UA),
    daemonRefreshes: () => refreshes(DAEMON_UA),
    reused: (): number => provider.calls.filter((c) => c.refreshTokenReuse).length,
    /** What the provider saw, for failure messages: user agents, reasons, statuses; never tokens. */
    callSummary: (): string =>
      provider.calls
        .map((c) => `${c.endpoint} ${c.grantType ?? ''} ${c.userAgent.split(' ')[0]} ${c.refreshReason ?? ''} -> ${c.status}${c.error ? ` ${c.error}` : ''}${c.refreshTokenReuse ? ' REUSED' : ''}`)
        .join('\n'),
    /** The access tokens Codex's own refreshes were given. */
    codexRefreshedTokens: (): string[] =>
      answers
        .filter((a) => isRefresh(a.call) && CODEX_UA.test(a.call.userAgent) && a.status === 200)
        .map((a) => (JSON.parse(a.body) as { access_token: string }).access_token),
  }
}

t.jobs = 2 // a provider, a world, a home and a daemon each; only the Secret Service is shared

t.test('keyring: Codex refreshes on its own, the daemon adopts; the daemon refreshes, Codex reads the entry', async (t) => {
  const { provider, world, codexRefreshes, daemonRefreshes, reused, callSummary } = await side(t)
  const home = await codexHome(world)
  useCodexStore(home, 'keyring')
  const minted = await mintTokens(provider)
  await ss.storeCodexEntry(home, entryPayload(authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) })))
  const d = await keyringDaemon(t, world, home, ss.env)
  const c = await connect(t, d)
  const first = await c.call('getAuth')
  t.ok(first.result?.token === minted.accessToken, "getAuth serves the entry's access token", { diagnostic: first.error !== undefined, error: first.error })
  t.equal((await c.call('status')).result?.source, 'keyring', 'source "keyring"')
  provider.resetCalls()

  await t.test("Codex's 401-path refresh lands in the entry; the daemon adopts it, no second spend", async (t) => {
    world.stub.rejected.add(tokenId(minted.accessToken))
    t.teardown(() => world.stub.rejected.delete(tokenId(minted.accessToken)))
    const r = await world.codex(home, EXEC, { env: ss.env })
    // Once or twice: a second request still carrying the old token can take the 401 path again,
    // and spends the rotated token Codex saved (not a reuse).
    t.ok(codexRefreshes().length >= 1, `Codex refreshed (${codexRefreshes().length}×; codex exec exit ${r.code}, ${r.ms} ms)`, { calls: callSummary(), output: shown(r) })
    t.ok(codexRefreshes().every((c) => c.refreshReason === 'unauthorized_recovery' && c.status === 200), 'on its 401 path, answered 200', { calls: callSummary() })
    const saved = await entryTokens(home)
    t.ok(saved !== null && saved.refreshToken !== minted.refreshToken, "Codex saved its rotated tokens in the entry")
    t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'and no auth.json')

    // More validity than the old token has left (15 min): the daemon would refresh, unless it
    // re-reads the entry first and finds Codex's hour-long token. When Codex refreshed twice, the
    // daemon may have read the first of them meanwhile (also an hour long): replacing a secret
    // sends no signal, so it serves that until its next read, at most CODEX_AUTHD_KEYRING_REREAD_MS
    // (5 s) later (docs/keyring.md). Never a spend of its own either way.
    let g: Awaited<ReturnType<typeof c.call>> | undefined
    const served = await until("getAuth to serve Codex's newest token", async () => {
      g = await c.call('getAuth', { minValiditySeconds: 1200 })
      return g.error === undefined && g.result?.token === saved?.accessToken
    }, 20_000, 250).catch(() => false)
    t.equal(g?.error, undefined, 'getAuth answers', { diagnostic: g?.error !== undefined, error: g?.error })
    t.ok(served, "getAuth serves Codex's new token (within the re-read window)")
    t.equal(daemonRefreshes().length, 0, 'the daemon spent nothing', { calls: callSummary() })
    t.equal(reused(), 0, 'no refresh token spent twice')
    const st = (await c.call('status')).result
    t.equal(st?.loggedIn, true, 'status: logged in')
    t.equal(st?.refresh?.lastError, null, 'no refresh error recorded')
  })

  await t.test("the daemon's refresh RPC writes the entry; Codex uses the new token without refreshing", async (t) => {
    const before = await entryTokens(home)
    provider.resetCalls()
    const r = await c.call('refresh')
    t.equal(r.error, undefined, 'refresh answers', { diagnostic: r.error !== undefined, error: r.error, calls: callSummary() })
    t.equal(daemonRefreshes().length, 1, 'one spend, by the daemon')
    const after = await entryTokens(home)
    t.ok(after !== null && after.accessToken === r.result?.token, 'the entry holds the token the RPC returned')
    t.ok(after?.refreshToken !== before?.refreshToken, 'and the rotated refresh token')
    t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'no auth.json')

    const seen = world.stub.requests.length
    const x = await world.codex(home, EXEC, { env: ss.env })
    const bearers = world.stub.requests.slice(seen).map((q) => q.bearerId).filter((b) => b !== null)
    t.ok(bearers.length > 0, `Codex called the backend with a token (exit ${x.code}, ${x.ms} ms)`, { output: shown(x) })
    t.ok(bearers.every((b) => b === tokenId(after!.accessToken)), "every call carried the daemon's new access token")
    t.equal(codexRefreshes().length, 0, 'Codex did not refresh', { calls: callSummary() })
    t.equal(reused(), 0, 'no refresh token spent twice')
  })
})

t.test('auto with a ChatGPT auth.json: Codex moves the login to the keyring, the daemon never loses it', async (t) => {
  const { provider, world, codexRefreshes, daemonRefreshes, reused, callSummary, codexRefreshedTokens } = await side(t)
  const home = await codexHome(world)
  useCodexStore(home, 'auto')
  const authJson = path.join(home, 'auth.json')
  const minted = await mintTokens(provider)
  writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) }))
  const d = await keyringDaemon(t, world, home, ss.env)
  const sub = await subscribe(t, d)
  const c = await connect(t, d)
  t.ok((await c.call('getAuth')).result?.token === minted.accessToken, 'getAuth serves auth.json')
  t.equal((await c.call('status')).result?.source, 'auth.json', 'source "auth.json"')
  provider.resetCalls()

  world.stub.rejected.add(tokenId(minted.accessToken))
  t.teardown(() => world.stub.rejected.delete(tokenId(minted.accessToken)))
  let done = false
  const exec = world.codex(home, EXEC, { env: ss.env }).finally(() => (done = true))
  // getAuth all along Codex's run: never an error, whatever moment the file goes.
  const failures: string[] = []
  let asked = 0
  while (!done) {
    const g = await c.call('getAuth')
    asked++
    if (g.error) failures.push(`${g.error.code} ${g.error.data?.reason ?? ''}`)
    await new Promise((r) => setTimeout(r, 20)) // a sampling interval, not a synchronisation
  }
  const r = await exec
  t.ok(codexRefreshes().length >= 1, `Codex refreshed (${codexRefreshes().length}×; codex exec exit ${r.code}, ${r.ms} ms)`, { calls: callSummary(), output: shown(r) })
  t.same(failures, [], `getAuth answered all ${asked} times during Codex's run`)
  t.notOk(fs.existsSync(authJson), "Codex's keyring save deleted auth.json")
  const saved = await entryTokens(home)
  t.ok(saved !== null && saved.refreshToken !== minted.refreshToken, "the entry holds Codex's rotated tokens")

  const s = await nextAuthChanged(sub, (s) => s.loggedIn && s.source === 'keyring', 'the login now comes from the keyring')
  t.equal(s.mode, 'chatgpt', 'authChanged: a ChatGPT login from the keyring')
  // One of Codex's refreshed tokens: after a second refresh (a silent SetSecret) the daemon may
  // still serve the first, valid for an hour, until it needs more (docs/keyring.md#signals-what-can-be-watched).
  const g = await c.call('getAuth')
  t.ok(g.result !== undefined && codexRefreshedTokens().includes(g.result.token), "getAuth serves a token Codex's refresh got", { diagnostic: g.error !== undefined, error: g.error })
  t.equal(daemonRefreshes().length, 0, 'the daemon spent nothing', { calls: callSummary() })
  t.equal(reused(), 0, 'no refresh token spent twice')
  await until('status still logged in from the keyring', async () => {
    const st = (await c.call('status')).result
    return st?.loggedIn === true && st?.source === 'keyring'
  })
})
