// The client library (`codex-authd/client`): framing and errors against a scripted fake server,
// then typed errors, subscriptions and reconnects against the real daemon.
import t, { type Test } from 'tap'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import {
  AuthdError,
  AuthdTimeoutError,
  ConnectionClosedError,
  DaemonUnreachableError,
  VersionMismatchError,
  compareVersions,
  connect,
  socketPathFor,
  type AuthdClient,
  type Status,
} from '../src/client/index.js'
import { ErrorCode, MAX_LINE_BYTES, PROTOCOL_VERSION } from '../src/rpc/contract.js'
import { VERSION } from '../src/version.js'
import { makeHome, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { onLines } from './support/lines.js'

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

type Handler = (msg: any, sock: net.Socket) => void

/** A scripted NDJSON server on a temp socket. */
async function fakeServer(t: Test, onMessage: Handler): Promise<{ path: string; server: net.Server; conns: net.Socket[] }> {
  const p = path.join(tempDir('cad-fake-'), 'f.sock')
  const conns: net.Socket[] = []
  const server = net.createServer((sock) => {
    conns.push(sock)
    sock.on('error', () => {})
    onLines(sock, (line) => onMessage(JSON.parse(line), sock))
  })
  await new Promise<void>((r) => server.listen(p, r))
  t.teardown(() => {
    for (const c of conns) c.destroy()
    server.close()
  })
  return { path: p, server, conns }
}

const reply = (sock: net.Socket, id: unknown, result: unknown) => sock.write(JSON.stringify({ jsonrpc: '2.0', id, result }) + '\n')

/** Rejection of a promise, for `instanceOf` checks. */
async function rejection(p: Promise<unknown>): Promise<any> {
  try {
    await p
  } catch (e) {
    return e
  }
  throw new Error('expected a rejection')
}

/** auth.json as `codex login --with-api-key` writes it: temp file 0600, rename. */
function writeApiKeyAuth(home: string, key: string): void {
  const tmp = path.join(home, `.auth.json.${process.pid}.tmp`)
  fs.writeFileSync(tmp, JSON.stringify({ auth_mode: 'apikey', OPENAI_API_KEY: key }, null, 2), { mode: 0o600 })
  fs.renameSync(tmp, path.join(home, 'auth.json'))
}

/** Resolves with the first value pushed that matches. */
function collector<T>() {
  const items: T[] = []
  const waiters: Array<{ pred: (x: T) => boolean; resolve: (x: T) => void }> = []
  return {
    items,
    push(x: T) {
      items.push(x)
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(x)) waiters.splice(i, 1)[0]!.resolve(x)
      }
    },
    next(pred: (x: T) => boolean): Promise<T> {
      const found = items.find(pred)
      if (found !== undefined) return Promise.resolve(found)
      return new Promise((resolve) => waiters.push({ pred, resolve }))
    },
  }
}

const TEST_KEY = 'sk-test-0123456789abcdefghij' // a fake key; still never printed

// ---------------------------------------------------------------------------------------------
// without a daemon
// ---------------------------------------------------------------------------------------------

t.test('socketPathFor follows docs/contract.md#socket-path', async (t) => {
  t.strictSame(socketPathFor({ socket: '/x/y.sock' }), { path: '/x/y.sock', source: 'flag' })
  t.strictSame(socketPathFor({ env: { CODEX_AUTHD_SOCK: '/e.sock' } }), { path: '/e.sock', source: 'env' })
  const home = await makeHome()
  t.strictSame(socketPathFor({ env: { XDG_RUNTIME_DIR: '/run/x', HOME: home } }), { path: '/run/x/codex-authd/default.sock', source: 'runtime' })
  const r = socketPathFor({ env: { HOME: '/nonexistent-home' }, codexHome: home })
  if (r.source === 'home') t.equal(r.path, path.join(home, 'run', 'authd.sock'), 'no runtime dir: $CODEX_HOME/run/authd.sock')
  else t.match(r, { source: 'runtime', path: /\/run\/user\/\d+\/codex-authd\/[0-9a-f]{16}\.sock$/ })
})

t.test('connect to a socket nobody serves: DaemonUnreachableError', async (t) => {
  const sock = path.join(tempDir('cad-none-'), 'none.sock')
  const e = await rejection(connect({ socket: sock }))
  t.type(e, DaemonUnreachableError)
  t.equal(e.code, 'daemon_unreachable')
  t.equal(e.socket, sock)
  t.equal(e.errno, 'ENOENT')
  // How to start it depends on what is installed here (test/client-cli.test.ts checks both ways).
  t.match(e.message, /Start it with `(systemctl --user start codex-authd\.socket|codex-authd)`/)

  // a stale socket file (ECONNREFUSED)
  const stale = path.join(tempDir('cad-stale-'), 's.sock')
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(stale, r))
  // close without unlinking: duplicate the file first, as after a SIGKILL
  fs.linkSync(stale, stale + '2')
  await new Promise<void>((r) => srv.close(() => r()))
  const e2 = await rejection(connect({ socket: stale + '2' }))
  t.type(e2, DaemonUnreachableError)
  t.equal(e2.errno, 'ECONNREFUSED')

  const long = '/tmp/' + 'x'.repeat(120) + '.sock'
  const e3 = await rejection(connect({ socket: long }))
  t.type(e3, DaemonUnreachableError, 'too long a path is never connected to')
  t.match(e3.message, /CODEX_AUTHD_SOCK/)
})

t.test('framing, ids and errors against a fake server', async (t) => {
  let lastParams: unknown = 'unset'
  const { path: p } = await fakeServer(t, (msg, sock) => {
    switch (msg.method) {
      case 'status':
        lastParams = 'params' in msg ? msg.params : 'absent'
        // the answer split byte by byte, with a notification first
        {
          const bytes = Buffer.from(
            JSON.stringify({ jsonrpc: '2.0', method: 'authChanged', params: { loggedIn: false } }) +
              '\n' +
              JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { loggedIn: true, note: 'ü€' } }) +
              '\n',
          )
          let i = 0
          const drip = () => {
            if (i >= bytes.length) return
            sock.write(bytes.subarray(i, i + 7))
            i += 7
            setImmediate(drip)
          }
          drip()
        }
        break
      case 'getAuth':
        lastParams = msg.params
        sock.write(
          JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32001, message: 'Not logged in', data: { reason: 'not_logged_in' } } }) + '\n',
        )
        break
      case 'logout':
        sock.write(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } }) + '\n')
        break
      case 'refresh':
        // batch-shaped answer
        sock.write(JSON.stringify([{ jsonrpc: '2.0', id: msg.id, result: { mode: 'apikey' } }]) + '\n')
        break
      case 'cancelLogin':
        break // never answers
    }
  })
  const c = await connect({ socket: p, timeoutMs: 300 })
  t.teardown(() => c.close())
  const s = (await c.status()) as unknown as { loggedIn: boolean; note: string }
  t.strictSame(s, { loggedIn: true, note: 'ü€' }, 'reassembled across chunks, UTF-8 intact')
  t.equal(lastParams, 'absent', 'no params sent for status')

  const e = await rejection(c.getAuth({ minValiditySeconds: 120 }))
  t.strictSame(lastParams, { minValiditySeconds: 120 })
  t.type(e, AuthdError)
  t.equal(e.code, ErrorCode.NotLoggedIn)
  t.equal(e.reason, 'not_logged_in')
  t.equal(e.message, 'Not logged in', "the daemon's message")
  t.strictSame(e.data, { reason: 'not_logged_in' })

  const e2 = await rejection(c.logout())
  t.type(e2, AuthdError)
  t.equal(e2.code, -32601)
  t.equal(e2.reason, null)

  t.strictSame(await c.refresh(), { mode: 'apikey' }, 'answer inside a batch array')

  const e3 = await rejection(c.cancelLogin({ loginId: 'x' }))
  t.type(e3, AuthdTimeoutError)
  t.match(e3.message, /cancelLogin/)
  t.strictSame(await c.refresh(), { mode: 'apikey' }, 'connection still usable after a timeout')
})

t.test('pending calls reject with ConnectionClosedError; the next call reconnects', async (t) => {
  let connections = 0
  const { path: p } = await fakeServer(t, (msg, sock) => {
    if (msg.method === 'status') {
      sock.destroy() // hang up with the call pending
    } else {
      reply(sock, msg.id, { n: connections })
    }
  })
  const c = await connect({ socket: p })
  t.teardown(() => c.close())
  const e = await rejection(c.status())
  t.type(e, ConnectionClosedError)
  t.equal(e.code, 'connection_closed')
  connections++
  t.strictSame(await c.refresh(), { n: 1 }, 'reconnected for the next call')

  const c2 = await connect({ socket: p, reconnect: false })
  t.teardown(() => c2.close())
  t.type(await rejection(c2.status()), ConnectionClosedError)
  t.type(await rejection(c2.refresh()), ConnectionClosedError, 'reconnect: false stays closed')

  c.close()
  t.type(await rejection(c.refresh()), ConnectionClosedError, 'closed by the user')
})

t.test('a reply line over 1 MiB closes the connection', async (t) => {
  const { path: p } = await fakeServer(t, (msg, sock) => {
    if (msg.method === 'status') {
      sock.write('{"jsonrpc":"2.0","id":' + msg.id + ',"result":"' + 'a'.repeat(MAX_LINE_BYTES) + '"}\n')
    } else {
      reply(sock, msg.id, { ok: true })
    }
  })
  const c = await connect({ socket: p })
  t.teardown(() => c.close())
  const e = await rejection(c.status())
  t.type(e, ConnectionClosedError)
  t.match(e.message, /1 MiB/)
  t.strictSame(await c.refresh(), { ok: true }, 'a fresh connection afterwards')
})

t.test('notifications reach subscribers; unsubscribe stops them', async (t) => {
  let subSock: net.Socket | null = null
  let subscribes = 0
  const { path: p } = await fakeServer(t, (msg, sock) => {
    if (msg.method === 'subscribe') {
      subscribes++
      subSock = sock
      reply(sock, msg.id, { subscribed: true })
    } else reply(sock, msg.id, null)
  })
  const c = await connect({ socket: p })
  t.teardown(() => c.close())
  const changes = collector<Status>()
  const logins = collector<unknown>()
  const off = await c.subscribe({ authChanged: (s) => changes.push(s), loginCompleted: (r) => logins.push(r) })
  const off2 = await c.subscribe({ authChanged: () => {} })
  t.equal(subscribes, 1, 'one subscribe per connection')
  subSock!.write(JSON.stringify({ jsonrpc: '2.0', method: 'authChanged', params: { loggedIn: true } }) + '\n')
  subSock!.write(JSON.stringify({ jsonrpc: '2.0', method: 'loginCompleted', params: { loginId: 'l1', status: 'succeeded', error: null } }) + '\n')
  t.match(await changes.next(() => true), { loggedIn: true })
  t.match(await logins.next(() => true), { loginId: 'l1' })
  off()
  off2()
  subSock!.write(JSON.stringify({ jsonrpc: '2.0', method: 'authChanged', params: { loggedIn: false } }) + '\n')
  await c.refresh() // a round trip after the notification
  t.equal(changes.items.length, 1, 'nothing after unsubscribe')
})

t.test('version handshake: a daemon older than the handshake, asked for a method it lacks', async (t) => {
  const seen: Array<{ method: string; params: unknown }> = []
  const { path: p } = await fakeServer(t, (msg, sock) => {
    seen.push({ method: msg.method, params: msg.params })
    if (msg.method === 'status') reply(sock, msg.id, { daemon: { version: '0.0.1' } })
    else sock.write(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } }) + '\n')
  })
  const c = await connect({ socket: p, clientName: 'test-client' })
  t.teardown(() => c.close())
  const e = await rejection(c.logout())
  t.type(e, VersionMismatchError)
  t.type(e, AuthdError, 'still an AuthdError: callers that handle those keep working')
  t.equal(e.code, -32601, 'the code of the error that revealed it')
  t.match(e, { daemonVersion: '0.0.1', daemonProtocol: 1, clientVersion: VERSION, clientProtocol: PROTOCOL_VERSION })
  t.equal(e.message, `codex-authd 0.0.1 does not know \`logout\`, which test-client ${VERSION} uses: upgrade codex-authd (it predates the version handshake)`)
  t.same(
    seen,
    [
      { method: 'logout', params: undefined },
      { method: 'hello', params: { client: { name: 'test-client', version: VERSION }, protocol: PROTOCOL_VERSION } },
      { method: 'status', params: undefined },
    ],
    'logout, then hello (-32601), then status for the version',
  )
})

t.test('version handshake: a daemon speaking another protocol', async (t) => {
  const { path: p } = await fakeServer(t, (msg, sock) => {
    if (msg.method === 'hello') reply(sock, msg.id, { daemon: { version: '9.1.0', protocol: PROTOCOL_VERSION + 1 } })
    else sock.write(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32602, message: 'unknown field', data: { field: 'x' } } }) + '\n')
  })
  const c = await connect({ socket: p, clientName: 'test-client' })
  t.teardown(() => c.close())
  const e = await rejection(c.getAuth())
  t.type(e, VersionMismatchError)
  t.equal(e.code, -32602)
  t.strictSame(e.data, { field: 'x' })
  t.equal(
    e.message,
    `codex-authd 9.1.0 speaks protocol ${PROTOCOL_VERSION + 1}, test-client ${VERSION} speaks protocol ${PROTOCOL_VERSION}: upgrade test-client (getAuth failed: unknown field)`,
  )
})

t.test('version handshake: the same protocol leaves the error as it was; no hello when a call works', async (t) => {
  const seen: string[] = []
  const { path: p } = await fakeServer(t, (msg, sock) => {
    seen.push(msg.method)
    if (msg.method === 'hello') reply(sock, msg.id, { daemon: { version: VERSION, protocol: PROTOCOL_VERSION } })
    else if (msg.method === 'status') reply(sock, msg.id, { loggedIn: false })
    else sock.write(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } }) + '\n')
  })
  const c = await connect({ socket: p })
  t.teardown(() => c.close())
  await c.status()
  t.same(seen, ['status'], 'a call that works costs no handshake')
  const e = await rejection(c.refresh())
  t.type(e, AuthdError)
  t.notOk(e instanceof VersionMismatchError, 'a daemon of the same version and protocol: a plain -32601')
  t.equal(e.message, 'Method not found')
  t.same(seen, ['status', 'refresh', 'hello'])
})

t.test('compareVersions', async (t) => {
  t.ok(compareVersions('0.1.0', '0.2.0') < 0)
  t.ok(compareVersions('1.10.0', '1.9.9') > 0)
  t.equal(compareVersions('1.2.3', '1.2.3-rc.1'), 0, 'a pre-release suffix is ignored')
  t.equal(compareVersions('1.2', '1.2.0'), 0)
})

// ---------------------------------------------------------------------------------------------
// against the real daemon
// ---------------------------------------------------------------------------------------------

t.test('real daemon: typed results and errors', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  const c = await connect({ socket: d.socket })
  t.teardown(() => c.close())
  const s = await c.status()
  t.equal(s.loggedIn, false)
  t.equal(s.daemon.socket, d.socket)
  t.equal(s.daemon.pid, d.pid)
  t.equal(s.settings.codexHome, d.home)

  const e = await rejection(c.getAuth())
  t.type(e, AuthdError)
  t.equal(e.code, ErrorCode.NotLoggedIn)
  t.equal(e.reason, 'not_logged_in')

  const e2 = await rejection(c.getAuth({ minValiditySeconds: 99_999 }))
  t.type(e2, AuthdError)
  t.equal(e2.code, ErrorCode.InvalidParams)
})

t.test('real daemon: hello', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  const c = await connect({ socket: d.socket })
  t.teardown(() => c.close())
  const h = await c.hello()
  t.equal(h.daemon.protocol, PROTOCOL_VERSION)
  t.equal(h.daemon.version, (await c.status()).daemon.version)
  const e = await rejection(c.getAuth({ minValiditySeconds: -1 }))
  t.notOk(e instanceof VersionMismatchError, 'the same protocol: -32602 is the caller\'s error')
  t.equal(e.code, ErrorCode.InvalidParams)
})

t.test('real daemon: API key from the env', async (t) => {
  const d = stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: TEST_KEY } }))
  const c = await connect({ socket: d.socket })
  t.teardown(() => c.close())
  const g = await c.getAuth()
  t.equal(g.mode, 'apikey')
  t.ok(g.token === TEST_KEY, 'the key is served')
  const s = await c.status()
  t.match(s, { loggedIn: true, mode: 'apikey', source: 'env' })
  t.notOk(JSON.stringify(s).includes(TEST_KEY), 'status holds no secret')
})

t.test('real daemon: subscribe sees auth.json changes', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  const c = await connect({ socket: d.socket })
  t.teardown(() => c.close())
  const changes = collector<Status>()
  await c.subscribe({ authChanged: (s) => changes.push(s) })
  writeApiKeyAuth(d.home, TEST_KEY)
  const s = await changes.next((x) => x.loggedIn)
  t.match(s, { loggedIn: true, mode: 'apikey', source: 'auth.json' })
  fs.rmSync(path.join(d.home, 'auth.json'))
  t.match(await changes.next((x) => !x.loggedIn), { loggedIn: false })
})

t.test('real daemon: reconnects and re-subscribes after a restart', async (t) => {
  const home = await makeHome()
  const socket = path.join(tempDir('cad-rs-'), 's.sock')
  let d = stopAtTeardown(t, await startDaemon({ home, socket }))
  const c: AuthdClient = await connect({ socket })
  t.teardown(() => c.close())
  const plain: AuthdClient = await connect({ socket })
  t.teardown(() => plain.close())
  const changes = collector<Status>()
  const resubs = collector<number>()
  let n = 0
  await c.subscribe({ authChanged: (s) => changes.push(s), resubscribed: () => resubs.push(++n) })
  const pid1 = (await c.status()).daemon.pid
  t.equal((await plain.status()).daemon.pid, pid1)

  t.match(await d.stop(), { code: 0 })
  d = stopAtTeardown(t, await startDaemon({ home, socket }))
  await resubs.next(() => true)
  t.pass('subscription re-established')
  t.equal((await c.status()).daemon.pid, d.pid, 'talking to the new daemon')
  t.equal((await plain.status()).daemon.pid, d.pid, 'an unsubscribed client reconnects on its next call')

  writeApiKeyAuth(home, TEST_KEY)
  t.match(await changes.next((x) => x.loggedIn), { loggedIn: true, daemon: { pid: d.pid } }, 'notifications from the new daemon')
})
