// Three ways a program on a "remote" machine gets a credential, in one run, round-robin so that
// background load hits all alike: reading the file `codex-auth sink --token-file` keeps fresh
// (`cat FILE`), asking the daemon (`codex-auth token`), and the ssh-agent baseline (`ssh-add -l`
// against a running ssh-agent holding one key). Wall time per process, medians, as ratios to
// `ssh-add -l`; plus an in-process read of the file (what a program that reads it itself pays).
// Nothing read is printed.
// Usage: node bench/sink-token.mjs [--runs 40]
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { CLI_BIN, fmt, median, nowMs, printTable, startDaemon, tempDir, timeCommandsInTurn } from './lib.mjs'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '40' } } })
const RUNS = Math.max(30, Number(values.runs))

const missing = [CLI_BIN, 'ssh-agent', 'ssh-add', 'ssh-keygen'].filter((c) => (c.includes('/') ? !fs.existsSync(c) : spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0))
if (missing.length > 0) {
  console.log(`missing ${missing.join(', ')}: skipped`)
  console.log(JSON.stringify({ bench: 'sink-token', skipped: `missing ${missing.join(', ')}` }))
  process.exit(0)
}

const dir = tempDir('cab-sink-')
const daemon = await startDaemon()
const agentSock = path.join(dir, 'agent.sock')
const agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: ['ignore', 'ignore', 'ignore'] })
let sink = null
try {
  const env = { PATH: process.env.PATH ?? '', HOME: daemon.home, SSH_AUTH_SOCK: agentSock }
  const tokenFile = path.join(dir, 'token')
  sink = spawn(process.execPath, [CLI_BIN, '--socket', daemon.socket, 'sink', '--token-file', tokenFile], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  sink.stderr.resume()
  const key = path.join(dir, 'key')
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
  // Both need a moment to come up; poll with a deadline (this is a benchmark, not a test).
  const deadline = Date.now() + 15_000
  while (!fs.existsSync(tokenFile) || !fs.existsSync(agentSock)) {
    if (Date.now() > deadline) throw new Error('the sink or the agent did not come up')
    await new Promise((r) => setTimeout(r, 20))
  }
  const added = spawnSync('ssh-add', ['-q', key], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (added.status !== 0) throw new Error(`ssh-add failed: ${added.stderr}`)

  const commands = {
    'cat TOKEN_FILE': ['cat', [tokenFile]],
    'codex-auth token': [process.execPath, [CLI_BIN, '--socket', daemon.socket, 'token']],
    'ssh-add -l': ['ssh-add', ['-l']],
  }
  const summary = timeCommandsInTurn(commands, { env, runs: RUNS })
  const reads = []
  for (let i = 0; i < 1000; i++) {
    const t0 = nowMs()
    fs.readFileSync(tokenFile, 'utf8')
    reads.push(nowMs() - t0)
  }
  const rows = []
  const base = summary['ssh-add -l'].median
  for (const [k, s] of Object.entries(summary)) rows.push([k, fmt(s.median, 2), fmt(s.p10, 2), fmt(s.p90, 2), `${fmt(s.median / base, 2)}x`])
  const readUs = median(reads) * 1000
  rows.push(['readFileSync (in process)', fmt(readUs / 1000, 4), '', '', `${fmt(readUs / 1000 / base, 4)}x`])
  printTable(`wall time, ${RUNS} round-robin runs each (ms); ratio to ssh-add -l`, ['command', 'median', 'p10', 'p90', 'ratio'], rows)
  const ratios = Object.fromEntries(Object.entries(summary).map(([k, s]) => [k, s.median / base]))
  console.log(JSON.stringify({ bench: 'sink-token', ms: summary, readFileSyncUs: readUs, ratiosToSshAdd: ratios }))
} finally {
  sink?.kill('SIGTERM')
  agent.kill('SIGTERM')
  await daemon.stop()
}
