// Issue 17 end to end with the REAL Codex CLI 0.171.0 on a "remote machine": a real sshd on
// 127.0.0.1 (test/support/ssh.ts), the workstation daemon's restricted socket forwarded with
// `ssh -R … -o StreamLocalBindUnlink=yes` into a private directory of the user `codexremote`, and
// Codex run as that user, in a loopback-only namespace (test/support/codex.ts), through
// `codex-auth exec --remote` on its own CODEX_HOME. The backend stand-in answers 401 to the access
// tokens the test marks, so Codex takes its 401 path; the token endpoint is the harness provider
// (rotating refresh tokens, reuse revokes the grant: any double spend shows as REUSED).
// No token is ever printed: comparisons use t.ok(a === b), tokens are named by their jti.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile } from '../src/codex/authfile.js'
import { restrictedSocketPath } from '../src/paths.js'
import { CLI_BIN, makeHome, startDaemon, stopAtTeardown } from './support/daemon.js'
import { authFileFor, CODEX_UA, endedByItself, requireCodex, startCodexWorld, tokenId, writeAuthJson, type CodexWorld } from './support/codex.js'
import { EXEC, shown } from './support/broker-codex.js'
import { mintTokens, startProvider, type EndpointAnswer, type TestProvider } from './support/provider.js'
import { rawConnect } from './support/rpc.js'
import { findSecrets, registerSecret } from './support/secrets.js'
import { cliAs } from './support/sink.js'
import { asUser, privateDirOf, REMOTE_USER, startSshd, testUser, type SshServer } from './support/ssh.js'
import { until } from './support/until.js'

await requireCodex()
const remote = testUser(REMOTE_USER)
const isRefresh = (a: EndpointAnswer): boolean => a.call.endpoint === 'token' && a.call.grantType === 'refresh_token'

let provider: TestProvider
let world: CodexWorld
let sshd: SshServer
const answers: EndpointAnswer[] = []
t.before(async () => {
  provider = await startProvider({ ttl: { authorizationCode: 3600, refreshToken: 3600 }, onAnswer: (a) => answers.push(a) })
  world = await startCodexWorld(provider)
  sshd = await startSshd()
})
t.teardown(async () => {
  await sshd?.close()
  await world?.close()
  await provider?.stop()
})

/** Every real refresh token the provider ever handed out (the minted one and each rotation). */
function realRefreshTokens(minted: string): string[] {
  const out = [minted]
  for (const a of answers) {
    if (!isRefresh(a) || a.status !== 200) continue
    const rt = (JSON.parse(a.body) as { refresh_token?: string }).refresh_token
    if (typeof rt === 'string') out.push(rt)
  }
  return out
}

/** Every regular file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = []
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...filesUnder(p))
    else if (e.isFile()) out.push(p)
  }
  return out
}

function remoteAuth(home: string) {
  const parsed = parseAuthFile(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'), 'auth.json')
  if (!parsed.ok || parsed.auth.tokens === null) throw new Error('the remote auth.json is not a ChatGPT file')
  return parsed.auth.tokens
}

t.test('Codex on the remote machine through exec --remote: two forced refreshes and one of its own, current tokens throughout, the real refresh token never there', async (t) => {
  // The workstation.
  const home = await makeHome()
  const minted = await mintTokens(provider)
  writeAuthJson(home, authFileFor(minted, { lastRefresh: new Date(Date.now() - 5 * 60_000) }))
  const d = stopAtTeardown(t, await startDaemon({ home, args: ['--issuer', provider.issuer, '--issuer-kind', 'openai'] }))
  const c = await rawConnect(d.socket)
  t.teardown(() => c.close())

  // The remote machine: the forward, and the user's own CODEX_HOME whose config asks for the
  // keyring (exec --remote must force the file store) and already holds a session file.
  const fwdDir = privateDirOf(t, remote, '.cad-fwd-')
  const sock = path.join(fwdDir, 'authd.sock')
  const fwd = await sshd.forward(remote, sock, restrictedSocketPath(d.socket))
  t.teardown(() => fwd.cut())
  const rhome = privateDirOf(t, remote, '.cad-codex-')
  world.writeConfig(rhome)
  fs.appendFileSync(path.join(rhome, 'config.toml'), 'cli_auth_credentials_store = "keyring"\n')
  const config = fs.readFileSync(path.join(rhome, 'config.toml'), 'utf8')
  fs.mkdirSync(path.join(rhome, 'sessions'))
  fs.writeFileSync(path.join(rhome, 'sessions', 'kept.jsonl'), '{"kept":true}\n')
  for (const f of [rhome, path.join(rhome, 'config.toml'), path.join(rhome, 'sessions'), path.join(rhome, 'sessions', 'kept.jsonl')]) fs.chownSync(f, remote.uid, remote.gid)

  // The stand-in rejects the first two access tokens; each first 401 is held while the
  // workstation refreshes and the exec's sink rewrites the remote auth.json, then released:
  // Codex's reload finds the new token and retries with it (no POST). The third token is
  // rejected with nothing refreshed: Codex's own recovery goes through the broker.
  const seen: string[] = []
  const forced = new Map<string, Promise<void>>()
  let step = 0
  let current = tokenId(minted.accessToken)
  world.stub.rejected.add(current)
  world.stub.hold401 = (r) => {
    const id = r.bearerId!
    if (step >= 2 || id !== current) return Promise.resolve()
    let p = forced.get(id)
    if (p === undefined) {
      step++
      p = (async () => {
        const res = await c.call('refresh')
        if (res.error) throw new Error(`refresh failed: ${JSON.stringify(res.error)}`)
        const next = (await c.call('getAuth')).result.token as string
        registerSecret(next, 'access token (getAuth)')
        await until('the remote auth.json holds the refreshed token', () => remoteAuth(rhome).accessToken === next, 30_000)
        current = tokenId(next)
        // The second refreshed token is rejected too (step 2 refreshes again); the third, after
        // step 2, is rejected without a workstation refresh: Codex recovers by itself.
        world.stub.rejected.add(current)
      })()
      forced.set(id, p)
    }
    return p
  }
  world.stub.on401 = (r) => seen.push(r.bearerId!)
  t.teardown(() => {
    world.stub.hold401 = null
    world.stub.on401 = null
  })

  const spendsBefore = provider.countCalls({ endpoint: 'token', grantType: 'refresh_token' })
  const wrap = [...asUser(remote), process.execPath, CLI_BIN, 'exec', '--remote', '--']
  const r = await world.codex(rhome, EXEC, { wrap, home: remote.home, env: { CODEX_AUTHD_SOCK: sock }, timeoutSec: 90 })
  t.ok(endedByItself(r), `codex ended by itself (${r.ms} ms)`, { output: shown(r) })
  const spends = provider.countCalls({ endpoint: 'token', grantType: 'refresh_token' }) - spendsBefore
  const codexOwn = provider.countCalls((call) => call.endpoint === 'token' && call.grantType === 'refresh_token' && CODEX_UA.test(call.userAgent))
  const st = (await c.call('status')).result
  t.comment(`401s by token: ${[...new Set(seen)].join(', ')}; spends ${spends}; broker ${JSON.stringify(st.counters.broker)}`)
  t.equal(step, 2, 'two refreshes forced on the workstation while Codex ran')
  t.equal(codexOwn, 0, 'Codex spent nothing at the token endpoint itself')
  t.equal(provider.countCalls((call) => call.refreshTokenReuse === true), 0, 'no refresh token spent twice')
  // Codex's own refresh (its recovery for the third token, however many requests it sent for
  // it) is the only spend besides the two forced ones: one spend for it, through the broker.
  const ownSpends = st.counters.broker.answers.spent ?? 0
  t.equal(spends, 2 + ownSpends, `the spends: the two forced and ${ownSpends} for Codex's own refreshes, all through the broker`)
  t.ok(ownSpends <= 1, `Codex's own refresh cost at most one spend (${ownSpends}, for ${st.counters.broker.requestsByReason['refresh:unauthorized_recovery'] ?? 0} recovery requests)`)

  // The stand-in saw Codex use each current token in turn, ending with the daemon's latest.
  const latest = (await c.call('getAuth')).result.token as string
  registerSecret(latest, 'access token (getAuth)')
  const used = world.stub.requests.filter((q) => q.bearerId !== null).map((q) => q.bearerId)
  t.ok(used.includes(tokenId(latest)), 'Codex made requests with the latest access token')
  t.ok(new Set(used).size >= 3, `Codex used at least three access tokens in turn (${new Set(used).size})`)

  // The remote home: a placeholder auth.json (0600), config and sessions kept.
  const rt = remoteAuth(rhome)
  t.ok(rt.refreshToken.startsWith('codex-authd-ph.'), 'the remote auth.json holds a placeholder')
  t.equal(fs.statSync(path.join(rhome, 'auth.json')).mode & 0o777, 0o600, 'auth.json is 0600')
  t.equal(fs.readFileSync(path.join(rhome, 'config.toml'), 'utf8'), config, 'config.toml untouched')
  t.ok(fs.existsSync(path.join(rhome, 'sessions', 'kept.jsonl')), 'sessions kept')

  // Every file under the remote user's home (the forward dir, CODEX_HOME, whatever Codex wrote):
  // no real refresh token, ever.
  const real = realRefreshTokens(minted.refreshToken)
  let found = 0
  const files = filesUnder(remote.home)
  for (const f of files) {
    const text = fs.readFileSync(f, 'latin1')
    for (const tok of real) if (text.includes(tok)) found++
  }
  t.equal(found, 0, `the real refresh token appears zero times in the ${files.length} files under ${remote.home} (${real.length} real refresh tokens checked)`)
  t.same(findSecrets(r.stderr).filter((l) => l.includes('refresh token')), [], 'and never in what Codex or codex-auth printed')

  // Through the forwarded socket, nothing can change the workstation's credentials.
  const env = { CODEX_AUTHD_SOCK: sock }
  const attempts: Array<[string[], string | undefined]> = [
    [['logout'], undefined],
    [['login', '--with-api-key'], 'sk-test-remote-0123456789abcdef'],
    [['login', '--device'], undefined],
    [['refresh'], undefined],
  ]
  for (const [args, input] of attempts) {
    const p = cliAs(remote, args, env, input)
    const code = await p.exited
    t.equal(code, 3, `codex-auth ${args.join(' ')} through the forward: refused (exit 3)`)
    t.match(p.lines.join('\n'), /not available on the restricted socket/, `codex-auth ${args.join(' ')}: says why`)
  }
  const after = (await c.call('status')).result
  t.equal(after.loggedIn, true, 'the workstation is still logged in')
  t.equal(after.mode, 'chatgpt', 'with its ChatGPT login')
})
