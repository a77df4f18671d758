// Idle daemon: RSS right after start and after an idle period, and wake-ups while idle (context
// switches of all its threads, from /proc/<pid>/task/*/status). One subscribed client stays
// connected throughout, as a long-lived consumer would. Linux only.
// Usage: node bench/idle.mjs [--seconds 10]
import fs from 'node:fs'
import { parseArgs } from 'node:util'
import { connect, ctxtSwitches, fmt, printTable, procStatus, startDaemon, verdict } from './lib.mjs'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' } } })
const SECONDS = Number(values.seconds)
if (!fs.existsSync('/proc/self/status')) {
  console.log(JSON.stringify({ bench: 'idle', skipped: 'no /proc' }))
  process.exit(0)
}

const daemon = await startDaemon()
try {
  const c = await connect(daemon.socket)
  await c.call('subscribe')
  await c.call('getAuth')
  const rssStart = procStatus(daemon.pid).VmRSS / 1024
  // Two windows: the first includes V8's post-start work (the memory reducer's GC runs a few
  // seconds after allocation stops, on the worker threads); the second is the steady state.
  const windows = []
  for (let w = 0; w < 2; w++) {
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
  c.close()
  const [w1, w2] = windows
  const total = (w) => w.allVoluntary + w.allNonvoluntary
  const main = (w) => w.mainVoluntary + w.mainNonvoluntary
  printTable(`idle daemon, one subscribed client connected (two ${SECONDS} s windows)`, ['metric', `0-${SECONDS} s`, `${SECONDS}-${2 * SECONDS} s`], [
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
      rssStartMB: rssStart,
      windows,
      targetsMet: { rssUnder80MB: rssOk, idleWakeupsNearZero: quiet },
    }),
  )
} finally {
  await daemon.stop()
}
