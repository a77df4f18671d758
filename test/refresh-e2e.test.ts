// The refresher end to end (docs/refresh.md; docs/codex-compat.md#refresh-triggers to
// #refresh-errors): the real daemon bundle against the harness's real oidc-provider (rotating refresh tokens with reuse detection, OpenAI routes, JSON
// adapter), tokens minted with a real authorization-code flow and written in Codex's format.
// Kind `openai` (Codex's exact JSON body) unless a test says `oidc` (openid-client). Failures,
// backoff and held locks are in refresh-failures.test.ts.
//
// No token is ever printed: token comparisons use t.ok(a === b), never t.equal.
import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { parseAuthFile } from '../src/codex/authfile.js'
import { readAuth } from '../src/store/authstore.js'
import { connect, freePorts, makeHome, runCli, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { codexRefresh, FAILURES, mintTokens } from './support/provider.js'
import {
  authFileFor,
  daemon,
  daemonArgs,
  fileTokens,
  loggedIn,
  provider,
  refreshAnswers,
  refreshCalls,
  rotatedInFile,
  shape,
  status,
  writeAuthFile,
} from './support/refresh.js'
import { until } from './support/until.js'
import { rawConnect } from './support/rpc.js'

// ---------------------------------------------------------------- the storm

t.test('refresh storm: 1000 concurrent getAuth on a due token -> one refresh, one new token for all', async (t) => {
  // The minted access token lives 500 s: exp - 10 min is already past, so it is due at once.
  const w = await provider(t, { ttl: { authorizationCode: 500, refreshToken: 3600 } })
  const p = w.provider
  const minted = await mintTokens(p)
  const home = await makeHome()
  // Not logged in yet: 1000 callers connect first, then the due login appears. The daemon starts
  // the refresh as soon as it reads the file; the token endpoint is slowed down so that the whole
  // storm is written while that one refresh is in flight.
  const d = await daemon(t, home, p)
  const conns = await Promise.all(Array.from({ length: 1000 }, () => rawConnect(d.socket)))
  t.teardown(() => conns.forEach((c) => c.close()))
  p.tokenDelayMs = 1500
  writeAuthFile(home, authFileFor(minted))
  await until('the daemon to start the refresh', async () => (await status(conns[0]!)).refresh.state === 'refreshing')
  const started = Date.now()
  const pending = conns.map((c) => c.call('getAuth'))
  // (The call may still be on its way to the provider; what matters is that no answer came yet.)
  t.notOk(p.calls.some((c) => c.grantType === 'refresh_token' && c.done), 'all 1000 requests were sent before the refresh was answered')
  const results = await Promise.all(pending)
  const wall = Date.now() - started
  t.comment(`1000 getAuth answered in ${wall} ms (token endpoint delayed 1500 ms)`)
  const errors = results.filter((r) => r.error)
  t.equal(errors.length, 0, `no errors (${errors.slice(0, 3).map(shape).join('; ')})`)
  const tokens = new Set(results.map((r) => r.result?.token))
  t.equal(tokens.size, 1, 'all 1000 callers got the same token')
  const served = [...tokens][0] as string
  t.ok(served !== minted.accessToken, 'the token is the new one, not the one that was due')
  t.equal(refreshCalls(p), 1, 'exactly one refresh call at the token endpoint')
  const answers = refreshAnswers(w)
  t.equal(answers.length, 1)
  t.ok(served === answers[0]!.access_token, 'served the access token of that one answer')
  t.ok(results.every((r) => r.result?.mode === 'chatgpt' && r.result?.accountId === minted.accountId), 'mode and account')
  // The rotated refresh token lands in auth.json.
  const file = await rotatedInFile('the rotated refresh token in auth.json', home, minted.refreshToken)
  t.ok(file.refreshToken === answers[0]!.refresh_token, 'auth.json holds the rotated refresh token')
  t.ok(file.accessToken === served && file.idToken === answers[0]!.id_token, 'and the access and id tokens of the same answer')
  t.equal(fs.statSync(path.join(home, 'auth.json')).mode & 0o777, 0o600, 'still 0600')
  t.equal(refreshCalls(p), 1, 'still one call after the commit')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was ever used twice')
})

t.test('refresh storm triggered by getAuth itself (minValiditySeconds): 50 connections x 20 pipelined', async (t) => {
  // A 30-minute token is due only at 20 min: no timer refresh. Asking for 40 minutes of validity
  // makes every getAuth need a refresh; the refreshed token (1 h) satisfies it.
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 1800, refreshToken: 3600 })
  const d = await daemon(t, home, p)
  const conns = await Promise.all(Array.from({ length: 50 }, () => rawConnect(d.socket)))
  t.teardown(() => conns.forEach((c) => c.close()))
  const st = await status(conns[0]!)
  t.equal(st.refresh.state, 'idle')
  t.ok(Date.parse(st.tokens.nextRefreshAt) > Date.now() + 15 * 60_000, 'not due by the clock')
  t.equal(refreshCalls(p), 0, 'nothing refreshed before the storm')
  const results = await Promise.all(conns.flatMap((c) => Array.from({ length: 20 }, () => c.call('getAuth', { minValiditySeconds: 2400 }))))
  t.equal(results.length, 1000)
  t.equal(results.filter((r) => r.error).length, 0, 'no errors')
  const tokens = new Set(results.map((r) => r.result?.token))
  t.equal(tokens.size, 1, 'all 1000 callers got the same token')
  t.ok([...tokens][0] !== minted.accessToken, 'a new token')
  t.equal(refreshCalls(p), 1, 'exactly one refresh call')
  await until('auth.json holds the rotated refresh token', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[0]?.refresh_token)
  // A second round is served without another call (the new token is valid for 40 minutes).
  const again = await Promise.all(conns.map((c) => c.call('getAuth', { minValiditySeconds: 2400 })))
  t.ok(again.every((r) => r.result?.token === [...tokens][0]), 'the same token again')
  t.equal(refreshCalls(p), 1)
})

// ---------------------------------------------------------------- another writer

t.test('another writer refreshed first: the daemon adopts its file and makes no call', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 1800, refreshToken: 3600 })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const first = await c.call('getAuth')
  t.ok(first.result?.token === minted.accessToken, 'serves the file’s token')

  // Another process (a Codex) spends the refresh token and renames its result in.
  const other = await codexRefresh(p, minted.refreshToken, { refreshReason: 'proactive_expiry' })
  t.equal(other.status, 200)
  const o = other.json as { access_token: string; refresh_token: string; id_token: string }
  const before = refreshCalls(p)
  writeAuthFile(home, authFileFor({ ...minted, accessToken: o.access_token, refreshToken: o.refresh_token, idToken: o.id_token }, new Date()))
  // Ask for more validity than the old token has (30 min) but the new one has (1 h): if the
  // daemon had not adopted the file it would spend the old, already rotated refresh token.
  const res = await c.call('getAuth', { minValiditySeconds: 2400 })
  t.notOk(res.error, shape(res))
  t.ok(res.result?.token === o.access_token, 'serves the other writer’s token')
  await until('the watcher has the new file', async () => (await c.call('getAuth')).result?.token === o.access_token)
  t.equal(refreshCalls(p), before, 'the daemon made no refresh call')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'and never spent the rotated refresh token')
  const tk = await fileTokens(home)
  t.ok(tk.refreshToken === o.refresh_token, 'the other writer’s file is untouched')
  const adopted = d.logs.some((l) => l.includes('auth.json changed before refresh; adopting it'))
  t.comment(adopted ? 'adopted by the re-read before spending (step 1)' : 'adopted by the watcher before the refresh was due')
})

t.test('another writer’s file that needs a refresh too: getAuth refreshes the adopted tokens', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 1800, refreshToken: 3600 })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  t.ok((await c.call('getAuth')).result?.token === minted.accessToken)
  // A new login (another 30-minute token) is renamed in, and at once a caller wants 40 minutes.
  const relogin = await mintTokens(p)
  writeAuthFile(home, authFileFor(relogin))
  const res = await c.call('getAuth', { minValiditySeconds: 2400 })
  t.notOk(res.error, shape(res))
  const spent = w.answers.filter((a) => a.call.grantType === 'refresh_token').map((a) => a.request.get('refresh_token'))
  t.equal(spent.length, 1, 'one refresh call')
  t.ok(spent[0] === relogin.refreshToken, 'with the adopted refresh token, never the replaced one')
  t.ok(res.result?.token === refreshAnswers(w)[0]?.access_token, 'serves the refreshed token')
  await until('the refresh in auth.json', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[0]?.refresh_token)
  const adopted = d.logs.some((l) => l.includes('auth.json changed before refresh; adopting it'))
  t.comment(adopted ? 'adopted by the re-read before spending (step 1), then refreshed' : 'the watcher had the new file first')
})

// ---------------------------------------------------------------- odd 2xx answers

t.test('a 2xx answer without token_type still has its rotated refresh token saved', async (t) => {
  t.jobs = 4 // independent: a provider, home and daemon each
  for (const kind of ['openai', 'oidc'] as const) {
    for (const idTokenShape of ['jwt', 'not-a-jwt'] as const) {
      t.test(`kind ${kind}, id_token ${idTokenShape}`, async (t) => {
        const w = await provider(t, { ttl: { authorizationCode: 500, refreshToken: 3600 } })
        const p = w.provider
        const minted = await mintTokens(p)
        // A second real token set plays the server's answer (it is a valid, unspent set).
        p.setTtl({ authorizationCode: 3600 })
        const next = await mintTokens(p)
        const body = {
          access_token: next.accessToken,
          refresh_token: next.refreshToken,
          id_token: idTokenShape === 'jwt' ? next.idToken : 'not-a-jwt',
        }
        p.failNext(1, { status: 200, body })
        const home = await makeHome()
        writeAuthFile(home, authFileFor(minted))
        const d = await daemon(t, home, p, { kind })
        const c = await connect(t, d)
        const res = await c.call('getAuth')
        t.notOk(res.error, shape(res))
        t.ok(res.result?.token === next.accessToken, 'serves the answer’s access token')
        const tk = await rotatedInFile('the answer in auth.json', home, minted.refreshToken)
        t.ok(tk.refreshToken === next.refreshToken, 'the rotated refresh token is saved')
        t.ok(tk.accessToken === next.accessToken, 'with the access token')
        if (idTokenShape === 'jwt') t.ok(tk.idToken === next.idToken, 'and the id token')
        else t.ok(tk.idToken === minted.idToken, 'an id token Codex would reject is not written: the old one stays')
        const text = fs.readFileSync(path.join(home, 'auth.json'), 'utf8')
        t.ok(parseAuthFile(text, 'auth.json').ok, 'auth.json parses')
        t.equal(refreshCalls(p), 1)
        const call = p.calls.find((x) => x.grantType === 'refresh_token')!
        t.equal(call.via, kind === 'openai' ? 'json' : 'form', kind === 'openai' ? 'Codex’s JSON body' : 'openid-client’s form body')
      })
    }
  }
})

t.test('kind oidc: a normal refresh through openid-client', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  const d = await daemon(t, home, p, { kind: 'oidc' })
  const c = await connect(t, d)
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  const answer = refreshAnswers(w)[0]!
  t.ok(res.result?.token === answer.access_token)
  await until('the answer in auth.json', async () => (await fileTokens(home)).refreshToken === answer.refresh_token)
  t.equal(refreshCalls(p), 1)
})

// ---------------------------------------------------------------- HTTP proxy

function tinyproxyPath(): string | null {
  for (const p of ['/usr/bin/tinyproxy', '/usr/sbin/tinyproxy', '/usr/local/bin/tinyproxy']) if (fs.existsSync(p)) return p
  return null
}

t.test('refresh through a real HTTP proxy (tinyproxy) on loopback', async (t) => {
  if (tinyproxyPath() === null) return void t.fail('tinyproxy is not installed (.ci/run installs the Debian package)')
  const dir = tempDir('cad-tp-')
  const log = path.join(dir, 'tinyproxy.log')
  const [port] = (await freePorts(1)) as [number]
  const conf = path.join(dir, 'tinyproxy.conf')
  fs.writeFileSync(conf, [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 60', 'Allow 127.0.0.1', 'LogLevel Info', `LogFile "${log}"`, 'MaxClients 50', ''].join('\n'))
  const proxy = spawn(tinyproxyPath()!, ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  const proxyExited = new Promise<void>((r) => proxy.once('exit', () => r()))
  t.teardown(async () => {
    if (proxy.exitCode === null && proxy.signalCode === null) proxy.kill('SIGTERM')
    await proxyExited
  })
  await until('tinyproxy to listen', () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    }),
  )

  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  // undici's EnvHttpProxyAgent proxies every host, loopback included, when NO_PROXY is unset or
  // empty (it has no built-in localhost exception): the provider's 127.0.0.1 goes through it.
  const proxyUrl = `http://127.0.0.1:${port}`
  const d = await daemon(t, home, p, { env: { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl } })
  const c = await connect(t, d)
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  t.ok(res.result?.token !== minted.accessToken, 'refreshed')
  t.equal(refreshCalls(p), 1)
  const text = await until('tinyproxy to log the request', () => {
    const s = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''
    return new RegExp(`(CONNECT|POST) (http://)?127\\.0\\.0\\.1:${p.port}`).test(s) ? s : null
  })
  const line = text.split('\n').find((l) => l.includes(`127.0.0.1:${p.port}`) && /Request/.test(l))
  t.ok(line, `tinyproxy saw the request: ${line?.replace(/^.*Request[^:]*: /, '')}`)
  t.notOk(text.includes(minted.refreshToken), 'the proxy log holds no token (tunnelled)')
  await until('the refresh in auth.json', async () => (await fileTokens(home)).refreshToken !== minted.refreshToken)

  // With the proxy gone, refreshing fails as a network error: the traffic really depends on it.
  proxy.kill('SIGTERM')
  await proxyExited
  const forced = await c.call('refresh')
  t.equal(forced.error?.code, -32002, 'no proxy, no refresh')
  t.equal(forced.error?.data?.kind, 'transient')
  t.equal(refreshCalls(p), 1, 'nothing reached the provider directly')
})

// ---------------------------------------------------------------- CLI and the refresh method

t.test('the refresh request honours CODEX_INTERNAL_ORIGINATOR_OVERRIDE, as every OAuth request does', async (t) => {
  const { p, home } = await loggedIn(t, { authorizationCode: 3600, refreshToken: 3600 }, new Date())
  const plain = await daemon(t, home, p)
  const c = await connect(t, plain)
  t.notOk((await c.call('refresh')).error)
  await plain.stop()
  const d = await daemon(t, home, p, { env: { CODEX_INTERNAL_ORIGINATOR_OVERRIDE: 'codex_vscode' } })
  const c2 = await connect(t, d)
  t.notOk((await c2.call('refresh')).error)
  const calls = p.calls.filter((x) => x.endpoint === 'token' && x.grantType === 'refresh_token')
  t.same(calls.map((x) => x.originator), ['codex_cli_rs', 'codex_vscode'], 'Codex’s default, then the override')
})

t.test('codex-auth refresh forces a refresh; concurrent refresh calls share one', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 3600, refreshToken: 3600 }, new Date())
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  t.ok((await c.call('getAuth')).result.token === minted.accessToken, 'a fresh token: no refresh yet')
  t.equal(refreshCalls(p), 0)

  // Forced: skips the 30 s loop guard (last_refresh is now) and the due time.
  const cli = await runCli(['refresh'], { socket: d.socket })
  t.equal(cli.code, 0, `exit 0 (${cli.stderr.trim()})`)
  t.match(cli.stdout, /^Token refreshed; valid until /)
  t.notOk(cli.stdout.includes(minted.accessToken) || cli.stderr.includes('eyJ'), 'prints no token')
  t.equal(refreshCalls(p), 1)
  const after = await c.call('getAuth')
  t.ok(after.result.token !== minted.accessToken, 'the token changed')
  t.ok(after.result.token === refreshAnswers(w)[0]!.access_token)

  // Two concurrent refresh calls (and a getAuth) while one is in flight: one call.
  p.tokenDelayMs = 1000
  const c2 = await connect(t, d)
  const [r1, r2] = await Promise.all([c.call('refresh'), c2.call('refresh')])
  t.notOk(r1.error || r2.error, `${shape(r1)} / ${shape(r2)}`)
  t.ok(r1.result.token === r2.result.token, 'both got the same new token')
  t.ok(r1.result.token !== after.result.token, 'a new one')
  t.equal(refreshCalls(p), 2, 'one provider call for both')
  const json = await runCli(['--json', 'refresh'], { socket: d.socket })
  t.equal(json.code, 0)
  t.equal(refreshCalls(p), 3)
  t.notOk(json.stdout.includes(refreshAnswers(w)[2]!.access_token), '--json prints no token either')
  await until('the last refresh in auth.json', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[2]!.refresh_token)
})

t.test('codex-auth refresh reports a permanent failure with exit 3', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 3600, refreshToken: 3600 }, new Date())
  const d = await daemon(t, home, p)
  p.failNext(1, FAILURES.invalidated)
  const cli = await runCli(['refresh'], { socket: d.socket })
  t.equal(cli.code, 3, 'exit 3')
  t.match(cli.stderr, /revoked/)
  t.equal(refreshCalls(p), 1)
  const again = await runCli(['refresh'], { socket: d.socket })
  t.equal(again.code, 3, 'still 3')
  t.equal(refreshCalls(p), 1, 'the dead refresh token is not spent again')
})

t.test('serving an API key, the daemon still keeps the file’s ChatGPT tokens fresh; the key and unknown fields survive', async (t) => {
  const w = await provider(t, { ttl: { authorizationCode: 500, refreshToken: 3600 } })
  const p = w.provider
  const minted = await mintTokens(p)
  const home = await makeHome()
  const apiKey = 'sk-proj-test-0000000000000000000000000000abcde'
  const auth = authFileFor(minted)
  auth.openaiApiKey = apiKey
  auth.extra = { written_by_someone_else: { keep: true } }
  auth.tokens!.extra = { token_extra: 'kept' }
  writeAuthFile(home, auth)
  const d = stopAtTeardown(t, await startDaemon({ home, args: [...daemonArgs(p), '-c', 'preferred_auth_method="apikey"'] }))
  const c = await connect(t, d)
  const g = await c.call('getAuth')
  t.equal(g.result?.mode, 'apikey', 'an API key is served')
  // The due ChatGPT tokens are refreshed anyway (Codex 0.171 uses them regardless).
  const tk = await rotatedInFile('the ChatGPT tokens refreshed in auth.json', home, minted.refreshToken)
  t.ok(tk.refreshToken === refreshAnswers(w)[0]?.refresh_token, 'rotated refresh token saved')
  const r = await readAuth(home)
  if (r.state !== 'ok') throw new Error('auth.json unreadable')
  t.ok(r.auth.openaiApiKey === apiKey, 'OPENAI_API_KEY kept')
  t.same(r.auth.extra, { written_by_someone_else: { keep: true } }, 'unknown top-level field kept')
  t.same(r.auth.tokens?.extra, { token_extra: 'kept' }, 'unknown token field kept')
  t.equal(r.auth.authMode, 'chatgpt', 'auth_mode kept')
  t.not(r.auth.lastRefresh, auth.lastRefresh, 'last_refresh updated')
  // A forced refresh in API-key mode refreshes the tokens and answers with the API-key grant.
  const forced = await c.call('refresh')
  t.equal(forced.result?.mode, 'apikey')
  t.ok(forced.result?.token === apiKey)
  t.equal(refreshCalls(p), 2)
  await until('the forced refresh in auth.json', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[1]?.refresh_token)
})

// ---------------------------------------------------------------- authChanged

t.test('authChanged: exactly one notification per refresh', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 3600, refreshToken: 3600 }, new Date())
  const d = await daemon(t, home, p)
  const sub = await connect(t, d)
  const notes: any[] = []
  let raw = ''
  sub.socket.on('data', (chunk: string | Buffer) => {
    raw += chunk.toString()
  })
  const origNext = sub.next.bind(sub)
  // Collect every notification; replies are matched by id in call().
  sub.next = async () => {
    for (;;) {
      const m = await origNext()
      if (m && m.method === 'authChanged') notes.push(m)
      else return m
    }
  }
  const s = await sub.call('subscribe')
  t.same(s.result, { subscribed: true })
  const other = await connect(t, d)
  const tokens = [minted.accessToken]
  for (let i = 1; i <= 3; i++) {
    const r = await other.call('refresh')
    t.notOk(r.error, shape(r))
    tokens.push(r.result.token)
    await until(`refresh ${i} in auth.json`, async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[i - 1]!.refresh_token)
    // The watcher sees our own write too; let it (and its trailing re-read) run, then a round trip
    // on the subscribed connection delivers anything sent before it.
    await new Promise((r) => setTimeout(r, 250))
    await status(sub)
    t.equal(notes.length, i, `one authChanged after refresh ${i}`)
  }
  for (const n of notes) {
    t.equal(n.params.loggedIn, true)
    t.equal(n.params.mode, 'chatgpt')
    t.equal(n.params.problems.length, 0)
  }
  t.notOk(tokens.some((tk) => raw.includes(tk)), 'no token in any notification')
  t.notOk(raw.includes(minted.refreshToken), 'no refresh token either')
})
