// kill -9 of the daemon at random points around a refresh (docs/refresh.md#the-sequence, step 5: temp file 0600, fsync,
// rename). Whatever the moment, auth.json must parse, never be empty, and never hold a mix of two
// token sets: its access, refresh and id tokens all come from one answer of the provider. The one
// window docs/refresh.md#the-sequence accepts (killed between the answer and the commit: the new tokens are lost and the
// spent refresh token is dead) is counted, and the login is then replaced with a new one.
//
// Each iteration starts a daemon on a due token (it refreshes as it comes up; a getAuth joins) and
// SIGKILLs it 0-40 ms after one of three moments picked at random, so that the kills spread over
// the whole refresh whatever the machine's speed: the daemon's start line (mostly before the call),
// the provider's answer (the commit window), the "written" log line (after the rename).
//
// Reproduce a schedule with KILL9_SEED=<seed>; KILL9_ITERATIONS changes the count (default 200).
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { formatLastRefresh, parseAuthFile, serializeAuthFile } from '../src/codex/authfile.js'
import type { AuthFile } from '../src/types.js'
import { makeHome, startDaemon, type RunningDaemon } from './support/daemon.js'
import { mintTokens, startProvider, type EndpointAnswer, type TokenSet } from './support/provider.js'
import { rawConnect } from './support/rpc.js'
import { mulberry32 as rng } from './support/prng.js'

// 200 daemon starts: ~60 s on an idle 2-core machine, much more when other suites share it.
t.setTimeout(600_000)

const ITERATIONS = Number(process.env.KILL9_ITERATIONS ?? 200)
const SEED = Number(process.env.KILL9_SEED ?? Math.floor(Math.random() * 2 ** 31))
/** Lanes run side by side, each with its own provider and CODEX_HOME. */
const LANES = 3

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

type Anchor = 'started' | 'answer' | 'written'

interface Counts {
  iterations: number
  /** killed before the refresh call reached the provider: the file is as it was, its token alive */
  untouched: number
  /** killed after the rename: the file holds the new answer */
  committed: number
  /** killed between the answer and the rename: the one window docs/refresh.md#the-sequence accepts */
  lost: number
  anchors: Record<Anchor, number>
  /** .auth-XXXXXX temp files a kill left behind (harmless; Codex leaves them too) */
  tempLeftovers: number
}

interface IssuedSet {
  access: string
  refresh: string
  id: string
}

t.test(`kill -9 during refresh, ${ITERATIONS} times`, async (t) => {
  t.comment(`seed ${SEED} (KILL9_SEED=${SEED} reproduces the schedule)`)
  const counts: Counts = { iterations: 0, untouched: 0, committed: 0, lost: 0, anchors: { started: 0, answer: 0, written: 0 }, tempLeftovers: 0 }
  const problems: string[] = []
  let calls = 0
  let reuses = 0
  const startedAt = Date.now()
  await Promise.all(
    Array.from({ length: LANES }, async (_, lane) => {
      const n = Math.floor(ITERATIONS / LANES) + (lane < ITERATIONS % LANES ? 1 : 0)
      const r = await runLane(t, lane, rng(SEED + lane), n, counts, problems)
      calls += r.calls
      reuses += r.reuses
    }),
  )
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(1)
  t.comment(`seed ${SEED}: ${JSON.stringify(counts)} in ${seconds} s; ${calls} refresh calls, ${reuses} reuses`)
  t.same(problems, [], 'auth.json always parsed, was never empty and never mixed two token sets')
  t.equal(counts.iterations, ITERATIONS, 'all iterations ran')
  t.equal(reuses, 0, 'no daemon ever spent a refresh token twice')
  t.equal(counts.untouched + counts.committed + counts.lost, ITERATIONS, 'every iteration ended in one of the three states')
  // The kills must reach past the commit, or the test proves little about it.
  t.ok(counts.committed > 0, `some kills came after the rename (${counts.committed})`)
  t.ok(counts.untouched + counts.lost > 0, `some came before it (${counts.untouched} before the call, ${counts.lost} between answer and rename)`)
})

async function runLane(t: Test, lane: number, random: () => number, iterations: number, counts: Counts, problems: string[]): Promise<{ calls: number; reuses: number }> {
  // Every token set the provider ever handed out, by access token; and every refresh token that a
  // successful refresh spent (rotation makes it dead; spending it again would revoke the grant).
  const issued = new Map<string, IssuedSet>()
  const spent = new Set<string>()
  let onRefreshAnswer: (() => void) | null = null
  const onAnswer = (a: EndpointAnswer): void => {
    if (a.call.endpoint !== 'token' || a.status !== 200) return
    const b = JSON.parse(a.body) as { access_token?: string; refresh_token?: string; id_token?: string }
    if (b.access_token && b.refresh_token && b.id_token) issued.set(b.access_token, { access: b.access_token, refresh: b.refresh_token, id: b.id_token })
    if (a.call.grantType === 'refresh_token') {
      spent.add(a.request.get('refresh_token') ?? '')
      onRefreshAnswer?.()
    }
  }
  // Every access token lives 500 s, so every set is due at once (exp - 10 min is past).
  const p = await startProvider({ ttl: { authorizationCode: 500, refreshToken: 500 }, onAnswer })
  t.teardown(() => p.stop())
  const home = await makeHome()
  const file = path.join(home, 'auth.json')

  /** Codex's format; last_refresh an hour ago so that the 30 s loop guard never holds a refresh back. */
  const write = (s: IssuedSet & { accountId: string }): void => {
    const auth: AuthFile = {
      authMode: 'chatgpt',
      openaiApiKey: null,
      tokens: { idToken: s.id, accessToken: s.access, refreshToken: s.refresh, accountId: s.accountId, extra: {} },
      lastRefresh: formatLastRefresh(new Date(Date.now() - 3600_000)),
      extra: {},
    }
    const tmp = `${file}.kill9-tmp`
    fs.writeFileSync(tmp, serializeAuthFile(auth), { mode: 0o600 })
    fs.renameSync(tmp, file)
  }
  const login = async (): Promise<void> => {
    const m: TokenSet = await mintTokens(p)
    write({ access: m.accessToken, refresh: m.refreshToken, id: m.idToken, accountId: m.accountId })
  }
  await login()

  for (let i = 0; i < iterations && problems.length === 0; i++) {
    const before = parseAuthFile(fs.readFileSync(file, 'utf8'), file)
    if (!before.ok || before.auth.tokens === null) throw new Error('setup: auth.json does not parse')
    const lastAccess = before.auth.tokens.accessToken
    p.tokenDelayMs = Math.floor(random() * 21)
    const r = random()
    const anchor: Anchor = r < 0.3 ? 'started' : r < 0.75 ? 'answer' : 'written'
    const killAfter = Math.floor(random() * 41)

    let d: RunningDaemon | null = null
    let killed: Promise<void> | null = null
    const kill = (): Promise<void> => {
      killed ??= (async () => {
        d!.proc.kill('SIGKILL')
        await d!.exited
      })()
      return killed
    }
    let fire: () => void = () => {}
    const anchored = new Promise<void>((resolve) => {
      fire = resolve
    })
    if (anchor === 'answer') onRefreshAnswer = fire
    d = await startDaemon({ home, args: ['--issuer', p.issuer, '--issuer-kind', 'openai'], waitReady: false })
    const daemon = d
    try {
      await daemon.waitForLog((rec) => rec.msg === 'codex-authd started')
    } catch {
      // Not a kill of ours: the daemon ended on its own before it was up. Say how (messages only).
      const how = await daemon.exited
      const msgs = daemon.logs.map((l) => {
        try {
          return String((JSON.parse(l) as { msg?: unknown }).msg)
        } catch {
          return '(not JSON)'
        }
      })
      problems.push(`lane ${lane} iteration ${i}: the daemon exited ${JSON.stringify(how)} before it was up; log: ${JSON.stringify(msgs)}; stderr: ${JSON.stringify(daemon.stderr.join('\n').slice(0, 500))}`)
      break
    }
    if (anchor === 'started') fire()
    if (anchor === 'written') void daemon.waitForLog((rec) => rec.msg === 'refreshed tokens written to auth.json').then(fire, () => {})
    // The daemon starts the due refresh on its own as it comes up; a getAuth joins it.
    void rawConnect(daemon.socket).then(
      (c) => {
        c.call('getAuth').catch(() => {})
        void daemon.exited.then(() => c.close())
      },
      () => {},
    )
    // A daemon that never gets to the anchor is killed after 10 s (and counted by what it did).
    await Promise.race([anchored, sleep(10_000)])
    await sleep(killAfter) // the random kill point after the anchor, not a synchronisation
    await kill()
    onRefreshAnswer = null
    // A refresh the provider was still answering finishes there (its answer goes nowhere).
    const deadline = Date.now() + 10_000
    while (!p.calls.every((c) => c.done)) {
      if (Date.now() > deadline) throw new Error('provider calls did not finish')
      await sleep(5)
    }

    counts.iterations++
    counts.anchors[anchor]++
    const text = fs.readFileSync(file, 'utf8')
    if (text.length === 0) {
      problems.push(`lane ${lane} iteration ${i}: auth.json is empty`)
      break
    }
    const parsed = parseAuthFile(text, file)
    if (!parsed.ok || parsed.auth.tokens === null) {
      problems.push(`lane ${lane} iteration ${i}: auth.json does not parse (${parsed.ok ? 'no tokens' : parsed.problem.message})`)
      break
    }
    const tk = parsed.auth.tokens
    const set = issued.get(tk.accessToken)
    if (set === undefined || set.refresh !== tk.refreshToken || set.id !== tk.idToken) {
      problems.push(`lane ${lane} iteration ${i}: auth.json holds tokens that no single answer of the provider gave`)
      break
    }
    if (tk.accountId === null) problems.push(`lane ${lane} iteration ${i}: account_id lost`)
    const mode = fs.statSync(file).mode & 0o777
    if (mode !== 0o600) problems.push(`lane ${lane} iteration ${i}: mode ${mode.toString(8)}`)
    const temps = fs.readdirSync(home).filter((n) => n.startsWith('.auth-'))
    counts.tempLeftovers += temps.length
    for (const n of temps) fs.rmSync(path.join(home, n))

    if (tk.accessToken !== lastAccess) {
      counts.committed++
      // Put last_refresh back an hour so that the next daemon refreshes at once.
      write({ ...set, accountId: tk.accountId! })
    } else if (spent.has(tk.refreshToken)) {
      // The killed daemon spent this refresh token but never wrote the answer: that login is gone
      // (docs/refresh.md#the-sequence, the one window left, as in Codex). Log in again.
      counts.lost++
      await login()
    } else {
      counts.untouched++
    }
  }
  return { calls: p.countCalls({ grantType: 'refresh_token' }), reuses: p.countCalls({ refreshTokenReuse: true }) }
}
