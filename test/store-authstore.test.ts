import t from 'tap'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { watch } from 'node:fs'
import { chmod, lstat, mkdir, readFile, readdir, readlink, stat, symlink, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import {
  AuthWriteError,
  commitAuth,
  MAX_AUTH_BYTES,
  readAuth,
  resolveAuthTarget,
  writePrivateFileAtomic,
  type AuthRead,
} from '../src/store/authstore.js'
import type { AuthFile } from '../src/types.js'
import { tempDir } from './support/daemon.js'
import { flockN, holdWithFlock, ticks, track } from './support/flock.js'
import { fakeJwt } from './support/tokens.js'

const ID_TOKEN = fakeJwt({
  email: 'user@example.com',
  'https://api.openai.com/auth': { chatgpt_plan_type: 'plus', chatgpt_account_id: 'acc-1' },
})
const ACCESS_1 = fakeJwt({ exp: 2_000_000_000, iat: 1_999_990_000, marker: 'access-1' })
const ACCESS_2 = fakeJwt({ exp: 2_000_003_600, iat: 2_000_000_000, marker: 'access-2' })

/** A chatgpt auth.json as Codex writes it, plus optional unknown fields. */
function authJson(refreshToken: string, extraTop: object = {}, extraTokens: object = {}): string {
  return JSON.stringify(
    {
      auth_mode: 'chatgpt',
      OPENAI_API_KEY: null,
      tokens: {
        id_token: ID_TOKEN,
        access_token: ACCESS_1,
        refresh_token: refreshToken,
        account_id: 'acc-1',
        ...extraTokens,
      },
      last_refresh: '2026-11-26T13:40:37.393253877Z',
      ...extraTop,
    },
    null,
    2,
  )
}

/** The refresh update: new access and refresh token merged onto the file (docs/refresh.md#the-sequence, step 5). */
function rotate(cur: AuthFile | null, refreshToken: string): AuthFile {
  if (!cur?.tokens) throw new Error('test expects tokens')
  return { ...cur, tokens: { ...cur.tokens, accessToken: ACCESS_2, refreshToken } }
}

async function home(text?: string, mode = 0o600): Promise<string> {
  const dir = tempDir('authd-store-')
  if (text !== undefined) {
    await writeFile(join(dir, 'auth.json'), text, { mode })
    await chmod(join(dir, 'auth.json'), mode)
  }
  return dir
}

async function tempFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith('.auth-') || n.includes('.json-'))
}

function problemOf(r: AuthRead): { code: string; message: string; file: string | null } {
  if (r.state !== 'unreadable') throw new Error(`expected unreadable, got ${r.state}`)
  return r.problem
}

// ---------------------------------------------------------------- readAuth

t.test('readAuth: absent, ok, mode', async (t) => {
  const empty = await home()
  t.same(await readAuth(empty), { state: 'absent' })

  const dir = await home(authJson('rt-1'), 0o644)
  const r = await readAuth(dir)
  if (r.state !== 'ok') throw t.fail(`state ${r.state}`)
  t.equal(r.mode, 0o644, 'mode is reported for auth_permissions')
  t.equal(r.isSymlink, false)
  t.equal(r.targetPath, join(dir, 'auth.json'))
  t.equal(r.text, authJson('rt-1'))
  t.equal(r.auth.tokens?.refreshToken, 'rt-1')
})

t.test('readAuth: hostile files are unreadable, with path and reason, never contents', async (t) => {
  t.test('directory', async (t) => {
    const dir = await home()
    await mkdir(join(dir, 'auth.json'))
    const p = problemOf(await readAuth(dir))
    t.equal(p.code, 'auth_unreadable')
    t.match(p.message, join(dir, 'auth.json'))
    t.match(p.message, /directory/)
  })

  t.test('FIFO does not hang', async (t) => {
    const dir = await home()
    execFileSync('mkfifo', [join(dir, 'auth.json')])
    const p = problemOf(await readAuth(dir))
    t.equal(p.code, 'auth_unreadable')
    t.match(p.message, /FIFO/)
    t.match(p.message, join(dir, 'auth.json'))
  })

  t.test('unix socket', async (t) => {
    const dir = await home()
    const server = createServer()
    server.listen(join(dir, 'auth.json'))
    await once(server, 'listening')
    t.teardown(() => new Promise<void>((r) => server.close(() => r())))
    const p = problemOf(await readAuth(dir))
    t.equal(p.code, 'auth_unreadable')
    t.match(p.message, /not a regular file/)
  })

  t.test('character device through a symlink', async (t) => {
    const dir = await home()
    await symlink('/dev/null', join(dir, 'auth.json'))
    const p = problemOf(await readAuth(dir))
    t.match(p.message, /character device/)
    t.match(p.message, /symlink to \/dev\/null/)
    t.equal(p.file, '/dev/null')
  })

  t.test('symlink loop', async (t) => {
    const dir = await home()
    await symlink('loop-b', join(dir, 'auth.json'))
    await symlink('auth.json', join(dir, 'loop-b'))
    const p = problemOf(await readAuth(dir))
    t.match(p.message, /symbolic links/)
  })

  t.test('dangling symlink is absent (Codex: not logged in)', async (t) => {
    const dir = await home()
    await symlink(join(dir, 'elsewhere', 'real.json'), join(dir, 'auth.json'))
    t.same(await readAuth(dir), { state: 'absent' })
    t.same(await resolveAuthTarget(dir), {
      linkPath: join(dir, 'auth.json'),
      targetPath: join(dir, 'elsewhere', 'real.json'),
      isSymlink: true,
    })
  })

  t.test('over 1 MiB is refused without reading it', async (t) => {
    const secret = 'SECRET-MARKER-'
    const dir = await home(secret + 'x'.repeat(MAX_AUTH_BYTES))
    const p = problemOf(await readAuth(dir))
    t.match(p.message, /larger than 1048576 bytes/)
    t.notMatch(p.message, secret)
  })

  t.test('exactly 1 MiB is read whole', async (t) => {
    const body = authJson('rt-1')
    const dir = await home(body + ' '.repeat(MAX_AUTH_BYTES - Buffer.byteLength(body)))
    const r = await readAuth(dir)
    t.equal(r.state, 'ok')
    if (r.state === 'ok') t.equal(r.text.length, MAX_AUTH_BYTES)
  })

  t.test('non-UTF-8 bytes', async (t) => {
    const dir = await home()
    const bytes = Buffer.concat([Buffer.from(authJson('rt-SECRET').slice(0, 40)), Buffer.from([0xff, 0xfe, 0x80])])
    await writeFile(join(dir, 'auth.json'), bytes)
    const p = problemOf(await readAuth(dir))
    t.match(p.message, /not valid UTF-8/)
    t.notMatch(p.message, /rt-SECRET|chatgpt/)
  })

  t.test('unparsable content gives the parser problem', async (t) => {
    const dir = await home('{"auth_mode": "chatgpt", "tokens": {"id_token": "not-a-jwt", "access_token": "SECRET-AT"')
    const p = problemOf(await readAuth(dir))
    t.equal(p.code, 'auth_unreadable')
    t.equal(p.file, join(dir, 'auth.json'))
    t.notMatch(p.message, /SECRET-AT/)
  })

  t.test('empty file', async (t) => {
    const dir = await home('')
    t.equal(problemOf(await readAuth(dir)).code, 'auth_unreadable')
  })

  t.end()
})

t.test('readAuth follows a symlinked auth.json', async (t) => {
  const dir = await home()
  const other = tempDir('authd-target-')
  await writeFile(join(other, 'real.json'), authJson('rt-1'), { mode: 0o600 })
  await symlink(join(other, 'real.json'), join(dir, 'auth.json'))
  const r = await readAuth(dir)
  if (r.state !== 'ok') throw t.fail(`state ${r.state}`)
  t.equal(r.isSymlink, true)
  t.equal(r.targetPath, join(other, 'real.json'))
  t.equal(r.auth.tokens?.refreshToken, 'rt-1')
})

// ---------------------------------------------------------------- commitAuth

t.test('commit waits while flock(1) holds auth.lock, then writes', async (t) => {
  const dir = await home(authJson('rt-1'))
  const before = await readFile(join(dir, 'auth.json'))
  const holder = await holdWithFlock(t, join(dir, 'auth.lock'))
  let updated = false
  const tick = ticks(20)
  const commit = track(
    commitAuth(dir, {
      lockTimeoutMs: 30_000,
      update: (cur) => {
        updated = true
        return rotate(cur, 'rt-2')
      },
    }),
  )
  await tick.reached
  tick.stop()
  t.notOk(commit.settled(), 'commit is still waiting')
  t.notOk(updated, 'update not called without the lock')
  t.ok(before.equals(await readFile(join(dir, 'auth.json'))), 'nothing written yet')
  await holder.release()
  const res = await commit.promise
  t.equal(res.outcome, 'written')
  const after = await readAuth(dir)
  if (after.state !== 'ok') throw t.fail(after.state)
  t.equal(after.auth.tokens?.refreshToken, 'rt-2')
  t.equal(after.auth.tokens?.accessToken, ACCESS_2)
  t.equal(after.mode, 0o600)
  t.equal(await flockN(join(dir, 'auth.lock')), 0, 'auth.lock released')
  t.equal(await flockN(join(dir, 'auth.json.lock')), 0, 'auth.json.lock released')
  t.same(await tempFiles(dir), [], 'no temp file left')
})

t.test('auth.json.lock held past the bound: lock_timeout, file untouched, loop alive', async (t) => {
  const dir = await home(authJson('rt-1', { my_daemon: { v: 1 } }), 0o644)
  const before = await readFile(join(dir, 'auth.json'))
  const holder = await holdWithFlock(t, join(dir, 'auth.json.lock'))
  const first = await readAuth(dir)
  if (first.state !== 'ok') throw t.fail(first.state)
  const mine = rotate(first.auth, 'rt-2')
  const snapshot = structuredClone(mine)
  let updated = false
  const tick = ticks(1_000_000, 10)
  const started = Date.now()
  const commit = track(
    commitAuth(dir, {
      lockTimeoutMs: 300,
      update: () => {
        updated = true
        return mine
      },
    }),
  )
  const progress = ticks(5)
  await progress.reached
  progress.stop()
  const meanwhile = await readAuth(dir)
  t.equal(meanwhile.state, 'ok', 'a read completes during the wait')
  t.notOk(commit.settled(), '...while the commit is still waiting')
  const res = await commit.promise
  const elapsed = Date.now() - started
  tick.stop()
  // The holder is named (Linux /proc/locks): flock(1) itself, running as us.
  t.same(res, { outcome: 'lock_timeout', lock: 'auth.json.lock', holder: { pid: holder.proc.pid, command: 'flock', uid: process.getuid!() } })
  // The holder never lets go: getting an answer at all is the bound; no upper time (busy machines).
  t.ok(elapsed >= 290, `waited the full bound before giving up (${elapsed} ms)`)
  t.ok(tick.count() >= 10, `event loop ran (${tick.count()} ticks)`)
  t.notOk(updated, 'update never called')
  t.ok(before.equals(await readFile(join(dir, 'auth.json'))), 'byte-for-byte untouched')
  t.equal((await stat(join(dir, 'auth.json'))).mode & 0o777, 0o644, 'mode untouched')
  t.same(mine, snapshot, "caller's data intact")
  t.equal(mine.tokens?.refreshToken, 'rt-2')
  t.equal(await flockN(join(dir, 'auth.lock')), 0, 'auth.lock released')
  await holder.release()
  t.same(await tempFiles(dir), [])
})

t.test('auth.lock held past the bound: lock_timeout auth.lock', async (t) => {
  const dir = await home(authJson('rt-1'))
  const before = await readFile(join(dir, 'auth.json'))
  const holder = await holdWithFlock(t, join(dir, 'auth.lock'))
  const res = await commitAuth(dir, { lockTimeoutMs: 100, update: (c) => rotate(c, 'rt-2') })
  t.same(res, { outcome: 'lock_timeout', lock: 'auth.lock', holder: { pid: holder.proc.pid, command: 'flock', uid: process.getuid!() } })
  t.ok(before.equals(await readFile(join(dir, 'auth.json'))))
  await holder.release()
})

t.test('symlinked auth.json: lock and temp beside the target, symlink survives', async (t) => {
  const dir = await home()
  const other = tempDir('authd-target-')
  const target = join(other, 'real.json')
  await writeFile(target, authJson('rt-1'), { mode: 0o644 })
  await chmod(target, 0o644)
  await symlink(target, join(dir, 'auth.json'))

  // inotify events of both dirs arrive through one libuv inotify fd, in order.
  const seenHome: string[] = []
  const seenOther: string[] = []
  let sawTemp!: () => void
  const tempSeen = new Promise<void>((r) => (sawTemp = r))
  const wHome = watch(dir, (_e, name) => name && seenHome.push(String(name)))
  const wOther = watch(other, (_e, name) => {
    if (!name) return
    seenOther.push(String(name))
    if (/^\.auth-[A-Za-z0-9]{6}$/.test(String(name))) sawTemp()
  })
  t.teardown(() => {
    wHome.close()
    wOther.close()
  })

  const res = await commitAuth(dir, { update: (c) => rotate(c, 'rt-2') })
  t.equal(res.outcome, 'written')
  await tempSeen
  t.notOk(seenHome.some((n) => n.startsWith('.auth-')), 'no temp file in CODEX_HOME')
  t.ok(seenOther.includes('real.json'), 'renamed onto the target')

  t.ok((await lstat(join(dir, 'auth.json'))).isSymbolicLink(), 'symlink survives')
  t.equal(await readlink(join(dir, 'auth.json')), target)
  t.ok((await stat(join(other, 'auth.json.lock'))).isFile(), 'auth.json.lock beside the target')
  await t.rejects(stat(join(dir, 'auth.json.lock')), { code: 'ENOENT' }, 'no auth.json.lock in CODEX_HOME')
  t.ok((await stat(join(dir, 'auth.lock'))).isFile(), 'auth.lock in CODEX_HOME')
  t.equal((await stat(target)).mode & 0o777, 0o600)
  const after = await readAuth(dir)
  if (after.state !== 'ok') throw t.fail(after.state)
  t.equal(after.auth.tokens?.refreshToken, 'rt-2')
  t.same(await tempFiles(other), [])
})

t.test('relative symlink resolves against the link directory', async (t) => {
  const dir = await home()
  await mkdir(join(dir, 'sub'))
  await writeFile(join(dir, 'sub', 'a.json'), authJson('rt-1'))
  await symlink('sub/a.json', join(dir, 'auth.json'))
  const res = await commitAuth(dir, { update: (c) => rotate(c, 'rt-2') })
  t.equal(res.outcome, 'written')
  t.ok((await stat(join(dir, 'sub', 'auth.json.lock'))).isFile())
  t.ok((await lstat(join(dir, 'auth.json'))).isSymbolicLink())
})

t.test('precondition false: untouched, auth.json.lock not taken', async (t) => {
  const dir = await home(authJson('rt-other'))
  const before = await readFile(join(dir, 'auth.json'))
  const seen: AuthRead[] = []
  let updated = false
  const res = await commitAuth(dir, {
    precondition: (cur) => {
      seen.push(cur)
      return cur.state === 'ok' && cur.auth.tokens?.refreshToken === 'rt-1'
    },
    update: (c) => {
      updated = true
      return rotate(c, 'rt-2')
    },
  })
  t.equal(res.outcome, 'precondition_failed')
  if (res.outcome !== 'precondition_failed' || res.current.state !== 'ok') throw t.fail('current')
  t.equal(res.current.auth.tokens?.refreshToken, 'rt-other')
  t.equal(seen.length, 1, 'checked once, under auth.lock, like Codex')
  t.notOk(updated)
  t.ok(before.equals(await readFile(join(dir, 'auth.json'))))
  await t.rejects(stat(join(dir, 'auth.json.lock')), { code: 'ENOENT' })
})

t.test('precondition true is checked again on the merge base, then writes', async (t) => {
  const dir = await home(authJson('rt-1'))
  let calls = 0
  const res = await commitAuth(dir, {
    precondition: (cur) => {
      calls++
      return cur.state === 'ok' && cur.auth.tokens?.refreshToken === 'rt-1'
    },
    update: (c) => rotate(c, 'rt-2'),
  })
  t.equal(res.outcome, 'written')
  t.equal(calls, 2)
})

t.test('a change while waiting for auth.json.lock is caught on the merge base', async (t) => {
  const dir = await home(authJson('rt-1'))
  const holder = await holdWithFlock(t, join(dir, 'auth.json.lock'))
  let firstCheck!: () => void
  const checkedOnce = new Promise<void>((r) => (firstCheck = r))
  let calls = 0
  const commit = commitAuth(dir, {
    lockTimeoutMs: 30_000,
    precondition: (cur) => {
      if (++calls === 1) firstCheck()
      return cur.state === 'ok' && cur.auth.tokens?.refreshToken === 'rt-1'
    },
    update: (c) => rotate(c, 'rt-2'),
  })
  await checkedOnce // passed under auth.lock; now polling auth.json.lock
  // Another writer (it would hold auth.json.lock; flock(1) stands in) swaps the file.
  await writePrivateFileAtomic(join(dir, 'auth.json'), authJson('rt-other'))
  const theirs = await readFile(join(dir, 'auth.json'))
  await holder.release()
  const res = await commit
  t.equal(res.outcome, 'precondition_failed')
  t.equal(calls, 2)
  t.ok(theirs.equals(await readFile(join(dir, 'auth.json'))), "the other writer's file is kept")
})

t.test('unreadable current: untouched unless overwriteUnreadable', async (t) => {
  const garbage = '{"tokens": "half-written'
  const dir = await home(garbage, 0o644)
  let updated = false
  const res = await commitAuth(dir, {
    precondition: () => true,
    update: (c) => {
      updated = true
      return rotate(c, 'rt-2')
    },
  })
  t.equal(res.outcome, 'unreadable')
  if (res.outcome === 'unreadable') t.equal(res.problem.code, 'auth_unreadable')
  t.notOk(updated)
  t.equal(await readFile(join(dir, 'auth.json'), 'utf8'), garbage)
  t.equal((await stat(join(dir, 'auth.json'))).mode & 0o777, 0o644)

  const first = await readAuth(await home(authJson('rt-1')))
  if (first.state !== 'ok') throw t.fail(first.state)
  const fresh: AuthFile = { ...first.auth, tokens: { ...first.auth.tokens!, refreshToken: 'rt-login' } }
  let got: AuthFile | null | undefined
  const res2 = await commitAuth(dir, {
    overwriteUnreadable: true,
    update: (c) => {
      got = c
      return fresh
    },
  })
  t.equal(res2.outcome, 'written')
  t.equal(got, null, 'an unreadable file is passed as null')
  const after = await readAuth(dir)
  if (after.state !== 'ok') throw t.fail(after.state)
  t.equal(after.auth.tokens?.refreshToken, 'rt-login')
  t.equal(after.mode, 0o600)
})

t.test('delete (logout): unlink, missing is fine, lock files stay', async (t) => {
  const dir = await home(authJson('rt-1'))
  t.same(await commitAuth(dir, { update: () => null }), { outcome: 'deleted', existed: true })
  await t.rejects(stat(join(dir, 'auth.json')), { code: 'ENOENT' })
  t.same(await commitAuth(dir, { update: () => null }), { outcome: 'deleted', existed: false })
  t.ok((await stat(join(dir, 'auth.lock'))).isFile())
  t.ok((await stat(join(dir, 'auth.json.lock'))).isFile())
})

t.test('delete through a symlink removes the target, keeps the link', async (t) => {
  const dir = await home()
  const other = tempDir('authd-target-')
  await writeFile(join(other, 'real.json'), authJson('rt-1'))
  await symlink(join(other, 'real.json'), join(dir, 'auth.json'))
  t.same(await commitAuth(dir, { update: () => null }), { outcome: 'deleted', existed: true })
  await t.rejects(stat(join(other, 'real.json')), { code: 'ENOENT' })
  t.ok((await lstat(join(dir, 'auth.json'))).isSymbolicLink())
  t.same(await readAuth(dir), { state: 'absent' })
})

t.test('a write over a 0644 file leaves 0600; unknown fields survive', async (t) => {
  const dir = await home(authJson('rt-1', { my_daemon: { keep: [1, 2] }, version: 7 }, { extra_tok: 'x' }), 0o644)
  const res = await commitAuth(dir, { update: (c) => rotate(c, 'rt-2') })
  t.equal(res.outcome, 'written')
  t.equal((await stat(join(dir, 'auth.json'))).mode & 0o777, 0o600)
  const json = JSON.parse(await readFile(join(dir, 'auth.json'), 'utf8')) as Record<string, unknown>
  t.same(json.my_daemon, { keep: [1, 2] })
  t.equal(json.version, 7)
  t.same((json.tokens as Record<string, unknown>).extra_tok, 'x')
  t.equal((json.tokens as Record<string, unknown>).refresh_token, 'rt-2')
})

t.test('no file: update(null) creates it 0600 even with a loose umask', async (t) => {
  const dir = await home()
  const old = process.umask(0o002)
  t.teardown(() => {
    process.umask(old)
  })
  const src = await readAuth(await home(authJson('rt-1')))
  if (src.state !== 'ok') throw t.fail(src.state)
  let got: AuthFile | null | undefined
  const res = await commitAuth(dir, {
    update: (c) => {
      got = c
      return src.auth
    },
  })
  t.equal(res.outcome, 'written')
  t.equal(got, null)
  t.equal((await stat(join(dir, 'auth.json'))).mode & 0o777, 0o600)
  t.equal((await stat(join(dir, 'auth.lock'))).mode & 0o777, 0o664, 'auth.lock 0666 less umask, like Codex')
  t.equal((await stat(join(dir, 'auth.json.lock'))).mode & 0o777, 0o600)
})

t.test('update throwing releases both locks and writes nothing', async (t) => {
  const dir = await home(authJson('rt-1'))
  const before = await readFile(join(dir, 'auth.json'))
  await t.rejects(
    commitAuth(dir, {
      update: () => {
        throw new Error('boom')
      },
    }),
    { message: 'boom' },
  )
  t.ok(before.equals(await readFile(join(dir, 'auth.json'))))
  t.equal(await flockN(join(dir, 'auth.lock')), 0)
  t.equal(await flockN(join(dir, 'auth.json.lock')), 0)
})

t.test('a failed write throws AuthWriteError, removes the temp file, releases locks', async (t) => {
  const dir = await home()
  await mkdir(join(dir, 'auth.json'))
  const src = await readAuth(await home(authJson('rt-1')))
  if (src.state !== 'ok') throw t.fail(src.state)
  const err = await commitAuth(dir, { overwriteUnreadable: true, update: () => src.auth }).then(
    () => null,
    (e: unknown) => e,
  )
  t.type(err, AuthWriteError)
  t.equal((err as AuthWriteError).code, 'auth_write_failed')
  t.match((err as Error).message, join(dir, 'auth.json'))
  t.same(await tempFiles(dir), [], 'temp file removed')
  t.ok((await stat(join(dir, 'auth.json'))).isDirectory())
  t.equal(await flockN(join(dir, 'auth.lock')), 0)
  t.equal(await flockN(join(dir, 'auth.json.lock')), 0)
})

// ---------------------------------------------------------------- helpers

t.test('writePrivateFileAtomic: 0600 over a 0644 file, no temp left', async (t) => {
  const dir = await home()
  const path = join(dir, 'authd.pending.json')
  await writeFile(path, 'old', { mode: 0o644 })
  await chmod(path, 0o644)
  await writePrivateFileAtomic(path, '{"pending":true}')
  t.equal(await readFile(path, 'utf8'), '{"pending":true}')
  t.equal((await stat(path)).mode & 0o777, 0o600)
  t.same((await readdir(dir)).sort(), ['authd.pending.json'])
  await t.rejects(writePrivateFileAtomic(join(dir, 'missing', 'x.json'), 'x'), { code: 'auth_write_failed' })
})
