// The real Codex CLI and the daemon writing one CODEX_HOME at the same time (issue 7, item 4).
// Three loops run concurrently against one home:
//   codex     — the real `codex login --with-api-key` (distinct keys) and `codex logout`;
//   rpc       — the daemon's own writes over JSON-RPC: login apikey (distinct keys), a full
//               browser login (a fresh token set), forced refreshes, logout;
//   cli       — codex-auth through the daemon: login --with-api-key, refresh, logout;
// while a reader parses auth.json every few milliseconds. Every writer's operation is recorded
// with its [start, end] interval and what it writes. Checked:
//   - the reader never saw an empty, unparsable or foreign file: each state it saw was absent or
//     exactly something some writer wrote (one API key alone, or one token set one answer gave);
//   - the final file is the result of an operation that no later operation superseded (nothing
//     is lost that a later writer did not deliberately replace); absent only after a logout;
//   - the daemon's getAuth equals the file at the end; Codex never hit a lock timeout.
//
// Reproduce with CONCURRENT_SEED=<seed>; CONCURRENT_ITERATIONS (default 20 per loop).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile } from '../src/codex/authfile.js'
import { driveAuthorization } from './support/browser.js'
import { requireCodex, startCodexWorld } from './support/codex.js'
import { runCli, startDaemon, stopAtTeardown } from './support/daemon.js'
import { followCallback } from './support/login-helpers.js'
import { startProvider, type EndpointAnswer } from './support/provider.js'
import { freePorts, mulberry32, reliabilityComment, Wire } from './support/reliability.js'
import { registerSecret } from './support/secrets.js'
import { until } from './support/until.js'

// 60 real Codex and CLI runs: 85 s at load ~15, 159 s at load ~20 (the 180 s it had was too tight).

const ITERATIONS = Number(process.env.CONCURRENT_ITERATIONS ?? 20)
const SEED = Number(process.env.CONCURRENT_SEED ?? Math.floor(Math.random() * 2 ** 31))

/** What an operation leaves in auth.json if it is the last one. */
type Effect =
  | { kind: 'key'; key: string }
  | { kind: 'tokens'; grant: 'authorization_code' | 'refresh_token' }
  | { kind: 'delete' }

interface OpRecord {
  loop: string
  what: string
  effect: Effect
  start: number
  end: number
  /** it did what it says (exit 0 / success answer) */
  ok: boolean
  /** refreshes write only if the file still holds the token they spent: a conditional writer */
  conditional: boolean
}

interface Issued {
  refresh: string
  id: string
  grant: string
  at: number
}

await requireCodex()

t.test(`Codex CLI and the daemon writing one home concurrently (3 loops x ${ITERATIONS})`, async (t) => {
  t.comment(`seed ${SEED} (CONCURRENT_SEED=${SEED} reproduces the schedule; the interleaving itself is the machine's)`)
  const began = Date.now()
  const issued = new Map<string, Issued>()
  const onAnswer = (a: EndpointAnswer): void => {
    if (a.call.endpoint !== 'token' || a.status !== 200) return
    const b = JSON.parse(a.body) as { access_token?: string; refresh_token?: string; id_token?: string }
    if (b.access_token && b.refresh_token && b.id_token) {
      issued.set(b.access_token, { refresh: b.refresh_token, id: b.id_token, grant: a.call.grantType ?? '', at: Date.now() })
    }
  }
  const p = await startProvider({ ttl: { authorizationCode: 1800, refreshToken: 1800 }, onAnswer })
  t.teardown(() => p.stop())
  const world = await startCodexWorld(p)
  t.teardown(() => world.close())
  const ports = await freePorts(2)
  const d = stopAtTeardown(
    t,
    await startDaemon({ args: ['--issuer', p.issuer, '--issuer-kind', 'openai', '--login-ports', ports.join(',')] }),
  )
  const home = d.home
  world.writeConfig(home)
  const file = path.join(home, 'auth.json')

  const ops: OpRecord[] = []
  const keys = new Set<string>()
  const problems: string[] = []
  const newKey = (who: string, i: number, rnd: () => number): string => {
    const k = `sk-conc-${who}-${i}-${Math.floor(rnd() * 1e9).toString(36)}-0123456789`
    registerSecret(k, `API key (concurrent test, ${who})`)
    keys.add(k)
    return k
  }
  const record = async (loop: string, what: string, effect: Effect, run: () => Promise<boolean>, conditional = false): Promise<void> => {
    const start = Date.now()
    let ok = false
    try {
      ok = await run()
    } catch (e) {
      problems.push(`${loop} ${what}: ${(e as Error).message}`)
    }
    ops.push({ loop, what, effect, start, end: Date.now(), ok, conditional })
  }

  // ---- the reader: parse auth.json as fast as it can while the loops run
  const reader = { reads: 0, absent: 0, keys: 0, tokens: 0, bad: 0 }
  let running = true
  const readerLoop = (async () => {
    while (running) {
      let text: string | null = null
      try {
        text = fs.readFileSync(file, 'utf8')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
      }
      reader.reads++
      if (text === null) reader.absent++
      else {
        const parsed = parseAuthFile(text, file)
        if (!parsed.ok) {
          reader.bad++
          problems.push(`reader: ${text.length === 0 ? 'empty file' : `unparsable file (${parsed.problem.message})`}`)
        } else if (parsed.auth.tokens === null) {
          if (parsed.auth.authMode === 'apikey' && parsed.auth.openaiApiKey !== null && keys.has(parsed.auth.openaiApiKey)) reader.keys++
          else {
            reader.bad++
            problems.push('reader: a file that is neither an API-key login of ours nor a token set')
          }
        } else {
          const tk = parsed.auth.tokens
          const set = issued.get(tk.accessToken)
          if (set && set.refresh === tk.refreshToken && set.id === tk.idToken && parsed.auth.openaiApiKey === null) reader.tokens++
          else {
            reader.bad++
            problems.push('reader: tokens that no single answer gave (or mixed with a key)')
          }
        }
      }
      await new Promise((r) => setTimeout(r, 2))
    }
  })()

  // ---- loop 1: the real Codex CLI
  const codexLoop = async (): Promise<void> => {
    const rnd = mulberry32(SEED)
    for (let i = 0; i < ITERATIONS; i++) {
      if (rnd() < 0.7) {
        const key = newKey('codex', i, rnd)
        await record('codex', 'codex login --with-api-key', { kind: 'key', key }, async () => {
          const r = await world.codex(home, ['login', '--with-api-key'], { input: `${key}\n`, timeoutSec: 30 })
          if (/lock timed out/.test(r.stderr)) problems.push(`codex login ${i}: lock timed out`)
          if (r.code !== 0) problems.push(`codex login ${i}: exit ${r.code}`)
          return r.code === 0
        })
      } else {
        await record('codex', 'codex logout', { kind: 'delete' }, async () => {
          const r = await world.codex(home, ['logout'], { timeoutSec: 30 })
          if (/lock timed out/.test(r.stderr)) problems.push(`codex logout ${i}: lock timed out`)
          if (r.code !== 0) problems.push(`codex logout ${i}: exit ${r.code}`)
          return r.code === 0
        })
      }
    }
  }

  // ---- loop 2: the daemon's own writes over JSON-RPC
  const rpcWire = await Wire.connect(d.socket)
  t.teardown(() => rpcWire.close())
  const rpcLoop = async (): Promise<void> => {
    const rnd = mulberry32(SEED ^ 0x5bd1e995)
    for (let i = 0; i < ITERATIONS; i++) {
      const roll = rnd()
      if (roll < 0.3) {
        const key = newKey('rpc', i, rnd)
        await record('rpc', 'login apikey', { kind: 'key', key }, async () => {
          const a = await rpcWire.call('login', { method: 'apikey', apiKey: key }, 20_000)
          if (a.error) problems.push(`rpc login apikey ${i}: ${a.error.code} ${a.error.message}`)
          return a.result?.status === 'succeeded'
        })
      } else if (roll < 0.55) {
        await record('rpc', 'browser login', { kind: 'tokens', grant: 'authorization_code' }, async () => {
          const s = await rpcWire.call('login', { method: 'browser' }, 20_000)
          if (s.error) throw new Error(`login browser: ${s.error.code} ${s.error.message}`)
          await followCallback(await driveAuthorization(s.result.authUrl))
          const done = await rpcWire.call('awaitLogin', { loginId: s.result.loginId, timeoutSeconds: 20 }, 25_000)
          if (done.result?.status !== 'succeeded') problems.push(`rpc browser login ${i}: ${JSON.stringify(done.result?.error ?? done.error)}`)
          return done.result?.status === 'succeeded'
        })
      } else if (roll < 0.88) {
        await record(
          'rpc',
          'refresh',
          { kind: 'tokens', grant: 'refresh_token' },
          async () => {
            const a = await rpcWire.call('refresh', undefined, 20_000)
            return a.result !== undefined
          },
          true,
        )
      } else {
        await record('rpc', 'logout', { kind: 'delete' }, async () => {
          const a = await rpcWire.call('logout', { revoke: rnd() < 0.5 }, 20_000)
          if (a.error) problems.push(`rpc logout ${i}: ${a.error.code} ${a.error.message}`)
          return a.result !== undefined
        })
      }
    }
  }

  // ---- loop 3: codex-auth (the CLI) through the daemon
  const cliLoop = async (): Promise<void> => {
    const rnd = mulberry32(SEED ^ 0x27d4eb2f)
    for (let i = 0; i < ITERATIONS; i++) {
      const roll = rnd()
      if (roll < 0.4) {
        const key = newKey('cli', i, rnd)
        await record('cli', 'codex-auth login --with-api-key', { kind: 'key', key }, async () => {
          const r = await runCli(['login', '--with-api-key'], { socket: d.socket, input: `${key}\n` })
          if (r.code !== 0) problems.push(`cli login ${i}: exit ${r.code}`)
          return r.code === 0
        })
      } else if (roll < 0.8) {
        await record(
          'cli',
          'codex-auth refresh',
          { kind: 'tokens', grant: 'refresh_token' },
          async () => (await runCli(['refresh'], { socket: d.socket })).code === 0,
          true,
        )
      } else {
        await record('cli', 'codex-auth logout --no-revoke', { kind: 'delete' }, async () => {
          const r = await runCli(['logout', '--no-revoke'], { socket: d.socket })
          if (r.code !== 0) problems.push(`cli logout ${i}: exit ${r.code}`)
          return r.code === 0
        })
      }
    }
  }

  const loopsBegan = Date.now()
  await Promise.all([codexLoop(), rpcLoop(), cliLoop()])
  const loopsMs = Date.now() - loopsBegan
  running = false
  await readerLoop

  // ---- the final state
  const finalText = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null
  const finalParsed = finalText === null ? null : parseAuthFile(finalText, file)
  t.ok(finalParsed === null || finalParsed.ok, 'the final file parses (or is absent)')
  const final = finalParsed?.ok ? finalParsed.auth : null

  // Operations that no later operation superseded: none started after they ended. Only writers
  // that certainly write (not the conditional refreshes) can supersede.
  const definite = ops.filter((o) => o.ok && !o.conditional)
  const lastDefiniteStart = Math.max(...definite.map((o) => o.start))
  const unsuperseded = ops.filter((o) => o.ok && o.end >= lastDefiniteStart)
  let explainedBy: OpRecord | undefined
  if (finalText === null) {
    explainedBy = unsuperseded.find((o) => o.effect.kind === 'delete')
  } else if (final !== null && final.tokens === null) {
    explainedBy = unsuperseded.find((o) => o.effect.kind === 'key' && o.effect.key === final.openaiApiKey)
  } else if (final !== null && final.tokens !== null) {
    const set = issued.get(final.tokens.accessToken)
    t.ok(set !== undefined && set.refresh === final.tokens.refreshToken && set.id === final.tokens.idToken, 'final tokens come from one answer')
    // The op whose interval holds the answer that issued them, of the matching kind.
    explainedBy = unsuperseded.find((o) => o.effect.kind === 'tokens' && o.effect.grant === set?.grant && set.at >= o.start && set.at <= o.end)
  }
  t.ok(explainedBy !== undefined, `the final state (${finalText === null ? 'absent' : final?.tokens ? 'tokens' : 'API key'}) is what an unsuperseded writer wrote (${explainedBy ? `${explainedBy.loop}: ${explainedBy.what}` : 'none'})`)

  // The daemon serves what the file says (after its watcher caught up). Asked on a connection of
  // its own: the rpc loop's may have sat idle past the daemon's 60 s idle timeout while a slower
  // loop (Codex, on a loaded machine) ran on, and the daemon rightly closed it. On a mismatch,
  // say what it served instead (no token: the mode and error only) and what its status said.
  const rpcIdleMs = Date.now() - Math.max(...ops.filter((o) => o.loop === 'rpc').map((o) => o.end))
  const w = await Wire.connect(d.socket)
  t.teardown(() => w.close())
  const expected = finalText === null ? null : final?.tokens ? final.tokens.accessToken : final?.openaiApiKey
  let lastSeen = 'nothing'
  const served = await until(
    'getAuth to match the file',
    async () => {
      const a = await w.call('getAuth', { minValiditySeconds: 0 })
      lastSeen = a.error ? `error ${a.error.code} ${JSON.stringify(a.error.data ?? null)}` : `a ${a.result?.mode} grant${keys.has(a.result?.token) ? ' (one of our API keys)' : ''}`
      if (expected === null) return a.error?.code === -32001 ? 'not_logged_in' : false
      return a.result?.token === expected ? 'token' : false
    },
    10_000,
    50,
  ).catch(async (e: Error) => {
    const st = await w.call('status').catch((se: Error) => ({ error: se.message }))
    const s = st.result
    t.comment(`getAuth mismatch: ${e.message}; last getAuth: ${lastSeen}; file now ${fs.existsSync(file) ? 'present' : 'absent'}`)
    t.comment(`status: ${s ? JSON.stringify({ loggedIn: s.loggedIn, mode: s.mode, source: s.source, refresh: s.refresh, problems: s.problems.map((x: any) => x.code) }) : JSON.stringify(st.error)}`)
    const tail = d.logs.slice(-15).map((l) => {
      try {
        const r = JSON.parse(l) as { time?: number; msg?: string }
        return `${r.time ? new Date(r.time).toISOString().slice(11, 23) : '?'} ${r.msg}`
      } catch {
        return '(not JSON)'
      }
    })
    t.comment(`the daemon's last log messages:\n${tail.join('\n')}`)
    return 'mismatch'
  })
  t.not(served, 'mismatch', `getAuth equals the file at the end (${served})`)

  t.same(problems, [], 'no writer failed and no reader ever saw a corrupt, empty or foreign file')
  t.ok(reader.reads > 100, `the reader parsed the file ${reader.reads} times`)
  const byLoop = (loop: string) => ops.filter((o) => o.loop === loop)
  t.equal(ops.length, 3 * ITERATIONS, 'every operation ran')
  t.equal(p.countCalls({ refreshTokenReuse: true }), 0, 'no refresh token was spent twice')
  reliabilityComment(t, {
    test: 'concurrent-codex',
    seed: SEED,
    cases: ops.length,
    failures: problems.length,
    ok: { codex: byLoop('codex').filter((o) => o.ok).length, rpc: byLoop('rpc').filter((o) => o.ok).length, cli: byLoop('cli').filter((o) => o.ok).length },
    refreshesWritten: p.countCalls({ grantType: 'refresh_token', status: 200 }),
    browserLogins: p.countCalls({ grantType: 'authorization_code', status: 200 }),
    reader,
    final: finalText === null ? 'absent' : final?.tokens ? 'tokens' : 'apikey',
    finalWriter: explainedBy ? `${explainedBy.loop}: ${explainedBy.what}` : null,
    loopsMs,
    /** how long the rpc loop's connection sat idle at the end, and whether the daemon closed it */
    rpcIdle: { ms: rpcIdleMs, closed: rpcWire.isClosed },
    ms: Date.now() - began,
  })
})
