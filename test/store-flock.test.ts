import t from 'tap'
import { spawn, execFile, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { acquireLock, LockTimeoutError } from '../src/store/flock.js'

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'authd-flock-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** util-linux flock(1) holding `path` until release() writes a line to its stdin. */
async function holdWithFlock(path: string): Promise<{ release(): Promise<void> }> {
  const child: ChildProcessWithoutNullStreams = spawn('flock', [path, '-c', 'echo locked; read x'])
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('locked')) resolve()
    })
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`flock exited early (${code})`)))
  })
  return {
    async release() {
      const exited = once(child, 'exit')
      child.stdin.end('\n')
      await exited
    },
  }
}

/** Exit code of `flock -n path true`: 1 when someone else holds the lock. */
function flockN(path: string): Promise<number> {
  return new Promise((resolve) => {
    execFile('flock', ['-n', path, 'true'], (err) => {
      resolve(err ? Number((err as { code?: unknown }).code) : 0)
    })
  })
}

/** Resolves after the event loop has fired `n` interval ticks: proves it was never blocked. */
function ticks(n: number, everyMs = 5): { count: () => number; reached: Promise<void>; stop: () => void } {
  let count = 0
  let done!: () => void
  const reached = new Promise<void>((r) => (done = r))
  const timer = setInterval(() => {
    if (++count === n) done()
  }, everyMs)
  return { count: () => count, reached, stop: () => clearInterval(timer) }
}

function track<T>(p: Promise<T>): { settled: () => boolean; promise: Promise<T> } {
  let settled = false
  const promise = p.finally(() => {
    settled = true
  })
  return { settled: () => settled, promise }
}

t.test('our lock is the flock(1)/Codex lock; lock file created 0600 and kept', async (t) => {
  const dir = await tempDir()
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
  const dir = await tempDir()
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
  const dir = await tempDir()
  const path = join(dir, 'auth.lock')
  const holder = await holdWithFlock(path)
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
  const dir = await tempDir()
  const path = join(dir, 'auth.json.lock')
  const holder = await holdWithFlock(path)
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
  t.ok(elapsed >= 190 && elapsed < 2000, `gave up after the bound (${elapsed} ms)`)
  t.ok(tick.count() >= 5, `interval ticked ${tick.count()} times during the wait`)
  await holder.release()
})

t.test('two handles in one process exclude each other (per open file description)', async (t) => {
  const dir = await tempDir()
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
  const dir = await tempDir()
  const path = join(dir, 'auth.lock')
  const holder = await holdWithFlock(path)
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
  const dir = await tempDir()
  await t.rejects(acquireLock(join(dir, 'nope', 'auth.lock'), { timeoutMs: 10 }), { code: 'ENOENT' })
})
