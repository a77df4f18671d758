// The secret scanner of the whole suite (issue 7, item 7): test/support/secrets.ts keeps every
// secret the harness handed out or saw, and startDaemon/stop(), runCli and runDaemonCommand scan
// what the daemon and the CLI print. Here: the scanner catches a planted secret in a daemon log line
// and in the CLI's stderr (and says which, never the value), and a daemon at --log-level trace taken
// through logins (browser, device, API key), refreshes, a getAuth storm and a logout leaks nothing.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { approveDeviceCode, driveAuthorization } from './support/browser.js'
import { runCli, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { connectRpc, followCallback, setup } from './support/login-helpers.js'
import { mintTokens } from './support/provider.js'
import { rawConnect } from './support/rpc.js'
import { reliabilityComment } from './support/reliability.js'
import { SecretLeakError, findSecrets, leaks, registerSecret, registeredLabels, secretCount } from './support/secrets.js'
import { writeAuthJson, authFileFor } from './support/codex.js'
import { until } from './support/until.js'

t.test('the registry answers labels, never values', async (t) => {
  const value = `sk-test-${'q'.repeat(20)}-registry`
  registerSecret(value, 'test API key (registry)')
  registerSecret('short', 'too short to register')
  const found = findSecrets(`log line {"msg":"x","k":"${value}"} and more`)
  t.same(found, ['test API key (registry)'])
  t.notOk(found.join('').includes(value), 'the answer does not hold the value')
  t.same(findSecrets('a short word and sk-test-qqqq (a prefix only)'), [], 'a partial or short match is not a leak')
  t.same(findSecrets(`${value}${value}`), ['test API key (registry)'], 'each label once')
  // Linear in the text: thousands of secrets against a megabyte of text.
  for (let i = 0; i < 5000; i++) registerSecret(`bulk-secret-${i}-${'z'.repeat(24)}`, 'bulk')
  const big = 'x'.repeat(1 << 20) + 'bulk-secret-4999-' + 'z'.repeat(24)
  const began = Date.now()
  t.same(findSecrets(big), ['bulk'])
  // Reported, not asserted: a busy machine moves it (a scan per secret would take minutes here).
  t.comment(`1 MiB against 5,000 secrets scanned in ${Date.now() - began} ms`)
})

t.test('a planted secret in a daemon log line makes stop() fail, naming it', async (t) => {
  // The daemon logs its socket path at start: plant a "secret" in it.
  const planted = `planted${Date.now().toString(36)}secretvalue`
  const dir = path.join(tempDir('cad-s-'), planted)
  fs.mkdirSync(dir, { mode: 0o700 })
  const d = await startDaemon({ socket: path.join(dir, 's.sock') })
  t.teardown(() => d.proc.kill('SIGKILL'))
  registerSecret(planted, 'planted secret (log line)')
  t.ok(d.logs.some((l) => l.includes(planted)), 'the log does hold it')
  t.same(d.secretsInOutput(), ['planted secret (log line)'])
  t.throws(() => d.assertNoSecrets(), SecretLeakError)
  const err = await d.stop().then(
    () => null,
    (e: unknown) => e,
  )
  t.type(err, SecretLeakError, 'stop() rejects')
  t.match((err as Error).message, /planted secret \(log line\)/, 'with the label')
  t.notOk((err as Error).message.includes(planted), 'and without the value')
  t.ok(leaks.some((l) => l.labels.includes('planted secret (log line)') && l.reported), 'recorded as reported (no exit failure)')
  await t.resolves(d.stop(), 'a second stop() (the teardown) does not throw again')
})

t.test('a planted secret in CLI stderr makes runCli reject; opting out is per call', async (t) => {
  const planted = `plantedcli${Date.now().toString(36)}value`
  const sock = path.join(tempDir('cad-s-'), planted, 's.sock')
  registerSecret(planted, 'planted secret (cli)')
  const err = await runCli(['status'], { socket: sock }).then(
    () => null,
    (e: unknown) => e,
  )
  t.type(err, SecretLeakError, 'the unreachable-daemon message names the socket path, which holds the planted value')
  t.match((err as Error).message, /codex-auth status stderr contains planted secret \(cli\)/)
  const r = await runCli(['status'], { socket: sock, allowSecrets: true })
  t.equal(r.code, 2, 'with allowSecrets the call answers normally (daemon unreachable)')
  t.ok(r.stderr.includes(planted))
  // `token` prints a credential by design: its stdout is not scanned, stderr still is.
  const key = `sk-test-${Date.now().toString(36)}-printed-by-token`
  const d = stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: key } }))
  const tok = await runCli(['token'], { socket: d.socket })
  t.equal(tok.stdout, `${key}\n`, 'token prints the key, and that is no leak')
  t.same(findSecrets(tok.stdout), ['OPENAI_API_KEY (environment)'], 'registered from the daemon environment')
  const st = await runCli(['status'], { socket: d.socket })
  t.equal(st.code, 0)
  t.match(st.stdout, /API key configured - sk-test-\*\*\*/, 'status masks it')
  await d.stop()
})

t.test('a daemon at --log-level trace through logins, refreshes, a getAuth storm and a logout leaks nothing', async (t) => {
  const began = Date.now()
  const registeredBefore = secretCount()
  const { provider, daemon, rpc } = await setup(t, {
    kind: 'oidc',
    args: ['--log-level', 'trace'],
    env: { CODEX_AUTHD_DEVICE_INTERVAL_MS: '100' },
    provider: { ttl: { authorizationCode: 1200, refreshToken: 1200 } },
  })

  // A browser login: authorization code and PKCE verifier pass through the daemon.
  const started = await rpc.ok('login', { method: 'browser' })
  const callback = await driveAuthorization(started.authUrl)
  await followCallback(callback)
  t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 20 }), { status: 'succeeded' })

  // A getAuth storm, with forced refreshes in the middle. Half of it asks for more validity than
  // the issuer gives (1500 s): one refresh, shared, and then -32002 with the reason, never a token
  // that is not good enough (docs/contract.md#methods); the rest is served.
  const conns = await Promise.all(Array.from({ length: 8 }, () => rawConnect(daemon.socket)))
  t.teardown(() => conns.forEach((c) => c.close()))
  const storm = async (minValiditySeconds: number): Promise<{ tokens: number; refused: number }> => {
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => conns[i % conns.length]!.call('getAuth', { minValiditySeconds })),
    )
    return {
      tokens: answers.filter((a) => a.result?.mode === 'chatgpt').length,
      refused: answers.filter((a) => a.error?.code === -32002 && a.error.data?.reason === 'refresh_failed').length,
    }
  }
  const [a, r1, b] = await Promise.all([storm(60), rpc.ok('refresh'), storm(1500)])
  t.equal(a.tokens, 200, 'every getAuth that the token satisfies answered with a token')
  t.equal(b.tokens + b.refused, 200, 'the others: a token, or -32002 refresh_failed, nothing else')
  t.match(r1, { mode: 'chatgpt', token: String })
  for (let i = 0; i < 3; i++) await rpc.ok('refresh')
  t.ok(provider.countCalls({ grantType: 'refresh_token', status: 200 }) >= 4, 'refreshes happened')

  // The CLI's own commands (scanned by runCli), a device login, then logout with revocation.
  for (const args of [['status'], ['status', '--json'], ['refresh'], ['token'], ['env']]) {
    const r = await runCli(args, { socket: daemon.socket })
    t.equal(r.code, 0, `codex-auth ${args.join(' ')}`)
  }
  const dev = await rpc.ok('login', { method: 'device' })
  t.ok((await approveDeviceCode(dev.verificationUrl)).approved)
  t.match(await rpc.ok('awaitLogin', { loginId: dev.loginId, timeoutSeconds: 20 }), { status: 'succeeded' })
  await storm(60)
  const out = await runCli(['logout'], { socket: daemon.socket })
  t.equal(out.code, 0)
  t.ok(provider.countCalls({ endpoint: 'revoke' }) >= 1, 'logout revoked')

  // An API key login through the CLI, served, then a getAuth storm in API-key mode.
  const key = `sk-test-${Date.now().toString(36)}-trace-run-key`
  const li = await runCli(['login', '--with-api-key'], { socket: daemon.socket, input: `${key}\n` })
  t.equal(li.code, 0, 'login --with-api-key')
  const keyAnswers = await Promise.all(Array.from({ length: 100 }, (_, i) => conns[i % conns.length]!.call('getAuth')))
  t.ok(keyAnswers.every((x) => x.result?.token === key))

  // A second, pre-provisioned home: a daemon that finds tokens on disk and refreshes them.
  const minted = await mintTokens(provider)
  const d2 = stopAtTeardown(t, await startDaemon({ args: ['--issuer', provider.issuer, '--issuer-kind', 'openai', '--log-level', 'trace'] }))
  writeAuthJson(d2.home, authFileFor(minted))
  const rpc2 = await connectRpc(d2.socket)
  t.teardown(() => rpc2.close())
  await until('the second daemon to see the file', async () => (await rpc2.ok('status')).loggedIn === true)
  await rpc2.ok('refresh')
  await rpc2.ok('refresh')

  const registered = secretCount() - registeredBefore
  t.ok(registered >= 15, `the run registered ${registered} secrets (tokens, codes, verifiers, device codes, keys)`)
  const kinds = Object.keys(registeredLabels()).join(' | ')
  for (const kind of ['PKCE verifier', 'authorization code', 'device code', 'refresh token', 'access token', 'id token', 'API key']) {
    t.ok(kinds.includes(kind), `the scan looked for ${kind}s`)
  }
  t.ok(daemon.logs.length > 10, `the trace daemon logged ${daemon.logs.length} lines`)
  t.same(daemon.secretsInOutput(), [], 'no secret in the trace log so far')
  await t.resolves(daemon.stop(), 'stop() scans the whole output and finds nothing')
  await t.resolves(d2.stop(), 'the second daemon too')
  reliabilityComment(t, {
    test: 'secrets-trace',
    cases: 1,
    failures: 0,
    secretsRegistered: registered,
    logLines: daemon.logs.length + d2.logs.length,
    refreshCalls: provider.countCalls({ grantType: 'refresh_token' }),
    ms: Date.now() - began,
  })
})
