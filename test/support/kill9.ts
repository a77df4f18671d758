// kill -9 of the daemon at random points around a refresh (docs/refresh.md#the-sequence, step 5: temp file 0600, fsync,
// rename; docs/refresh.md#the-journal). Whatever the moment, auth.json must parse, never be empty,
// and never hold a mix of two token sets: its access, refresh and id tokens all come from one
// answer of the provider. A kill after the answer was journaled never loses the login: the next
// daemon commits the journal as it starts, and the next refresh spends the rotated token (the
// provider revokes the whole grant on a reuse, so a reuse anywhere fails the test). The one window
// left (docs/refresh.md#the-journal: the request was sent, its answer not yet journaled) is
// counted, and the login is then replaced with a new one.
//
// Each iteration starts a daemon on a due token (it refreshes as it comes up; a getAuth joins) and
// SIGKILLs it 0-40 ms after one of three moments picked at random, so that the kills spread over
// the whole refresh whatever the machine's speed: the daemon's start line (mostly before the call),
// the provider's answer (mostly the window left: the answer is on its way), the daemon's "tokens
// refreshed" line (journaled, the commit under way), the "written" log line (after the rename).
// In a quarter of the iterations another process (flock(1), as a running Codex) holds auth.lock
// the whole time, so the commit waits and the kill lands while the answer is only in the journal.
//
// A journaled kill is followed by the daemon's start path, which must commit the journal: every
// RESTART_EVERY-th time (per lane) a real daemon process, otherwise the same code in-process (the
// state and the refresher's start), so that 200 iterations cost about 210 daemon starts, not 290.
// Measured on a shared 2-core machine: 174 s at load 4-6, 412 s at load 13-27; about 245 s of CPU
// either way (some 12 s of it compiling this file's imports), so even alone on 2 cores it needs
// about 2 minutes: each iteration costs a daemon start and its refresh.
//
// The 200 iterations run as two test files of 100 (test/refresh-kill9-*.test.ts), each with its
// own seed, so that the suite's two jobs can share them. Reproduce a half's schedule with
// KILL9_SEED=<the seed it printed>; KILL9_ITERATIONS changes a half's count (default 100).
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { formatLastRefresh, parseAuthFile, serializeAuthFile } from '../../src/codex/authfile.js'
import type { AuthFile } from '../../src/types.js'
import { makeHome, startDaemon, type RunningDaemon } from './daemon.js'
import { holdWithFlock, type FlockHolder } from './flock.js'
import { mintTokens, startProvider, type EndpointAnswer, type TokenSet } from './provider.js'
import { pino } from 'pino'
import { Refresher } from '../../src/refresh/refresher.js'
import { AuthState } from '../../src/state/cache.js'
import { rawConnect } from './rpc.js'
import { mulberry32 as rng } from './prng.js'

const ITERATIONS = Number(process.env.KILL9_ITERATIONS ?? 100)
/** Every this many journaled kills (per lane) a real daemon is started to commit the journal. */
const RESTART_EVERY = 4
/** Lanes run side by side, each with its own provider and CODEX_HOME. */
const LANES = 3

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

type Anchor = 'started' | 'answer' | 'journaled' | 'written'

interface Counts {
  iterations: number
  /** killed before the refresh call reached the provider: the file is as it was, its token alive */
  untouched: number
  /** killed after the rename: the file holds the new answer */
  committed: number
  /** killed after the answer was journaled, before the rename: the next start committed the journal */
  recovered: number
  /** of those, with auth.lock held by another process the whole time */
  recoveredWhileLocked: number
  /** of those, committed by a real daemon process started afterwards (the others in-process) */
  recoveredByDaemon: number
  /** killed after the request was sent, before its answer was journaled: the one window left */
  lost: number
  anchors: Record<Anchor, number>
  /** .auth-XXXXXX and .authd.pending.json-XXXXXX temp files a kill left behind (harmless; Codex leaves them too) */
  tempLeftovers: number
}

interface IssuedSet {
  access: string
  refresh: string
  id: string
}

/** One half of the kill -9 test (see the top of this file), in the calling test file. */
export function kill9DuringRefresh(): void {
  t.setTimeout(600_000)
  const SEED = Number(process.env.KILL9_SEED ?? Math.floor(Math.random() * 2 ** 31))
  t.test(`kill -9 during refresh, ${ITERATIONS} times`, async (t) => {
  t.comment(`seed ${SEED} (KILL9_SEED=${SEED} reproduces the schedule)`)
  const counts: Counts = {
    iterations: 0,
    untouched: 0,
    committed: 0,
    recovered: 0,
    recoveredWhileLocked: 0,
    recoveredByDaemon: 0,
    lost: 0,
    anchors: { started: 0, answer: 0, journaled: 0, written: 0 },
    tempLeftovers: 0,
  }
  const windows: Window[] = []
  const problems: string[] = []
  let calls = 0
  let reuses = 0
  const startedAt = Date.now()
  await Promise.all(
    Array.from({ length: LANES }, async (_, lane) => {
      const n = Math.floor(ITERATIONS / LANES) + (lane < ITERATIONS % LANES ? 1 : 0)
      const r = await runLane(t, lane, rng(SEED + lane), n, counts, problems, windows)
      calls += r.calls
      reuses += r.reuses
    }),
  )
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(1)
  t.comment(`seed ${SEED}: ${JSON.stringify(counts)} in ${seconds} s; ${calls} refresh calls, ${reuses} reuses`)
  t.comment(`window left (request sent -> answer journaled), ms: ${describe(windows.map((w) => w.roundTripMs + w.journalMs))}; of it the journal write: ${describe(windows.map((w) => w.journalMs))}`)
  t.same(problems, [], 'auth.json always parsed, was never empty, never mixed two token sets, and no journaled answer was lost')
  t.equal(counts.iterations, ITERATIONS, 'all iterations ran')
  t.equal(reuses, 0, 'no daemon ever spent a refresh token twice (the provider would have revoked the grant)')
  t.equal(counts.untouched + counts.committed + counts.recovered + counts.lost, ITERATIONS, 'every iteration ended in one of the four states')
  // The kills must reach past the commit and into the journal window, or the test proves little.
  t.ok(counts.committed > 0, `some kills came after the rename (${counts.committed})`)
  t.ok(counts.recovered > 0, `some came after the answer was journaled, before the rename (${counts.recovered})`)
  t.ok(counts.recoveredWhileLocked > 0, `some of those while another process held auth.lock (${counts.recoveredWhileLocked})`)
  t.ok(counts.recoveredByDaemon > 0, `some committed by a real daemon restart (${counts.recoveredByDaemon})`)
  })
}

interface Window {
  roundTripMs: number
  journalMs: number
}

function describe(xs: number[]): string {
  if (xs.length === 0) return 'none'
  const s = [...xs].sort((a, b) => a - b)
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))]!
  return `p50 ${q(0.5)}, p95 ${q(0.95)}, max ${s[s.length - 1]} (n=${s.length})`
}

async function runLane(
  t: Test,
  lane: number,
  random: () => number,
  iterations: number,
  counts: Counts,
  problems: string[],
  windows: Window[],
): Promise<{ calls: number; reuses: number }> {
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
  let recoveredHere = 0

  for (let i = 0; i < iterations && problems.length === 0; i++) {
    const before = parseAuthFile(fs.readFileSync(file, 'utf8'), file)
    if (!before.ok || before.auth.tokens === null) throw new Error('setup: auth.json does not parse')
    const lastAccess = before.auth.tokens.accessToken
    p.tokenDelayMs = Math.floor(random() * 21)
    const r = random()
    const anchor: Anchor = r < 0.25 ? 'started' : r < 0.5 ? 'answer' : r < 0.8 ? 'journaled' : 'written'
    const killAfter = Math.floor(random() * 41)
    // As a running Codex would: auth.lock held across the whole refresh, released after the kill.
    const holder: FlockHolder | null = (anchor === 'answer' || anchor === 'journaled') && random() < 0.5 ? await holdWithFlock(t, path.join(home, 'auth.lock')) : null

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
    if (anchor === 'journaled') void daemon.waitForLog((rec) => rec.msg === 'tokens refreshed').then(fire, () => {})
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

    await holder?.release()
    counts.iterations++
    counts.anchors[anchor]++
    const answered = recordsOf(daemon).find((r) => r.msg === 'tokens refreshed')
    if (answered) windows.push({ roundTripMs: Number(answered.roundTripMs), journalMs: Number(answered.journalMs) })
    const journal = path.join(home, 'authd.pending.json')
    const journaled = fs.existsSync(journal)
    const check = (where: string): { tk: NonNullable<AuthFile['tokens']>; set: IssuedSet } | null => {
      const text = fs.readFileSync(file, 'utf8')
      if (text.length === 0) {
        problems.push(`lane ${lane} iteration ${i}${where}: auth.json is empty`)
        return null
      }
      const parsed = parseAuthFile(text, file)
      if (!parsed.ok || parsed.auth.tokens === null) {
        problems.push(`lane ${lane} iteration ${i}${where}: auth.json does not parse (${parsed.ok ? 'no tokens' : parsed.problem.message})`)
        return null
      }
      const tk = parsed.auth.tokens
      const set = issued.get(tk.accessToken)
      if (set === undefined || set.refresh !== tk.refreshToken || set.id !== tk.idToken) {
        problems.push(`lane ${lane} iteration ${i}${where}: auth.json holds tokens that no single answer of the provider gave`)
        return null
      }
      if (tk.accountId === null) problems.push(`lane ${lane} iteration ${i}${where}: account_id lost`)
      const mode = fs.statSync(file).mode & 0o777
      if (mode !== 0o600) problems.push(`lane ${lane} iteration ${i}${where}: mode ${mode.toString(8)}`)
      return { tk, set }
    }
    const now = check('')
    if (now === null) break
    const { tk, set } = now
    const temps = fs.readdirSync(home).filter((n) => n.startsWith('.auth'))
    counts.tempLeftovers += temps.length
    for (const n of temps) fs.rmSync(path.join(home, n))

    if (tk.accessToken !== lastAccess) {
      counts.committed++
      // Put last_refresh back an hour so that the next daemon refreshes at once (a journal the
      // kill left behind no longer matches the file and is dropped by the next start).
      write({ ...set, accountId: tk.accountId! })
    } else if (journaled) {
      // Killed after the answer was journaled: a daemon that starts commits it before it listens.
      // Every RESTART_EVERY-th time a real daemon; otherwise the same start path in-process (the
      // refresher's start commits the journal), which costs no process start.
      const viaDaemon = recoveredHere++ % RESTART_EVERY === 0
      const handled = viaDaemon ? await restartDaemon(home, p.issuer) : await startInProcess(home, p.issuer, p.clientId)
      if (viaDaemon) counts.recoveredByDaemon++
      const after = check(' (after the restart)')
      if (after === null) break
      if (handled !== 'written' || after.tk.accessToken === lastAccess || spent.has(after.tk.refreshToken) || fs.existsSync(journal)) {
        problems.push(`lane ${lane} iteration ${i}: the journal was not committed at the next start (outcome ${String(handled)})`)
        break
      }
      counts.recovered++
      if (holder !== null) counts.recoveredWhileLocked++
      write({ ...after.set, accountId: after.tk.accountId! })
    } else if (spent.has(tk.refreshToken)) {
      // The killed daemon spent this refresh token and never journaled the answer. Only a kill
      // before the answer was journaled may do that (docs/refresh.md#the-journal, the window left).
      if (answered) {
        problems.push(`lane ${lane} iteration ${i}: the answer was journaled ("tokens refreshed") but the login was lost`)
        break
      }
      counts.lost++
      await login()
    } else {
      counts.untouched++
    }
  }
  return { calls: p.countCalls({ grantType: 'refresh_token' }), reuses: p.countCalls({ refreshTokenReuse: true }) }
}

/** A daemon started on `home` and stopped: what it did with the journal it found. */
async function restartDaemon(home: string, issuer: string): Promise<unknown> {
  const r = await startDaemon({ home, args: ['--issuer', issuer, '--issuer-kind', 'openai'] })
  await r.stop('SIGTERM')
  return recordsOf(r).find((x) => x.msg === 'journaled refresh result handled')?.outcome
}

/**
 * The daemon's start path for the journal, in-process: the state loads, the refresher's start()
 * commits the journal under Codex's locks (docs/refresh.md#the-journal), then both stop. What it
 * did with the journal, from its log.
 */
async function startInProcess(home: string, issuer: string, clientId: string): Promise<unknown> {
  const records: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) })
  const state = new AuthState({ home, envApiKey: null, overrides: [] })
  await state.start()
  const refresher = new Refresher({ home, state, issuer: { issuer, kind: 'openai', clientId }, env: {}, log, userAgent: 'codex-authd/kill9' })
  try {
    await refresher.start()
  } finally {
    await refresher.stop()
    await state.stop()
  }
  return records.find((x) => x.msg === 'journaled refresh result handled')?.outcome
}

/** The daemon's JSON log records (lines that are not JSON are skipped). */
function recordsOf(d: RunningDaemon): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  for (const l of d.logs) {
    try {
      out.push(JSON.parse(l) as Record<string, unknown>)
    } catch {
      // not a record
    }
  }
  return out
}
