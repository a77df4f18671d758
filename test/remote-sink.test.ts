// Sinks on a "remote machine" (docs/remote.md#sinks): a real sshd on 127.0.0.1 (test/support/ssh.ts),
// the daemon's restricted socket forwarded with `ssh -R … -o StreamLocalBindUnlink=yes` into the
// private directory of the user `codexremote`, and `codex-auth sink` run as that user against the
// forwarded socket. Real daemon bundle, the harness's oidc-provider. One daemon, one sshd for the
// file. No token is ever printed: comparisons use t.ok(a === b), and every line codex-auth wrote is
// scanned for the registered secrets.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile } from '../src/codex/authfile.js'
import { restrictedSocketPath } from '../src/paths.js'
import { rawConnect, type RawConnection } from './support/rpc.js'
import { daemon, loggedIn, refreshAnswers, refreshCalls, status } from './support/refresh.js'
import { findSecrets, registerSecret } from './support/secrets.js'
import { cliAs, type UserProcess } from './support/sink.js'
import { privateDirOf, REMOTE_USER, startSshd, testUser, type SshForward, type SshServer } from './support/ssh.js'
import { until } from './support/until.js'
import { CLI_BIN, tempDir, type RunningDaemon } from './support/daemon.js'
import { onLines } from './support/lines.js'
import { codexLoginStatus } from './support/codex.js'

const HOUR = 3600
const remote = testUser(REMOTE_USER)

let sshd: SshServer
t.before(async () => {
  sshd = await startSshd()
})
t.teardown(() => sshd?.close())

/** The workstation: a login, its daemon, a main-socket connection. */
async function workstation(t: Test) {
  const w = await loggedIn(t, { authorizationCode: HOUR, refreshToken: 24 * HOUR })
  const d = await daemon(t, w.home, w.p)
  const c = await rawConnect(d.socket)
  t.teardown(() => c.close())
  return { ...w, d, c, restricted: restrictedSocketPath(d.socket) }
}

/** `ssh -R` of the restricted socket into a fresh private directory of the remote user. */
async function forward(t: { teardown(fn: () => unknown): void }, d: RunningDaemon): Promise<{ fwd: SshForward; dir: string; sock: string }> {
  const dir = privateDirOf(t, remote, '.cad-fwd-')
  const sock = path.join(dir, 'authd.sock')
  const fwd = await sshd.forward(remote, sock, restrictedSocketPath(d.socket))
  t.teardown(() => fwd.cut())
  return { fwd, dir, sock }
}

function noSecretsIn(t: { same(a: unknown, b: unknown, m: string): void }, p: UserProcess, what: string): void {
  t.same(findSecrets(p.lines.join('\n') + '\n' + p.stdout), [], `${what}: no secret in what codex-auth printed`)
}

/** The remote auth.json's tokens, read as Codex reads the file. */
function remoteTokens(home: string) {
  const parsed = parseAuthFile(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'), 'auth.json')
  if (!parsed.ok || parsed.auth.tokens === null) throw new Error('not a ChatGPT auth.json')
  return parsed.auth.tokens
}

/** Every regular file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath ?? e.path, e.name))
}

const readToken = (file: string): string | null => {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return null
  }
}

async function currentToken(c: RawConnection): Promise<string> {
  const g = (await c.call('getAuth')).result
  registerSecret(g.token, 'access token (getAuth)')
  return g.token as string
}

t.test('token file through the ssh forward: written 0600, renewed after each refresh, the forward cut and restored', async (t) => {
  const { d, c, home, p } = await workstation(t)
  const { fwd, dir, sock } = await forward(t, d)
  const tokenFile = path.join(dir, 'token')
  const sink = cliAs(remote, ['sink', '--token-file', tokenFile], { CODEX_AUTHD_SOCK: sock })
  t.teardown(() => sink.stop())

  const first = await currentToken(c)
  await until('the token file holds the current token', () => readToken(tokenFile) === first + '\n', 30_000)
  const st = fs.statSync(tokenFile)
  t.equal(st.mode & 0o777, 0o600, 'the token file is 0600')
  t.equal(st.uid, remote.uid, "the remote user's own file")

  for (let i = 1; i <= 2; i++) {
    const r = await c.call('refresh')
    t.equal(r.error, undefined, `refresh ${i} on the workstation`)
    const now = await currentToken(c)
    await until(`the token file follows refresh ${i}`, () => readToken(tokenFile) === now + '\n', 30_000)
  }
  t.equal(refreshCalls(p), 2, 'the sink spent nothing itself: two refreshes, both forced')

  // The forward goes away: the sink says so, keeps the file, and the workstation is untouched.
  const authBefore = fs.readFileSync(path.join(home, 'auth.json'))
  const held = readToken(tokenFile)
  await fwd.cut()
  await sink.line(/lost codex-authd at .*kept as it is/, 'the sink says its source is gone')
  t.ok(readToken(tokenFile) === held, 'the token file is kept as it was')
  t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(authBefore), "the workstation's auth.json is unchanged")
  t.equal((await status(c)).loggedIn, true, 'the workstation is still logged in')

  // Restored (StreamLocalBindUnlink replaces the stale socket file): back, and renewing again.
  const again = await sshd.forward(remote, sock, restrictedSocketPath(d.socket))
  t.teardown(() => again.cut())
  await sink.line(/codex-authd at .* is back/, 'the sink says its source is back')
  t.equal((await c.call('refresh')).error, undefined, 'a refresh after the restore')
  const latest = await currentToken(c)
  await until('the token file follows the refresh after the restore', () => readToken(tokenFile) === latest + '\n', 30_000)
  t.comment(sink.lines.join('\n'))
  noSecretsIn(t, sink, 'sink')
})

t.test('a login of the remote home\'s own is never replaced without --force; exec --remote runs codex only', async (t) => {
  const rhome = privateDirOf(t, remote, '.cad-own-')
  const env = { CODEX_AUTHD_SOCK: path.join(rhome, 'nobody.sock') }
  const own = '{\n  "OPENAI_API_KEY": null,\n  "tokens": {\n    "id_token": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln",\n    "access_token": "y",\n    "refresh_token": "rt-of-this-machine",\n    "account_id": null\n  }\n}'
  fs.writeFileSync(path.join(rhome, 'auth.json'), own, { mode: 0o600 })
  fs.chownSync(path.join(rhome, 'auth.json'), remote.uid, remote.gid)

  // A program called codex that must never run here (the refusal comes first).
  const fakeCodex = path.join(rhome, 'codex')
  fs.writeFileSync(fakeCodex, '#!/bin/sh\necho ran >&2\nexit 0\n', { mode: 0o755 })
  const notCodex = cliAs(remote, ['exec', '--remote', '--', '/bin/true'], env)
  t.equal(await notCodex.exited, 125, 'exec --remote -- /bin/true: 125')
  t.match(notCodex.lines.join('\n'), /exec --remote runs codex only/, 'and says why')

  const exec = cliAs(remote, ['--codex-home', rhome, 'exec', '--remote', '--', fakeCodex, 'exec', 'hi'], env)
  t.equal(await exec.exited, 125, 'exec --remote over a login of its own: 125, before reaching any daemon')
  t.match(exec.lines.join('\n'), /holds a login of its own .* it was not replaced\. Give --force/, 'says so')
  t.notMatch(exec.lines.join('\n'), /^ran$/m, 'codex never ran')
  const json = cliAs(remote, ['--json', '--codex-home', rhome, 'exec', '--remote', '--', fakeCodex], env)
  t.equal(await json.exited, 125)
  t.match(JSON.parse(json.lines.join('')), { code: 'login_present', exitCode: 125 }, 'with --json: login_present on stderr')

  const byEnv = cliAs(remote, ['--codex-home', rhome, 'exec', '--', fakeCodex], { ...env, CODEX_AUTH_REMOTE: '1' })
  t.equal(await byEnv.exited, 125, 'CODEX_AUTH_REMOTE=1 is remote mode too: the same refusal')
  t.match(byEnv.lines.join('\n'), /holds a login of its own/)

  const sink = cliAs(remote, ['sink', '--codex-home', rhome], env)
  t.equal(await sink.exited, 5, 'sink --codex-home over a login of its own: exit 5')
  t.equal(fs.readFileSync(path.join(rhome, 'auth.json'), 'utf8'), own, 'the file is untouched')
})

t.test('a container that only gets the socket file: its own mount and network namespaces, the restricted socket bind-mounted, a token file kept fresh in its volume', async (t) => {
  const { d, c, home } = await workstation(t)
  // The container's volume (the one directory it shares with the host) and its private root.
  const vol = tempDir('cad-vol-')
  const script = [
    'set -e',
    // Its own /mnt (0700), holding the socket file and the volume, then /tmp and /home hidden:
    // nothing of the workstation (its CODEX_HOME, its sockets, the tests' files) is left in view.
    'mount -t tmpfs -o mode=0700 box /mnt',
    'touch /mnt/authd.sock && mount --bind "$SOCK" /mnt/authd.sock',
    'mkdir /mnt/vol /mnt/home && mount --bind "$VOL" /mnt/vol',
    // The program itself, as an image would hold it: Node and the bundle, bind-mounted, since
    // either may live under /tmp or /home (CI's Node for another line does).
    'touch /mnt/node && mount --bind "$NODE" /mnt/node && NODE=/mnt/node',
    'mkdir /mnt/dist && mount --bind "$(dirname "$CLI")" /mnt/dist && CLI=/mnt/dist/$(basename "$CLI")',
    'mount -t tmpfs -o mode=1777 tmp /tmp && mount -t tmpfs -o mode=0755 home /home',
    'test ! -e "$WS_HOME" && test ! -e "$(dirname "$SOCK")"',
    'echo box-ready >&2',
    'export HOME=/mnt/home CODEX_AUTHD_SOCK=/mnt/authd.sock',
    // Refused through the socket; then the sink runs in the foreground.
    'for args in logout refresh "login --device"; do',
    '  if "$NODE" "$CLI" $args 2>/mnt/vol/err; then echo "allowed: $args" >&2; exit 9; fi',
    '  grep -q "not available on the restricted socket" /mnt/vol/err || { cat /mnt/vol/err >&2; exit 9; }',
    'done',
    'echo refusals-ok >&2',
    'exec "$NODE" "$CLI" sink --token-file /mnt/vol/token',
  ].join('\n')
  const box = spawn('unshare', ['-m', '-n', '--propagation', 'private', 'sh', '-c', script], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SOCK: restrictedSocketPath(d.socket), VOL: vol, WS_HOME: home, NODE: process.execPath, CLI: CLI_BIN },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const lines: string[] = []
  onLines(box.stderr!, (l) => lines.push(l))
  const ended = new Promise<number | null>((r) => box.once('close', (code) => r(code)))
  t.teardown(async () => {
    box.kill('SIGTERM')
    await ended
  })
  const tokenFile = path.join(vol, 'token')
  const first = await currentToken(c)
  await until('the box is up and its token file holds the current token', () => {
    if (box.exitCode !== null) throw new Error(`the box ended (${box.exitCode}): ${lines.join('\n')}`)
    return readToken(tokenFile) === first + '\n'
  }, 30_000)
  t.ok(lines.includes('box-ready'), "the box sees neither the workstation's CODEX_HOME nor its socket directory")
  t.ok(lines.includes('refusals-ok'), 'logout, refresh and login through the box\'s socket: refused')
  t.equal((await c.call('refresh')).error, undefined, 'a refresh on the workstation')
  const next = await currentToken(c)
  await until('the token file in the box follows', () => readToken(tokenFile) === next + '\n', 30_000)
  t.equal((await status(c)).loggedIn, true, 'the workstation is still logged in')
  t.same(findSecrets(lines.join('\n')), [], 'no secret in what the box printed')
})

const CLIENT_ID = 'app_EMoamEEZ73f0CkXaXp7hrann'
const presented = (c: RawConnection, placeholder: string) =>
  c.call('brokerRefresh', { client_id: CLIENT_ID, grant_type: 'refresh_token', refresh_token: placeholder })

t.test('auth.json sink through the forward: Codex\'s format with a placeholder, renewed with the tokens; a stolen placeholder refused after rotation and after revocation, the reuse reported', async (t) => {
  const { d, c, p, w, minted } = await workstation(t)
  const { dir, sock } = await forward(t, d)
  const rhome = path.join(dir, 'codex-home') // created by the sink (0700)
  const sink = cliAs(remote, ['sink', '--codex-home', rhome], { CODEX_AUTHD_SOCK: sock })
  t.teardown(() => sink.stop())
  const first = await currentToken(c)
  const file = path.join(rhome, 'auth.json')
  const held = await until('the sink wrote auth.json with the current token', () => {
    try {
      const tk = remoteTokens(rhome)
      return tk.accessToken === first ? tk : null
    } catch {
      return null
    }
  }, 30_000)
  registerSecret(held.refreshToken, 'placeholder (remote auth.json)')
  t.ok(held.refreshToken.startsWith('codex-authd-ph.'), 'its refresh token is a placeholder')
  const st = fs.statSync(file)
  t.equal(st.mode & 0o777, 0o600, 'auth.json is 0600')
  t.equal(st.uid, remote.uid, "the remote user's own file")
  t.equal(fs.statSync(rhome).mode & 0o777, 0o700, 'its CODEX_HOME was created 0700')
  const login = await codexLoginStatus(rhome)
  t.match(login.out, /Logged in using ChatGPT/, 'the real Codex CLI reads it as a ChatGPT login')

  t.equal((await c.call('refresh')).error, undefined, 'a refresh on the workstation')
  const next = await currentToken(c)
  const renewed = await until('auth.json follows the refresh', () => (remoteTokens(rhome).accessToken === next ? remoteTokens(rhome) : null), 30_000)
  registerSecret(renewed.refreshToken, 'placeholder (remote auth.json)')
  t.ok(renewed.refreshToken !== held.refreshToken, 'with a new placeholder')
  t.equal(refreshCalls(p), 1, 'the sink spent nothing itself')

  // A thief on the remote machine with the first placeholder: used once, it rotates (the sink has
  // not replaced it yet: it replaces the one before the current one); once the successor has been
  // used, the old one presented again is a reuse: refused, its chain revoked, reported.
  const thief = await rawConnect(sock)
  t.teardown(() => thief.close())
  const a1 = await presented(thief, held.refreshToken)
  t.equal(a1.result?.status, 200, 'the stolen placeholder, first use: answered')
  const successor = a1.result?.body?.refresh_token as string
  registerSecret(successor, 'placeholder (broker answer)')
  t.ok(typeof successor === 'string' && successor.startsWith('codex-authd-ph.') && successor !== held.refreshToken, 'with a new placeholder, never the real token')
  t.equal((await presented(thief, successor)).result?.status, 200, 'its successor used')
  const reuse = await presented(thief, held.refreshToken)
  t.equal(reuse.result?.status, 401, 'the rotated one presented again: 401')
  t.match(reuse.result?.body, { error: { code: String } }, "in Codex's sign-in-again shape")
  t.equal((await presented(thief, successor)).result?.status, 401, 'and its whole chain is revoked')
  const after = await status(c)
  // Two reuses: the stolen one, and then its successor (rotated too, once used) presented again.
  t.equal(after.counters.placeholderReuse, 2, 'each reuse is counted', { counters: after.counters })
  const audit = (await c.call('audit')).result
  t.ok(audit.entries.some((e: { outcome: string }) => e.outcome === 'placeholder_reused'), 'and audited')

  // Revocation by the workstation's user: the sink's current placeholder is refused at once.
  const list = (await c.call('placeholderList')).result.placeholders as Array<{ id: string; label: string; state: string }>
  const mine = list.filter((x) => x.label.startsWith('sink:') && x.state === 'active')
  t.ok(mine.length >= 1, `the sink's placeholders are listed (${mine.length} active)`)
  for (const x of mine) t.same((await c.call('placeholderRevoke', { id: x.id })).result, { revoked: true }, `revoked ${x.id}`)
  t.equal((await presented(thief, renewed.refreshToken)).result?.status, 401, 'the revoked placeholder from auth.json: 401')

  // Every file of the sink's (its directory, the CODEX_HOME it wrote): no real refresh token.
  const real = [minted.refreshToken, ...refreshAnswers(w).map((a) => a.refresh_token)]
  const files = filesUnder(dir)
  const hits = files.filter((f) => real.some((rt) => fs.readFileSync(f, 'latin1').includes(rt)))
  t.same(hits, [], `the real refresh token is in none of the ${files.length} files under the sink's directory (${real.length} checked)`)

  // Nothing of this touched the workstation's login.
  t.equal(after.loggedIn, true, 'the workstation is still logged in')
  t.equal(refreshCalls(p), 1, 'and nothing was spent for the thief')
  noSecretsIn(t, sink, 'sink')
})
