// The one file that uses Codex's registered ports (docs/contract.md#codex-authd: --login-ports defaults to 1455,1457).
// 1455 is held by a foreign listener of ours that does not give it up, so the login must fall back
// to 1457; then 1455 is freed and comes first again. Another process holding 1455 (another copy of
// this file, say) is waited for, within a bound, and then fails the test: never a silent half-test.
import t from 'tap'
import http from 'node:http'
import { driveAuthorization } from './support/browser.js'
import { startDaemon, stopAtTeardown } from './support/daemon.js'
import { connectRpc, followCallback, queryPairs } from './support/login-helpers.js'
import { startProvider } from './support/provider.js'

t.test('defaults 1455 then 1457', async (t) => {
  const provider = await startProvider()
  t.teardown(() => provider.stop())
  const daemon = stopAtTeardown(t, await startDaemon({ args: ['--issuer', provider.issuer, '--issuer-kind', 'openai'], defaultLoginPorts: true }))
  const rpc = await connectRpc(daemon.socket)
  t.teardown(() => rpc.close())

  // A foreign HTTP listener on 1455 that does not give the port up on /cancel.
  const seen: string[] = []
  const foreign = http.createServer((req, res) => {
    seen.push(req.url ?? '')
    res.writeHead(404).end()
  })
  const listen = () =>
    new Promise<boolean>((resolve, reject) => {
      foreign.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(false) : reject(e)))
      foreign.listen(1455, '127.0.0.1', () => resolve(true))
    })
  const deadline = Date.now() + 60_000
  while (!(await listen())) {
    if (Date.now() > deadline) throw new Error('127.0.0.1:1455 stayed taken by another process for 60 s: this test needs to hold it')
    await new Promise((r) => setTimeout(r, 250)) // polling a port someone else holds: no event to wait for
  }
  t.teardown(() => new Promise<void>((r) => (foreign.listening ? foreign.close(() => r()) : r())))

  const started = await rpc.ok('login', { method: 'browser' })
  t.equal(started.callbackUrl, 'http://127.0.0.1:1457/auth/callback', 'fell back to 1457')
  t.equal(new Map(queryPairs(started.authUrl)).get('redirect_uri'), 'http://127.0.0.1:1457/auth/callback')
  t.same(seen, ['/cancel'], 'the holder of 1455 was asked to /cancel once')

  // The fallback port completes a real login (the provider accepts the 1457 redirect).
  const { final } = await followCallback(await driveAuthorization(started.authUrl))
  t.equal(final.status, 200)
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 }), { status: 'succeeded' })

  await new Promise<void>((r) => foreign.close(() => r()))
  const next = await rpc.ok('login', { method: 'browser' })
  t.equal(next.callbackUrl, 'http://127.0.0.1:1455/auth/callback', '1455 first once it is free')
  t.same(await rpc.ok('cancelLogin', { loginId: next.loginId }), { cancelled: true })
  await rpc.ok('awaitLogin', { loginId: next.loginId })
})
