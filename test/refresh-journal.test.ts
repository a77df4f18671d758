// The refresh journal on a full disk (docs/refresh.md#the-journal): CODEX_HOME is a 64 KiB tmpfs
// filled to the last page, so neither auth.json nor the journal can be written there. The answer
// of a forced refresh is journaled in the fallback (the socket's directory), loudly; after SIGTERM
// or SIGKILL and a restart with space again, the journal is committed and the login survives: the
// next refresh spends the rotated token (the provider revokes the grant on a reuse). Real parts:
// a tmpfs mount (root), the daemon bundle, the harness provider. No token is ever printed.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { connect, startDaemon, tempDir, type RunningDaemon } from './support/daemon.js'
import { mintTokens } from './support/provider.js'
import { authFileFor, daemonArgs, fileTokens, provider, refreshAnswers, refreshCalls, shape, status, writeAuthFile } from './support/refresh.js'
import { until } from './support/until.js'


/** A 64 KiB tmpfs home, unmounted at teardown. */
function tinyHome(t: { teardown(fn: () => unknown): void }): string {
  const dir = fs.realpathSync(tempDir('cad-full-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir])
  t.teardown(() => execFileSync('umount', ['-l', dir]))
  return dir
}

/** Fills the file system holding `dir` until a write fails with ENOSPC; returns the filler's path. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler')
  const fd = fs.openSync(filler, 'a')
  try {
    for (;;) fs.writeSync(fd, Buffer.alloc(1024, 1))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
  } finally {
    fs.closeSync(fd)
  }
  return filler
}

const records = (d: RunningDaemon): Array<Record<string, unknown>> =>
  d.logs.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>]
    } catch {
      return []
    }
  })

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  t.test(`disk full during a refresh, then ${signal} and a restart with space: the login survives`, async (t) => {
    const w = await provider(t, { ttl: { authorizationCode: 3600, refreshToken: 3600 } })
    const p = w.provider
    const minted = await mintTokens(p)
    const home = tinyHome(t)
    writeAuthFile(home, authFileFor(minted))
    const socketDir = tempDir('cad-s-')
    const socket = path.join(socketDir, 's.sock')
    const start = (): Promise<RunningDaemon> => startDaemon({ home, socket, args: daemonArgs(p), env: { CODEX_AUTHD_LOCK_TIMEOUT_MS: '500' } })

    const d = await start()
    t.teardown(() => (d.proc.exitCode === null && d.proc.signalCode === null ? d.stop() : undefined))
    const c = await connect(t, d)
    const filler = fill(home)
    t.throws(() => fs.writeFileSync(path.join(home, 'probe'), 'x'), { code: 'ENOSPC' }, 'the home is full')

    const res = await c.call('refresh')
    t.notOk(res.error, shape(res))
    const answer = refreshAnswers(w)[0]!
    t.ok(res.result?.token === answer.access_token, 'the refreshed token is served although auth.json cannot be written')
    t.ok((await fileTokens(home)).refreshToken === minted.refreshToken, 'auth.json still holds the spent token')
    // The caller is answered at once; the journal is written beside it and logged when done.
    await d.waitForLog((r) => r.msg === 'tokens refreshed')
    const fallback = fs.readdirSync(socketDir).filter((n) => n.startsWith('authd.pending-'))
    t.equal(fallback.length, 1, 'journaled in the fallback directory')
    const journal = path.join(socketDir, fallback[0]!)
    t.equal(fs.statSync(journal).mode & 0o777, 0o600, 'journal 0600')
    t.notOk(fs.readFileSync(journal, 'utf8').includes(minted.refreshToken), 'the journal names the spent token only by its hash')
    t.notOk(fs.existsSync(path.join(home, 'authd.pending.json')), 'nothing in the full home')
    const loud = records(d).find((r) => typeof r.msg === 'string' && r.msg.includes('journaled to'))
    t.equal(loud?.level, 50, 'logged at error level')
    t.equal(loud?.msg, `refreshed tokens journaled to ${socketDir} because ${home} is full`)
    // Once the commit has failed (ENOSPC): the problem names where the tokens are.
    const pendingProblem = await until('refresh_pending', async () => (await status(c)).problems.find((x: any) => x.code === 'refresh_pending'))
    t.match(pendingProblem.message, `journaled in ${journal}`, 'refresh_pending names the journal')

    if (signal === 'SIGTERM') t.same(await d.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: a clean exit, nothing left to park')
    else {
      d.proc.kill('SIGKILL')
      await d.exited
    }

    fs.rmSync(filler)
    const d2 = await start()
    t.teardown(() => (d2.proc.exitCode === null && d2.proc.signalCode === null ? d2.stop() : undefined))
    const handled = records(d2).find((r) => r.msg === 'journaled refresh result handled')
    t.equal(handled?.outcome, 'written', 'the restarted daemon committed the journal before listening')
    const tk = await fileTokens(home)
    t.ok(tk.refreshToken === answer.refresh_token && tk.accessToken === answer.access_token, 'auth.json holds the journaled tokens')
    t.notOk(fs.existsSync(journal), 'the journal is deleted once written')
    const c2 = await connect(t, d2)
    const again = await c2.call('refresh')
    t.notOk(again.error, `the next refresh works: ${shape(again)}`)
    t.equal(refreshCalls(p), 2, 'two refreshes in all')
    t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was spent twice')
  })
}
