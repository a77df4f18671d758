import t from 'tap'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { acquireLock, LockTimeoutError } from '../src/os/flock.js'
import { tempDir } from './support/daemon.js'
import { flockN, holdWithFlock, ticks, track } from './support/flock.js'

t.test('our lock is the flock(1)/Codex lock; lock file created 0600 and kept', async (t) => {
  const dir = tempDir('authd-flock-')
  const path = join(dir, 'auth.json.lock')
  const lock = await acquireLock(path, { timeoutMs: 1000 })
  t.equal((await stat(path)).mode & 0o777, 0o600)
  t.equal(await flockN(path), 1, 'flock -n fails while we hold it')
  await lock.release()
  await lock.release() // idempotent
  t.equal(await flockN(path), 0, 'flock -n succeeds after release')
  t.ok((await stat(path)).isFile(), 'lock file is not deleted')
})

t.test('mode option applies with the umask, like Codex opening auth.lock 0666', async (t) => {
  const dir = tempDir('authd-flock-')
  const old = process.umask(0o022)
  t.teardown(() => {
    process.umask(old)
  })
  const path = join(dir, 'auth.lock')
  const lock = await acquireLock(path, { timeoutMs: 100, mode: 0o666 })
  t.equal((await stat(path)).mode & 0o777, 0o644)
  await lock.release()
})

t.test('waits for a flock(1) holder without blocking the event loop', async (t) => {
  const dir = tempDir('authd-flock-')
  const path = join(dir, 'auth.lock')
  const holder = await holdWithFlock(t, path)
  const tick = ticks(10)
  const waiting = track(acquireLock(path, { timeoutMs: 30_000 }))
  await tick.reached
  t.notOk(waiting.settled(), 'still waiting while flock(1) holds the lock')
  tick.stop()
  await holder.release()
  const lock = await waiting.promise
  t.equal(await flockN(path), 1, 'now we hold it')
  await lock.release()
})

t.test('bounded wait: LockTimeoutError names the path; loop keeps running', async (t) => {
  const dir = tempDir('authd-flock-')
  const path = join(dir, 'auth.json.lock')
  const holder = await holdWithFlock(t, path)
  const tick = ticks(1_000_000, 10)
  const started = Date.now()
  const err = await acquireLock(path, { timeoutMs: 200 }).then(
    () => null,
    (e: unknown) => e,
  )
  const elapsed = Date.now() - started
  tick.stop()
  t.type(err, LockTimeoutError)
  t.equal((err as LockTimeoutError).code, 'lock_timeout')
  t.equal((err as LockTimeoutError).path, path)
  t.match((err as Error).message, path)
  // The holder never lets go: getting an answer at all is the bound; no upper time (busy machines).
  t.ok(elapsed >= 190, `gave up after the bound (${elapsed} ms)`)
  t.ok(tick.count() >= 5, `interval ticked ${tick.count()} times during the wait`)
  await holder.release()
})

t.test('two handles in one process exclude each other (per open file description)', async (t) => {
  const dir = tempDir('authd-flock-')
  const path = join(dir, 'auth.lock')
  const a = await acquireLock(path, { timeoutMs: 100 })
  await t.rejects(acquireLock(path, { timeoutMs: 0 }), { code: 'lock_timeout' }, 'timeoutMs 0 tries once')
  const tick = ticks(5)
  const b = track(acquireLock(path, { timeoutMs: 30_000 }))
  await tick.reached
  tick.stop()
  t.notOk(b.settled(), 'second waits')
  await a.release()
  const lb = await b.promise
  await lb.release()
})

t.test('abort signal ends the wait and closes the fd', async (t) => {
  const dir = tempDir('authd-flock-')
  const path = join(dir, 'auth.lock')
  const holder = await holdWithFlock(t, path)
  const ac = new AbortController()
  const waiting = acquireLock(path, { timeoutMs: 30_000, signal: ac.signal })
  const tick = ticks(3)
  await tick.reached // abort mid-wait, not before the first attempt
  tick.stop()
  ac.abort()
  await t.rejects(waiting, { name: 'AbortError' })
  await holder.release()
  t.equal(await flockN(path), 0, 'nothing of ours holds the lock')
  await t.rejects(acquireLock(path, { timeoutMs: 10, signal: AbortSignal.abort() }), { name: 'AbortError' })
})

t.test('open errors propagate (missing directory)', async (t) => {
  const dir = tempDir('authd-flock-')
  await t.rejects(acquireLock(join(dir, 'nope', 'auth.lock'), { timeoutMs: 10 }), { code: 'ENOENT' })
})
