// `codex-auth token` wall time (process start to exit, against a running daemon) vs `node -e 0`,
// taken in turn so background load hits both alike. The token goes to a pipe and is discarded.
// Usage: node bench/cli-token.mjs [--runs 40]
import fs from 'node:fs'
import { parseArgs } from 'node:util'
import { CLI_BIN, fmt, printTable, startDaemon, timeCommandsInTurn, verdict } from './lib.mjs'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '40' } } })
const RUNS = Math.max(30, Number(values.runs))

if (!fs.existsSync(CLI_BIN)) {
  console.log(`${CLI_BIN} does not exist: skipped`)
  console.log(JSON.stringify({ bench: 'cli-token', skipped: 'dist/codex-auth.cjs missing' }))
  process.exit(0)
}

const daemon = await startDaemon()
try {
  const env = { PATH: process.env.PATH ?? '', HOME: daemon.home }
  const commands = {
    'node -e 0': [process.execPath, ['-e', '0']],
    'codex-auth token': [process.execPath, [CLI_BIN, '--socket', daemon.socket, 'token']],
  }
  const summary = timeCommandsInTurn(commands, { env, runs: RUNS })
  const rows = Object.entries(summary).map(([k, x]) => [k, fmt(x.median, 1), fmt(x.p10, 1), fmt(x.p90, 1)])
  const ratio = summary['codex-auth token'].median / summary['node -e 0'].median
  const ratioP10 = summary['codex-auth token'].p10 / summary['node -e 0'].p10
  rows.push(['ratio', fmt(ratio, 2), fmt(ratioP10, 2), ''])
  printTable(`wall time, ${RUNS} round-robin runs each (ms)`, ['command', 'median', 'p10', 'p90'], rows)
  printTable('targets', ['target', 'value', 'verdict'], [['codex-auth token <= 1.25x node -e 0', `${fmt(ratio, 2)}x`, verdict(ratio <= 1.25)]])
  console.log(JSON.stringify({ bench: 'cli-token', ms: summary, ratio, ratioP10, targetsMet: { tokenCliWithin125Pct: ratio <= 1.25 } }))
} finally {
  await daemon.stop()
}
