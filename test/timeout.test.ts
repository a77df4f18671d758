// orTimeout (src/timeout.ts): the work's value, or the fallback once the time has passed, and no
// timer left behind either way.
import { setImmediate as tick } from 'node:timers/promises'
import t from 'tap'
import { orTimeout } from '../src/timeout.js'

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length

t.test('the work settles first: its value, and the timer is gone', async (t) => {
  const before = timers()
  t.equal(await orTimeout(Promise.resolve('done'), 60_000, 'timeout'), 'done')
  await tick()
  t.equal(timers(), before, 'no 60 s timer keeps the process alive')
})

t.test('the time passes first: the fallback, while the work goes on', async (t) => {
  let finish!: (v: string) => void
  const work = new Promise<string>((resolve) => (finish = resolve))
  t.equal(await orTimeout(work, 5, 'timeout'), 'timeout')
  finish('late')
  t.equal(await work, 'late')
})

t.test('a failing work rejects as it came', async (t) => {
  const before = timers()
  await t.rejects(orTimeout(Promise.reject(new Error('boom')), 60_000, 'timeout'), { message: 'boom' })
  await tick()
  t.equal(timers(), before)
})
