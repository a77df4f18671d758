// The refresher end to end (docs/refresh.md; docs/codex-compat.md#refresh-triggers to
// #refresh-errors): the real daemon bundle against the harness's real oidc-provider (rotating
// refresh tokens with reuse detection, OpenAI routes, JSON adapter), tokens minted with a real
// authorization-code flow and written in Codex's format. Kind `openai` (Codex's exact JSON body)
// unless a test says `oidc` (openid-client).
//
// No token is ever printed: token comparisons use t.ok(a === b), never t.equal.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { formatLastRefresh, parseAuthFile, serializeAuthFile } from '../src/codex/authfile.js'
import { readAuth } from '../src/store/authstore.js'
import type { AuthFile } from '../src/types.js'
import { connect, freePorts, makeHome, runCli, startDaemon, stopAtTeardown, tempDir, type RunningDaemon } from './support/daemon.js'
import {
  codexRefresh,
  decodeJwtPayload,
  FAILURES,
  mintTokens,
  startProvider,
  type EndpointAnswer,
  type FailAnswer,
  type ProviderOptions,
  type TestProvider,
  type TokenSet,
} from './support/provider.js'
import { holdWithFlock } from './support/flock.js'
import { rawConnect, type RawConnection } from './support/rpc.js'

t.setTimeout(300_000)

// ---------------------------------------------------------------- helpers

interface World {
  provider: TestProvider
  /** every answer the token endpoint sent */
  answers: EndpointAnswer[]
}

/** A provider of this test's own, stopped at teardown, recording every answer. */
async function provider(t: Test, opts: ProviderOptions = {}): Promise<World> {
  const answers: EndpointAnswer[] = []
  const p = await startProvider({ ...opts, onAnswer: (a) => answers.push(a) })
  t.teardown(() => p.stop())
  return { provider: p, answers }
}

/** The token sets of the successful refresh answers, in order. */
function refreshAnswers(w: World): Array<{ access_token: string; refresh_token: string; id_token: string }> {
  return w.answers
    .filter((a) => a.call.grantType === 'refresh_token' && a.status === 200 && !a.call.injected)
    .map((a) => JSON.parse(a.body) as { access_token: string; refresh_token: string; id_token: string })
}

const refreshCalls = (p: TestProvider): number => p.countCalls({ endpoint: 'token', grantType: 'refresh_token' })

/** auth.json as Codex writes it, for a minted token set. */
function authFileFor(tokens: TokenSet, lastRefresh: Date | null = new Date(Date.now() - 60_000)): AuthFile {
  return {
    authMode: 'chatgpt',
    openaiApiKey: null,
    tokens: { idToken: tokens.idToken, accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, accountId: tokens.accountId, extra: {} },
    lastRefresh: lastRefresh === null ? null : formatLastRefresh(lastRefresh),
    extra: {},
  }
}

/** Write auth.json the way Codex does: temp file 0600, rename. Returns the bytes written. */
function writeAuthFile(home: string, auth: AuthFile): Buffer {
  const text = serializeAuthFile(auth)
  const file = path.join(home, 'auth.json')
  const tmp = path.join(home, `.auth-test-${process.pid}-${Math.random().toString(36).slice(2)}`)
  fs.writeFileSync(tmp, text, { mode: 0o600 })
  fs.renameSync(tmp, file)
  return fs.readFileSync(file)
}

async function fileTokens(home: string) {
  const r = await readAuth(home)
  if (r.state !== 'ok' || r.auth.tokens === null) throw new Error(`auth.json is ${r.state}`)
  return r.auth.tokens
}

function daemonArgs(p: TestProvider, kind: 'openai' | 'oidc' = 'openai'): string[] {
  return ['--issuer', p.issuer, '--issuer-kind', kind]
}

async function daemon(t: Test, home: string, p: TestProvider, opts: { kind?: 'openai' | 'oidc'; env?: Record<string, string>; socket?: string } = {}): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ home, socket: opts.socket, args: daemonArgs(p, opts.kind), env: opts.env }))
}

async function until<T>(what: string, check: () => T | Promise<T>, timeoutMs = 15_000, intervalMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v !== undefined && v !== null && v !== false) return v as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** A provider of this test's own and a login minted there, written to a fresh CODEX_HOME as Codex writes it. */
async function loggedIn(t: Test, ttl: ProviderOptions['ttl'], lastRefresh?: Date): Promise<{ w: World; p: TestProvider; minted: TokenSet; home: string; bytes: Buffer }> {
  const w = await provider(t, { ttl })
  const p = w.provider
  const minted = await mintTokens(p)
  const home = await makeHome()
  const bytes = writeAuthFile(home, authFileFor(minted, lastRefresh))
  return { w, p, minted, home, bytes }
}

/** Polls until auth.json's refresh token is no longer `spent`; resolves with the file's tokens. */
function rotatedInFile(what: string, home: string, spent: string, timeoutMs?: number): ReturnType<typeof fileTokens> {
  return until(what, async () => {
    const f = await fileTokens(home)
    return f.refreshToken !== spent ? f : null
  }, timeoutMs)
}

async function status(c: RawConnection): Promise<any> {
  const res = await c.call('status')
  if (res.error) throw new Error(`status failed: ${JSON.stringify(res.error)}`)
  return res.result
}

/** A stripped summary of an answer, safe to print (no token). */
function shape(res: any): string {
  if (res?.error) return `error ${res.error.code} ${JSON.stringify(res.error.data ?? {})}`
  return `result mode=${res?.result?.mode}`
}


// ---------------------------------------------------------------- the storm

t.test('refresh storm: 1000 concurrent getAuth on a due token -> one refresh, one new token for all', async (t) => {
  // The minted access token lives 500 s: exp - 10 min is already past, so it is due at once.
  const w = await provider(t, { ttl: { authorizationCode: 500, refreshToken: 3600 } })
  const p = w.provider
  const minted = await mintTokens(p)
  const home = await makeHome()
  // Not logged in yet: 1000 callers connect first, then the due login appears. The daemon starts
  // the refresh as soon as it reads the file; the token endpoint is slowed down so that the whole
  // storm is written while that one refresh is in flight.
  const d = await daemon(t, home, p)
  const conns = await Promise.all(Array.from({ length: 1000 }, () => rawConnect(d.socket)))
  t.teardown(() => conns.forEach((c) => c.close()))
  p.tokenDelayMs = 1500
  writeAuthFile(home, authFileFor(minted))
  await until('the daemon to start the refresh', async () => (await status(conns[0]!)).refresh.state === 'refreshing')
  const started = Date.now()
  const pending = conns.map((c) => c.call('getAuth'))
  // (The call may still be on its way to the provider; what matters is that no answer came yet.)
  t.notOk(p.calls.some((c) => c.grantType === 'refresh_token' && c.done), 'all 1000 requests were sent before the refresh was answered')
  const results = await Promise.all(pending)
  const wall = Date.now() - started
  t.comment(`1000 getAuth answered in ${wall} ms (token endpoint delayed 1500 ms)`)
  const errors = results.filter((r) => r.error)
  t.equal(errors.length, 0, `no errors (${errors.slice(0, 3).map(shape).join('; ')})`)
  const tokens = new Set(results.map((r) => r.result?.token))
  t.equal(tokens.size, 1, 'all 1000 callers got the same token')
  const served = [...tokens][0] as string
  t.ok(served !== minted.accessToken, 'the token is the new one, not the one that was due')
  t.equal(refreshCalls(p), 1, 'exactly one refresh call at the token endpoint')
  const answers = refreshAnswers(w)
  t.equal(answers.length, 1)
  t.ok(served === answers[0]!.access_token, 'served the access token of that one answer')
  t.ok(results.every((r) => r.result?.mode === 'chatgpt' && r.result?.accountId === minted.accountId), 'mode and account')
  // The rotated refresh token lands in auth.json.
  const file = await rotatedInFile('the rotated refresh token in auth.json', home, minted.refreshToken)
  t.ok(file.refreshToken === answers[0]!.refresh_token, 'auth.json holds the rotated refresh token')
  t.ok(file.accessToken === served && file.idToken === answers[0]!.id_token, 'and the access and id tokens of the same answer')
  t.equal(fs.statSync(path.join(home, 'auth.json')).mode & 0o777, 0o600, 'still 0600')
  t.equal(refreshCalls(p), 1, 'still one call after the commit')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was ever used twice')
})

t.test('refresh storm triggered by getAuth itself (minValiditySeconds): 50 connections x 20 pipelined', async (t) => {
  // A 30-minute token is due only at 20 min: no timer refresh. Asking for 40 minutes of validity
  // makes every getAuth need a refresh; the refreshed token (1 h) satisfies it.
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 1800, refreshToken: 3600 })
  const d = await daemon(t, home, p)
  const conns = await Promise.all(Array.from({ length: 50 }, () => rawConnect(d.socket)))
  t.teardown(() => conns.forEach((c) => c.close()))
  const st = await status(conns[0]!)
  t.equal(st.refresh.state, 'idle')
  t.ok(Date.parse(st.tokens.nextRefreshAt) > Date.now() + 15 * 60_000, 'not due by the clock')
  t.equal(refreshCalls(p), 0, 'nothing refreshed before the storm')
  const results = await Promise.all(conns.flatMap((c) => Array.from({ length: 20 }, () => c.call('getAuth', { minValiditySeconds: 2400 }))))
  t.equal(results.length, 1000)
  t.equal(results.filter((r) => r.error).length, 0, 'no errors')
  const tokens = new Set(results.map((r) => r.result?.token))
  t.equal(tokens.size, 1, 'all 1000 callers got the same token')
  t.ok([...tokens][0] !== minted.accessToken, 'a new token')
  t.equal(refreshCalls(p), 1, 'exactly one refresh call')
  await until('auth.json holds the rotated refresh token', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[0]?.refresh_token)
  // A second round is served without another call (the new token is valid for 40 minutes).
  const again = await Promise.all(conns.map((c) => c.call('getAuth', { minValiditySeconds: 2400 })))
  t.ok(again.every((r) => r.result?.token === [...tokens][0]), 'the same token again')
  t.equal(refreshCalls(p), 1)
})

// ---------------------------------------------------------------- another writer

t.test('another writer refreshed first: the daemon adopts its file and makes no call', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 1800, refreshToken: 3600 })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const first = await c.call('getAuth')
  t.ok(first.result?.token === minted.accessToken, 'serves the file’s token')

  // Another process (a Codex) spends the refresh token and renames its result in.
  const other = await codexRefresh(p, minted.refreshToken, { refreshReason: 'proactive_expiry' })
  t.equal(other.status, 200)
  const o = other.json as { access_token: string; refresh_token: string; id_token: string }
  const before = refreshCalls(p)
  writeAuthFile(home, authFileFor({ ...minted, accessToken: o.access_token, refreshToken: o.refresh_token, idToken: o.id_token }, new Date()))
  // Ask for more validity than the old token has (30 min) but the new one has (1 h): if the
  // daemon had not adopted the file it would spend the old, already rotated refresh token.
  const res = await c.call('getAuth', { minValiditySeconds: 2400 })
  t.notOk(res.error, shape(res))
  t.ok(res.result?.token === o.access_token, 'serves the other writer’s token')
  await until('the watcher has the new file', async () => (await c.call('getAuth')).result?.token === o.access_token)
  t.equal(refreshCalls(p), before, 'the daemon made no refresh call')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'and never spent the rotated refresh token')
  const tk = await fileTokens(home)
  t.ok(tk.refreshToken === o.refresh_token, 'the other writer’s file is untouched')
  const adopted = d.logs.some((l) => l.includes('auth.json changed before refresh; adopting it'))
  t.comment(adopted ? 'adopted by the re-read before spending (step 1)' : 'adopted by the watcher before the refresh was due')
})

t.test('another writer’s file that needs a refresh too: getAuth refreshes the adopted tokens', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 1800, refreshToken: 3600 })
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  t.ok((await c.call('getAuth')).result?.token === minted.accessToken)
  // A new login (another 30-minute token) is renamed in, and at once a caller wants 40 minutes.
  const relogin = await mintTokens(p)
  writeAuthFile(home, authFileFor(relogin))
  const res = await c.call('getAuth', { minValiditySeconds: 2400 })
  t.notOk(res.error, shape(res))
  const spent = w.answers.filter((a) => a.call.grantType === 'refresh_token').map((a) => a.request.get('refresh_token'))
  t.equal(spent.length, 1, 'one refresh call')
  t.ok(spent[0] === relogin.refreshToken, 'with the adopted refresh token, never the replaced one')
  t.ok(res.result?.token === refreshAnswers(w)[0]?.access_token, 'serves the refreshed token')
  await until('the refresh in auth.json', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[0]?.refresh_token)
  const adopted = d.logs.some((l) => l.includes('auth.json changed before refresh; adopting it'))
  t.comment(adopted ? 'adopted by the re-read before spending (step 1), then refreshed' : 'the watcher had the new file first')
})

// ---------------------------------------------------------------- failures

interface FailureCase {
  name: string
  answer?: FailAnswer
  /** instead of an injected answer: make the real provider refuse */
  prepare?: (p: TestProvider, minted: TokenSet) => Promise<void>
  ttl?: ProviderOptions['ttl']
  kind: 'expired' | 'reused' | 'revoked' | 'rejected' | 'transient'
}

const failureCases: FailureCase[] = [
  { name: '401 refresh_token_reused', answer: FAILURES.reused, kind: 'reused' },
  { name: '401 refresh_token_expired', answer: FAILURES.expired, kind: 'expired' },
  { name: '401 refresh_token_invalidated', answer: FAILURES.invalidated, kind: 'revoked' },
  { name: '400 invalid_grant', answer: FAILURES.invalidGrant, kind: 'rejected' },
  { name: '400 error.code refresh_token_reused', answer: FAILURES.reused400, kind: 'reused' },
  { name: '401 unauthorized', answer: FAILURES.unauthorized, kind: 'rejected' },
  {
    name: 'real reuse: the refresh token was already spent by someone else',
    prepare: async (p, minted) => {
      const r = await codexRefresh(p, minted.refreshToken)
      if (r.status !== 200) throw new Error(`setup refresh answered ${r.status}`)
    },
    kind: 'reused',
  },
  {
    name: 'real expiry: the refresh token outlived its lifetime',
    ttl: { refreshTokenLifetime: 1 },
    kind: 'expired',
  },
  { name: '400 unsupported_grant_type', answer: FAILURES.unsupportedGrantType, kind: 'transient' },
  { name: '403', answer: FAILURES.forbidden, kind: 'transient' },
  { name: '429', answer: FAILURES.rateLimited, kind: 'transient' },
  { name: '500', answer: FAILURES.serverError, kind: 'transient' },
  { name: '200 non-JSON', answer: FAILURES.nonJson, kind: 'transient' },
  { name: '200 {} (no tokens)', answer: FAILURES.emptyJson, kind: 'transient' },
  { name: 'network error (connection reset)', answer: FAILURES.network, kind: 'transient' },
]

t.test('failures: -32002 with data.kind, status, file untouched, no retry storm', async (t) => {
  // Every case has its own provider and home. Access tokens are minted with a 1-second lifetime,
  // all at once, then the test waits once until all of them have expired.
  const prepared = await Promise.all(
    failureCases.map(async (fc) => {
      const w = await provider(t, { ttl: { authorizationCode: 1, refreshToken: 3600, ...fc.ttl } })
      const minted = await mintTokens(w.provider)
      return { fc, w, minted, exp: decodeJwtPayload(minted.accessToken).exp as number }
    }),
  )
  const lastExp = Math.max(...prepared.map((x) => x.exp))
  t.ok(prepared.every((x) => x.exp - (decodeJwtPayload(x.minted.accessToken).iat as number) === 1), 'minted with a 1 s lifetime')
  await until('the minted access tokens to expire', () => Date.now() > lastExp * 1000 + 50, 5000)

  for (const { fc, w, minted } of prepared) {
    await t.test(fc.name, async (t) => {
      const p = w.provider
      const permanent = fc.kind !== 'transient'
      if (fc.prepare) await fc.prepare(p, minted)
      if (fc.answer) p.failNext(1, fc.answer)
      const callsBefore = refreshCalls(p)
      const home = await makeHome()
      const bytes = writeAuthFile(home, authFileFor(minted))
      const d = await daemon(t, home, p)
      const c = await connect(t, d)

      const res = await c.call('getAuth')
      t.equal(res.error?.code, -32002, `getAuth on the expired token: ${shape(res)}`)
      t.equal(res.error?.data?.reason, 'refresh_failed')
      t.equal(res.error?.data?.kind, fc.kind, 'data.kind')
      t.notOk(JSON.stringify(res).includes(minted.refreshToken), 'no refresh token in the error')

      const st = await status(c)
      const callsNow = refreshCalls(p)
      if (!permanent && callsNow - callsBefore > 1) {
        // Only on a machine so loaded that the 1 s backoff passed between two round trips.
        t.comment('the retry came before status could be read; the backoff checks are skipped')
        return
      }
      t.equal(callsNow - callsBefore, 1, 'one attempt so far')
      t.equal(st.refresh.state, permanent ? 'failed' : 'backoff', 'status.refresh.state')
      t.equal(st.refresh.lastError?.reason, fc.kind, 'status.refresh.lastError.reason')
      t.type(st.refresh.lastError?.message, 'string')
      t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'auth.json byte-for-byte untouched')
      t.equal(st.loggedIn, true, 'still logged in (the file is never deleted for a failure)')

      if (permanent) {
        t.equal(st.refresh.nextAttemptAt, null, 'no next attempt')
        t.equal(st.tokens.nextRefreshAt, null, 'nothing scheduled')
        // getAuth and even a forced refresh make no call for a refresh token known to be dead.
        for (let i = 0; i < 3; i++) {
          const again = await c.call('getAuth', { minValiditySeconds: 0 })
          t.equal(again.error?.data?.kind, fc.kind, `getAuth again (${i + 1})`)
        }
        const forced = await c.call('refresh')
        t.equal(forced.error?.code, -32002, 'a forced refresh answers -32002 too')
        t.equal(forced.error?.data?.kind, fc.kind)
        t.equal(refreshCalls(p) - callsBefore, 1, 'no further calls')
        t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'auth.json still untouched')
        // Until the file changes: a new login (due at once) is refreshed again.
        p.setTtl({ authorizationCode: 500, refreshTokenLifetime: 30 * 86400 })
        const relogin = await mintTokens(p)
        writeAuthFile(home, authFileFor(relogin))
        const ok = await until('a refresh of the new login', async () => {
          const r = await c.call('getAuth')
          return r.result && r.result.token !== relogin.accessToken ? r : null
        })
        t.ok(ok.result.token !== minted.accessToken, 'served a refreshed token of the new login')
        t.equal(refreshCalls(p) - callsBefore, 2, 'exactly one more call, with the new refresh token')
        const st2 = await status(c)
        t.equal(st2.refresh.state, 'idle')
        t.equal(st2.refresh.lastError, null, 'the error is cleared')
      } else {
        const nextAttemptAt = Date.parse(st.refresh.nextAttemptAt)
        t.ok(Number.isFinite(nextAttemptAt), 'nextAttemptAt is set')
        const lastErrorAt = p.calls.filter((x) => x.grantType === 'refresh_token').at(-1)!.at
        const delay = nextAttemptAt - lastErrorAt
        // 1 s +20% from when the daemon had the answer, a little after it arrived at the provider.
        t.ok(delay >= 1000 && delay <= 1200 + 2000, `the first backoff is 1-1.2 s (${delay} ms after the failed call arrived)`)
        // getAuth during the backoff does not start another attempt early.
        for (let i = 0; i < 3; i++) {
          const again = await c.call('getAuth')
          t.equal(again.error?.data?.kind, 'transient', `getAuth during the backoff (${i + 1})`)
        }
        if (Date.now() < nextAttemptAt) t.equal(refreshCalls(p) - callsBefore, 1, 'no early attempt')
        // The retry comes on its own, not before nextAttemptAt, and succeeds (the answer is real).
        await until('the retry', () => refreshCalls(p) - callsBefore >= 2, 10_000)
        const retry = p.calls.filter((x) => x.grantType === 'refresh_token')[callsBefore + 1]!
        t.ok(retry.at >= nextAttemptAt, `the retry came ${retry.at - nextAttemptAt} ms after nextAttemptAt, not before`)
        const tk = await rotatedInFile('the retried refresh to land in auth.json', home, minted.refreshToken)
        t.ok(tk.refreshToken === refreshAnswers(w).at(-1)?.refresh_token, 'the rotated refresh token is saved')
        const ok = await c.call('getAuth')
        t.ok(ok.result?.token === tk.accessToken, 'getAuth serves it')
        const st2 = await status(c)
        t.equal(st2.refresh.state, 'idle')
        t.equal(st2.refresh.nextAttemptAt, null)
        t.equal(refreshCalls(p) - callsBefore, 2, 'two calls in all')
      }
      t.equal(d.logs.filter((l) => l.includes(minted.refreshToken) || l.includes(minted.accessToken)).length, 0, 'no token in the logs')
    })
  }
})

t.test('transient failures back off 1 s, 2 s, ... and recover', async (t) => {
  const { w, p, minted, home, bytes } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  p.failNext(3, FAILURES.serverError)
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const seen: Array<{ attempt: number; next: number }> = []
  // Each time a new failure is recorded, nextAttemptAt moves; the next call never precedes it.
  await until(
    'three failed attempts and a success',
    async () => {
      const st = await status(c)
      const n = refreshCalls(p)
      if (st.refresh.state === 'backoff' && st.refresh.nextAttemptAt && !seen.some((s) => s.attempt === n)) {
        if (refreshCalls(p) === n) seen.push({ attempt: n, next: Date.parse(st.refresh.nextAttemptAt) })
      }
      return n >= 4 && (await fileTokens(home)).refreshToken !== minted.refreshToken
    },
    20_000,
  )
  const calls = p.calls.filter((x) => x.grantType === 'refresh_token')
  t.equal(calls.length, 4, 'three failures, then one success')
  for (const s of seen) {
    const nextCall = calls[s.attempt]!
    t.ok(nextCall.at >= s.next, `attempt ${s.attempt + 1} was not made before nextAttemptAt`)
  }
  const gaps = calls.slice(1).map((x, i) => x.at - calls[i]!.at)
  t.comment(`gaps between attempts: ${gaps.join(', ')} ms`)
  t.ok(gaps[0]! >= 800 && gaps[1]! >= 1600 && gaps[2]! >= 3200, 'doubling from 1 s (±20%)')
  t.notOk(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'written once it worked')
})

// ---------------------------------------------------------------- locks held by flock(1)

t.test('auth.json.lock held by flock(1) during our commit: tokens pending, then committed; SIGTERM parks them', async (t) => {
  const { w, p, minted, home, bytes } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  const holder = await holdWithFlock(t, path.join(home, 'auth.json.lock'))
  const d = await daemon(t, home, p)
  const c = await connect(t, d)

  // The refresh happens (no lock is needed for the HTTP call) and its token is served at once.
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  t.ok(res.result.token !== minted.accessToken, 'getAuth serves the NEW token while it is pending')
  t.equal(refreshCalls(p), 1)
  const answer = refreshAnswers(w)[0]!
  t.ok(res.result.token === answer.access_token)
  // After the 5 s lock bound: refresh_pending.
  const st = await until('refresh_pending', async () => {
    const s = await status(c)
    return s.problems.some((x: any) => x.code === 'refresh_pending') ? s : null
  }, 12_000)
  t.ok(st.loggedIn, 'still logged in')
  t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(bytes), 'auth.json still holds the old tokens, untouched')
  t.ok((await c.call('getAuth')).result.token === answer.access_token, 'still serving the pending token')

  // Release: the commit (retried with backoff) lands.
  await holder.release()
  const landed = await rotatedInFile('the pending tokens in auth.json', home, minted.refreshToken, 20_000)
  t.ok(landed.refreshToken === answer.refresh_token && landed.accessToken === answer.access_token, 'the refreshed tokens were written')
  await until('refresh_pending to clear', async () => !(await status(c)).problems.some((x: any) => x.code === 'refresh_pending'))
  t.equal(refreshCalls(p), 1, 'one refresh call in all: the commit retries, the refresh is not repeated')

  // Again, and this time SIGTERM while the tokens are pending: they are parked.
  const holder2 = await holdWithFlock(t, path.join(home, 'auth.json.lock'))
  const forced = await c.call('refresh')
  t.notOk(forced.error, shape(forced))
  t.equal(refreshCalls(p), 2)
  const answer2 = refreshAnswers(w)[1]!
  t.ok(forced.result.token === answer2.access_token, 'the forced refresh serves its token')
  const fileBefore = fs.readFileSync(path.join(home, 'auth.json'))
  const stopped = Date.now()
  const exit = await d.stop('SIGTERM')
  t.comment(`SIGTERM took ${Date.now() - stopped} ms (it tries the commit once more before parking)`)
  t.same(exit, { code: 0, signal: null }, 'clean exit')
  const park = path.join(home, 'authd.pending.json')
  t.ok(fs.existsSync(park), 'authd.pending.json parked')
  t.equal(fs.statSync(park).mode & 0o777, 0o600, 'parked 0600')
  t.ok(fs.readFileSync(path.join(home, 'auth.json')).equals(fileBefore), 'auth.json untouched while locked')
  t.ok(d.logs.some((l) => l.includes('parked in authd.pending.json')), 'logged')
  t.notOk(fs.readFileSync(park, 'utf8').includes(landed.refreshToken), 'the park names the spent token only by its hash')

  // The next start (lock released) commits the parked tokens and deletes the park file.
  await holder2.release()
  const d2 = await daemon(t, home, p)
  t.notOk(fs.existsSync(park), 'the park file is deleted')
  const tk = await fileTokens(home)
  t.ok(tk.refreshToken === answer2.refresh_token && tk.accessToken === answer2.access_token, 'auth.json holds the parked refresh')
  const c2 = await connect(t, d2)
  t.ok((await c2.call('getAuth')).result.token === answer2.access_token, 'and the next daemon serves it')
  t.equal(refreshCalls(p), 2, 'no refresh was needed for it')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was spent twice')
})

t.test('a parked result whose lock is still held at the next start is kept pending, not lost', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  const holder = await holdWithFlock(t, path.join(home, 'auth.json.lock'))
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  const answer = refreshAnswers(w)[0]!
  t.same(await d.stop('SIGTERM'), { code: 0, signal: null })
  t.ok(fs.existsSync(path.join(home, 'authd.pending.json')), 'parked')
  // Still locked when the next daemon starts: it cannot commit within the 5 s bound.
  const d2 = await daemon(t, home, p)
  const c2 = await connect(t, d2)
  const g = await c2.call('getAuth')
  t.ok(g.result?.token === answer.access_token, 'the next daemon serves the parked token')
  t.ok((await status(c2)).problems.some((x: any) => x.code === 'refresh_pending'), 'reported as refresh_pending')
  await holder.release()
  const tk = await rotatedInFile('the parked tokens in auth.json', home, minted.refreshToken, 20_000)
  t.ok(tk.refreshToken === answer.refresh_token, 'committed once the lock was free')
  t.equal(refreshCalls(p), 1, 'no second refresh')
})

// ---------------------------------------------------------------- odd 2xx answers

t.test('a 2xx answer without token_type still has its rotated refresh token saved', async (t) => {
  for (const kind of ['openai', 'oidc'] as const) {
    for (const idTokenShape of ['jwt', 'not-a-jwt'] as const) {
      await t.test(`kind ${kind}, id_token ${idTokenShape}`, async (t) => {
        const w = await provider(t, { ttl: { authorizationCode: 500, refreshToken: 3600 } })
        const p = w.provider
        const minted = await mintTokens(p)
        // A second real token set plays the server's answer (it is a valid, unspent set).
        p.setTtl({ authorizationCode: 3600 })
        const next = await mintTokens(p)
        const body = {
          access_token: next.accessToken,
          refresh_token: next.refreshToken,
          id_token: idTokenShape === 'jwt' ? next.idToken : 'not-a-jwt',
        }
        p.failNext(1, { status: 200, body })
        const home = await makeHome()
        writeAuthFile(home, authFileFor(minted))
        const d = await daemon(t, home, p, { kind })
        const c = await connect(t, d)
        const res = await c.call('getAuth')
        t.notOk(res.error, shape(res))
        t.ok(res.result?.token === next.accessToken, 'serves the answer’s access token')
        const tk = await rotatedInFile('the answer in auth.json', home, minted.refreshToken)
        t.ok(tk.refreshToken === next.refreshToken, 'the rotated refresh token is saved')
        t.ok(tk.accessToken === next.accessToken, 'with the access token')
        if (idTokenShape === 'jwt') t.ok(tk.idToken === next.idToken, 'and the id token')
        else t.ok(tk.idToken === minted.idToken, 'an id token Codex would reject is not written: the old one stays')
        const text = fs.readFileSync(path.join(home, 'auth.json'), 'utf8')
        t.ok(parseAuthFile(text, 'auth.json').ok, 'auth.json parses')
        t.equal(refreshCalls(p), 1)
        const call = p.calls.find((x) => x.grantType === 'refresh_token')!
        t.equal(call.via, kind === 'openai' ? 'json' : 'form', kind === 'openai' ? 'Codex’s JSON body' : 'openid-client’s form body')
      })
    }
  }
})

t.test('kind oidc: a normal refresh through openid-client', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  const d = await daemon(t, home, p, { kind: 'oidc' })
  const c = await connect(t, d)
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  const answer = refreshAnswers(w)[0]!
  t.ok(res.result?.token === answer.access_token)
  await until('the answer in auth.json', async () => (await fileTokens(home)).refreshToken === answer.refresh_token)
  t.equal(refreshCalls(p), 1)
})

// ---------------------------------------------------------------- HTTP proxy

function tinyproxyPath(): string | null {
  for (const p of ['/usr/bin/tinyproxy', '/usr/sbin/tinyproxy', '/usr/local/bin/tinyproxy']) if (fs.existsSync(p)) return p
  return null
}

t.test('refresh through a real HTTP proxy (tinyproxy) on loopback', async (t) => {
  if (tinyproxyPath() === null) return void t.fail('tinyproxy is not installed (.ci/run installs the Debian package)')
  const dir = tempDir('cad-tp-')
  const log = path.join(dir, 'tinyproxy.log')
  const [port] = (await freePorts(1)) as [number]
  const conf = path.join(dir, 'tinyproxy.conf')
  fs.writeFileSync(conf, [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 60', 'Allow 127.0.0.1', 'LogLevel Info', `LogFile "${log}"`, 'MaxClients 50', ''].join('\n'))
  const proxy = spawn(tinyproxyPath()!, ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  const proxyExited = new Promise<void>((r) => proxy.once('exit', () => r()))
  t.teardown(async () => {
    if (proxy.exitCode === null && proxy.signalCode === null) proxy.kill('SIGTERM')
    await proxyExited
  })
  await until('tinyproxy to listen', () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    }),
  )

  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 500, refreshToken: 3600 })
  // undici's EnvHttpProxyAgent proxies every host, loopback included, when NO_PROXY is unset or
  // empty (it has no built-in localhost exception): the provider's 127.0.0.1 goes through it.
  const proxyUrl = `http://127.0.0.1:${port}`
  const d = await daemon(t, home, p, { env: { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl } })
  const c = await connect(t, d)
  const res = await c.call('getAuth')
  t.notOk(res.error, shape(res))
  t.ok(res.result?.token !== minted.accessToken, 'refreshed')
  t.equal(refreshCalls(p), 1)
  const text = await until('tinyproxy to log the request', () => {
    const s = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''
    return new RegExp(`(CONNECT|POST) (http://)?127\\.0\\.0\\.1:${p.port}`).test(s) ? s : null
  })
  const line = text.split('\n').find((l) => l.includes(`127.0.0.1:${p.port}`) && /Request/.test(l))
  t.ok(line, `tinyproxy saw the request: ${line?.replace(/^.*Request[^:]*: /, '')}`)
  t.notOk(text.includes(minted.refreshToken), 'the proxy log holds no token (tunnelled)')
  await until('the refresh in auth.json', async () => (await fileTokens(home)).refreshToken !== minted.refreshToken)

  // With the proxy gone, refreshing fails as a network error: the traffic really depends on it.
  proxy.kill('SIGTERM')
  await proxyExited
  const forced = await c.call('refresh')
  t.equal(forced.error?.code, -32002, 'no proxy, no refresh')
  t.equal(forced.error?.data?.kind, 'transient')
  t.equal(refreshCalls(p), 1, 'nothing reached the provider directly')
})

// ---------------------------------------------------------------- CLI and the refresh method

t.test('codex-auth refresh forces a refresh; concurrent refresh calls share one', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 3600, refreshToken: 3600 }, new Date())
  const d = await daemon(t, home, p)
  const c = await connect(t, d)
  t.ok((await c.call('getAuth')).result.token === minted.accessToken, 'a fresh token: no refresh yet')
  t.equal(refreshCalls(p), 0)

  // Forced: skips the 30 s loop guard (last_refresh is now) and the due time.
  const cli = await runCli(['refresh'], { socket: d.socket })
  t.equal(cli.code, 0, `exit 0 (${cli.stderr.trim()})`)
  t.match(cli.stdout, /^Token refreshed; valid until /)
  t.notOk(cli.stdout.includes(minted.accessToken) || cli.stderr.includes('eyJ'), 'prints no token')
  t.equal(refreshCalls(p), 1)
  const after = await c.call('getAuth')
  t.ok(after.result.token !== minted.accessToken, 'the token changed')
  t.ok(after.result.token === refreshAnswers(w)[0]!.access_token)

  // Two concurrent refresh calls (and a getAuth) while one is in flight: one call.
  p.tokenDelayMs = 1000
  const c2 = await connect(t, d)
  const [r1, r2] = await Promise.all([c.call('refresh'), c2.call('refresh')])
  t.notOk(r1.error || r2.error, `${shape(r1)} / ${shape(r2)}`)
  t.ok(r1.result.token === r2.result.token, 'both got the same new token')
  t.ok(r1.result.token !== after.result.token, 'a new one')
  t.equal(refreshCalls(p), 2, 'one provider call for both')
  const json = await runCli(['--json', 'refresh'], { socket: d.socket })
  t.equal(json.code, 0)
  t.equal(refreshCalls(p), 3)
  t.notOk(json.stdout.includes(refreshAnswers(w)[2]!.access_token), '--json prints no token either')
  await until('the last refresh in auth.json', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[2]!.refresh_token)
})

t.test('codex-auth refresh reports a permanent failure with exit 3', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 3600, refreshToken: 3600 }, new Date())
  const d = await daemon(t, home, p)
  p.failNext(1, FAILURES.invalidated)
  const cli = await runCli(['refresh'], { socket: d.socket })
  t.equal(cli.code, 3, 'exit 3')
  t.match(cli.stderr, /revoked/)
  t.equal(refreshCalls(p), 1)
  const again = await runCli(['refresh'], { socket: d.socket })
  t.equal(again.code, 3, 'still 3')
  t.equal(refreshCalls(p), 1, 'the dead refresh token is not spent again')
})

t.test('serving an API key, the daemon still keeps the file’s ChatGPT tokens fresh; the key and unknown fields survive', async (t) => {
  const w = await provider(t, { ttl: { authorizationCode: 500, refreshToken: 3600 } })
  const p = w.provider
  const minted = await mintTokens(p)
  const home = await makeHome()
  const apiKey = 'sk-proj-test-0000000000000000000000000000abcde'
  const auth = authFileFor(minted)
  auth.openaiApiKey = apiKey
  auth.extra = { written_by_someone_else: { keep: true } }
  auth.tokens!.extra = { token_extra: 'kept' }
  writeAuthFile(home, auth)
  const d = stopAtTeardown(t, await startDaemon({ home, args: [...daemonArgs(p), '-c', 'preferred_auth_method="apikey"'] }))
  const c = await connect(t, d)
  const g = await c.call('getAuth')
  t.equal(g.result?.mode, 'apikey', 'an API key is served')
  // The due ChatGPT tokens are refreshed anyway (Codex 0.171 uses them regardless).
  const tk = await rotatedInFile('the ChatGPT tokens refreshed in auth.json', home, minted.refreshToken)
  t.ok(tk.refreshToken === refreshAnswers(w)[0]?.refresh_token, 'rotated refresh token saved')
  const r = await readAuth(home)
  if (r.state !== 'ok') throw new Error('auth.json unreadable')
  t.ok(r.auth.openaiApiKey === apiKey, 'OPENAI_API_KEY kept')
  t.same(r.auth.extra, { written_by_someone_else: { keep: true } }, 'unknown top-level field kept')
  t.same(r.auth.tokens?.extra, { token_extra: 'kept' }, 'unknown token field kept')
  t.equal(r.auth.authMode, 'chatgpt', 'auth_mode kept')
  t.not(r.auth.lastRefresh, auth.lastRefresh, 'last_refresh updated')
  // A forced refresh in API-key mode refreshes the tokens and answers with the API-key grant.
  const forced = await c.call('refresh')
  t.equal(forced.result?.mode, 'apikey')
  t.ok(forced.result?.token === apiKey)
  t.equal(refreshCalls(p), 2)
  await until('the forced refresh in auth.json', async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[1]?.refresh_token)
})

// ---------------------------------------------------------------- authChanged

t.test('authChanged: exactly one notification per refresh', async (t) => {
  const { w, p, minted, home } = await loggedIn(t, { authorizationCode: 3600, refreshToken: 3600 }, new Date())
  const d = await daemon(t, home, p)
  const sub = await connect(t, d)
  const notes: any[] = []
  let raw = ''
  sub.socket.on('data', (chunk: string | Buffer) => {
    raw += chunk.toString()
  })
  const origNext = sub.next.bind(sub)
  // Collect every notification; replies are matched by id in call().
  sub.next = async () => {
    for (;;) {
      const m = await origNext()
      if (m && m.method === 'authChanged') notes.push(m)
      else return m
    }
  }
  const s = await sub.call('subscribe')
  t.same(s.result, { subscribed: true })
  const other = await connect(t, d)
  const tokens = [minted.accessToken]
  for (let i = 1; i <= 3; i++) {
    const r = await other.call('refresh')
    t.notOk(r.error, shape(r))
    tokens.push(r.result.token)
    await until(`refresh ${i} in auth.json`, async () => (await fileTokens(home)).refreshToken === refreshAnswers(w)[i - 1]!.refresh_token)
    // The watcher sees our own write too; let it (and its trailing re-read) run, then a round trip
    // on the subscribed connection delivers anything sent before it.
    await new Promise((r) => setTimeout(r, 250))
    await status(sub)
    t.equal(notes.length, i, `one authChanged after refresh ${i}`)
  }
  for (const n of notes) {
    t.equal(n.params.loggedIn, true)
    t.equal(n.params.mode, 'chatgpt')
    t.equal(n.params.problems.length, 0)
  }
  t.notOk(tokens.some((tk) => raw.includes(tk)), 'no token in any notification')
  t.notOk(raw.includes(minted.refreshToken), 'no refresh token either')
})
