// Who may talk to the browser login's callback server (issue 13, finding 6): only our own host
// names (DNS rebinding), no other site's page on /success or /cancel, while Codex's own plain
// GET /cancel (a new `codex login` freeing the port) keeps working and the result says the login
// was cancelled from outside, and by whom. Both ports squatted: the error names the holder.
// Real daemon, real provider, raw HTTP requests with the headers a browser would send.
import t from 'tap'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { driveAuthorization } from './support/browser.js'
import { connectionOwner, listenerOf, parseProcNetTcp, TCP_ESTABLISHED, TCP_LISTEN } from '../src/login/port-owner.js'
import { DEFAULT_ACCOUNT } from './support/provider.js'
import { authFile, freePorts, setup, type Page, type Rpc } from './support/login-helpers.js'

/** One GET with exactly these headers (Host included), as a browser or a script would send it. */
function rawGet(url: string | URL, headers: Record<string, string>): Promise<Page> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, agent: false, setHost: false, headers },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      },
    )
    req.on('error', reject)
  })
}

/** Codex's own /cancel, byte for byte (codex-rs/login/src/server.rs send_cancel_request). */
function codexCancel(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    let answer = ''
    sock.setEncoding('utf8')
    sock.on('connect', () => sock.write(`GET /cancel HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`))
    sock.on('data', (d: string) => (answer += d))
    sock.on('end', () => resolve(answer))
    sock.on('error', reject)
  })
}

async function startBrowserLogin(rpc: Rpc) {
  return rpc.ok('login', { method: 'browser' }) as Promise<{ loginId: string; authUrl: string; callbackUrl: string }>
}

async function stillPending(rpc: Rpc, loginId: string): Promise<boolean> {
  return (await rpc.ok('awaitLogin', { loginId, timeoutSeconds: 0 })).status === 'pending'
}

t.test('a foreign Host is refused on every route; our two names are served', async (t) => {
  const { provider, daemon, rpc, ports } = await setup(t)
  const started = await startBrowserLogin(rpc)
  const callback = await driveAuthorization(started.authUrl)
  const port = ports[0]!
  const path = callback.pathname + callback.search

  // A DNS-rebinding page: the browser connects to 127.0.0.1 but names the attacker's host.
  for (const host of [`evil.example:${port}`, `127.0.0.1:${port + 1}`, '127.0.0.1', `localhost.evil.example:${port}`]) {
    const r = await rawGet(`http://127.0.0.1:${port}${path}`, { host })
    t.equal(r.status, 403, `callback with Host ${host} refused`)
    t.match(r.body, /another host name/)
    t.equal((await rawGet(`http://127.0.0.1:${port}/cancel`, { host })).status, 403, `/cancel with Host ${host} refused`)
  }
  t.ok(await stillPending(rpc, started.loginId), 'the refused requests changed nothing')
  t.equal(provider.countCalls({ grantType: 'authorization_code' }), 0, 'no code exchanged for a foreign Host')

  // The real redirect, addressed as `localhost:<port>` (older Codex redirect URIs) works.
  const first = await rawGet(`http://127.0.0.1:${port}${path}`, { host: `LOCALHOST:${port}` })
  t.equal(first.status, 302)
  const success = await rawGet(`http://127.0.0.1:${port}/success`, { host: `localhost:${port}` })
  t.equal(success.status, 200)
  t.match(success.body, DEFAULT_ACCOUNT.email)
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 }), { status: 'succeeded' })
  t.ok(fs.existsSync(authFile(daemon.home)))
})

t.test('another site cannot read /success', async (t) => {
  const { rpc, ports } = await setup(t)
  const port = ports[0]!
  const host = `127.0.0.1:${port}`
  const started = await startBrowserLogin(rpc)
  const callback = await driveAuthorization(started.authUrl)
  t.equal((await rawGet(callback, { host })).status, 302)

  const attacks: Record<string, Record<string, string>> = {
    "a script's fetch (Origin)": { host, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' },
    'an opaque origin (sandboxed frame)': { host, origin: 'null' },
    'a no-cors fetch without Origin': { host, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'empty' },
    'a frame': { host, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe' },
    'another local port': { host, origin: `http://127.0.0.1:${port + 1}` },
  }
  for (const [what, headers] of Object.entries(attacks)) {
    const r = await rawGet(`http://${host}/success`, headers)
    t.equal(r.status, 403, `${what}: refused`)
    t.notOk(r.body.includes(DEFAULT_ACCOUNT.email), `${what}: no account detail`)
  }
  // The user's browser arrives by the issuer's redirect chain, which makes it cross-site: served.
  const visit = await rawGet(`http://${host}/success`, { host, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' })
  t.equal(visit.status, 200, 'a top-level navigation is served')
  t.match(visit.body, DEFAULT_ACCOUNT.email)
})

t.test('another site cannot cancel; Codex’s plain /cancel still does, and says so', async (t) => {
  const { rpc, ports } = await setup(t)
  const port = ports[0]!
  const host = `127.0.0.1:${port}`
  const started = await startBrowserLogin(rpc)

  const attacks: Record<string, Record<string, string>> = {
    'a link or image on another site': { host, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' },
    'a top-level navigation from another site': { host, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' },
    'a page on another local port': { host, 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'no-cors' },
    "a script's fetch": { host, origin: 'https://evil.example' },
  }
  for (const [what, headers] of Object.entries(attacks)) {
    const r = await rawGet(`http://${host}/cancel`, headers)
    t.equal(r.status, 403, `${what}: refused`)
    t.ok(await stillPending(rpc, started.loginId), `${what}: the login is still pending`)
  }

  // Exactly what a new `codex login` sends: no Origin, no Sec-Fetch-*.
  const answer = await codexCancel(port)
  t.match(answer, /^HTTP\/1\.1 200 /, 'served')
  t.match(answer, /Login cancelled/)
  const r = await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 })
  t.equal(r.status, 'cancelled')
  t.equal(r.error.reason, 'cancelled_from_outside', 'told apart from cancelLogin')
  t.match(r.error.message, /cancelled from outside/)
  t.match(r.error.message, `pid ${process.pid} `, 'names the process that sent it (this test)')
  t.match((await rpc.waitFor((n) => n.method === 'loginCompleted')).params, { status: 'cancelled', error: { reason: 'cancelled_from_outside' } })

  // A user typing the address (Sec-Fetch-Site: none) may cancel too; cancelLogin keeps its reason.
  const second = await startBrowserLogin(rpc)
  const typed = await rawGet(`http://${host}/cancel`, { host: `localhost:${port}`, 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' })
  t.equal(typed.status, 200)
  t.match(await rpc.ok('awaitLogin', { loginId: second.loginId, timeoutSeconds: 10 }), { status: 'cancelled', error: { reason: 'cancelled_from_outside' } })
  const third = await startBrowserLogin(rpc)
  await rpc.ok('cancelLogin', { loginId: third.loginId })
  t.match(await rpc.ok('awaitLogin', { loginId: third.loginId }), { status: 'cancelled', error: { reason: 'cancelled' } })
})

t.test('both ports taken: the error says so and names the holder', async (t) => {
  const ports = await freePorts(2)
  const { rpc } = await setup(t, { ports })
  // Squatters that do not give the port up on /cancel (this test process holds them).
  const squatters = await Promise.all(
    ports.map(
      (p) =>
        new Promise<http.Server>((resolve, reject) => {
          const s = http.createServer((_req, res) => res.writeHead(404).end())
          s.once('error', reject).listen(p, '127.0.0.1', () => resolve(s))
        }),
    ),
  )
  t.teardown(() => Promise.all(squatters.map((s) => new Promise<void>((r) => s.close(() => r())))))
  const began = Date.now()
  const r = await rpc.call('login', { method: 'browser' })
  t.comment(`both ports busy reported after ${Date.now() - began} ms`)
  t.match(r.error, { code: -32004, data: { reason: 'login_failed' } })
  const message: string = r.error!.message
  t.match(message, `Ports 127.0.0.1:${ports[0]}, 127.0.0.1:${ports[1]} are already in use`)
  t.match(message, 'Every login port is taken')
  for (const p of ports) t.match(message, `${p} by pid ${process.pid} (`, `the holder of ${p} named`)
})

t.test('port-owner: /proc/net/tcp rows, and this process found as the holder', async (t) => {
  const tcp = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:05AF 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0',
    '   1: 0100007F:9C40 0100007F:05AF 01 00000000:00000000 00:00000000 00000000 65534        0 77 1 0000000000000000 20 4 30 10 -1',
    '   2: garbage',
  ].join('\n')
  t.same(parseProcNetTcp(tcp, true), [
    { localAddress: '127.0.0.1', localPort: 1455, remoteAddress: '0.0.0.0', remotePort: 0, state: TCP_LISTEN, uid: 1000, inode: 4242 },
    { localAddress: '127.0.0.1', localPort: 40000, remoteAddress: '127.0.0.1', remotePort: 1455, state: TCP_ESTABLISHED, uid: 65534, inode: 77 },
  ])
  const tcp6 = [
    '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0000000000000000FFFF00000100007F:05B1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1',
    '   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 98 1',
  ].join('\n')
  t.same(parseProcNetTcp(tcp6, true).map((r) => [r.localAddress, r.localPort]), [['::ffff:127.0.0.1', 1457], ['0:0:0:0:0:0:0:1', 80]])

  // The real tables: a listener and a connection of this very process.
  const server = net.createServer((s) => s.on('error', () => {}))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as net.AddressInfo).port
  const client = net.connect(port, '127.0.0.1')
  await new Promise<void>((r) => client.once('connect', () => r()))
  t.teardown(() => client.destroy())
  let began = performance.now()
  const listener = await listenerOf(port)
  const listenMs = performance.now() - began
  began = performance.now()
  const sender = await connectionOwner(client.localPort!, port)
  const senderMs = performance.now() - began
  t.comment(`lookups over /proc: listener ${listenMs.toFixed(0)} ms, connection ${senderMs.toFixed(0)} ms`)
  t.match(listener, { uid: process.getuid!(), pid: process.pid })
  t.match(sender, { uid: process.getuid!(), pid: process.pid })
  t.equal(await connectionOwner(client.localPort!, 1), null, 'no such connection: null')
})
