// The broker's daemon method (docs/broker.md): brokerRefresh and brokerRevoke against the real daemon
// bundle and the harness's real oidc-provider (rotating refresh tokens; reuse revokes the whole grant,
// so a double spend shows up as a dead login). What the `codex-auth exec` listener forwards is
// exactly these params; the listener itself is in broker-listener.test.ts.
//
// No token is ever printed: comparisons use t.ok(a === b), and every token the broker hands out is
// registered with the leak scanner.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { CLIENT_ID } from './support/provider.js'
import { daemon, fileTokens, loggedIn, refreshAnswers, refreshCalls, rotatedInFile, status } from './support/refresh.js'
import { connect } from './support/daemon.js'
import { registerSecret } from './support/secrets.js'
import { until } from './support/until.js'
import type { RawConnection } from './support/rpc.js'

const HOUR = 3600

/** One brokerRefresh call; the answer's tokens are registered as secrets. */
async function brokerRefresh(c: RawConnection, refreshToken: string, reason = 'unauthorized_recovery'): Promise<{ status: number; body: any }> {
  const res = await c.call('brokerRefresh', { client_id: CLIENT_ID, grant_type: 'refresh_token', refresh_reason: reason, refresh_token: refreshToken })
  if (res.error) throw new Error(`brokerRefresh failed: ${res.error.code} ${res.error.message}`)
  for (const k of ['access_token', 'refresh_token', 'id_token']) if (typeof res.result.body?.[k] === 'string') registerSecret(res.result.body[k], `broker ${k}`)
  return res.result
}

const expLeftS = (jwt: string): number => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).exp - Date.now() / 1000

t.test('three recoveries at once: one spend, the same answer for all, journaled and committed', async (t) => {
  const { p, minted, home, w } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  p.tokenDelayMs = 400 // all three arrive while the one spend is in flight
  const answers = await Promise.all([1, 2, 3].map(() => brokerRefresh(c, minted.refreshToken)))
  t.same(answers.map((a) => a.status), [200, 200, 200])
  t.equal(refreshCalls(p), 1, 'one token-endpoint call')
  const upstream = refreshAnswers(w)[0]!
  t.ok(answers.every((a) => a.body.refresh_token === upstream.refresh_token && a.body.access_token === upstream.access_token), 'all got the one result')
  t.ok(expLeftS(answers[0]!.body.access_token) > 300, 'the access token has more than Codex\'s 300 s window left')
  const file = await rotatedInFile('the result in auth.json', home, minted.refreshToken)
  t.ok(file.refreshToken === answers[0]!.body.refresh_token, 'the refresh token answered is exactly what the daemon committed')
  t.equal(p.calls.find((x) => x.grantType === 'refresh_token')?.refreshReason, 'unauthorized_recovery', 'the spend sent Codex\'s reason')

  // A second recovery for the same token (another Codex process, later): the same answer, nothing spent.
  const again = await brokerRefresh(c, minted.refreshToken)
  t.equal(again.status, 200)
  t.ok(again.body.refresh_token === upstream.refresh_token, 'the same answer')
  // Proactive with the current, fresh token: answered without a spend.
  const cur = await brokerRefresh(c, file.refreshToken, 'proactive_expiry')
  t.equal(cur.status, 200)
  t.ok(cur.body.refresh_token === file.refreshToken, 'the current tokens')
  t.equal(refreshCalls(p), 1, 'still one spend')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was used twice')

  const s = await status(c)
  t.same(s.counters.refreshTokenSpends, { unauthorized_recovery: 1 })
  t.same(s.counters.broker.requestsByReason, { 'refresh:unauthorized_recovery': 4, 'refresh:proactive_expiry': 1 })
  t.same(s.counters.broker.answers, { spent: 1, shared: 3, current: 1 })
  t.same(d.secretsInOutput(), [], 'no token in the daemon\'s output')
})

t.test('tokens the daemon does not hold: 401 after a re-read, nothing spent; an older settled token is never revived', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const unknown = await brokerRefresh(c, 'rt-nobody-has-this')
  t.equal(unknown.status, 401)
  t.equal(unknown.body.error.code, 'refresh_token_invalidated')
  t.equal(refreshCalls(p), 0, 'nothing spent')

  // Two rotations: rt0 -> rt1 (the broker) -> rt2 (the daemon's own). rt0 (a backup) gets 401
  // reused: never rt2.
  t.equal((await brokerRefresh(c, minted.refreshToken)).status, 200)
  const rt1 = (await rotatedInFile('first rotation', home, minted.refreshToken)).refreshToken
  t.notOk((await c.call('refresh')).error, 'a forced refresh')
  const rt2 = (await rotatedInFile('second rotation', home, rt1)).refreshToken
  t.equal(refreshCalls(p), 2)
  const old = await brokerRefresh(c, minted.refreshToken)
  t.equal(old.status, 401, 'the settled token is refused')
  t.equal(old.body.error.code, 'refresh_token_reused')
  t.equal(refreshCalls(p), 2, 'nothing spent for it')
  const rt1Again = await brokerRefresh(c, rt1, 'proactive_expiry')
  t.equal(rt1Again.status, 200, 'the token just before the current one gets the current result')
  t.ok(rt1Again.body.refresh_token === rt2, 'which is rt2')
  t.ok((await fileTokens(home)).refreshToken === rt2, 'auth.json holds the daemon\'s latest')

  // Wrong grant type and wrong params: answered, nothing spent, nothing quoted back.
  const grant = await c.call('brokerRefresh', { client_id: CLIENT_ID, grant_type: 'password', refresh_token: 'x' })
  t.same(grant.result, { status: 400, body: { error: { message: 'Unsupported grant type', type: 'invalid_request_error', param: null, code: 'unsupported_grant_type' } } })
  const bad = await c.call('brokerRefresh', { client_id: CLIENT_ID, grant_type: 'refresh_token', refresh_token: 42 })
  t.equal(bad.error?.code, -32602)
  t.equal(bad.error?.data?.field, 'refresh_token')
  t.equal(refreshCalls(p), 2)
  t.same(d.secretsInOutput(), [])
})

t.test('a revoke through the broker: the daemon\'s logout, revoked upstream once, file gone', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const unknown = await c.call('brokerRevoke', { token: 'not-ours', token_type_hint: 'refresh_token', client_id: CLIENT_ID })
  t.same(unknown.result, { status: 200, body: {} }, 'RFC 7009: an unknown token is answered 200')
  t.ok(fs.existsSync(path.join(home, 'auth.json')), 'and nothing is removed for it')
  t.equal(p.countCalls({ endpoint: 'revoke' }), 0)
  const r = await c.call('brokerRevoke', { token: minted.refreshToken, token_type_hint: 'refresh_token', client_id: CLIENT_ID })
  t.same(r.result, { status: 200, body: {} })
  t.equal(p.countCalls({ endpoint: 'revoke' }), 1, 'revoked upstream once, before the answer')
  // Nobody (no Codex) removes auth.json after the answer: the daemon does, after its grace (5 s).
  await until('the daemon removes auth.json', () => !fs.existsSync(path.join(home, 'auth.json')))
  await until('the daemon is logged out', async () => (await status(c)).loggedIn === false)
  t.equal(p.countCalls({ endpoint: 'revoke' }), 1, 'and revokes nothing again')
  const after = await brokerRefresh(c, minted.refreshToken)
  t.equal(after.status, 401, 'the revoked token is refused afterwards')
  t.equal(refreshCalls(p), 0)
  t.same((await status(c)).counters.broker.answers, { revoke_unknown: 1, revoked: 1, denied: 1 })
})

t.test('a backend that rejects every token: one spend per access token, then 503s, not a spend every 30 s', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  let rt = minted.refreshToken
  const statuses: number[] = []
  // Codex: 401 from the backend, recovery, new token, 401 again ... as fast as it can, 20 times.
  for (let i = 0; i < 20; i++) {
    const a = await brokerRefresh(c, rt)
    statuses.push(a.status)
    if (a.status === 200) rt = a.body.refresh_token
  }
  t.equal(refreshCalls(p), 1, 'the second access token got no spend within the recovery delay (30 s)')
  t.equal(statuses[0], 200)
  t.ok(statuses.slice(1).every((s) => s === 503), 'then transient answers Codex does not cache as "sign in again"')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0)
  await rotatedInFile('the one rotation in auth.json', home, minted.refreshToken)
  t.ok((await fileTokens(home)).refreshToken === rt, 'auth.json holds the daemon\'s refresh token')
})
