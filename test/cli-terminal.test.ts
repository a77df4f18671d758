// What a person sees in a real terminal (tmux, test/support/tmux.ts): the daemon's pretty log and
// its start-up error said once, the login's live line and Ctrl-C (one "Login cancelled", every
// time), and the device login's URL, code and QR code, approved at the in-process provider.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { openSync, closeSync } from 'node:fs'
import { createLogger } from '../src/log.js'
import { prettyDestination } from '../src/log-pretty.js'
import { qrLines } from '../src/client/qr.js'
import { CLI_BIN, DAEMON_BIN, makeHome, runDaemonCommand, startDaemon, stopAtTeardown, tempDir } from './support/daemon.js'
import { approveDeviceCode } from './support/browser.js'
import { setup } from './support/login-helpers.js'
import { sq, terminal } from './support/tmux.js'

const node = sq(process.execPath)
const count = (text: string, re: RegExp): number => text.match(new RegExp(re.source, 'g'))?.length ?? 0

t.test('the pretty log redacts as the JSON one does', async (t) => {
  const file = path.join(tempDir('cad-pretty-'), 'log')
  const fd = openSync(file, 'w')
  const log = createLogger('info', fd, prettyDestination(fd, false))
  log.info({ token: 'sk-never-shown-1', auth: { tokens: { refresh_token: 'rt-never-shown-2' } }, loginId: 'L1' }, 'a record with secrets')
  closeSync(fd)
  const text = fs.readFileSync(file, 'utf8')
  t.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: a record with secrets \{.*"loginId":"L1".*\}\n$/, 'one pretty line, written before the call returned')
  t.notMatch(text, /never-shown/, 'no secret')
  t.equal(count(text, /\[redacted\]/), 2)
})

t.test('codex-authd on a terminal: pretty, coloured lines; a start-up error said once', async (t) => {
  const term = terminal(t)
  const home = await makeHome()
  const socket = path.join(tempDir('cad-term-'), 's.sock')
  const key = 'sk-test-terminal-0123456789abcdef'
  term.run('daemon', `${node} ${sq(DAEMON_BIN)} --codex-home ${sq(home)} --socket ${sq(socket)} --issuer http://127.0.0.1:9 --issuer-kind openai`, { env: { OPENAI_API_KEY: key } })
  await term.screenMatches('daemon', /INFO: codex-authd started/)
  const screen = term.screen('daemon')
  t.notMatch(screen, /\{"level"/, 'no JSON record on a terminal')
  t.notOk(screen.includes(key), 'no key on screen')
  t.match(term.screen('daemon', true), /\x1b\[32mINFO/, 'the level in colour')

  // A second daemon for the same home refuses to start: the reason once, in words.
  const other = path.join(tempDir('cad-term-'), 's.sock')
  term.run('second', `${node} ${sq(DAEMON_BIN)} --codex-home ${sq(home)} --socket ${sq(other)}`)
  await term.screenMatches('second', /EXIT=3/)
  t.equal(count(term.screen('second'), /already owns/), 1, 'the start-up error once on the terminal')
  // ... and once when nothing is a terminal: on stderr, no log record on stdout.
  const piped = await runDaemonCommand(['--codex-home', home, '--socket', other])
  t.equal(piped.code, 3)
  t.equal(count(piped.stderr, /already owns/), 1, 'once on stderr')
  t.notMatch(piped.stdout, /already owns/, 'not also as a JSON record on stdout')

  term.keys('daemon', 'C-c')
  await term.screenMatches('daemon', /EXIT=0/)
  t.notMatch(term.screen('daemon'), /\{"level"/, 'still no JSON at shutdown')
})

t.test('login on a terminal: a live line with the time left, and one "Login cancelled" per Ctrl-C', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  const term = terminal(t)
  // Three runs, as Ctrl-C printed "Login cancelled" twice in two of three before; each must end
  // the daemon's login too, or the next would be refused as already in progress.
  for (const run of [1, 2, 3]) {
    const name = `login${run}`
    const browser = run === 1 ? '' : ' --no-browser'
    term.run(name, `${node} ${sq(CLI_BIN)} --socket ${sq(d.socket)} login${browser}`)
    const first = await term.screenMatches(name, /Waiting for the login to complete: (\d+:\d\d) elapsed, (1[45]:\d\d) left \(Ctrl-C to cancel\)/)
    // The line is rewritten in place: the elapsed time moves on, and there is still one line.
    await term.screenMatches(name, new RegExp(`Waiting for the login to complete: (?!${first[1]} )\\d+:\\d\\d elapsed`))
    const screen = term.screen(name)
    t.equal(count(screen, /Waiting for the login/), 1, `run ${run}: one live line, rewritten in place`)
    if (run === 1) {
      t.match(screen, /No browser can be opened: no graphical session here \(neither DISPLAY nor WAYLAND_DISPLAY is set\)\./, 'no browser here: said so')
      t.notMatch(screen, /did not open/)
    } else {
      t.match(screen, /Navigate to this URL to authenticate:/, '--no-browser')
      t.notMatch(screen, /If your browser did not open/, '--no-browser: no word of a browser')
    }
    term.keys(name, 'C-c')
    await term.screenMatches(name, /EXIT=\d+/)
    const end = term.screen(name)
    t.match(end, /EXIT=130/, `run ${run}: exit 130`)
    t.equal(count(end, /Login cancelled/), 1, `run ${run}: "Login cancelled" once`)
    t.notMatch(end, /Waiting for the login to complete[^\n]*\n[^\n]*Waiting/, 'the live line was cleared')
  }
})

t.test('device login on a terminal: URL, code and QR code; approved at the provider', async (t) => {
  const { daemon } = await setup(t, { kind: 'oidc', env: { CODEX_AUTHD_DEVICE_INTERVAL_MS: '200' } })
  const term = terminal(t)
  term.run('device', `${node} ${sq(CLI_BIN)} --socket ${sq(daemon.socket)} login --device`, { cols: 220 })
  const [, url] = await term.screenMatches('device', /^ {3}(http\S+user_code=\S+)$/m)
  const screen = term.screen('device')
  const code = new URL(url!).searchParams.get('user_code')!
  t.match(screen, new RegExp(`2\\. Enter this one-time code \\(expires at \\S+\\)\\n {3}${code}\\n`), 'the code')
  for (const line of qrLines(url!)) t.ok(screen.includes(`   ${line}`), 'the QR code of the URL')
  await term.screenMatches('device', /Waiting for the login to complete: \d+:\d\d elapsed, \d+:\d\d left/)
  const approval = await approveDeviceCode(url!)
  t.ok(approval.approved, 'approved at the provider')
  await term.screenMatches('device', /EXIT=\d+/)
  const end = term.screen('device')
  t.match(end, /Successfully logged in\nEXIT=0/, 'logged in')
})
