// The `codex-auth exec` broker listener (docs/broker.md#the-listener), end to end: the real CLI bundle
// runs a Codex-shaped child (fixtures/broker-child.mjs) that sends requests to the URLs exec put in
// its environment; the real daemon and the harness's oidc-provider answer behind it. Each refusal
// spends nothing, and no body (a marker token in it) reaches any output.
//
// No token is printed: answers are parsed here and compared with t.ok(a === b).
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import readline from 'node:readline'
import { acquireLock } from '../src/os/flock.js'
import { CLI_BIN, ROOT, isolatedEnv } from './support/daemon.js'
import { CLIENT_ID } from './support/provider.js'
import { daemon, fileTokens, loggedIn, refreshCalls, rotatedInFile, status } from './support/refresh.js'
import { connect } from './support/daemon.js'
import { findSecrets, registerSecret } from './support/secrets.js'
import { until } from './support/until.js'

const HOUR = 3600
const CHILD = path.join(ROOT, 'test', 'fixtures', 'broker-child.mjs')

interface Answer {
  status: number
  text?: string
  error?: string
}

/** `codex-auth exec -- node broker-child.mjs`, driven one request at a time. */
async function execChild(t: Test, socket: string, home: string, upstream: string) {
  const proc = spawn(process.execPath, [CLI_BIN, '--socket', socket, 'exec', '--', process.execPath, CHILD], {
    env: isolatedEnv(home, { CODEX_HOME: home, CODEX_REFRESH_TOKEN_URL_OVERRIDE: upstream }),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const stderr: string[] = []
  proc.stderr.on('data', (c) => stderr.push(String(c)))
  const lines = readline.createInterface({ input: proc.stdout })
  const queue: string[] = []
  const waiters: Array<(l: string) => void> = []
  lines.on('line', (l) => {
    const w = waiters.shift()
    if (w) w(l)
    else queue.push(l)
  })
  const next = (): Promise<any> => new Promise((resolve) => {
    const l = queue.shift()
    if (l !== undefined) resolve(JSON.parse(l))
    else waiters.push((x) => resolve(JSON.parse(x)))
  })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL')
  })
  const ready = await next()
  let id = 0
  return {
    ready,
    stderr,
    exited,
    async send(cmd: Record<string, unknown>): Promise<Answer> {
      proc.stdin.write(JSON.stringify({ id: ++id, ...cmd }) + '\n')
      const a = await next()
      if (typeof a.text === 'string') {
        try {
          const b = JSON.parse(a.text)
          for (const k of ['access_token', 'refresh_token', 'id_token']) if (typeof b[k] === 'string') registerSecret(b[k], `listener ${k}`)
        } catch {
          // not JSON
        }
      }
      return a
    },
    async exit(): Promise<number | null> {
      proc.stdin.write(JSON.stringify({ exit: true }) + '\n')
      return exited
    },
  }
}

const refreshBody = (rt: string, reason = 'unauthorized_recovery') => ({ client_id: CLIENT_ID, grant_type: 'refresh_token', refresh_reason: reason, refresh_token: rt })

t.test('exec sets both overrides; a refresh through the listener is the daemon\'s; refusals spend nothing and log no body', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const child = await execChild(t, d.socket, home, p.tokenUrl)
  t.ok(child.ready.hasUrls, 'the child has CODEX_REFRESH_TOKEN_URL_OVERRIDE and CODEX_REVOKE_TOKEN_URL_OVERRIDE')
  const url = new URL(child.ready.refreshUrl)
  t.equal(url.hostname, '127.0.0.1')
  t.match(url.pathname, /^\/[A-Za-z0-9_-]{16}\/oauth\/token$/, 'a random path segment')

  // A marker that must never show up in any output: it rides in every refused body.
  const marker = 'rt-MARKER-' + 'x'.repeat(24)
  registerSecret(marker, 'marker refresh token')
  const refusals: Array<[string, Record<string, unknown>, number]> = [
    ['unknown token (after the re-read)', { body: refreshBody(marker) }, 401],
    ['foreign Host', { body: refreshBody(minted.refreshToken), headers: { host: `evil.example:${url.port}` } }, 403],
    ['Host without the port', { body: refreshBody(minted.refreshToken), headers: { host: '127.0.0.1' } }, 403],
    ['an Origin header', { body: refreshBody(minted.refreshToken), headers: { origin: 'http://evil.example' } }, 403],
    ['a Sec-Fetch-Site header', { body: refreshBody(minted.refreshToken), headers: { 'sec-fetch-site': 'cross-site' } }, 403],
    ['wrong content type', { body: refreshBody(minted.refreshToken), headers: { 'content-type': 'text/plain' } }, 415],
    ['form encoding', { raw: `grant_type=refresh_token&refresh_token=${marker}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415],
    ['oversized body', { body: { ...refreshBody(minted.refreshToken), pad: 'x'.repeat(70 * 1024) } }, 413],
    ['not JSON', { raw: `{"refresh_token":"${marker}"` }, 400],
    ['a GET', { method: 'GET', raw: '' }, 405],
    ['another path', { path: '/oauth/token', body: refreshBody(marker) }, 404],
    ['a wrong field type', { body: { ...refreshBody(marker), refresh_token: 7 } }, 400],
  ]
  for (const [what, cmd, want] of refusals) {
    const a = await child.send(cmd)
    t.equal(a.status, want, what)
  }
  t.equal(refreshCalls(p), 0, 'nothing spent for any of them')

  // The real thing: Codex's 401 recovery, then the same token again.
  const a = await child.send({ body: refreshBody(minted.refreshToken) })
  t.equal(a.status, 200)
  const tokens = JSON.parse(a.text!)
  const file = await rotatedInFile('the rotation in auth.json', home, minted.refreshToken)
  t.ok(tokens.refresh_token === file.refreshToken, 'the answer holds the refresh token the daemon committed')
  t.equal(refreshCalls(p), 1)
  t.equal((await child.send({ body: refreshBody(minted.refreshToken) })).status, 200, 'a second Codex with the same 401: the same answer')
  t.equal(refreshCalls(p), 1, 'one spend')
  // A slow body: cut off, nothing spent.
  const slowStarted = Date.now()
  const slow = await child.send({ body: refreshBody(file.refreshToken), slow: true })
  t.ok(slow.status === 408 || slow.status === 0, `a body that never finishes is cut off (${slow.status || slow.error})`)
  t.comment(`slow body cut off after ${Date.now() - slowStarted} ms (limit 10 s)`)
  t.equal(refreshCalls(p), 1)

  t.equal(await child.exit(), 0, 'exec exits with the child\'s status')
  const out = child.stderr.join('')
  t.same(findSecrets(out), [], 'no token or body in exec\'s stderr')
  t.same(d.secretsInOutput(), [], 'nor in the daemon\'s output')
  const s = await status(c)
  t.same(s.counters.refreshTokenSpends, { unauthorized_recovery: 1 })
  t.equal(s.counters.broker.answers.denied, 1, 'the unknown token reached the daemon; the other refusals never did')
})

t.test('the 33rd concurrent connection is refused, spends nothing, and the listener still serves afterwards', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const child = await execChild(t, d.socket, home, p.tokenUrl)
  const url = new URL(child.ready.refreshUrl)
  const port = Number(url.port)
  const open = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s))
      s.once('error', reject)
    })
  // 32 connections each in the middle of its headers: held open, nothing forwarded. The child has
  // sent nothing yet, so these are all the listener's connections. The kernel hands them to the
  // listener in the order they connected, so the next one is the 33rd whatever the load.
  const held: net.Socket[] = []
  t.teardown(() => held.forEach((s) => s.destroy()))
  for (let i = 0; i < 32; i++) {
    const s = await open()
    s.on('error', () => {})
    s.write(`POST ${url.pathname} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`)
    held.push(s)
  }
  // The 33rd carries a complete, valid refresh request: served, it would be answered and spent.
  const body = JSON.stringify(refreshBody(minted.refreshToken))
  const extra = await open()
  let received = 0
  extra.on('data', (b: Buffer) => (received += b.length))
  extra.on('error', () => {})
  const closed = new Promise<void>((resolve) => extra.once('close', () => resolve()))
  extra.write(`POST ${url.pathname} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  await closed
  t.equal(received, 0, 'the 33rd connection was closed without an answer')
  t.ok(held.every((s) => !s.destroyed), 'the 32 are still open')
  t.equal(refreshCalls(p), 0, 'nothing spent')
  t.same((await status(c)).counters.broker.requestsByReason, {}, 'nothing reached the daemon')

  for (const s of held) s.destroy()
  // Served again once the listener has seen those close (each try until then is refused the same way).
  const a = await until('a request served after the 32 closed', async () => {
    const r = await child.send({ body: refreshBody(minted.refreshToken) })
    return r.status === 0 ? null : r
  })
  t.equal(a.status, 200, 'the listener still serves')
  t.equal(refreshCalls(p), 1, 'one spend, for that request')
  t.equal(await child.exit(), 0)
  t.same(findSecrets(child.stderr.join('')), [], 'no token or body in exec\'s stderr')
})

t.test('the daemon gone mid-session: nobody owns the home -> pass-through to the real endpoint; owned -> 503', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const child = await execChild(t, d.socket, home, p.tokenUrl)
  await d.stop()
  // Another daemon's owner lock (held here): the listener must not go around it.
  const held = await acquireLock(path.join(home, 'authd.lock'), { timeoutMs: 0 })
  const owned = await child.send({ body: refreshBody(minted.refreshToken) })
  t.equal(owned.status, 503, 'the home is owned: a transient answer, nothing passed through')
  t.equal(refreshCalls(p), 0)
  await held.release()
  const a = await child.send({ body: refreshBody(minted.refreshToken) })
  t.equal(a.status, 200, 'nobody owns it: the real endpoint answered')
  t.equal(refreshCalls(p), 1, 'one call at the real endpoint, as Codex would have made')
  t.ok(JSON.parse(a.text!).refresh_token !== minted.refreshToken, 'a rotated token, from the endpoint itself')
  t.equal(await child.exit(), 0)
  t.match(child.stderr.join(''), /codex-authd is not reachable; the refresh request went to/, 'the user is told')
  t.same(findSecrets(child.stderr.join('')), [])
})

t.test('the daemon restarted during a session: the next request goes to the new daemon', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const first = await daemon(t, home, p)
  const child = await execChild(t, first.socket, home, p.tokenUrl)
  await first.stop()
  const second = await daemon(t, home, p, { socket: first.socket })
  const a = await child.send({ body: refreshBody(minted.refreshToken) })
  t.equal(a.status, 200, 'answered by the new daemon')
  const file = await rotatedInFile('the rotation in auth.json', home, minted.refreshToken)
  t.ok(JSON.parse(a.text!).refresh_token === file.refreshToken, 'with the refresh token it committed')
  t.equal(refreshCalls(p), 1, 'one spend')
  t.equal((await status(await connect(t, second))).counters.broker.answers.spent, 1, 'through the broker, not around it')
  t.equal(await child.exit(), 0)
})

t.test('codex logout\'s revoke through the listener: the daemon\'s logout', async (t) => {
  const { p, minted, home } = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, home, p)
  const child = await execChild(t, d.socket, home, p.tokenUrl)
  const a = await child.send({ to: 'revoke', body: { token: minted.refreshToken, token_type_hint: 'refresh_token', client_id: CLIENT_ID } })
  t.equal(a.status, 200)
  t.equal(p.countCalls({ endpoint: 'revoke' }), 1, 'revoked upstream once')
  await until('auth.json is gone (removed by the daemon after its grace: this child does not)', async () => {
    try {
      await fileTokens(home)
      return false
    } catch {
      return true
    }
  })
  t.equal(p.countCalls({ endpoint: 'revoke' }), 1, 'still one revocation')
  t.equal(await child.exit(), 0)
})
