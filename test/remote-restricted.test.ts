// The restricted socket and placeholders (docs/remote.md#the-restricted-socket-and-placeholders):
// the second socket the daemon serves for forwarding to other machines, and the placeholders a
// remote machine's auth.json holds instead of the refresh token. Real daemon bundle, real
// sockets, the harness's oidc-provider (rotating refresh tokens, reuse revokes the grant). One
// daemon serves most subtests (restarted once, for persistence); a second one has a short
// placeholder lifetime; two more are started by systemd-socket-activate.
//
// No token or placeholder is ever printed: comparisons use t.ok(a === b), and every placeholder
// is registered with the leak scanner (the daemon's output is scanned for it at stop).
import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { CLIENT_ID } from './support/provider.js'
import { restrictedSocketPath } from '../src/paths.js'
import { pickActivationFds } from '../src/rpc/socket.js'
import { DAEMON_BIN, isolatedEnv, runCli, tempDir } from './support/daemon.js'
import { rawConnect, type RawConnection } from './support/rpc.js'
import { daemon, daemonArgs, fileTokens, loggedIn, refreshAnswers, refreshCalls, rotatedInFile, status } from './support/refresh.js'
import { registerSecret } from './support/secrets.js'
import { until } from './support/until.js'

const HOUR = 3600

/** A raw connection to `sock`, closed at teardown. */
async function open(t: { teardown(fn: () => unknown): void }, sock: string): Promise<RawConnection> {
  const c = await rawConnect(sock)
  t.teardown(() => c.close())
  return c
}

const restrictedOf = (sock: string): string => sock.replace(/\.sock$/, '.restricted.sock')

/** Every byte the daemon sent on this connection, for "never contains" checks. */
function recordRaw(c: RawConnection): () => string {
  let all = ''
  c.socket.on('data', (d: Buffer) => (all += d.toString()))
  return () => all
}

interface Answer {
  status: number
  body: any
}

/** One brokerRefresh call; a placeholder in the answer is registered as a secret. */
async function brokerRefresh(c: RawConnection, refreshToken: string, reason = 'proactive_expiry'): Promise<Answer> {
  const res = await c.call('brokerRefresh', { client_id: CLIENT_ID, grant_type: 'refresh_token', refresh_reason: reason, refresh_token: refreshToken })
  if (res.error) throw new Error(`brokerRefresh failed: ${res.error.code} ${res.error.message}`)
  for (const k of ['access_token', 'refresh_token', 'id_token']) if (typeof res.result.body?.[k] === 'string') registerSecret(res.result.body[k], `broker ${k}`)
  return res.result
}

/** placeholderIssue; the placeholder is registered as a secret. */
async function issue(c: RawConnection, label: string, replaces?: string): Promise<{ id: string; placeholder: string; expiresAt: string; authFile: any }> {
  const res = await c.call('placeholderIssue', replaces === undefined ? { label } : { label, replaces })
  if (res.error) throw new Error(`placeholderIssue failed: ${res.error.code} ${res.error.message}`)
  registerSecret(res.result.placeholder, `placeholder ${label}`)
  return res.result
}

async function list(c: RawConnection): Promise<any[]> {
  const res = await c.call('placeholderList')
  if (res.error) throw new Error(`placeholderList failed: ${res.error.code}`)
  return res.result.placeholders
}

// The world most subtests share: one provider, one login, one daemon (restarted once).
const { w, p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
let d = await daemon(t, home, p)
/** The file's own tap object: a daemon restarted inside a subtest lives on for the next ones. */
const root = t

t.test('the restricted socket: beside the main one, 0600; serves tokens and status, refuses the rest with -32008', async (t) => {
  const rsock = restrictedOf(d.socket)
  const st = fs.lstatSync(rsock)
  t.ok(st.isSocket(), 'a socket beside the main one')
  t.equal(st.mode & 0o777, 0o600, 'mode 0600')
  const started = await d.waitForLog((r) => r.msg === 'codex-authd started')
  t.equal(started.restrictedSocket, rsock, 'the start-up line names it')

  const r = await open(t, rsock)
  const auth = await r.call('getAuth')
  t.equal(auth.result?.mode, 'chatgpt', 'getAuth works there')
  t.ok(auth.result?.token === minted.accessToken, 'the current access token')
  const s = await r.call('status')
  t.equal(s.result?.loggedIn, true, 'status works there')
  t.equal(s.result?.daemon.restrictedSocket, rsock, 'status names the restricted socket')
  t.same((await r.call('hello', { client: { name: 'test', version: '0' }, protocol: 1 })).result?.daemon.protocol, 1, 'hello works there')
  t.same((await r.call('subscribe')).result, { subscribed: true }, 'subscribe works there')

  // Every method that is not for a remote: -32008, data {reason, method}, nothing done.
  const refused: Array<[string, unknown]> = [
    ['login', { method: 'browser' }],
    ['login', { method: 'device' }],
    ['login', { method: 'apikey', apiKey: 'sk-test-restricted-socket-0123456789' }],
    ['awaitLogin', { loginId: 'x' }],
    ['cancelLogin', { loginId: 'x' }],
    ['logout', {}],
    ['logout', { revoke: false }],
    ['refresh', undefined],
    ['audit', {}],
    ['placeholderList', {}],
    ['placeholderRevoke', { id: 'ph-0' }],
  ]
  for (const [method, params] of refused) {
    const res = await r.call(method, params)
    t.equal(res.error?.code, -32008, `${method} ${JSON.stringify((params as { method?: string })?.method ?? '')}: -32008`)
    t.same(res.error?.data, { reason: 'restricted', method })
    t.equal(res.error?.message, `${method} is not available on the restricted socket`)
  }
  // A notification is refused without an answer (and not run): the next answer is the next request's.
  r.send({ jsonrpc: '2.0', method: 'logout', params: { revoke: false } })
  r.send({ jsonrpc: '2.0', id: 'after', method: 'status' })
  const after = await r.next()
  t.equal(after.id, 'after', 'a logout notification got no answer')
  t.equal(after.result?.loggedIn, true, 'and did nothing')
  // In a batch, each member on its own; an unknown name stays -32601.
  r.send([
    { jsonrpc: '2.0', id: 'a', method: 'logout' },
    { jsonrpc: '2.0', id: 'b', method: 'status' },
    { jsonrpc: '2.0', id: 'c', method: 'noSuchMethod' },
  ])
  let batch: any
  do batch = await r.next()
  while (!Array.isArray(batch))
  const byId = Object.fromEntries(batch.map((m: any) => [m.id, m]))
  t.equal(byId.a.error?.code, -32008)
  t.equal(byId.b.result?.loggedIn, true)
  t.equal(byId.c.error?.code, -32601, 'an unknown method is -32601 there as everywhere')

  t.ok(fs.existsSync(path.join(home, 'auth.json')), 'still logged in: nothing was removed')
  t.equal(refreshCalls(p), 0, 'nothing was spent')
  t.equal(p.countCalls({ endpoint: 'revoke' }), 0, 'nothing was revoked')
  // A real refresh token never crosses it: refused as unknown, nothing spent, nothing revoked.
  const real = await brokerRefresh(r, minted.refreshToken, 'unauthorized_recovery')
  t.equal(real.status, 401)
  t.equal(real.body.error.code, 'refresh_token_invalidated')
  t.same(await r.call('brokerRevoke', { token: minted.refreshToken, token_type_hint: 'refresh_token', client_id: CLIENT_ID }).then((x) => x.result), { status: 200, body: {} })
  t.equal(refreshCalls(p), 0, 'nothing spent for a real token on the restricted socket')
  t.equal(p.countCalls({ endpoint: 'revoke' }), 0, 'nothing revoked for it')
  t.equal((await status(await open(t, d.socket))).loggedIn, true, 'the main socket still serves')

  // The main socket serves every method (audit here: the refused calls were not audited as done).
  const m = await open(t, d.socket)
  const audit = await m.call('audit')
  t.notOk(audit.error, 'audit works on the main socket')
  t.notOk(audit.result.entries.some((e: any) => e.method === 'logout' || e.method === 'login' || e.method === 'refresh'), 'no refused call ran')
  t.match(audit.result.entries.filter((e: any) => e.socket === 'restricted').map((e: any) => e.method), ['getAuth', 'brokerRefresh', 'brokerRevoke'], 'the audit says which socket')
  t.ok(fs.existsSync(path.join(home, 'auth.json')), 'still logged in after the broker calls')
  t.same(d.secretsInOutput(), [])
})

t.test('placeholders through brokerRefresh on the restricted socket: rotated on every use, current tokens, the real refresh token never sent', async (t) => {
  const r = await open(t, restrictedOf(d.socket))
  const raw = recordRaw(r)
  const m = await open(t, d.socket)
  const spendsBefore = refreshCalls(p)
  const first = await issue(r, 'host:alice@build1')
  t.match(first, { id: /^ph-[0-9a-f]{16}$/, placeholder: /^codex-authd-ph\.[A-Za-z0-9_-]{43}$/ })
  const file = await fileTokens(home)
  // Codex's auth.json, exactly: its keys in its order, the placeholder as the refresh token.
  t.same(Object.keys(first.authFile), ['auth_mode', 'OPENAI_API_KEY', 'tokens', 'last_refresh'])
  t.same(Object.keys(first.authFile.tokens), ['id_token', 'access_token', 'refresh_token', 'account_id'])
  t.equal(first.authFile.auth_mode, 'chatgpt')
  t.equal(first.authFile.OPENAI_API_KEY, null)
  t.ok(first.authFile.tokens.access_token === file.accessToken, 'the current access token')
  t.ok(first.authFile.tokens.id_token === file.idToken, 'the current id token')
  t.ok(first.authFile.tokens.refresh_token === first.placeholder, 'the placeholder in place of the refresh token')
  t.equal(first.authFile.tokens.account_id, file.accountId)
  t.ok(Date.parse(first.expiresAt) > Date.now() + 23 * 3600_000, 'a 24 h lifetime by default')

  // Codex's proactive refresh with a fresh token: the current tokens, a new placeholder, nothing spent.
  let ph = first.placeholder
  const a1 = await brokerRefresh(r, ph)
  t.equal(a1.status, 200)
  t.ok(a1.body.access_token === file.accessToken, 'the current access token')
  t.ok(a1.body.refresh_token.startsWith('codex-authd-ph.') && a1.body.refresh_token !== ph, 'a new placeholder')
  ph = a1.body.refresh_token
  t.equal(refreshCalls(p), spendsBefore, 'nothing spent')

  // Two refreshes forced on the workstation (the refresh RPC, main socket): each time the remote's
  // next use gets the daemon's new tokens, with the next placeholder.
  let spent = file.refreshToken
  for (let i = 0; i < 2; i++) {
    t.notOk((await m.call('refresh')).error, `forced refresh ${i + 1}`)
    const now = await rotatedInFile(`rotation ${i + 1} in auth.json`, home, spent)
    spent = now.refreshToken
    const a = await brokerRefresh(r, ph, 'unauthorized_recovery')
    t.equal(a.status, 200)
    t.ok(a.body.access_token === now.accessToken, 'the new access token')
    t.ok(a.body.refresh_token !== ph && a.body.refresh_token.startsWith('codex-authd-ph.'), 'the next placeholder')
    ph = a.body.refresh_token
  }
  t.equal(refreshCalls(p), spendsBefore + 2, 'the remote\'s recoveries spent nothing of their own: the daemon\'s two refreshes only')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0)

  // The raw bytes received on the restricted socket: no real refresh token, ever.
  const realTokens = [minted.refreshToken, ...refreshAnswers(w).map((x) => x.refresh_token)]
  t.ok(realTokens.length >= 3)
  t.equal(realTokens.filter((rt) => raw().includes(rt)).length, 0, 'no real refresh token in any answer on the restricted socket')
  t.ok(raw().includes(ph), 'while the placeholders did arrive (the scan sees the answers)')

  const list1 = await list(m)
  const chain = list1.filter((x) => x.label === 'host:alice@build1')
  t.same(chain.map((x) => x.state), ['rotated', 'rotated', 'rotated', 'active'])
  t.match(chain[0], { socket: 'restricted', uses: 1, peer: { pid: process.pid, uid: process.getuid!() } })
  t.ok(chain[0].lastUsedAt !== null && chain[3].lastUsedAt === null)
  const counters = (await status(m)).counters
  t.match(counters, { placeholderReuse: 0, placeholders: { issued: 1, rotated: 3 } })
  t.ok(counters.placeholders.active >= 1)
  t.same(d.secretsInOutput(), [], 'no token and no placeholder in the daemon\'s output')
})

t.test('reuse: a rotated placeholder presented again revokes its chain; 401 reused; counted, audited, logged', async (t) => {
  const r = await open(t, restrictedOf(d.socket))
  const m = await open(t, d.socket)
  const a = await issue(r, 'stolen')
  const b = await brokerRefresh(r, a.placeholder)
  t.equal(b.status, 200)
  // Within the grace, its successor unused: the same answer again (an answer lost on the way).
  const retry = await brokerRefresh(r, a.placeholder)
  t.equal(retry.status, 200)
  t.ok(retry.body.refresh_token === b.body.refresh_token, 'the same successor, not a reuse')
  // The owner goes on with the successor ...
  const c = await brokerRefresh(r, b.body.refresh_token)
  t.equal(c.status, 200)
  // ... and a thief presents the first one again.
  const spends = refreshCalls(p)
  const thief = await brokerRefresh(r, a.placeholder)
  t.equal(thief.status, 401)
  t.equal(thief.body.error.code, 'refresh_token_reused', 'Codex\'s "already used" body: sign in again')
  t.match(thief.body.error.message, /already been used/)
  const owner = await brokerRefresh(r, c.body.refresh_token)
  t.equal(owner.status, 401, 'the whole chain is revoked: the current one too')
  t.equal(owner.body.error.code, 'refresh_token_invalidated')
  t.equal(refreshCalls(p), spends, 'nothing spent for either')
  const s = await status(m)
  t.equal(s.counters.placeholderReuse, 1)
  const audit = (await m.call('audit')).result.entries
  t.match(audit.filter((e: any) => e.outcome === 'placeholder_reused'), [{ method: 'brokerRefresh', socket: 'restricted', peer: { pid: process.pid } }])
  const line = await d.waitForLog((x) => typeof x.msg === 'string' && x.msg.startsWith('a rotated placeholder was presented again'))
  t.match(line, { level: 40, label: 'stolen', revoked: 1 })
  t.same((await list(m)).filter((x) => x.label === 'stolen').map((x) => x.state), ['reused', 'rotated', 'revoked'])
  t.same(d.secretsInOutput(), [])
})

t.test('binding, list and revoke: issued on one socket, refused on the other; revoked one by one', async (t) => {
  const r = await open(t, restrictedOf(d.socket))
  const m = await open(t, d.socket)
  const onR = await issue(r, 'on-restricted')
  const onM = await issue(m, 'on-main')
  const spends = refreshCalls(p)
  const x1 = await brokerRefresh(m, onR.placeholder)
  t.equal(x1.status, 401, 'issued on restricted, refused on main')
  t.equal(x1.body.error.code, 'refresh_token_invalidated')
  const x2 = await brokerRefresh(r, onM.placeholder)
  t.equal(x2.status, 401, 'issued on main, refused on restricted')
  // A revoke on the wrong socket revokes nothing.
  t.same((await r.call('brokerRevoke', { token: onM.placeholder, token_type_hint: 'refresh_token' })).result, { status: 200, body: {} })
  const ok = await brokerRefresh(m, onM.placeholder)
  t.equal(ok.status, 200, 'still good on its own socket')
  t.equal(refreshCalls(p), spends)

  // The list (main socket): never the placeholder string.
  const listRaw = JSON.stringify((await m.call('placeholderList')).result)
  t.notOk(listRaw.includes(onR.placeholder) || listRaw.includes(onM.placeholder) || listRaw.includes(ok.body.refresh_token), 'no placeholder string in the list')
  const entries = await list(m)
  t.match(entries.find((x) => x.id === onR.id), { label: 'on-restricted', socket: 'restricted', state: 'active', uses: 0 })
  t.match(entries.find((x) => x.id === onM.id), { label: 'on-main', socket: 'main', state: 'rotated', uses: 1 })

  // Revoked one by one: by any id of its chain; the others untouched.
  t.same((await m.call('placeholderRevoke', { id: onM.id })).result, { revoked: true })
  t.equal((await brokerRefresh(m, ok.body.refresh_token)).status, 401, 'the chain\'s current one is refused')
  t.same((await m.call('placeholderRevoke', { id: onM.id })).result, { revoked: false }, 'nothing left to revoke')
  t.same((await m.call('placeholderRevoke', { id: 'ph-nothing' })).result, { revoked: false })
  t.equal((await m.call('placeholderRevoke', { id: 42 })).error?.code, -32602)
  // brokerRevoke of a placeholder (Codex's logout on the remote): that chain only, never the real token.
  t.same((await r.call('brokerRevoke', { token: onR.placeholder, token_type_hint: 'refresh_token', client_id: CLIENT_ID })).result, { status: 200, body: {} })
  t.equal((await brokerRefresh(r, onR.placeholder)).status, 401)
  t.equal(p.countCalls({ endpoint: 'revoke' }), 0, 'nothing revoked upstream')
  t.ok(fs.existsSync(path.join(home, 'auth.json')), 'the workstation is still logged in')
  t.same((await list(m)).filter((x) => x.id === onR.id || x.id === onM.id).map((x) => x.state), ['revoked', 'rotated'])

  // Params: a label is 1-80 printable characters.
  t.equal((await r.call('placeholderIssue', { label: '' })).error?.data?.field, 'label')
  t.equal((await r.call('placeholderIssue', { label: 'x'.repeat(81) })).error?.data?.field, 'label')
  t.equal((await r.call('placeholderIssue', { label: 'a\u001b[2Jb' })).error?.data?.field, 'label')
  // replaces: the old one is revoked once the new one is issued (a sink renewing its own).
  const s1 = await issue(r, 'sink')
  const s2 = await issue(r, 'sink', s1.id)
  t.equal((await brokerRefresh(r, s1.placeholder)).status, 401, 'the replaced one is refused')
  t.equal((await brokerRefresh(r, s2.placeholder)).status, 200)
  t.same(d.secretsInOutput(), [])
})

t.test('persisted across a daemon restart: hashes only, 0600; a placeholder issued before works after', async (t) => {
  const r1 = await open(t, restrictedOf(d.socket))
  const before = await issue(r1, 'survivor')
  const rotated = await brokerRefresh(r1, before.placeholder)
  t.equal(rotated.status, 200)
  const file = path.join(home, 'authd-placeholders.json')
  t.equal(fs.statSync(file).mode & 0o777, 0o600)
  const text = fs.readFileSync(file, 'utf8')
  t.notOk(text.includes(before.placeholder) || text.includes(rotated.body.refresh_token), 'no placeholder string in the file')
  t.notOk(text.includes(minted.refreshToken) || text.includes((await fileTokens(home)).refreshToken), 'no token in the file')
  const listed = await list(await open(t, d.socket))
  const sock = d.socket
  await d.stop()
  d = await daemon(root, home, p, { socket: sock })
  const m = await open(t, d.socket)
  t.same(await list(m), listed, 'the same list after the restart')
  const r2 = await open(t, restrictedOf(d.socket))
  const after = await brokerRefresh(r2, rotated.body.refresh_token)
  t.equal(after.status, 200, 'the placeholder from before the restart is served')
  const reused = await brokerRefresh(r2, before.placeholder)
  t.equal(reused.body.error?.code, 'refresh_token_reused', 'and reuse is still detected')
  t.same(d.secretsInOutput(), [])
})

t.test('codex-auth placeholders [--json] and placeholders revoke ID: the main socket only; never a placeholder string', async (t) => {
  const r = await open(t, restrictedOf(d.socket))
  const a = await issue(r, 'cli:bob@box')
  const env = { HOME: path.dirname(home) }
  const text = await runCli(['placeholders'], { socket: d.socket, env })
  t.equal(text.code, 0)
  const line = text.stdout.split('\n').find((l) => l.startsWith(a.id))
  t.ok(line, 'one line per placeholder, by id')
  t.match(line, /active\s+restricted\s+cli:bob@box\s+uses 0, never used, expires \S+Z\s+pid \d+ uid \d+ /, 'state, socket, label, uses, expiry, who asked')
  const js = await runCli(['placeholders', '--json'], { socket: d.socket, env })
  t.equal(js.code, 0)
  t.match(JSON.parse(js.stdout).placeholders.find((x: any) => x.id === a.id), { label: 'cli:bob@box', state: 'active' })
  // runCli fails the test on its own if a registered placeholder or token appears in the output.
  const rev = await runCli(['placeholders', 'revoke', a.id], { socket: d.socket, env })
  t.equal(rev.code, 0)
  t.match(rev.stdout, new RegExp(`^Revoked ${a.id}`))
  t.equal((await brokerRefresh(r, a.placeholder)).status, 401, 'revoked')
  const again = await runCli(['placeholders', 'revoke', a.id, '--json'], { socket: d.socket, env })
  t.same(JSON.parse(again.stdout), { revoked: false })
  const onRestricted = await runCli(['placeholders', '--json'], { socket: restrictedOf(d.socket), env })
  t.equal(onRestricted.code, 3, 'refused on the restricted socket')
  t.match(JSON.parse(onRestricted.stdout), { code: 'restricted', details: { method: 'placeholderList' } })
  const usage = await runCli(['placeholders', 'revoke'], { socket: d.socket, env })
  t.equal(usage.code, 64)
  t.match(usage.stderr, /needs an ID/)
  t.equal((await runCli(['placeholders', 'list'], { socket: d.socket, env })).code, 64)
})

t.test('expiry (CODEX_AUTHD_PLACEHOLDER_TTL_MS): refused with Codex\'s "expired" body; a rotation starts a new lifetime', async (t) => {
  const x = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const e = await daemon(t, x.home, x.p, { env: { CODEX_AUTHD_PLACEHOLDER_TTL_MS: '2000' } })
  const r = await open(t, restrictedOf(e.socket))
  const a = await issue(r, 'short')
  t.ok(Date.parse(a.expiresAt) - Date.now() <= 2000)
  const b = await brokerRefresh(r, a.placeholder)
  t.equal(b.status, 200)
  const m = await open(t, e.socket)
  await until('the placeholder expires', async () => (await list(m)).some((p) => p.label === 'short' && p.state === 'expired'), 30_000)
  const late = await brokerRefresh(r, b.body.refresh_token)
  t.equal(late.status, 401)
  t.equal(late.body.error.code, 'refresh_token_expired')
  t.match(late.body.error.message, /expired/)
  t.equal((await status(m)).counters.placeholders.refused, 1)
  const [first, next] = (await list(m)).filter((p) => p.label === 'short')
  t.same([first.state, next.state], ['rotated', 'expired'])
  t.ok(Date.parse(next.expiresAt) > Date.parse(first.expiresAt), 'the rotation started a new lifetime')
  t.same(e.secretsInOutput(), [])
})

t.test('API-key mode: no placeholder (it stands in for a ChatGPT refresh token only)', async (t) => {
  const h = tempDir('cad-home-')
  fs.writeFileSync(path.join(h, 'auth.json'), JSON.stringify({ OPENAI_API_KEY: 'sk-test-remote-placeholder-0123456789' }), { mode: 0o600 })
  registerSecret('sk-test-remote-placeholder-0123456789', 'api key')
  const e = await daemon(t, h, p)
  const res = await (await open(t, restrictedOf(e.socket))).call('placeholderIssue', { label: 'x' })
  t.equal(res.error?.code, -32001)
  t.match(res.error?.message, /API key/)
  t.notOk(fs.existsSync(path.join(h, 'authd-placeholders.json')), 'nothing issued, nothing written')
})

/** systemd-socket-activate listening on `socks` (named `names`), the daemon exec()ed on the first connect. */
async function socketActivate(t: { teardown(fn: () => unknown): void }, socks: string[], names: string[], home: string): Promise<{ kill(): Promise<number | null> }> {
  const env = isolatedEnv(home)
  const args = [...socks.flatMap((s) => ['-l', s]), `--fdname=${names.join(':')}`, process.execPath, DAEMON_BIN, '--codex-home', home, ...daemonArgs(p)]
  const proc = spawn('systemd-socket-activate', args, { env, stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  let err = ''
  await new Promise<void>((resolve, reject) => {
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      err += chunk
      if ((err.match(/Listening on/g) ?? []).length >= socks.length) resolve()
    })
    proc.once('error', reject)
    void exited.then((code) => reject(new Error(`systemd-socket-activate exited ${code}: ${err}`)))
  })
  return {
    kill: () => {
      proc.kill('SIGTERM')
      return exited
    },
  }
}

t.test('pickActivationFds: by name, else by path; the main socket is the first other fd', async (t) => {
  const paths: Record<number, string | null> = { 3: '/r/d.sock', 4: '/r/d.restricted.sock', 5: null }
  const pick = (fds: Array<[number, string]>) => pickActivationFds(fds.map(([fd, name]) => ({ fd, name })), (fd) => paths[fd] ?? null, restrictedSocketPath)
  t.same(pick([[3, 'rpc'], [4, 'restricted']]), { main: 3, restricted: 4 }, 'named')
  t.same(pick([[4, 'restricted'], [3, 'rpc']]), { main: 3, restricted: 4 }, 'named, in any order')
  t.same(pick([[3, 'codex-authd.socket'], [4, 'codex-authd.socket']]), { main: 3, restricted: 4 }, 'one unit, two ListenStream=: by path')
  t.same(pick([[4, 'x'], [3, 'x']]), { main: 3, restricted: 4 }, 'by path whatever the order')
  t.same(pick([[3, 'rpc']]), { main: 3, restricted: null }, 'only the main socket: the daemon binds the restricted one')
  t.same(pick([[5, '']]), { main: 5, restricted: null }, 'a path that cannot be told')
  t.equal(pick([[4, 'restricted']]), null, 'only a restricted fd: not an activation the daemon can serve')
})

t.test('socket activation: the restricted fd by name or by path; without one the daemon binds it', async (t) => {
  for (const names of [['rpc', 'restricted'], ['codex-authd.socket', 'codex-authd.socket'], ['rpc']]) {
    const named = names.length === 2
    const x = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
    const dir = tempDir('cad-act-')
    const main = path.join(dir, 'default.sock')
    const restricted = restrictedOf(main)
    const act = await socketActivate(t, named ? [main, restricted] : [main], names, x.home)
    const mc = await open(t, main) // the first connect starts the daemon
    const s = await status(mc)
    t.equal(s.daemon.activated, true)
    t.equal(s.daemon.restrictedSocket, restricted, `${names.join(':')}: ${named ? 'the inherited fd' : 'bound by the daemon'}, status names it`)
    const r = await open(t, restricted)
    t.equal((await r.call('getAuth')).result?.mode, 'chatgpt', 'tokens served there')
    t.equal((await r.call('logout')).error?.code, -32008, 'logout refused there')
    t.equal((await mc.call('placeholderList')).error, undefined, 'the main fd is the main socket')
    t.equal(await act.kill(), 0, 'SIGTERM: exit 0')
    t.equal(fs.existsSync(restricted), named, named ? 'a socket systemd handed over is never unlinked' : 'the one it bound itself is removed')
  }
})
