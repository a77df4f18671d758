// The restricted socket (docs/remote.md#the-restricted-socket-and-placeholders): the second socket
// the daemon serves for forwarding to other machines. Real daemon bundle, real sockets, the
// harness's oidc-provider. What is allowed there works; everything that could change the
// workstation's credentials is -32008 and changes nothing.
//
// No token is ever printed: comparisons use t.ok(a === b).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { rawConnect, type RawConnection } from './support/rpc.js'
import { daemon, loggedIn, refreshCalls, status } from './support/refresh.js'

const HOUR = 3600

/** A raw connection to `sock`, closed at teardown. */
async function open(t: { teardown(fn: () => unknown): void }, sock: string): Promise<RawConnection> {
  const c = await rawConnect(sock)
  t.teardown(() => c.close())
  return c
}

const restrictedOf = (sock: string): string => sock.replace(/\.sock$/, '.restricted.sock')

t.test('the restricted socket: beside the main one, 0600; serves tokens and status, refuses the rest with -32008', async (t) => {
  const { p, home, minted } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
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
  ]
  for (const [method, params] of refused) {
    const res = await r.call(method, params)
    t.equal(res.error?.code, -32008, `${method} ${JSON.stringify((params as { method?: string })?.method ?? '')}: -32008`)
    t.same(res.error?.data, { reason: 'restricted', method })
    t.equal(res.error?.message, `${method} is not available on the restricted socket`)
  }
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
  t.equal((await status(await open(t, d.socket))).loggedIn, true, 'the main socket still serves')

  // The main socket serves every method (audit here: the refused calls were not audited as done).
  const m = await open(t, d.socket)
  const audit = await m.call('audit')
  t.notOk(audit.error, 'audit works on the main socket')
  t.notOk(audit.result.entries.some((e: any) => e.method === 'logout' || e.method === 'login' || e.method === 'refresh'), 'no refused call ran')
  t.same(d.secretsInOutput(), [])
})
