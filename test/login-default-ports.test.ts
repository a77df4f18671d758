// The one file that uses Codex's registered ports (docs/contract.md#codex-authd: --login-ports defaults to 1455,1457).
// Deterministic whatever else runs on this machine: 1455 is held by a foreign listener (ours, or
// whoever already had it), so the login must fall back to 1457.
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
  const ours = await new Promise<boolean>((resolve, reject) => {
    foreign.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(false) : reject(e)))
    foreign.listen(1455, '127.0.0.1', () => resolve(true))
  })
  if (ours) t.teardown(() => new Promise<void>((r) => foreign.close(() => r())))
  else t.comment('1455 was already taken on this machine: that holder is the foreign listener')

  const started = await rpc.ok('login', { method: 'browser' })
  t.equal(started.callbackUrl, 'http://127.0.0.1:1457/auth/callback', 'fell back to 1457')
  t.equal(new Map(queryPairs(started.authUrl)).get('redirect_uri'), 'http://127.0.0.1:1457/auth/callback')
  if (ours) t.same(seen, ['/cancel'], 'the holder of 1455 was asked to /cancel once')

  // The fallback port completes a real login (the provider accepts the 1457 redirect).
  const { final } = await followCallback(await driveAuthorization(started.authUrl))
  t.equal(final.status, 200)
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 }), { status: 'succeeded' })

  if (ours) {
    await new Promise<void>((r) => foreign.close(() => r()))
    const next = await rpc.ok('login', { method: 'browser' })
    t.equal(next.callbackUrl, 'http://127.0.0.1:1455/auth/callback', '1455 first once it is free')
    t.same(await rpc.ok('cancelLogin', { loginId: next.loginId }), { cancelled: true })
    await rpc.ok('awaitLogin', { loginId: next.loginId })
  }
})
