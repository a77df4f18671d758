// What a person sees (issue 13, finding 9): terminal control characters from id_token claims,
// config values or file contents are escaped in every human line of codex-auth, and a config
// value quoted in a problem message is cut to a sane length, in status, in authChanged and in the
// log alike. The real daemon and the real CLI; the pure functions first.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { clip, escapeControls, jsonForTerminal, quoteValue } from '../src/text.js'
import { humanLines } from '../src/client/cli-util.js'
import { makeHome, runCli, startDaemon, stopAtTeardown } from './support/daemon.js'
import { connectRpc } from './support/login-helpers.js'
import { fakeJwt } from './support/tokens.js'

// Anything a terminal could act on, or that reorders or forges what is displayed.
const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

t.test('escapeControls, clip, quoteValue, jsonForTerminal', async (t) => {
  t.equal(escapeControls('a\u001b[2Jb\u0007\n\t\r\u007f'), 'a\\x1b[2Jb\\x07\\n\\t\\r\\x7f')
  t.equal(escapeControls('c1 \u009b31m, bidi \u202eevil\u202c \u2066x\u2069 \u200f \u061c, sep \u2028\u2029'), 'c1 \\x9b31m, bidi \\u202eevil\\u202c \\u2066x\\u2069 \\u200f \\u061c, sep \\u2028\\u2029')
  t.equal(escapeControls('lone \ud800 and \udfff, pair 😀'), 'lone \\ud800 and \\udfff, pair 😀')
  t.equal(escapeControls('plain: é 中文 ключ'), 'plain: é 中文 ключ', 'text stays as it is')
  t.equal(clip('x'.repeat(80)), 'x'.repeat(80))
  t.equal(clip('x'.repeat(81)), `${'x'.repeat(80)}…`)
  t.equal(clip('😀'.repeat(81)), `${'😀'.repeat(80)}…`, 'pairs never split')
  t.equal(quoteValue('apikey'), '"apikey"')
  const long = quoteValue('y'.repeat(10_240))
  t.equal(long, `"${'y'.repeat(80)}…"`, 'a 10 KB value costs 83 characters')
  t.equal(quoteValue('a"b\u001b\u009b'), '"a\\"b\\u001b\\x9b"')
  const value = { email: 'a\u001b[31m\u009b\u202e@x', list: ['\u2028'] }
  const j = jsonForTerminal(value, 2)
  t.notMatch(j.replace(/\n/g, ''), RAW_UNSAFE, 'no raw control in the JSON output')
  t.same(JSON.parse(j), value, 'the same JSON value')
  t.equal(humanLines(['one\u001b[1m', 'two\nthree']), 'one\\x1b[1m\ntwo\\nthree\n', 'a newline inside a value cannot forge a line')
})

t.test('claims with ESC sequences, C1 and bidi controls are escaped in codex-auth status', async (t) => {
  const home = await makeHome()
  const email = 'evil\u001b[2J\u001b]0;owned\u0007\u009b31m@example.com'
  const plan = 'plus\u202etxt.exe'
  const account = 'acc-\u001b[5m'
  const now = Math.floor(Date.now() / 1000)
  const idToken = fakeJwt({ email, 'https://api.openai.com/auth': { chatgpt_plan_type: plan, chatgpt_account_id: account } })
  const accessToken = fakeJwt({ exp: now + 30 * 86400, iat: now })
  const auth = { auth_mode: 'chatgpt', OPENAI_API_KEY: null, tokens: { id_token: idToken, access_token: accessToken, refresh_token: 'rt-display', account_id: account }, last_refresh: new Date().toISOString() }
  fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify(auth, null, 2), { mode: 0o600 })
  const daemon = stopAtTeardown(t, await startDaemon({ home }))

  const human = await runCli(['status'], { socket: daemon.socket })
  t.equal(human.code, 0)
  t.notMatch(human.stdout, RAW_UNSAFE, 'no raw control character reaches the terminal')
  t.match(human.stdout, 'Logged in using ChatGPT (evil\\x1b[2J\\x1b]0;owned\\x07\\x9b31m@example.com, plus\\u202etxt.exe)')
  const lines = human.stdout.split('\n')
  t.match(lines[0], /^Logged in using ChatGPT \(/, 'the headline is one line')
  t.match(lines[1], /^ {2}Method: +ChatGPT$/, 'the next line is the next field: nothing forged')
  t.match(lines[2], /^ {2}Account: +evil\\x1b\[2J.*, plan plus\\u202etxt\.exe, account acc-\\x1b\[5m$/, 'the account line escaped too')

  const json = await runCli(['--json', 'status'], { socket: daemon.socket })
  t.equal(json.code, 0)
  t.notMatch(json.stdout.replace(/\n/g, ''), RAW_UNSAFE, '--json: C1 and bidi as \\u escapes too')
  t.match(JSON.parse(json.stdout).account, { email, planType: plan, accountId: account }, '--json: the same values')
})

t.test('a 10 KB config value is cut in status, authChanged and the log', async (t) => {
  const home = await makeHome()
  const huge = `z${'\u009b'.repeat(10)}${'x'.repeat(10_230)}`
  fs.writeFileSync(path.join(home, 'config.toml'), `preferred_auth_method = "${huge}"\nforced_chatgpt_workspace_id = "${'w'.repeat(10_240)}"\n`)
  const now = Math.floor(Date.now() / 1000)
  const idToken = fakeJwt({ email: 'big@example.com', 'https://api.openai.com/auth': { chatgpt_account_id: 'acc-big' } })
  const auth = { auth_mode: 'chatgpt', OPENAI_API_KEY: null, tokens: { id_token: idToken, access_token: fakeJwt({ exp: now + 86400, iat: now }), refresh_token: 'rt-big', account_id: 'acc-big' }, last_refresh: new Date().toISOString() }
  fs.writeFileSync(path.join(home, 'auth.json'), JSON.stringify(auth, null, 2), { mode: 0o600 })
  const daemon = stopAtTeardown(t, await startDaemon({ home }))
  const rpc = await connectRpc(daemon.socket)
  t.teardown(() => rpc.close())
  await rpc.ok('subscribe')

  const status = await rpc.ok('status')
  const config = status.problems.find((p: { code: string }) => p.code === 'config_invalid')
  t.ok(config, 'the bad value is reported')
  t.match(config.message, /^preferred_auth_method = "z(\\x9b){10}x+…" is not valid/)
  t.ok(config.message.length < 250, `config message cut (${config.message.length} characters)`)
  const policy = status.problems.find((p: { code: string }) => p.code === 'policy_conflict')
  t.ok(policy, 'the workspace rule is reported')
  t.ok(policy.message.length < 300, `policy message cut (${policy.message.length} characters)`)
  const statusBytes = JSON.stringify(status).length
  t.ok(statusBytes < 3000, `the whole Status stays small (${statusBytes} bytes for 20 KB of config values)`)

  const human = await runCli(['status'], { socket: daemon.socket })
  for (const line of human.stdout.split('\n')) t.ok(line.length < 400, `a status line of ${line.length} characters`)
  t.notMatch(human.stdout, RAW_UNSAFE)

  // A change makes authChanged carry the same cut messages.
  fs.writeFileSync(path.join(home, 'config.toml'), `preferred_auth_method = "${'q'.repeat(10_240)}"\n`)
  const changed = await rpc.waitFor((n) => n.method === 'authChanged' && n.params.problems.some((p: { message: string }) => p.message.includes('"qqq')))
  const size = JSON.stringify(changed.params).length
  t.ok(size < 3000, `authChanged stays small (${size} bytes)`)
  const logged = daemon.logs.filter((l) => l.includes('preferred_auth_method'))
  t.ok(logged.length > 0, 'the problem is logged')
  for (const l of logged) t.ok(l.length < 1000, `a log line of ${l.length} bytes`)
})
