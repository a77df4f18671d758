// The daemon and the CLI on the Node that runs this file. .ci/run runs it under Node 20, 22, 24
// and 26 from one `npm ci` tree and sets CODEX_AUTHD_TEST_NODE_MAJOR to the line it meant, so a
// run that silently fell back to another Node fails here instead of passing for the wrong one.
import t from 'tap'
import fs from 'node:fs'
import { execFile } from 'node:child_process'
import path from 'node:path'
import { runCli, runDaemonCommand, startDaemon, stopAtTeardown } from './support/daemon.js'

const major = Number(process.versions.node.split('.')[0])
t.comment(`node ${process.version} (${process.execPath})`)

t.test('this is the Node .ci/run asked for', async (t) => {
  const want = process.env.CODEX_AUTHD_TEST_NODE_MAJOR
  if (want === undefined) {
    t.comment('CODEX_AUTHD_TEST_NODE_MAJOR is unset (not under .ci/run): checking only that this Node is a supported line')
  } else {
    t.equal(major, Number(want), `tap runs its test processes under Node ${want}`)
  }
  t.ok([20, 22, 24, 26].includes(major), `Node ${major} is one of the lines CI covers`)
})

t.test('both bins print their version', async (t) => {
  const d = await runDaemonCommand(['--version'])
  t.equal(d.code, 0)
  t.match(d.stdout, /^codex-authd \d+\.\d+\.\d+\n$/)
  const c = await runCli(['--version'])
  t.equal(c.code, 0)
  t.match(c.stdout, /^codex-auth \d+\.\d+\.\d+\n$/)
})

t.test('the daemon starts under this Node, takes its flock, and the CLI gets an answer', async (t) => {
  const d = stopAtTeardown(t, await startDaemon())
  // The daemon runs on this very binary (startDaemon spawns process.execPath).
  t.equal(fs.realpathSync(`/proc/${d.pid}/exe`), fs.realpathSync(process.execPath), 'daemon runs on this Node')
  // Its home lock is flock(2) through koffi: flock(1) must see it held.
  const held = await new Promise<number>((resolve) => {
    execFile('flock', ['-n', path.join(d.home, 'authd.lock'), 'true'], (err) => resolve(err ? Number((err as { code?: unknown }).code) : 0))
  })
  t.equal(held, 1, 'flock -n on authd.lock fails while the daemon runs')
  const s = await runCli(['--json', 'status'], { socket: d.socket })
  t.equal(s.code, 1, 'status: not logged in (exit 1)')
  const status = JSON.parse(s.stdout) as { loggedIn: boolean; daemon: { pid: number } }
  t.equal(status.loggedIn, false)
  t.equal(status.daemon.pid, d.pid, 'answered by the daemon we started')
  const stopped = await d.stop('SIGTERM')
  t.equal(stopped.code, 0, 'SIGTERM: exit 0')
})
