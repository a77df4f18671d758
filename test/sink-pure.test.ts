// The pure parts of the sinks and of exec --remote (docs/remote.md#sinks): when to renew, what
// may be replaced, the command line. No daemon. And the README's unit for the sink, verified.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { ROOT, tempDir } from './support/daemon.js'
import { parseArgs } from '../src/client/cli-util.js'
import { isPlaceholder, sinkMayReplace } from '../src/client/remote-home.js'
import { placeholderRenewal, RENEW_MARGIN_S, retryDelay, tokenRenewal } from '../src/client/sink.js'
import type { AuthRead } from '../src/store/authstore.js'
import type { AuthFile } from '../src/types.js'

const S = 1000

t.test('tokenRenewal: the margin before expiry, never more than half the life, never a loop', async (t) => {
  const now = 1_000_000 * S
  // An hour-long token: the auth.json sink renews 10 min before expiry, well before Codex's 5.
  const hour = tokenRenewal(now, now, now + 3600 * S, RENEW_MARGIN_S.authJson)!
  t.equal(hour.inMs, 3000 * S)
  t.equal(hour.minValiditySeconds, 601, 'asks for more than it has left then: the daemon refreshes first')
  t.equal(tokenRenewal(now, now, now + 3600 * S, RENEW_MARGIN_S.tokenFile)!.inMs, 3300 * S, 'the token file: 5 min before')
  // A 10-minute token: half its life, not 10 minutes before (that would be now, and again, and again).
  const short = tokenRenewal(now, now, now + 600 * S, RENEW_MARGIN_S.authJson)!
  t.equal(short.inMs, 300 * S)
  t.equal(short.minValiditySeconds, 301)
  // Obtained a while ago, now past its renewal time: due at once.
  t.equal(tokenRenewal(now + 3500 * S, now, now + 3600 * S, RENEW_MARGIN_S.authJson)!.inMs, 0)
  t.equal(tokenRenewal(now, now, null, 600), null, 'an API key never expires')
  t.ok(tokenRenewal(now, now, now + 100_000 * S, 600)!.minValiditySeconds <= 3600, 'within getAuth\'s bound')
})

t.test('placeholderRenewal and retryDelay', async (t) => {
  t.equal(placeholderRenewal(0, 0, 24 * 3600 * S), 18 * 3600 * S, 'three quarters of a 24 h life')
  t.equal(placeholderRenewal(20 * 3600 * S, 0, 24 * 3600 * S), 0, 'due')
  const delays = Array.from({ length: 20 }, (_, i) => retryDelay(i))
  t.equal(delays[0], 250)
  t.ok(delays.every((d, i) => i === 0 || d >= delays[i - 1]!), 'never shorter than the one before')
  t.equal(Math.max(...delays), 5000, 'bounded by 5 s')
})

function ok(auth: Partial<AuthFile>): AuthRead {
  const a: AuthFile = { authMode: 'chatgpt', openaiApiKey: null, tokens: null, lastRefresh: null, extra: {}, ...auth }
  return { state: 'ok', auth: a, text: '', mode: 0o600, targetPath: '/x/auth.json', isSymlink: false }
}
const tokens = (refreshToken: string) => ({ idToken: 'a.b.c', accessToken: 'at', refreshToken, accountId: 'acc', extra: {} })

t.test('sinkMayReplace: nothing or a placeholder file; never a login of the home\'s own', async (t) => {
  t.ok(isPlaceholder('codex-authd-ph.AAAA'))
  t.notOk(isPlaceholder('rt_real'))
  t.same(sinkMayReplace({ state: 'absent' }), { ok: true })
  t.same(sinkMayReplace(ok({ tokens: tokens('codex-authd-ph.abc') })), { ok: true })
  t.same(sinkMayReplace(ok({ tokens: null })), { ok: true }, 'a file with no credential at all')
  t.match(sinkMayReplace(ok({ tokens: tokens('rt_real') })), { ok: false, holds: /login of its own/ })
  t.match(sinkMayReplace(ok({ openaiApiKey: 'sk-x', tokens: tokens('codex-authd-ph.abc') })), { ok: false, holds: /API key/ })
  t.match(
    sinkMayReplace({ state: 'unreadable', problem: { code: 'auth_unreadable', message: 'm', file: null, line: null, column: null } }),
    { ok: false, holds: /cannot read/ },
  )
})

t.test('the command line: exec --remote/--force, sink --token-file/--codex-home', async (t) => {
  const e = parseArgs(['exec', '--remote', '--force', '--', 'codex', 'exec', '--remote'])
  t.equal(e.remote, true)
  t.equal(e.force, true)
  t.same(e.argv, ['codex', 'exec', '--remote'], "codex's own arguments are its own")
  t.equal(parseArgs(['exec', '--', 'codex']).remote, false)
  const s = parseArgs(['sink', '--token-file', '/t/token', '--codex-home', '/h'])
  t.equal(s.command, 'sink')
  t.equal(s.tokenFile, '/t/token')
  t.equal(s.codexHome, '/h')
  t.equal(parseArgs(['--codex-home', '/h', 'sink']).codexHome, '/h', 'before the command too')
  t.throws(() => parseArgs(['sink']), /sink needs --token-file PATH, --codex-home DIR or both/)
  t.throws(() => parseArgs(['sink', '--token-file=']), /non-empty/)
  t.throws(() => parseArgs(['token', '--remote']), /unknown option --remote for token/)
})

t.test("the README's systemd unit for the sink passes systemd-analyze --user verify", async (t) => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const m = /```ini\n((?:\s*#[^\n]*codex-auth-sink\.service\n)[\s\S]*?)\s*```/.exec(readme)
  t.ok(m, 'the README shows the unit')
  const unit = m![1]!.split('\n').map((l) => l.replace(/^ {2}/, '')).join('\n') + '\n'
  t.match(unit, /^ExecStart=\/usr\/bin\/env codex-auth sink --token-file /m)
  const dir = tempDir('cad-unit-')
  const file = path.join(dir, 'codex-auth-sink.service')
  fs.writeFileSync(file, unit)
  const runtime = tempDir('cad-rt-')
  const r = spawnSync('systemd-analyze', ['--user', 'verify', file], {
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: runtime, HOME: dir, XDG_CONFIG_HOME: path.join(dir, '.config'), SYSTEMD_PAGER: '' },
  })
  t.equal(r.error, undefined, 'systemd-analyze runs (Debian package systemd)')
  t.same(r.stderr.split('\n').filter((l) => l.trim() !== ''), [], 'no warning at all', { stdout: r.stdout })
  t.equal(r.status, 0)
})
