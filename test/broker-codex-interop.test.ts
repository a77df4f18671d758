// Issue 14 with the REAL Codex CLI 0.171.0: Codex runs through `codex-auth exec` (the broker listener
// inside Codex's loopback-only namespace, forwarding to the daemon's socket), against a backend
// stand-in that answers 401 to the access tokens the test marks, so Codex takes its 401 path
// (`unauthorized_recovery`, docs/codex-compat.md#refresh-triggers). The token endpoint is the harness
// provider: rotating refresh tokens, and reuse revokes the whole grant, so any double spend shows up
// as REUSED and a dead login. No token is ever printed.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile } from '../src/codex/authfile.js'
import { CLI_BIN, connect } from './support/daemon.js'
import { mintTokens, startProvider, type TestProvider, type TokenCall } from './support/provider.js'
import {
  authFileFor,
  CODEX_UA,
  codexDaemon,
  codexHome,
  DAEMON_UA,
  endedByItself,
  requireCodex,
  startCodexWorld,
  tokenId,
  writeAuthJson,
  type CodexRun,
  type CodexWorld,
} from './support/codex.js'
import { until } from './support/until.js'

await requireCodex()

let provider: TestProvider
let world: CodexWorld
t.before(async () => {
  provider = await startProvider({ ttl: { authorizationCode: 3600, refreshToken: 3600 } })
  world = await startCodexWorld(provider)
})
t.teardown(async () => {
  await world?.close()
  await provider?.stop()
})

const EXEC = ['exec', '--skip-git-repo-check', 'hi']
const isRefresh = (c: TokenCall) => c.endpoint === 'token' && c.grantType === 'refresh_token'
const refreshes = () => provider.countCalls(isRefresh)
const codexRefreshes = () => provider.countCalls((c) => isRefresh(c) && CODEX_UA.test(c.userAgent))
const reused = () => provider.countCalls((c) => c.refreshTokenReuse === true)

function fileTokens(home: string) {
  const parsed = parseAuthFile(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'), 'auth.json')
  if (!parsed.ok || parsed.auth.tokens === null) throw new Error('auth.json is not a ChatGPT file')
  return parsed.auth.tokens
}

function callSummary(): string {
  return provider.calls
    .map((c) => `${c.endpoint} ${c.grantType ?? ''} ${c.refreshReason ?? ''} ${c.userAgent.split(' ')[0]} -> ${c.status}${c.error ? ` ${c.error}` : ''}${c.refreshTokenReuse ? ' REUSED' : ''}`)
    .join('\n')
}

function shown(r: CodexRun): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}; stderr tail:\n${r.stderr.split('\n').filter((l) => l.trim() !== '').slice(-6).join('\n')}`
}

/** A logged-in home whose access token the backend stand-in rejects, and its daemon. */
async function rejectedLogin(t: Test) {
  const home = await codexHome(world)
  const minted = await mintTokens(provider)
  writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) }))
  world.stub.rejected.add(tokenId(minted.accessToken))
  provider.resetCalls()
  const d = await codexDaemon(t, world, home)
  const c = await connect(t, d)
  const wrap = [process.execPath, CLI_BIN, '--socket', d.socket, 'exec', '--']
  return { home, minted, d, c, wrap }
}

t.test('three Codex processes hitting 401 together: one token-endpoint call, auth.json holds the daemon\'s token', async (t) => {
  const { home, minted, c, wrap, d } = await rejectedLogin(t)
  const runs = await Promise.all([1, 2, 3].map(() => world.codex(home, EXEC, { wrap })))
  for (const r of runs) t.ok(endedByItself(r), `codex ended by itself (${r.ms} ms)`, { output: shown(r) })
  const st = (await c.call('status')).result
  t.comment(`broker requests ${JSON.stringify(st.counters.broker.requestsByReason)}; answers ${JSON.stringify(st.counters.broker.answers)}`)
  t.ok((st.counters.broker.requestsByReason['refresh:unauthorized_recovery'] ?? 0) >= 3, 'every Codex process sent its recovery to the broker', { calls: callSummary(), output: runs.map(shown).join('\n') })
  t.equal(refreshes(), 1, 'one token-endpoint call', { calls: callSummary() })
  t.equal(codexRefreshes(), 0, 'none of them from Codex itself')
  t.equal(reused(), 0, 'no refresh token spent twice')
  t.same(st.counters.refreshTokenSpends, { unauthorized_recovery: 1 })
  await until('the rotation in auth.json', () => fileTokens(home).refreshToken !== minted.refreshToken)
  const g = (await c.call('getAuth')).result
  t.ok(g?.token === fileTokens(home).accessToken, 'auth.json holds the daemon\'s tokens')
  t.ok(provider.calls.filter(isRefresh).every((x) => DAEMON_UA.test(x.userAgent)), 'the one spend was the daemon\'s')
  t.same(d.secretsInOutput(), [])
})

t.test('a refresh RPC 0–2.5 s after Codex\'s 401: no double spend', async (t) => {
  const offsets = [0, 1250, 2500] // a handful, not dozens: each is one Codex run (~8 s)
  for (const offset of offsets) {
    const { home, c, wrap, d } = await rejectedLogin(t)
    let fired: Promise<unknown> | null = null
    world.stub.on401 = () => {
      world.stub.on401 = null
      fired = new Promise((r) => setTimeout(r, offset)).then(() => c.call('refresh'))
    }
    const r = await world.codex(home, EXEC, { wrap })
    world.stub.on401 = null
    const rpc = (await fired) as { error?: unknown } | null
    t.ok(endedByItself(r), `offset ${offset} ms: codex ended by itself (${r.ms} ms)`, { output: shown(r) })
    t.ok(rpc !== null, `offset ${offset} ms: the 401 came and the refresh RPC ran`)
    t.equal(reused(), 0, `offset ${offset} ms: no refresh token spent twice`, { calls: callSummary() })
    t.equal(codexRefreshes(), 0, `offset ${offset} ms: Codex spent nothing itself`)
    const g = (await c.call('getAuth')).result
    await until('the daemon\'s latest in auth.json', () => fileTokens(home).accessToken === g?.token)
    t.comment(`offset ${offset} ms: ${refreshes()} spend(s); codex ${r.ms} ms; answers ${JSON.stringify((await c.call('status')).result.counters.broker.answers)}`)
    await d.stop()
  }
})

t.test('codex logout through the broker: revoked upstream once, file gone, daemon logged out', async (t) => {
  const { home, c, wrap } = await rejectedLogin(t)
  const r = await world.codex(home, ['logout'], { wrap })
  t.equal(r.code, 0, 'codex logout exits 0', { output: shown(r) })
  t.match(r.stderr + r.stdout, /Successfully logged out/, 'in Codex\'s own words (it removed the file itself)')
  t.equal(provider.countCalls({ endpoint: 'revoke' }), 1, 'revoked upstream once', { calls: callSummary() })
  t.notOk(fs.existsSync(path.join(home, 'auth.json')), 'auth.json is gone')
  const st = (await c.call('status')).result
  t.equal(st.loggedIn, false, 'the daemon is logged out')
  t.equal(st.counters.broker.answers.revoked, 1, 'through the broker')
})
