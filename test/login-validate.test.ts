// Validate before writing (issue 13, finding 7): nothing goes into auth.json that Codex or the
// daemon could not read back. An API key with a lone surrogate or a control character is refused
// with -32602 naming the field (never the value), auth.json stays byte for byte, and the old
// credential is still served. Tokens from an issuer that would not read back fail the login the
// same way. The rejected inputs are fixtures, one each (test/fixtures/login/bad-apikey-*.json).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile, unwritableValue } from '../src/codex/authfile.js'
import { persistChatgptLogin } from '../src/login/persist.js'
import type { AuthFile } from '../src/types.js'
import { codexLoginStatus } from './support/codex.js'
import { fileStore } from '../src/store/credential-store.js'
import { runCli, tempDir } from './support/daemon.js'
import { authFile, setup } from './support/login-helpers.js'
import { chatgptAuth, fakeJwt } from './support/tokens.js'

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'login')
const AUTH_FIXTURES = path.join(import.meta.dirname, 'fixtures', 'auth')
const badKeys = fs.readdirSync(FIXTURES).filter((f) => f.startsWith('bad-apikey-')).sort()

t.test('an API key Codex could not read back is refused; auth.json and the served token stay', async (t) => {
  t.ok(badKeys.length >= 7, 'one fixture per rejected key')
  const { daemon, rpc } = await setup(t)
  const old = chatgptAuth('validate')
  fs.writeFileSync(authFile(daemon.home), old.text, { mode: 0o600 })
  await rpc.waitFor((n) => n.method === 'authChanged' && n.params.loggedIn)
  const before = fs.readFileSync(authFile(daemon.home))

  for (const name of badKeys) {
    // JSON.parse gives the string the daemon will see: `\ud800` becomes a lone surrogate, and
    // JSON.stringify sends it on as the same escape.
    const params = JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8'))
    const r = await rpc.call('login', params)
    t.match(r.error, { code: -32602, data: { field: 'apiKey' } }, `${name}: -32602 naming apiKey`)
    t.match(r.error?.message, /apiKey holds a control character, a bidi mark or a lone surrogate/, `${name}: says why`)
    const echoed = JSON.stringify(r)
    t.notOk(echoed.includes('abcdef') || echoed.includes('ghijklmnop'), `${name}: the key is never quoted`)
    t.ok(fs.readFileSync(authFile(daemon.home)).equals(before), `${name}: auth.json unchanged byte for byte`)
  }
  const grant = await rpc.ok('getAuth')
  t.equal(grant.mode, 'chatgpt')
  t.equal(grant.token, old.access, 'the old token is still served')
  t.notOk(rpc.notifications.some((n) => n.method === 'loginCompleted'), 'no login happened')
  t.notOk(daemon.logs.join('\n').includes('ghijklmnop'), 'no key in the log')
})

t.test('unwritableValue names the field Codex could not read back', async (t) => {
  const good = (): AuthFile => ({
    authMode: 'chatgpt',
    openaiApiKey: null,
    tokens: { idToken: fakeJwt({ email: 'a@example.com' }), accessToken: 'at', refreshToken: 'rt', accountId: 'acc', extra: {} },
    lastRefresh: '2026-11-29T00:00:00.000000000Z',
    extra: {},
  })
  t.equal(unwritableValue(good()), null, 'a normal file is writable')
  t.equal(unwritableValue({ ...good(), openaiApiKey: 'sk-ключ-🔑' }), null, 'non-ASCII that UTF-8 carries is no reason to refuse')
  const cases: Array<[string, (a: AuthFile) => void]> = [
    ['OPENAI_API_KEY', (a) => (a.openaiApiKey = 'sk-\u001b[2Jx')],
    ['tokens.access_token', (a) => (a.tokens!.accessToken = 'at\ud800')],
    ['tokens.refresh_token', (a) => (a.tokens!.refreshToken = '\udfffrt')],
    ['tokens.account_id', (a) => (a.tokens!.accountId = 'acc\ud83d')],
    ['tokens.id_token', (a) => (a.tokens!.idToken = fakeJwt({ email: 'a\ud800@example.com' }))],
    ['tokens.id_token', (a) => (a.tokens!.idToken = fakeJwt({ 'https://api.openai.com/auth': { chatgpt_plan_type: '\udc00' } }))],
  ]
  for (const [field, spoil] of cases) {
    const a = good()
    spoil(a)
    const bad = unwritableValue(a)
    t.equal(bad?.field, field, `${field} named`)
  }
  // A claim Codex does not read may hold anything serde_json can skip over.
  t.equal(unwritableValue({ ...good(), tokens: { ...good().tokens!, idToken: fakeJwt({ email: 'a@example.com', other: 'x\ud800' }) } }), null)
})

t.test('tokens that would not read back fail the login before any lock; the file stays', async (t) => {
  const home = tempDir('cad-validate-')
  const file = authFile(home)
  const old = chatgptAuth('kept')
  fs.writeFileSync(file, old.text, { mode: 0o600 })
  const tokens = { idToken: fakeJwt({ email: 'new@example.com' }), accessToken: fakeJwt({ exp: 1 }), refreshToken: 'rt-new\ud800' }
  await t.rejects(persistChatgptLogin(fileStore(home), tokens, null, new Date()), { name: 'LoginError', code: 'login_failed', message: /tokens\.refresh_token holds a lone UTF-16 surrogate/ })
  t.equal(fs.readFileSync(file, 'utf8'), old.text, 'unchanged')
  t.notOk(fs.existsSync(path.join(home, 'auth.json.lock')), 'no lock was even taken')
})

/** `codex login status` in a throwaway home holding `text` as auth.json. */
function codexStatus(text: string): Promise<{ code: number | null; out: string }> {
  const home = tempDir('cad-codexhome-')
  fs.writeFileSync(path.join(home, 'auth.json'), text, { mode: 0o600 })
  return codexLoginStatus(home)
}

t.test('the real Codex CLI refuses what the check refuses', async (t) => {
  for (const name of ['bad-auth-id-token-email-lone-surrogate.json', 'bad-auth-api-key-lone-surrogate.json']) {
    const text = fs.readFileSync(path.join(AUTH_FIXTURES, name), 'utf8')
    t.notOk(parseAuthFile(text, 'auth.json').ok, `${name}: the daemon rejects it`)
    const codex = await codexStatus(text)
    t.not(codex.code, 0, `${name}: Codex rejects it too (${codex.out.trim().split('\n')[0]})`)
  }
  // The controls: the file as Codex wrote it, and with a lone surrogate in a claim Codex does not
  // read (serde_json skips it unchecked), are accepted by both.
  const fine = fs.readFileSync(path.join(AUTH_FIXTURES, 'good-codex-written.json'), 'utf8')
  const parsed = parseAuthFile(fine, 'auth.json')
  t.ok(parsed.ok)
  t.equal((await codexStatus(fine)).code, 0, 'Codex accepts the control file')
  const idToken = /"id_token": "([^"]+)"/.exec(fine)![1]!
  const unread = fine.replace(idToken, fakeJwt({ email: 'fake@example.com', other: 'x\ud800', 'https://api.openai.com/auth': { chatgpt_account_id: 'acc-fake-1' } }))
  t.ok(parseAuthFile(unread, 'auth.json').ok, 'an unread claim: the daemon accepts it')
  t.equal((await codexStatus(unread)).code, 0, 'an unread claim: Codex accepts it too')
})

t.test('codex-auth login --with-api-key: the refusal names the field, never the key', async (t) => {
  const { daemon } = await setup(t)
  const r = await runCli(['login', '--with-api-key'], { socket: daemon.socket, input: 'sk-test-abcdef\u001b[2Jghijklmnop\n' })
  t.equal(r.code, 3)
  t.match(r.stderr, /invalid request \(apiKey\): apiKey holds a control character/)
  t.notOk(r.stderr.includes('abcdef') || r.stdout.includes('abcdef'), 'the key is never echoed')
  t.notOk(fs.existsSync(authFile(daemon.home)), 'nothing written')
})
