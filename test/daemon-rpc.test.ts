// End to end: the real daemon bundle (dist/codex-authd.cjs) on a temp CODEX_HOME and socket, spoken
// to over raw NDJSON. Every method and error code reachable today (docs/contract.md). All tokens and
// keys here are fake.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, makeHome, startDaemon, stopAtTeardown, tempDir, type RunningDaemon } from './support/daemon.js'
import type { RawConnection } from './support/rpc.js'
import { fakeJwt } from './support/tokens.js'
import { until } from './support/until.js'

const AUTH_CLAIM = 'https://api.openai.com/auth'

interface FakeAuth {
  json: Record<string, unknown>
  access: string
  refresh: string
  id: string
  account: string
  email: string
}

/** A fresh-looking ChatGPT auth.json (30-day token issued now: no refresh is due). */
function chatgptAuth(tag: string, extra: { apiKey?: string | null; authMode?: string | null; plan?: string } = {}): FakeAuth {
  const now = Math.floor(Date.now() / 1000)
  const account = `acc-${tag}`
  const email = `${tag}@example.com`
  const id = fakeJwt({ email, [AUTH_CLAIM]: { chatgpt_plan_type: extra.plan ?? 'plus', chatgpt_user_id: `user-${tag}`, chatgpt_account_id: account } })
  const access = fakeJwt({ exp: now + 30 * 86400, iat: now, tag, [AUTH_CLAIM]: { chatgpt_account_id: account } })
  const refresh = `rt-fake-${tag}`
  const json: Record<string, unknown> = {
    OPENAI_API_KEY: extra.apiKey ?? null,
    tokens: { id_token: id, access_token: access, refresh_token: refresh, account_id: account },
    last_refresh: new Date().toISOString(),
  }
  if (extra.authMode !== null) json.auth_mode = extra.authMode ?? 'chatgpt'
  return { json, access, refresh, id, account, email }
}

function writeAuth(home: string, json: unknown, mode = 0o600): void {
  const file = path.join(home, 'auth.json')
  fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n', { mode })
  fs.chmodSync(file, mode)
}

async function homeWith(files: { auth?: unknown; authText?: string; authMode?: number; config?: string }): Promise<string> {
  const home = await makeHome()
  if (files.auth !== undefined) writeAuth(home, files.auth, files.authMode ?? 0o600)
  if (files.authText !== undefined) fs.writeFileSync(path.join(home, 'auth.json'), files.authText, { mode: 0o600 })
  if (files.config !== undefined) fs.writeFileSync(path.join(home, 'config.toml'), files.config)
  return home
}

async function daemon(t: Test, opts: Parameters<typeof startDaemon>[0] = {}): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon(opts))
}

/** Every raw line the daemon sends on this connection (for "never contains" checks). */
function recordRaw(c: RawConnection): { text: () => string } {
  let all = ''
  c.socket.on('data', (d: string | Buffer) => (all += d.toString()))
  return { text: () => all }
}

/**
 * Lines that arrive until the reply with `id`: proves that nothing was sent for the messages
 * written before it (the daemon handles one connection's lines in order, and the handlers that
 * could answer them complete before the next line is read).
 */
async function linesUntil(c: RawConnection, id: number): Promise<any[]> {
  const seen: any[] = []
  for (;;) {
    const m = await c.next()
    seen.push(m)
    if (m && m.id === id) return seen
  }
}

t.test('getAuth and status, ChatGPT tokens', async (t) => {
  const a = chatgptAuth('one')
  const d = await daemon(t, { home: await homeWith({ auth: a.json }) })
  const c = await connect(t, d)
  const raw = recordRaw(c)

  const g = await c.call('getAuth')
  t.same(g.result, { mode: 'chatgpt', token: a.access, accountId: a.account, expiresAt: g.result.expiresAt, email: a.email, planType: 'plus' })
  t.match(g.result.expiresAt, /^\d{4}-\d\d-\d\dT/)
  t.ok(Date.parse(g.result.expiresAt) > Date.now() + 29 * 86400_000, 'expiresAt is the access token exp')
  const g2 = await c.call('getAuth', { minValiditySeconds: 3600 })
  t.equal(g2.result.token, a.access, 'explicit minValiditySeconds')
  const g3 = await c.call('getAuth', { minValiditySeconds: 0 })
  t.equal(g3.result.token, a.access, 'minValiditySeconds 0')

  const s = await c.call('status')
  const st = s.result
  t.equal(st.loggedIn, true)
  t.equal(st.mode, 'chatgpt')
  t.equal(st.source, 'auth.json')
  t.same(st.account, { email: a.email, planType: 'plus', accountId: a.account })
  t.equal(st.tokens.expiresAt, g.result.expiresAt)
  t.equal(st.tokens.lastRefresh, a.json.last_refresh)
  t.same(st.settings, { codexHome: d.home, codexHomeTarget: d.home, preferredAuthMethod: 'chatgpt', forcedLoginMethod: null, credentialsStore: 'file' })
  t.same(st.problems, [])
  t.equal(st.daemon.pid, d.pid)
  t.equal(st.daemon.socket, d.socket)
  t.equal(st.daemon.activated, false)
  t.match(st.daemon.version, /^\d+\.\d+\.\d+/)
  t.ok(Date.parse(st.daemon.startedAt) <= Date.now())
  t.match(st.refresh, { state: String, lastError: null })

  const statusText = JSON.stringify(st)
  t.notOk(statusText.includes(a.access), 'status holds no access token')
  t.notOk(statusText.includes(a.refresh), 'status holds no refresh token')
  t.notOk(statusText.includes(a.id), 'status holds no id token')

  const text = raw.text()
  t.notOk(text.includes(a.refresh), 'no response ever carried the refresh token')
  t.notOk(text.includes(a.id), 'no response ever carried the id token')
  t.notOk(text.includes('refresh_token') || text.includes('id_token'), 'no token field names either')
})

t.test('getAuth with an API key: from the environment, and from auth.json', async (t) => {
  const envKey = 'sk-fake-env-0000000000000000abcde'
  const d1 = await daemon(t, { env: { OPENAI_API_KEY: envKey } })
  const c1 = await connect(t, d1)
  const g1 = await c1.call('getAuth')
  t.same(g1.result, { mode: 'apikey', token: envKey, accountId: null, expiresAt: null, email: null, planType: null })
  const s1 = await c1.call('status')
  t.equal(s1.result.source, 'env')
  t.equal(s1.result.mode, 'apikey')
  t.equal(s1.result.tokens, null)
  t.notOk(JSON.stringify(s1.result).includes(envKey), 'status holds no key')

  const fileKey = 'sk-fake-file-111111111111111fghij'
  const d2 = await daemon(t, { home: await homeWith({ auth: { auth_mode: 'apikey', OPENAI_API_KEY: fileKey } }) })
  const c2 = await connect(t, d2)
  const g2 = await c2.call('getAuth')
  t.equal(g2.result.mode, 'apikey')
  t.ok(g2.result.token === fileKey, 'the file key is served')
  const s2 = await c2.call('status')
  t.equal(s2.result.source, 'auth.json')
  t.notOk(JSON.stringify(s2.result).includes(fileKey), 'status holds no key')
})

t.test('-32001 not logged in; -32601 unknown method; subscribe', async (t) => {
  const d = await daemon(t)
  const c = await connect(t, d)
  const g = await c.call('getAuth')
  t.equal(g.error.code, -32001)
  t.equal(g.error.data.reason, 'not_logged_in')
  t.equal(g.result, undefined)
  const s = await c.call('status')
  t.match(s.result, { loggedIn: false, mode: null, source: null, account: null, tokens: null, problems: [] })

  const u = await c.call('noSuchMethod', {})
  t.equal(u.error.code, -32601)
  const u2 = await c.call('rpc.discover')
  t.equal(u2.error.code, -32601)

  const sub = await c.call('subscribe')
  t.same(sub.result, { subscribed: true })
  const sub2 = await c.call('subscribe', {})
  t.same(sub2.result, { subscribed: true }, 'subscribing twice is fine')
  const sub3 = await c.call('subscribe', [])
  t.equal(sub3.error.code, -32602, 'subscribe with positional params')
  t.equal(sub3.error.data.field, 'params')
})

t.test('hello: the daemon names its version and protocol, whatever the client speaks', async (t) => {
  const d = await daemon(t)
  const c = await connect(t, d)
  const version = (await c.call('status')).result.daemon.version
  const h = await c.call('hello', { client: { name: 'test', version: '1.2.3' }, protocol: 1 })
  t.same(h.result, { daemon: { version, protocol: 1 } })
  const newer = await c.call('hello', { client: { name: 'test', version: '9.0.0' }, protocol: 7 })
  t.same(newer.result, { daemon: { version, protocol: 1 } }, 'a newer protocol is answered too: the client decides')
  const bad: Array<[string, unknown, string]> = [
    ['no params', undefined, 'client'],
    ['client not an object', { client: 'x', protocol: 1 }, 'client'],
    ['no name', { client: { version: '1' }, protocol: 1 }, 'client.name'],
    ['version a number', { client: { name: 'n', version: 1 }, protocol: 1 }, 'client.version'],
    ['a control character', { client: { name: 'n\n', version: '1' }, protocol: 1 }, 'client.name'],
    ['protocol 0', { client: { name: 'n', version: '1' }, protocol: 0 }, 'protocol'],
    ['protocol 1.5', { client: { name: 'n', version: '1' }, protocol: 1.5 }, 'protocol'],
    ['positional', [1], 'params'],
  ]
  for (const [name, params, field] of bad) {
    const r = await c.call('hello', params)
    t.equal(r.error?.code, -32602, name)
    t.equal(r.error?.data?.field, field, `${name}: data.field`)
  }
})

t.test('-32700 parse errors, including invalid UTF-8; the connection survives', async (t) => {
  const d = await daemon(t)
  const c = await connect(t, d)

  c.write('{"jsonrpc":"2.0","id":1,"method":\n')
  let m = await c.next()
  t.same(m, { jsonrpc: '2.0', id: null, error: { code: -32700, message: m.error.message } })

  c.write('not json at all\n')
  m = await c.next()
  t.equal(m.error.code, -32700)

  // Valid JSON syntax, but a lone 0xff byte inside a string.
  c.write(Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":2,"method":"status","params":{"x":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}\n')]))
  m = await c.next()
  t.equal(m.error.code, -32700, 'invalid UTF-8 is a parse error')
  t.equal(m.id, null)

  // A truncated multi-byte sequence (first byte of a 3-byte character).
  c.write(Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":3,"method":"st'), Buffer.from([0xe2, 0x82]), Buffer.from('atus"}\n')]))
  m = await c.next()
  t.equal(m.error.code, -32700, 'truncated UTF-8 sequence')

  // A request split over several writes still works, CRLF too.
  c.write('{"jsonrpc":"2.0",')
  c.write('"id":4,"method":"status"}\r\n')
  m = await c.next()
  t.equal(m.id, 4)
  t.equal(m.result.loggedIn, false)

  const after = await c.call('status')
  t.ok(after.result, 'the connection is still usable after parse errors')
})

t.test('-32600 invalid requests', async (t) => {
  const d = await daemon(t)
  const c = await connect(t, d)
  const cases: Array<[string, string, unknown]> = [
    ['a number', '42', null],
    ['a string', '"status"', null],
    ['null', 'null', null],
    ['jsonrpc 1.0', '{"jsonrpc":"1.0","id":7,"method":"status"}', 7],
    ['no jsonrpc', '{"id":8,"method":"status"}', 8],
    ['method not a string', '{"jsonrpc":"2.0","id":9,"method":5}', 9],
    ['params a string', '{"jsonrpc":"2.0","id":10,"method":"status","params":"x"}', 10],
    ['id an object', '{"jsonrpc":"2.0","id":{},"method":"status"}', null],
    ['empty batch', '[]', null],
  ]
  for (const [name, line, id] of cases) {
    c.write(line + '\n')
    const m = await c.next()
    t.equal(m.error?.code, -32600, name)
    t.equal(m.id, id, `${name}: id`)
    t.equal(m.jsonrpc, '2.0')
  }
  const after = await c.call('status')
  t.ok(after.result, 'still open')
})

t.test('a line over 1 MiB: -32600 and the connection is closed; exactly 1 MiB is served', async (t) => {
  const d = await daemon(t)
  const MiB = 1024 * 1024

  const ok = await connect(t, d)
  const head = '{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"'
  const tail = '"}}'
  const exact = head + 'x'.repeat(MiB - head.length - tail.length) + tail
  t.equal(Buffer.byteLength(exact), MiB)
  ok.write(exact + '\n')
  const r = await ok.next()
  t.equal(r.id, 1, 'a line of exactly 1 MiB (without its newline) is answered')
  t.ok(r.result)

  const c = await connect(t, d)
  const big = head + 'x'.repeat(MiB + 10) + tail + '\n'
  c.write(big)
  const m = await c.next()
  t.equal(m.error.code, -32600)
  t.equal(m.id, null)
  await c.closed
  t.pass('connection closed after the over-long line')

  // Same without a newline at all: the partial line alone crosses the limit.
  const c2 = await connect(t, d)
  c2.write('x'.repeat(MiB + 1))
  const m2 = await c2.next()
  t.equal(m2.error.code, -32600)
  await c2.closed
  t.pass('closed on an unterminated over-long line')

  const still = await connect(t, d)
  t.ok((await still.call('status')).result, 'the daemon still serves others')
})

t.test('-32602 with data.field', async (t) => {
  const d = await daemon(t, { home: await homeWith({ auth: chatgptAuth('p').json }) })
  const c = await connect(t, d)
  const bad: Array<[string, unknown, string]> = [
    ['string', { minValiditySeconds: '60' }, 'minValiditySeconds'],
    ['negative', { minValiditySeconds: -1 }, 'minValiditySeconds'],
    ['over 3600', { minValiditySeconds: 3601 }, 'minValiditySeconds'],
    ['boolean', { minValiditySeconds: true }, 'minValiditySeconds'],
    ['null', { minValiditySeconds: null }, 'minValiditySeconds'],
    ['positional array', [60], 'params'],
  ]
  for (const [name, params, field] of bad) {
    const r = await c.call('getAuth', params)
    t.equal(r.error?.code, -32602, name)
    t.equal(r.error?.data?.field, field, `${name}: data.field`)
  }
  // Huge numbers and NaN-ish values cannot reach us as JSON; 1e400 parses to Infinity.
  c.write('{"jsonrpc":"2.0","id":99,"method":"getAuth","params":{"minValiditySeconds":1e400}}\n')
  const inf = await c.next()
  t.equal(inf.error.code, -32602, 'Infinity')
  t.equal(inf.error.data.field, 'minValiditySeconds')

  const st = await c.call('status', [])
  t.equal(st.error.code, -32602, 'status with positional params')
  t.equal(st.error.data.field, 'params')
  const ok = await c.call('getAuth', { minValiditySeconds: 3600 })
  t.ok(ok.result, '3600 is accepted')
})

t.test('-32005 policy conflict: forced_login_method = "api" with only ChatGPT tokens', async (t) => {
  const a = chatgptAuth('pol')
  const home = await homeWith({ auth: a.json, config: 'forced_login_method = "api"\n' })
  const d = await daemon(t, { home })
  const c = await connect(t, d)
  const g = await c.call('getAuth')
  t.equal(g.error.code, -32005)
  t.equal(g.error.data.reason, 'forbidden_by_policy')
  t.notOk(JSON.stringify(g).includes(a.access), 'the refused token is not in the error')
  const s = (await c.call('status')).result
  t.equal(s.loggedIn, false)
  t.equal(s.settings.forcedLoginMethod, 'api')
  t.ok(
    s.problems.some((p: any) => p.code === 'policy_conflict'),
    'status lists policy_conflict',
  )
  t.ok(fs.existsSync(path.join(home, 'auth.json')), 'the file is never deleted for it')
})

t.test('-32006 unreadable auth.json, with file/line/column; status lists it', async (t) => {
  const text = '{\n  "auth_mode": "chatgpt",\n  "tokens": {\n    "access_token": "x",\n  }\n}\n'
  const home = await homeWith({ authText: text })
  const d = await daemon(t, { home })
  const c = await connect(t, d)
  const g = await c.call('getAuth')
  t.equal(g.error.code, -32006)
  t.equal(g.error.data.reason, 'store_unreadable')
  t.equal(g.error.data.file, path.join(home, 'auth.json'))
  t.equal(g.error.data.line, 5, 'line of the trailing comma error')
  t.equal(g.error.data.column, 3)
  const s = (await c.call('status')).result
  t.equal(s.loggedIn, false)
  const p = s.problems.find((x: any) => x.code === 'auth_unreadable')
  t.ok(p, 'auth_unreadable listed')
  t.match(p, { file: path.join(home, 'auth.json'), line: 5, column: 3 })
})

t.test('status problems: store_ephemeral, auth_permissions (0644)', async (t) => {
  const a = chatgptAuth('perm')
  const home = await homeWith({ auth: a.json, authMode: 0o644, config: '# comment\ncli_auth_credentials_store = "ephemeral"\n' })
  const d = await daemon(t, { home })
  const c = await connect(t, d)
  const s = (await c.call('status')).result
  t.equal(s.loggedIn, false, 'ephemeral: auth.json is not read (Codex does not read it either)')
  t.equal(s.settings.credentialsStore, 'ephemeral')
  t.same(s.problems.map((p: any) => p.code), ['store_ephemeral'])
  const store = s.problems.find((p: any) => p.code === 'store_ephemeral')
  t.equal(store.file, path.join(home, 'config.toml'))
  t.equal(store.line, 2)
  t.match(store.message, /only inside the Codex process/)
  const g = await c.call('getAuth', {})
  t.equal(g.error.code, -32001, 'not logged in, and why')
  t.match(g.error.message, /ephemeral/)
  t.match(g.error.data, { reason: 'not_logged_in', problem: 'store_ephemeral' })

  // The same home with the file store: the file is served, and its mode reported.
  fs.writeFileSync(path.join(home, 'config.toml'), '# comment\n')
  const s2 = await until('the daemon reads the new config.toml', async () => {
    const r = (await c.call('status')).result
    return r.settings.credentialsStore === 'file' ? r : null
  })
  t.equal(s2.loggedIn, true, 'the file is read')
  t.same(s2.problems.map((p: any) => p.code), ['auth_permissions'])
  const perm = s2.problems.find((p: any) => p.code === 'auth_permissions')
  t.equal(perm.file, path.join(home, 'auth.json'))
  t.match(perm.message, /644/)
  for (const p of [...s.problems, ...s2.problems]) {
    t.same(Object.keys(p).sort(), ['code', 'column', 'file', 'line', 'message'])
  }
  const text = JSON.stringify([s, s2])
  t.notOk(text.includes(a.access) || text.includes(a.refresh) || text.includes(a.id), 'no secret in status')
  t.equal((fs.statSync(path.join(home, 'auth.json')).mode & 0o777).toString(8), '644', 'the daemon did not chmod the file')
})

t.test('batches', async (t) => {
  const a = chatgptAuth('batch')
  const d = await daemon(t, { home: await homeWith({ auth: a.json }) })
  const c = await connect(t, d)

  t.test('mixed batch: array of answers, notifications dropped', async (t) => {
    c.send([
      { jsonrpc: '2.0', id: 'a', method: 'getAuth' },
      { jsonrpc: '2.0', method: 'status' },
      { jsonrpc: '2.0', id: 'b', method: 'nope' },
      42,
      { jsonrpc: '2.0', id: 'c', method: 'getAuth', params: { minValiditySeconds: 'x' } },
      { jsonrpc: '2.0', id: 'd', method: 'status' },
      { jsonrpc: '2.0', method: 'nope' },
    ])
    const r = await c.next()
    t.ok(Array.isArray(r), 'answered with an array')
    t.equal(r.length, 5)
    const byId = new Map<unknown, any>(r.map((x: any) => [x.id, x]))
    t.equal(byId.get('a').result.token, a.access)
    t.equal(byId.get('b').error.code, -32601)
    t.equal(byId.get(null)?.error.code, -32600, 'the invalid entry: id null')
    t.equal(byId.get('c').error.code, -32602)
    t.equal(byId.get('c').error.data.field, 'minValiditySeconds')
    t.equal(byId.get('d').result.loggedIn, true)
  })

  t.test('a one-request batch is answered with a one-element array', async (t) => {
    c.send([{ jsonrpc: '2.0', id: 5, method: 'status' }])
    const r = await c.next()
    t.ok(Array.isArray(r))
    t.equal(r.length, 1)
    t.equal(r[0].id, 5)
    t.equal(r[0].result.loggedIn, true)
    c.send([{ jsonrpc: '2.0', id: 6, method: 'nope' }, { jsonrpc: '2.0', method: 'status' }])
    const r2 = await c.next()
    t.ok(Array.isArray(r2), 'one answer left after dropping a notification: still an array')
    t.equal(r2.length, 1)
    t.equal(r2[0].error.code, -32601)
  })

  t.test('a batch of notifications gets no reply; nor does a single notification', async (t) => {
    c.send([
      { jsonrpc: '2.0', method: 'status' },
      { jsonrpc: '2.0', method: 'getAuth' },
      { jsonrpc: '2.0', method: 'nope' },
    ])
    c.send({ jsonrpc: '2.0', method: 'status' })
    c.send({ jsonrpc: '2.0', method: 'nope' })
    c.send({ jsonrpc: '2.0', id: 1000, method: 'status' })
    const seen = await linesUntil(c, 1000)
    t.equal(seen.length, 1, 'only the answer to the request with an id')
  })

  t.test('a batch of invalid entries answers each', async (t) => {
    c.send([1, 2, 3])
    const r = await c.next()
    t.ok(Array.isArray(r))
    t.equal(r.length, 3)
    t.ok(r.every((x: any) => x.error.code === -32600 && x.id === null))
  })
})

t.test('authChanged: exactly one notification for a rename, carrying the new state', async (t) => {
  const a = chatgptAuth('old')
  const home = await homeWith({ auth: a.json })
  const d = await daemon(t, { home })
  const c = await connect(t, d)
  const raw = recordRaw(c)
  c.send({ jsonrpc: '2.0', id: 1, method: 'subscribe' })
  t.same((await c.next()).result, { subscribed: true })

  const b = chatgptAuth('new', { plan: 'pro' })
  const tmp = path.join(home, '.auth.json.tmp')
  fs.writeFileSync(tmp, JSON.stringify(b.json), { mode: 0o600 })
  fs.renameSync(tmp, path.join(home, 'auth.json'))

  const n = await c.next()
  t.equal(n.method, 'authChanged')
  t.equal(n.id, undefined, 'a notification has no id')
  t.equal(n.params.loggedIn, true)
  t.same(n.params.account, { email: b.email, planType: 'pro', accountId: b.account })
  t.equal(n.params.daemon.pid, d.pid)
  t.notOk(JSON.stringify(n).includes(b.access), 'the notification holds no token')

  // A later, unrelated change: the next notification must be that one, so nothing else was sent
  // for the rename in between.
  fs.writeFileSync(path.join(home, 'config.toml'), 'preferred_auth_method = "apikey"\n')
  const n2 = await c.next()
  t.equal(n2.method, 'authChanged')
  t.equal(n2.params.settings.preferredAuthMethod, 'apikey', 'the next notification is for the config change')
  t.equal(n2.params.account.email, b.email)

  const other = await connect(t, d)
  const g = await other.call('getAuth')
  t.equal(g.result.token, b.access, 'getAuth serves the renamed file')
  t.notOk(raw.text().includes(b.refresh) || raw.text().includes(b.id))
})

t.test('authChanged goes to subscribed connections only', async (t) => {
  const home = await makeHome()
  const d = await daemon(t, { home })
  const sub = await connect(t, d)
  const plain = await connect(t, d)
  sub.send({ jsonrpc: '2.0', id: 1, method: 'subscribe' })
  await sub.next()
  plain.send({ jsonrpc: '2.0', id: 1, method: 'status' })
  await plain.next()

  writeAuth(home, chatgptAuth('sub').json)
  const n = await sub.next()
  t.equal(n.method, 'authChanged')
  t.equal(n.params.loggedIn, true)
  plain.send({ jsonrpc: '2.0', id: 2, method: 'status' })
  const seen = await linesUntil(plain, 2)
  t.equal(seen.length, 1, 'no notification on the unsubscribed connection')
  t.equal(seen[0].result.loggedIn, true)
})

t.test('idle unsubscribed connections are closed; subscribed ones stay open', async (t) => {
  const d = await daemon(t, { env: { CODEX_AUTHD_IDLE_TIMEOUT_MS: '300' } })
  const idle = await connect(t, d)
  // Before the call: the daemon's idle clock for this connection starts after t0 whatever the load.
  const t0 = Date.now()
  t.ok((await idle.call('status')).result)
  const sub = await connect(t, d)
  sub.send({ jsonrpc: '2.0', id: 1, method: 'subscribe' })
  t.same((await sub.next()).result, { subscribed: true })
  const silent = await connect(t, d)

  await idle.closed
  // 290, not 300: Node may fire a timer up to a millisecond early.
  t.ok(Date.now() - t0 >= 290, `closed after the idle timeout, not at once (${Date.now() - t0} ms)`)
  // `silent` connected after `sub` subscribed: once it has been closed for idleness, `sub` has
  // been idle for longer than the timeout too.
  await silent.closed
  t.notOk(sub.socket.destroyed, 'the subscribed connection is still open')
  sub.send({ jsonrpc: '2.0', id: 2, method: 'status' })
  const r = await sub.next()
  t.equal(r.id, 2)
  t.ok(r.result, 'and still answers')
})

t.test('daemon with a socket in a fresh directory: directory created 0700, socket 0600', async (t) => {
  const dir = path.join(tempDir('cad-d-'), 'sub')
  const d = await daemon(t, { socket: path.join(dir, 'a.sock') })
  t.equal(fs.statSync(dir).mode & 0o777, 0o700)
  t.equal(fs.statSync(d.socket).mode & 0o777, 0o600)
  const c = await connect(t, d)
  t.ok((await c.call('status')).result)
})
