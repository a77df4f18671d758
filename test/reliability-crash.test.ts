// Crash safety (issue 7, item 3): kill -9 of the daemon in the middle of its writes — API-key
// logins, forced refreshes against the provider, logouts — mixed by a seeded PRNG, many times.
// After every kill auth.json parses or is absent, is never empty, and is never a mix: it is either
// exactly what it was before the operation, or exactly what that one operation writes (the API key
// it sent; one token set a single answer of the provider gave; absent after a logout). Mode 0600.
// Then the lock files the killed daemons left behind must not hold up the real Codex CLI: flock
// locks die with their process, so both lock files are free (flock -n), and `codex login
// --with-api-key` exits 0 without a lock timeout (a held auth.json.lock makes it fail after 5 s; a
// held auth.lock blocks it for good). Its times, beside a run in a fresh home, are figures only.
//
// Reproduce a run with CRASH_SEED=<seed>; CRASH_ITERATIONS (default 102) and CRASH_LANES (default
// 3, each lane its own CODEX_HOME and daemon) change the shape.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile, serializeAuthFile } from '../src/codex/authfile.js'
import type { AuthFile } from '../src/types.js'
import { authFileFor, endedByItself, requireCodex, startCodexWorld, type CodexWorld } from './support/codex.js'
import { makeHome, startDaemon, type RunningDaemon } from './support/daemon.js'
import { flockN } from './support/flock.js'
import { mintTokens, startProvider, type EndpointAnswer } from './support/provider.js'
import { mulberry32, reliabilityComment, Wire } from './support/reliability.js'
import { registerSecret } from './support/secrets.js'
import { until } from './support/until.js'

// The second half runs the real Codex CLI: as in the other Codex tests, a machine where it cannot
// run fails this file instead of skipping that half.
await requireCodex()

const ITERATIONS = Number(process.env.CRASH_ITERATIONS ?? 102)
const LANES = Math.max(1, Number(process.env.CRASH_LANES ?? 3))
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))

type Op = 'apikey' | 'refresh' | 'logout'

interface IssuedSet {
  refresh: string
  id: string
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

t.test(`kill -9 during logins, refreshes and logouts (${ITERATIONS} iterations, ${LANES} lanes)`, async (t) => {
  t.comment(`seed ${SEED} (CRASH_SEED=${SEED} reproduces the schedule)`)
  const began = Date.now()
  // Every token set the provider handed out (by access token), and every refresh token a successful
  // refresh spent (rotation kills it; reusing it would revoke the whole grant).
  const issued = new Map<string, IssuedSet>()
  const spent = new Set<string>()
  const onAnswer = (a: EndpointAnswer): void => {
    if (a.call.endpoint !== 'token' || a.status !== 200) return
    const b = JSON.parse(a.body) as { access_token?: string; refresh_token?: string; id_token?: string }
    if (b.access_token && b.refresh_token && b.id_token) issued.set(b.access_token, { refresh: b.refresh_token, id: b.id_token })
    if (a.call.grantType === 'refresh_token') spent.add(a.request.get('refresh_token') ?? '')
  }
  const onRevoke = (a: EndpointAnswer): void => {
    // a revoked refresh token is as dead as a spent one
    if (a.call.endpoint === 'revoke' && a.status === 200) spent.add(a.request.get('token') ?? '')
  }
  const p = await startProvider({ ttl: { authorizationCode: 1800, refreshToken: 1800 }, onAnswer: (a) => (onAnswer(a), onRevoke(a)) })
  t.teardown(() => p.stop())

  const counts = {
    iterations: 0,
    ops: { apikey: 0, refresh: 0, logout: 0 } as Record<Op, number>,
    /** the file after the kill was still the one from before the operation */
    before: 0,
    /** the file after the kill was the operation's own result */
    after: 0,
    /** a refresh answer was received but the kill came before the commit (docs/refresh.md#the-sequence: the one window) */
    lostRefresh: 0,
    tempLeftovers: 0,
    relogins: 0,
  }
  const problems: string[] = []
  const killDelays: number[] = []

  const homes: string[] = []
  const runLane = async (lane: number, iterations: number): Promise<void> => {
    const random = mulberry32((SEED + lane * 0x9e3779b1) >>> 0)
    const est: Record<Op, number> = { apikey: 60, refresh: 200, logout: 60 }
    const home = await makeHome()
    homes.push(home)
    const file = path.join(home, 'auth.json')
    const write = (auth: AuthFile): void => {
      const tmp = `${file}.crash-test-tmp`
      fs.writeFileSync(tmp, serializeAuthFile(auth), { mode: 0o600 })
      fs.renameSync(tmp, file)
    }
    const freshLogin = async (): Promise<void> => {
      counts.relogins++
      const m = await mintTokens(p)
      // last_refresh an hour ago: a forced refresh never meets the loop guard anyway, but nothing
      // here depends on the daemon's own schedule either (the tokens are not due for 20 minutes).
      write(authFileFor(m, { lastRefresh: new Date(Date.now() - 3600_000) }))
    }
    const read = (): { text: string | null; auth: AuthFile | null; problem: string | null } => {
      let text: string
      try {
        text = fs.readFileSync(file, 'utf8')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { text: null, auth: null, problem: null }
        throw e
      }
      if (text.length === 0) return { text, auth: null, problem: 'auth.json is empty' }
      const parsed = parseAuthFile(text, file)
      if (!parsed.ok) return { text, auth: null, problem: `auth.json does not parse: ${parsed.problem.message}` }
      return { text, auth: parsed.auth, problem: null }
    }
    /** The file holds one writer's whole answer: a key alone, or one issued token set. */
    const consistent = (auth: AuthFile): string | null => {
      if (auth.tokens === null) {
        if (auth.authMode !== 'apikey' || !auth.openaiApiKey) return 'neither tokens nor an API-key login'
        return null
      }
      const set = issued.get(auth.tokens.accessToken)
      if (set === undefined || set.refresh !== auth.tokens.refreshToken || set.id !== auth.tokens.idToken) return 'tokens from more than one answer'
      if (auth.tokens.accountId === null) return 'account_id lost'
      if (auth.openaiApiKey !== null) return 'tokens and an API key mixed'
      return null
    }

    for (let i = 0; i < iterations; i++) {
      const itStart = Date.now()
      const where = `lane ${lane} iteration ${i}`
      const roll = random()
      const op: Op = roll < 0.4 ? 'apikey' : roll < 0.8 ? 'refresh' : 'logout'
      counts.ops[op]++
      // A refresh killed after its answer was journaled left the journal, which the next daemon
      // commits as it starts (docs/refresh.md#the-journal): let one do that first, so that the
      // file this operation starts from is the one it is judged against.
      if (fs.existsSync(path.join(home, 'authd.pending.json'))) await (await startDaemon({ home, args: ['--issuer', p.issuer, '--issuer-kind', 'openai'] })).stop('SIGTERM')
      // Preconditions: a refresh needs live tokens; a logout something to remove (either kind).
      const cur = read()
      if (op === 'refresh' && (cur.auth?.tokens == null || spent.has(cur.auth.tokens.refreshToken))) await freshLogin()
      if (op === 'logout' && cur.text === null) {
        if (random() < 0.5) await freshLogin()
        else write({ authMode: 'apikey', openaiApiKey: `sk-crash-pre-${lane}-${i}-${Math.floor(random() * 1e9)}`, tokens: null, lastRefresh: null, extra: {} })
      }
      const before = read()
      if (before.problem !== null) throw new Error(`${where}: setup left a bad file`)
      const key = `sk-crash-${lane}-${i}-${Math.floor(random() * 1e9).toString(36)}`
      registerSecret(key, 'API key (crash test)')
      // The kill point: uniform over 1.6x the operation's current latency estimate, so that kills
      // land before, during and after the write whatever the machine's speed.
      const killAfter = Math.floor(random() * est[op] * 1.6)
      killDelays.push(killAfter)

      const t0 = Date.now()
      const d: RunningDaemon = await startDaemon({ home, args: ['--issuer', p.issuer, '--issuer-kind', 'openai'] })
      const w = await Wire.connect(d.socket)
      const params = op === 'apikey' ? { method: 'apikey', apiKey: key } : op === 'logout' ? { revoke: random() < 0.5 } : undefined
      const method = op === 'apikey' ? 'login' : op
      // The request is on its way; the kill point is random from there (not a synchronisation).
      const sentAt = Date.now()
      let answeredAt = 0
      const answered = w.call(method, params, 20_000).then(
        (m) => {
          answeredAt = Date.now()
          return m
        },
        () => null,
      )
      await sleep(killAfter)
      d.proc.kill('SIGKILL')
      const ans = await answered
      if (ans !== null && answeredAt > 0) est[op] = 0.7 * est[op] + 0.3 * (answeredAt - sentAt)
      else est[op] = Math.min(est[op] * 1.4, 1500)
      w.close()
      await d.stop('SIGKILL') // scans the daemon's output for secrets as well
      // A refresh the provider was still answering finishes there (its answer goes nowhere).
      await until('provider calls to finish', () => p.calls.every((c) => c.done))
      counts.iterations++
      if (process.env.CRASH_DEBUG) console.error(`lane ${lane} it ${i} ${op}: start ${sentAt - t0} ms, kill ${killAfter}, answered ${answeredAt ? answeredAt - sentAt : '-'}, total ${Date.now() - t0} ms, iteration ${Date.now() - itStart} ms`)

      const after = read()
      const temps = fs.readdirSync(home).filter((n) => n.startsWith('.auth-'))
      counts.tempLeftovers += temps.length
      for (const n of temps) fs.rmSync(path.join(home, n))
      if (after.problem !== null) {
        problems.push(`${where} (${op}): ${after.problem}`)
        break
      }
      if (after.text !== null) {
        const mode = fs.statSync(file).mode & 0o777
        if (mode !== 0o600) problems.push(`${where} (${op}): mode ${mode.toString(8)}`)
        const bad = consistent(after.auth!)
        if (bad !== null) {
          problems.push(`${where} (${op}): ${bad}`)
          break
        }
      }
      // Before, or this one operation's whole result: nothing else.
      if (after.text === before.text) {
        counts.before++
        if (op === 'refresh' && spent.has(before.auth!.tokens!.refreshToken)) counts.lostRefresh++
      } else {
        const a = after.auth
        const ok =
          op === 'apikey'
            ? a !== null && a.authMode === 'apikey' && a.openaiApiKey === key && a.tokens === null
            : op === 'logout'
              ? after.text === null
              : a !== null && a.tokens !== null && spent.has(before.auth!.tokens!.refreshToken) && a.tokens.accountId === before.auth!.tokens!.accountId
        if (!ok) {
          problems.push(`${where} (${op}): the file is neither the one before nor this operation's result`)
          break
        }
        counts.after++
        if (ans?.error && op !== 'refresh') problems.push(`${where} (${op}): the write happened but the answer was an error (${ans.error.code})`)
      }
    }
  }

  const per = Math.ceil(ITERATIONS / LANES)
  await Promise.all(Array.from({ length: LANES }, (_, lane) => runLane(lane, Math.min(per, ITERATIONS - lane * per))))
  const loopMs = Date.now() - began
  t.same(problems, [], 'after every kill auth.json parsed or was absent, was never empty, and was before-or-after, never mixed')
  t.equal(counts.iterations, ITERATIONS, 'every iteration ran')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was ever spent twice')
  t.ok(counts.before > 0 && counts.after > 0, `the kills hit both sides of the writes (${counts.before} before, ${counts.after} after)`)

  // ---- The real Codex CLI on homes full of lock files left by killed daemons.
  const world: CodexWorld = await startCodexWorld(p)
  t.teardown(() => world.close())
  const codexLogin = async (home: string, key: string) => {
    registerSecret(key, 'API key (codex login, crash test)')
    world.writeConfig(home)
    return world.codex(home, ['login', '--with-api-key'], { input: `${key}\n`, timeoutSec: 30 })
  }
  // A baseline in a fresh home: the normal time on this machine right now.
  const fresh = await makeHome()
  const base = await codexLogin(fresh, 'sk-crash-baseline-0123456789')
  t.equal(base.code, 0, `baseline codex login --with-api-key (${base.ms} ms)`)
  // The crash homes still hold auth.lock and auth.json.lock from killed daemons (some killed
  // while holding them): Codex must find them free.
  const runs: number[] = []
  for (const [lane, home] of homes.entries()) {
    const leftLocks = ['auth.lock', 'auth.json.lock'].filter((n) => fs.existsSync(path.join(home, n)))
    t.same(leftLocks, ['auth.lock', 'auth.json.lock'], `lane ${lane}: the killed daemons left both lock files behind`)
    for (const n of leftLocks) t.equal(await flockN(path.join(home, n)), 0, `lane ${lane}: ${n} is not held by anyone (flock -n)`)
    const key = `sk-crash-after-kill-${lane}-0123456789`
    const r = await codexLogin(home, key)
    t.ok(endedByItself(r) && r.code === 0, `lane ${lane}: codex login --with-api-key after the kills exits 0 (${r.ms} ms)`)
    t.notMatch(r.stderr, /lock timed out/, 'no lock timeout')
    runs.push(r.ms)
    const parsed = parseAuthFile(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'), 'auth.json')
    t.ok(parsed.ok && parsed.auth.openaiApiKey === key && parsed.auth.tokens === null, 'Codex wrote its key')
  }
  // The times are figures, not assertions: a loaded machine slows Codex down without any lock.
  const codexFigures = { baselineMs: base.ms, afterKillMs: runs }

  const figures = {
    test: 'crash-kill9',
    seed: SEED,
    cases: counts.iterations,
    failures: problems.length,
    ...counts,
    refreshCalls: p.countCalls({ grantType: 'refresh_token' }),
    killDelayMs: { max: Math.max(...killDelays), median: [...killDelays].sort((a, b) => a - b)[killDelays.length >> 1] },
    codex: codexFigures,
    loopMs,
    ms: Date.now() - began,
  }
  reliabilityComment(t, figures)
})
