// Adopt instead of failing (docs/refresh.md#adopting-another-writers-refresh): a Codex-like writer
// spends the refresh token just before the daemon does, and writes its rotated tokens into
// auth.json 200-800 ms after the daemon's own spend was answered refresh_token_reused. The
// daemon waits a bounded time for the file to move on — taking auth.lock, which the writer holds
// while it writes, or woken by the watcher — and answers the `refresh` caller with the writer's
// token: no -32002, no lastError. The harness provider (rotation, reuse detection), the real
// daemon bundle, the store's own lock code as the writer's. No token is ever printed.
import t from 'tap'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { commitAuth } from '../src/store/authstore.js'
import { acquireLock } from '../src/os/flock.js'
import { connect, makeHome } from './support/daemon.js'
import { codexRefresh, mintTokens, startProvider, type EndpointAnswer } from './support/provider.js'
import { authFileFor, daemon, fileTokens, refreshCalls, shape, status, writeAuthFile } from './support/refresh.js'


for (const how of ['under auth.lock, held from the rejection on', 'at once, without waiting for the daemon'] as const) {
  t.test(`another writer spent the token first and commits ${how}: the daemon adopts its tokens`, async (t) => {
    let onRejected: (() => void) | null = null
    const p = await startProvider({
      ttl: { authorizationCode: 3600, refreshToken: 3600 },
      onAnswer: (a: EndpointAnswer) => {
        if (a.call.grantType === 'refresh_token' && a.status === 401) onRejected?.()
      },
    })
    t.teardown(() => p.stop())
    const minted = await mintTokens(p)
    const home = await makeHome()
    writeAuthFile(home, authFileFor(minted))
    const d = await daemon(t, home, p)
    const c = await connect(t, d)

    // The writer spends first (its 401 path, as a Codex would) and holds on to its answer.
    const other = await codexRefresh(p, minted.refreshToken, { refreshReason: 'unauthorized' })
    t.equal(other.status, 200, 'the writer refreshed')
    const o = other.json as { access_token: string; refresh_token: string; id_token: string }
    const theirs = authFileFor({ ...minted, accessToken: o.access_token, refreshToken: o.refresh_token, idToken: o.id_token }, new Date())
    const delayMs = 200 + Math.floor(Math.random() * 601)
    t.comment(`the writer commits ${delayMs} ms after the daemon's spend was rejected`)
    const writer = new Promise<void>((resolve) => {
      onRejected = resolve
    }).then(async () => {
      if (how === 'under auth.lock, held from the rejection on') {
        const lock = await acquireLock(path.join(home, 'auth.lock'), { timeoutMs: 5000, mode: 0o666 })
        await sleep(delayMs) // the writer's own pace (the scenario), not a synchronisation
        writeAuthFile(home, theirs)
        await lock.release()
      } else {
        await sleep(delayMs) // as above
        const r = await commitAuth(home, { update: () => theirs })
        if (r.outcome !== 'written') throw new Error(`the writer could not write: ${r.outcome}`)
      }
    })

    const res = await c.call('refresh')
    await writer
    t.notOk(res.error, `the refresh caller is not told to sign in again: ${shape(res)}`)
    t.ok(res.result?.token === o.access_token, 'answered with the writer’s new token')
    const st = await status(c)
    t.equal(st.refresh.lastError, null, 'status.refresh.lastError is null')
    t.equal(st.refresh.state, 'idle', 'no failure recorded')
    t.equal(p.countCalls({ refreshTokenReuse: true }), 1, 'the daemon’s one spend was the (rejected) reuse')
    t.equal(refreshCalls(p), 2, 'the writer’s refresh and the daemon’s, nothing more')
    t.ok((await fileTokens(home)).refreshToken === o.refresh_token, 'the writer’s file is untouched')
    t.ok(d.logs.some((l) => l.includes('adopted its tokens')), 'logged')
    const g = await c.call('getAuth')
    t.ok(g.result?.token === o.access_token, 'getAuth serves it too')
  })
}
