// Issue 4's central test: the REAL Codex CLI 0.171.0 beside the daemon. While the daemon is up it
// refreshes early (due at min(⅔ lifetime, exp − 10 min): docs/refresh.md#when-a-refresh-is-due), so
// the access token never enters Codex's own 300 s window (docs/codex-compat.md#refresh-triggers)
// and Codex never spends a refresh token itself; the provider never sees a refresh token used
// twice. A control with no daemon shows that Codex does refresh a token inside its window, so the
// main assertion can fail.
//
// The refresh endpoint is the harness provider (real oidc-provider, rotating refresh tokens with
// reuse detection) behind its JSON adapter, which records each caller's user agent: Codex sends
// codex_exec/… or codex_cli_rs/…, the daemon codex-authd/…. Codex runs only inside a
// loopback-only network namespace (test/support/codex.ts). No token is ever printed.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile } from '../src/codex/authfile.js'
import { connect } from './support/daemon.js'
import type { RawConnection } from './support/rpc.js'
import { decodeJwtPayload, mintTokens, startProvider, type TestProvider, type TokenCall } from './support/provider.js'
import {
  authFileFor,
  CODEX_UA,
  codexDaemon,
  codexHome,
  requireCodex,
  DAEMON_UA,
  endedByItself,
  startCodexWorld,
  tokenId,
  writeAuthJson,
  type CodexRun,
  type CodexWorld,
} from './support/codex.js'
import { until } from './support/until.js'

await requireCodex()

/** Refreshed access tokens live an hour: a short one would make Codex loop (docs/testing.md#the-test-issuer). */
const REFRESHED_TTL = 3600

let provider: TestProvider
let world: CodexWorld
t.before(async () => {
  provider = await startProvider({ ttl: { refreshToken: REFRESHED_TTL } })
  world = await startCodexWorld(provider)
})
t.teardown(async () => {
  await world?.close()
  await provider?.stop()
})

// ---------------------------------------------------------------- helpers

function readAuth(home: string) {
  const parsed = parseAuthFile(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'), 'auth.json')
  if (!parsed.ok || parsed.auth.tokens === null) throw new Error('auth.json is not a ChatGPT file')
  return parsed.auth.tokens
}

/** Seconds until the access token in auth.json expires. */
function secondsLeft(accessToken: string): number {
  return (decodeJwtPayload(accessToken).exp as number) - Date.now() / 1000
}

const isRefresh = (c: TokenCall) => c.endpoint === 'token' && c.grantType === 'refresh_token'
const codexRefreshes = () => provider.countCalls((c) => isRefresh(c) && CODEX_UA.test(c.userAgent))
const daemonRefreshes = () => provider.countCalls((c) => isRefresh(c) && DAEMON_UA.test(c.userAgent))

function shown(r: CodexRun): string {
  const tail = r.stderr.split('\n').filter((l) => l.trim() !== '').slice(-8).join('\n')
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}; stderr tail:\n${tail}`
}

/** What the provider saw, for failure messages: user agents, statuses, errors; never tokens. */
function callSummary(): string {
  return provider.calls
    .map((c) => `${c.endpoint} ${c.grantType ?? ''} ${c.userAgent.split(' ')[0]} -> ${c.status}${c.error ? ` ${c.error}` : ''}${c.refreshTokenReuse ? ' REUSED' : ''}`)
    .join('\n')
}

/** The daemon's commit of a refresh has landed: auth.json holds the access token getAuth serves. */
async function committed(c: RawConnection, home: string, what: string): Promise<string> {
  let served = ''
  await until(what, async () => {
    const g = (await c.call('getAuth')).result
    if (!g?.token) return false
    served = g.token
    return readAuth(home).accessToken === served
  })
  return served
}

const EXEC = ['exec', '--skip-git-repo-check', 'hi']

// ---------------------------------------------------------------- tests

t.test('with the daemon up, Codex never refreshes itself and no refresh token is reused', async (t) => {
  const home = await codexHome(world)
  // A 9-minute access token: due for the daemon at once (exp − 10 min has passed) but outside
  // Codex's 300 s window, so neither a Codex process nor time decides who refreshes first.
  provider.setTtl({ authorizationCode: 540 })
  t.teardown(() => provider.setTtl({ authorizationCode: 3600 }))
  const minted = await mintTokens(provider)
  // last_refresh 5 minutes ago: the daemon's 30 s loop guard does not hold it back.
  writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) }))
  t.ok(secondsLeft(minted.accessToken) > 480 && secondsLeft(minted.accessToken) < 600, 'minted token expires in 8-10 minutes')
  provider.resetCalls()

  const d = await codexDaemon(t, world, home)
  const c = await connect(t, d)
  await until('the daemon refreshed at start', () => daemonRefreshes() >= 1)
  const issued = new Set<string>() // jti of every access token the daemon put into auth.json
  issued.add(tokenId(await committed(c, home, 'the start-up refresh landed in auth.json')))
  const first = readAuth(home)
  t.ok(first.refreshToken !== minted.refreshToken, 'auth.json holds a rotated refresh token')
  t.ok(secondsLeft(first.accessToken) > REFRESHED_TTL - 120, 'and an access token good for an hour')
  t.equal(first.accountId, minted.accountId, 'account_id kept')

  const runs: CodexRun[] = []
  for (let i = 1; i <= 3; i++) {
    const stubBefore = world.stub.requests.length
    const exec = world.codex(home, EXEC)
    let overlapped: Promise<void> | null = null
    let rotated: { at: number; id: string } | null = null
    if (i === 2) {
      // Rotate the tokens while this Codex is running: its cached refresh token is then spent,
      // which is harmless only because its access token is far from Codex's window.
      overlapped = (async () => {
        await until('Codex run 2 reached the stub', () => world.stub.requests.length > stubBefore, 40_000)
        const r = await c.call('refresh')
        if (r.error) throw new Error(`refresh RPC failed: ${r.error.message}`)
        const id = tokenId(await committed(c, home, 'the refresh during run 2 landed'))
        issued.add(id)
        rotated = { at: Date.now(), id }
      })()
    }
    const r = await exec
    await overlapped
    runs.push(r)
    t.ok(endedByItself(r), `codex exec ${i} ended by itself (exit ${r.code}, ${r.ms} ms)`)
    t.equal(codexRefreshes(), 0, `after exec ${i}: Codex made no refresh call`, {
      diagnostic: codexRefreshes() !== 0,
      calls: callSummary(),
      output: shown(r),
    })
    const mine = world.stub.requests.slice(stubBefore).filter((q) => q.bearerId !== null)
    t.ok(mine.length > 0, `exec ${i} sent ${mine.length} authenticated backend requests`, { output: shown(r) })
    const foreign = mine.filter((q) => !issued.has(q.bearerId!))
    t.equal(foreign.length, 0, `exec ${i} used only access tokens the daemon wrote`, {
      paths: foreign.map((q) => q.path),
    })

    if (rotated !== null) {
      const { at, id } = rotated as { at: number; id: string }
      const later = mine.filter((q) => q.at > at)
      // Informational: a running Codex does not re-read auth.json while its token is valid
      // (docs/codex-compat.md#refresh-triggers).
      t.comment(
        `run 2: rotation landed ${later.length > 0 ? 'mid-run' : 'after the last backend request'}; ` +
          `${later.length} later request(s), ${later.filter((q) => q.bearerId === id).length} with the new access token`,
      )
    }

    if (i !== 2) {
      // Between runs the daemon refreshes again (a forced refresh: skips the loop guard).
      const r = await c.call('refresh')
      t.notOk(r.error, `daemon refresh after exec ${i}`)
      issued.add(tokenId(await committed(c, home, `the refresh after exec ${i} landed`)))
    }
  }

  const status = await world.codex(home, ['login', 'status'])
  t.equal(status.code, 0, 'codex login status exits 0')
  t.match(status.stderr, /Logged in using ChatGPT/, 'codex login status: Logged in using ChatGPT')

  const refreshes = provider.calls.filter(isRefresh)
  t.equal(codexRefreshes(), 0, 'Codex made ZERO refresh calls while the daemon was up', { calls: callSummary() })
  t.equal(daemonRefreshes(), refreshes.length, 'every refresh came from the daemon')
  t.equal(daemonRefreshes(), 4, 'one at start, three by RPC')
  t.equal(provider.countCalls((c) => c.refreshTokenReuse === true), 0, 'no refresh token was used twice', { calls: callSummary() })
  t.same(
    refreshes.map((c) => c.status),
    refreshes.map(() => 200),
    'every refresh got 200',
  )
  t.ok(
    refreshes.every((c) => c.via === 'json' && c.hasClientId && c.refreshReason === 'proactive_expiry'),
    "the daemon's refreshes look like Codex's (JSON, client_id, refresh_reason proactive_expiry)",
  )
  t.equal(provider.countCalls((c) => c.endpoint === 'revoke'), 0, 'nothing revoked')

  const st = (await c.call('status')).result
  t.equal(st.loggedIn, true)
  t.same(st.problems, [], 'no problems (nothing pending)')
  t.equal(st.refresh.lastError, null, 'no refresh error')
  const g = (await c.call('getAuth')).result
  t.ok(g?.token === readAuth(home).accessToken, 'getAuth serves what auth.json holds')
  const warnings = d.logs.filter((l) => (JSON.parse(l) as { level?: number }).level! >= 40).map((l) => JSON.parse(l).msg as string)
  t.same(warnings, [], 'the daemon logged no warning or error beside Codex')
  t.comment(`codex exec runs: ${runs.map((r) => `${r.ms} ms (exit ${r.code})`).join(', ')}`)
})

t.test('with the daemon up, even a token inside Codex\'s window is refreshed by the daemon, not Codex', async (t) => {
  const home = await codexHome(world)
  provider.setTtl({ authorizationCode: 240 })
  t.teardown(() => provider.setTtl({ authorizationCode: 3600 }))
  const minted = await mintTokens(provider)
  writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) }))
  provider.resetCalls()

  const d = await codexDaemon(t, world, home)
  const c = await connect(t, d)
  await until('the daemon refreshed at start', () => daemonRefreshes() >= 1)
  await committed(c, home, 'the start-up refresh landed in auth.json')

  const r = await world.codex(home, EXEC)
  t.ok(endedByItself(r), `codex exec ended by itself (exit ${r.code}, ${r.ms} ms)`)
  t.equal(codexRefreshes(), 0, 'Codex made no refresh call', { calls: callSummary(), output: shown(r) })
  t.equal(daemonRefreshes(), 1, 'the daemon refreshed once')
  t.equal(provider.countCalls((c) => c.refreshTokenReuse === true), 0, 'no refresh token was used twice')
})

t.test('control: with no daemon, Codex refreshes a token inside its window itself', async (t) => {
  const home = await codexHome(world)
  provider.setTtl({ authorizationCode: 240 })
  t.teardown(() => provider.setTtl({ authorizationCode: 3600 }))
  const minted = await mintTokens(provider)
  writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 60_000) }))
  t.ok(secondsLeft(minted.accessToken) < 300, 'the access token is inside Codex\'s 300 s window')
  provider.resetCalls()

  const r = await world.codex(home, EXEC)
  t.ok(endedByItself(r), `codex exec ended by itself (exit ${r.code}, ${r.ms} ms)`)
  t.ok(codexRefreshes() >= 1, `Codex refreshed by itself (${codexRefreshes()} call(s))`, { calls: callSummary(), output: shown(r) })
  const own = provider.calls.filter((c) => isRefresh(c) && CODEX_UA.test(c.userAgent))
  t.match(own[0]?.userAgent, /^codex_exec\/0\.171\.0 /, 'with the codex_exec user agent')
  t.equal(own[0]?.refreshReason, 'proactive_expiry')
  t.equal(own[0]?.status, 200)
  t.equal(daemonRefreshes(), 0, 'no daemon involved')
  t.ok(readAuth(home).refreshToken !== minted.refreshToken, 'Codex wrote the rotated tokens itself')
})
