// Idle daemon: RSS right after start and after an idle period, and wake-ups while idle (context
// switches of all its threads, from /proc/<pid>/task/*/status). One subscribed client stays
// connected throughout, as a long-lived consumer would. Linux only.
// Usage: node bench/idle.mjs [--seconds 10] [--settle 20] [--churn parent|home|both] [--churn-rate 1000] [--with-config]
//   --churn parent: a child process creates, writes and removes files directly in CODEX_HOME's
//                   parent during both windows (a home sitting in a busy /tmp or $HOME);
//   --churn home:   Codex-like churn inside CODEX_HOME (state_5.sqlite, its -wal, sessions/);
//   --with-config:  a config.toml beside auth.json (the usual home: both files exist).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { connect, ctxtSwitches, fmt, printTable, procStatus, startDaemon, verdict } from './lib.mjs'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    settle: { type: 'string', default: '20' },
    churn: { type: 'string', default: 'none' },
    'churn-rate': { type: 'string', default: '1000' },
    'with-config': { type: 'boolean', default: false },
  },
})
const SECONDS = Number(values.seconds)
const SETTLE = Number(values.settle)
const CHURN = values.churn
const CHURN_RATE = Number(values['churn-rate'])
if (!['none', 'parent', 'home', 'both'].includes(CHURN)) throw new Error(`--churn: none, parent, home or both, not ${CHURN}`)
if (!fs.existsSync('/proc/self/status')) {
  console.log(JSON.stringify({ bench: 'idle', skipped: 'no /proc' }))
  process.exit(0)
}

// The churn runs in its own process (so that this one stays idle too): CHURN_RATE file operations
// a second, caught up every 10 ms. It prints its operation rate when told to stop.
const CHURNER = `
const fs = require('node:fs'), path = require('node:path')
const [parent, home, rate] = [process.argv[1], process.argv[2], Number(process.argv[3])]
let ops = 0, i = 0
const t0 = Date.now()
if (home) fs.mkdirSync(path.join(home, 'sessions', '2026'), { recursive: true })
const timer = setInterval(() => {
  for (const due = ((Date.now() - t0) / 1000) * rate; ops < due; i++) {
    if (parent) {
      const f = path.join(parent, 'busy-' + (i % 500))
      if (i % 2 === 0) fs.writeFileSync(f, 'x'); else fs.rmSync(f, { force: true })
      ops++
    }
    if (home) {
      fs.appendFileSync(path.join(home, ['state_5.sqlite', 'state_5.sqlite-wal', 'sessions/2026/x.jsonl'][i % 3]), 'page')
      ops++
    }
  }
}, 10)
process.on('SIGTERM', () => { clearInterval(timer); process.stdout.write(String(ops / ((Date.now() - t0) / 1000))); process.exit(0) })
`
function startChurn(home) {
  if (CHURN === 'none') return null
  const parentDir = CHURN === 'parent' || CHURN === 'both' ? path.dirname(home) : ''
  const homeDir = CHURN === 'home' || CHURN === 'both' ? home : ''
  const proc = spawn(process.execPath, ['-e', CHURNER, parentDir, homeDir, String(CHURN_RATE)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (d) => (out += d))
  const exited = new Promise((resolve) => proc.once('exit', () => resolve(Number(out))))
  return { stop: () => (proc.kill('SIGTERM'), exited) }
}

const daemon = await startDaemon()
let churn = null
try {
  const c = await connect(daemon.socket)
  await c.call('subscribe')
  if (values['with-config']) {
    fs.writeFileSync(path.join(daemon.home, 'config.toml'), 'forced_login_method = "chatgpt"\n')
    for (let i = 0; i < 200 && (await c.call('status')).result.settings.forcedLoginMethod !== 'chatgpt'; i++) await new Promise((r) => setTimeout(r, 10))
  }
  await c.call('getAuth')
  churn = startChurn(daemon.home)
  const rssStart = procStatus(daemon.pid).VmRSS / 1024
  // Two windows: the first right after start; the second after SETTLE more seconds, the steady
  // state. V8's memory reducer runs its GCs (on the worker threads, woken through futexes) a few
  // seconds after allocation stops and again while they free memory: measured with strace, up to
  // about 20 s after start with the HTTP client loaded, then nothing (bench/README.md).
  const windows = []
  for (let w = 0; w < 2; w++) {
    if (w === 1) await new Promise((r) => setTimeout(r, SETTLE * 1000))
    const main0 = procStatus(daemon.pid)
    const all0 = ctxtSwitches(daemon.pid)
    await new Promise((r) => setTimeout(r, SECONDS * 1000))
    const main1 = procStatus(daemon.pid)
    const all1 = ctxtSwitches(daemon.pid)
    windows.push({
      rssMB: main1.VmRSS / 1024,
      hwmMB: main1.VmHWM / 1024,
      threads: all1.threads,
      mainVoluntary: main1.voluntary_ctxt_switches - main0.voluntary_ctxt_switches,
      mainNonvoluntary: main1.nonvoluntary_ctxt_switches - main0.nonvoluntary_ctxt_switches,
      allVoluntary: all1.voluntary - all0.voluntary,
      allNonvoluntary: all1.nonvoluntary - all0.nonvoluntary,
    })
  }
  const churnRate = churn ? await churn.stop() : 0
  churn = null
  c.close()
  const [w1, w2] = windows
  const total = (w) => w.allVoluntary + w.allNonvoluntary
  const main = (w) => w.mainVoluntary + w.mainNonvoluntary
  const setting = `${CHURN === 'none' ? 'no churn' : `churn: ${CHURN}, ${fmt(churnRate, 0)} file ops/s`}${values['with-config'] ? ', with config.toml' : ''}`
  printTable(`idle daemon, one subscribed client connected (two ${SECONDS} s windows; ${setting})`, ['metric', `0-${SECONDS} s`, `${SECONDS + SETTLE}-${2 * SECONDS + SETTLE} s`], [
    ['RSS at window end (MB)', fmt(w1.rssMB, 1), fmt(w2.rssMB, 1)],
    ['peak RSS, VmHWM (MB)', fmt(w1.hwmMB, 1), fmt(w2.hwmMB, 1)],
    ['threads', w1.threads, w2.threads],
    ['main thread ctxt switches (vol+invol)', `${w1.mainVoluntary}+${w1.mainNonvoluntary}`, `${w2.mainVoluntary}+${w2.mainNonvoluntary}`],
    ['all threads ctxt switches (vol+invol)', `${w1.allVoluntary}+${w1.allNonvoluntary}`, `${w2.allVoluntary}+${w2.allNonvoluntary}`],
    ['wake-ups per second, all threads', fmt(total(w1) / SECONDS, 1), fmt(total(w2) / SECONDS, 1)],
  ])
  console.log(`RSS right after start: ${fmt(rssStart, 1)} MB`)
  const rssMax = Math.max(rssStart, w1.rssMB, w2.rssMB)
  const rssOk = rssMax < 80
  const quiet = main(w2) <= 2 && total(w2) <= SECONDS
  printTable('targets', ['target', 'value', 'verdict'], [
    ['RSS < 80 MB', `${fmt(rssMax, 1)} MB`, verdict(rssOk)],
    ['idle wake-ups ~0 (steady window)', `main ${main(w2)}, all ${total(w2)} in ${SECONDS} s`, verdict(quiet)],
  ])
  console.log(
    JSON.stringify({
      bench: 'idle',
      seconds: SECONDS,
      settleSeconds: SETTLE,
      churn: CHURN,
      churnOpsPerSecond: churnRate,
      withConfig: values['with-config'],
      rssStartMB: rssStart,
      windows,
      targetsMet: { rssUnder80MB: rssOk, idleWakeupsNearZero: quiet },
    }),
  )
} finally {
  await churn?.stop()
  await daemon.stop()
}
