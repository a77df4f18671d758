// kill -9 of the daemon at random points around a refresh (DESIGN §9 step 5: temp file 0600, fsync,
// rename). Whatever the moment, auth.json must parse, never be empty, and never hold a mix of two
// token sets: its access, refresh and id tokens all come from one answer of the provider. The one
// window DESIGN §9 accepts (killed between the answer and the commit: the new tokens are lost and the
// spent refresh token is dead) is counted, and the login is then replaced with a new one.
//
// Reproduce a run with KILL9_SEED=<seed>; KILL9_ITERATIONS changes the count (default 200).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { formatLastRefresh, parseAuthFile, serializeAuthFile } from '../src/authfile.js'
import type { AuthFile } from '../src/types.js'
import { makeHome, startDaemon, type RunningDaemon } from './support/daemon.js'
import { mintTokens, startProvider, type EndpointAnswer, type TokenSet } from './support/provider.js'
import { rawConnect } from './support/rpc.js'

t.setTimeout(180_000)

const ITERATIONS = Number(process.env.KILL9_ITERATIONS ?? 200)
const SEED = Number(process.env.KILL9_SEED ?? Math.floor(Math.random() * 2 ** 31))

function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface IssuedSet {
  access: string
  refresh: string
  id: string
}

t.test(`kill -9 during refresh, ${ITERATIONS} times`, async (t) => {
  t.comment(`seed ${SEED} (KILL9_SEED=${SEED} reproduces the schedule)`)
  const random = rng(SEED)
  // Every token set the provider ever handed out, by access token; and every refresh token that a
  // successful refresh spent (rotation makes it dead, and reuse revokes the whole grant).
  const issued = new Map<string, IssuedSet>()
  const spent = new Set<string>()
  const onAnswer = (a: EndpointAnswer): void => {
    if (a.call.endpoint !== 'token' || a.status !== 200) return
    const b = JSON.parse(a.body) as { access_token?: string; refresh_token?: string; id_token?: string }
    if (b.access_token && b.refresh_token && b.id_token) issued.set(b.access_token, { access: b.access_token, refresh: b.refresh_token, id: b.id_token })
    if (a.call.grantType === 'refresh_token') spent.add(a.request.get('refresh_token') ?? '')
  }
  // Every access token lives 500 s, so every set is due at once (exp - 10 min is past).
  const p = await startProvider({ ttl: { authorizationCode: 500, refreshToken: 500 }, onAnswer })
  t.teardown(() => p.stop())
  const home = await makeHome()
  const file = path.join(home, 'auth.json')

  /** Codex's format; last_refresh an hour ago so that the 30 s loop guard never holds a refresh back. */
  const write = (s: { access: string; refresh: string; id: string; accountId: string }): void => {
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

  const counts = { iterations: 0, untouched: 0, committed: 0, lost: 0, relogins: 0, tempLeftovers: 0 }
  const problems: string[] = []
  const startedAt = Date.now()
  let lastAccess = ''
  for (let i = 0; i < ITERATIONS; i++) {
    const before = fs.readFileSync(file, 'utf8')
    const beforeAuth = parseAuthFile(before, file)
    if (!beforeAuth.ok) throw new Error('setup: auth.json does not parse')
    lastAccess = beforeAuth.auth.tokens!.accessToken
    p.tokenDelayMs = Math.floor(random() * 21)
    const killAfter = Math.floor(random() * 41)
    const d: RunningDaemon = await startDaemon({ home, args: ['--issuer', p.issuer, '--issuer-kind', 'openai', '--log-level', 'info'] })
    // The daemon starts the due refresh on its own as it comes up; a getAuth joins it.
    void rawConnect(d.socket).then(
      (c) => {
        c.call('getAuth').catch(() => {})
        void d.exited.then(() => c.close())
      },
      () => {},
    )
    await new Promise((r) => setTimeout(r, killAfter)) // the random kill point, not a synchronisation
    d.proc.kill('SIGKILL')
    await d.exited
    // A refresh the provider was still answering finishes there (its answer goes nowhere).
    const deadline = Date.now() + 5000
    while (!p.calls.every((c) => c.done)) {
      if (Date.now() > deadline) throw new Error('provider calls did not finish')
      await new Promise((r) => setTimeout(r, 5))
    }

    counts.iterations++
    const text = fs.readFileSync(file, 'utf8')
    if (text.length === 0) {
      problems.push(`iteration ${i}: auth.json is empty`)
      break
    }
    const parsed = parseAuthFile(text, file)
    if (!parsed.ok || parsed.auth.tokens === null) {
      problems.push(`iteration ${i}: auth.json does not parse (${parsed.ok ? 'no tokens' : parsed.problem.message})`)
      break
    }
    const tk = parsed.auth.tokens
    const set = issued.get(tk.accessToken)
    if (set === undefined || set.refresh !== tk.refreshToken || set.id !== tk.idToken) {
      problems.push(`iteration ${i}: auth.json holds tokens that no single answer of the provider gave`)
      break
    }
    if (tk.accountId === null) problems.push(`iteration ${i}: account_id lost`)
    if ((fs.statSync(file).mode & 0o777) !== 0o600) problems.push(`iteration ${i}: mode ${(fs.statSync(file).mode & 0o777).toString(8)}`)
    counts.tempLeftovers += fs.readdirSync(home).filter((n) => n.startsWith('.auth-')).length
    for (const n of fs.readdirSync(home).filter((n) => n.startsWith('.auth-'))) fs.rmSync(path.join(home, n))

    if (tk.accessToken !== lastAccess) counts.committed++
    else if (spent.has(tk.refreshToken)) counts.lost++
    else counts.untouched++

    if (spent.has(tk.refreshToken)) {
      // The killed daemon spent this refresh token but never wrote the answer: that login is gone
      // (DESIGN §9 step 6, the one window left, as in Codex). Log in again.
      counts.relogins++
      await login()
    } else if (tk.accessToken !== lastAccess) {
      // Committed: put last_refresh back an hour so that the next daemon refreshes at once.
      write({ access: tk.accessToken, refresh: tk.refreshToken, id: tk.idToken, accountId: tk.accountId! })
    }
  }
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(1)
  t.comment(`seed ${SEED}: ${JSON.stringify(counts)} in ${seconds} s; ${p.countCalls({ grantType: 'refresh_token' })} refresh calls, ${p.countCalls({ refreshTokenReuse: true })} reuses`)
  t.same(problems, [], 'auth.json always parsed, was never empty and never mixed two token sets')
  t.equal(counts.iterations, ITERATIONS, 'all iterations ran')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no daemon ever spent a refresh token twice')
  // The schedule must actually hit the interesting moments, or the test proves little.
  t.ok(counts.committed > 0, `some kills came after the commit (${counts.committed})`)
  t.ok(counts.untouched + counts.lost > 0, `some kills came before it (${counts.untouched} before the call, ${counts.lost} between answer and commit)`)
})
