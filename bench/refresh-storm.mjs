// The refresh storm as a benchmark (docs/refresh.md#one-in-flight): 1000 concurrent getAuth calls on a token that
// needs refreshing (every caller waits for the ONE refresh) against 1000 concurrent getAuth calls on
// a fresh token (the baseline, in the same run), both against the real daemon bundle and the test
// harness's real oidc-provider (built from test/support/provider.ts with esbuild at start).
//
// "Needs refreshing" = a 15-minute token (due by the clock only at exp - 10 min) asked for with
// minValiditySeconds 1200 (more than it has left, less than the refreshed 1-hour token): the storm
// itself starts the refresh, deterministically, rather than the daemon's timer.
//
// Prints a table and one JSON line. Usage:
//   node bench/refresh-storm.mjs [--calls 1000] [--connections 50] [--rounds 3] [--token-delay 0]
//                                [--settle-ms 1000] [--preload file.cjs]
// --settle-ms: the pause between a daemon's start and its storm, so that the storm measures a daemon
// that has finished starting (loading and warming its HTTP client, docs/refresh.md#one-in-flight),
// as a due refresh normally finds it, rather than racing that work. --preload: a file each daemon
// requires, e.g. a CPU profiler.
import { build } from 'esbuild'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { DAEMON_BIN, ROOT, connect, fmt, launchDaemon, nowMs, percentile, printTable, renameInto, tempDir } from './lib.mjs'

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
    'token-delay': { type: 'string', default: '0' },
    'settle-ms': { type: 'string', default: '1000' },
    /** a CommonJS file the daemon preloads (--require), e.g. one that starts a CPU profile */
    'preload': { type: 'string' },
  },
})
const CALLS = Number(values.calls)
const CONNECTIONS = Number(values.connections)
const ROUNDS = Number(values.rounds)
const TOKEN_DELAY_MS = Number(values['token-delay'])
const SETTLE_MS = Number(values['settle-ms'])
const PER_CONNECTION = Math.ceil(CALLS / CONNECTIONS)
const PRELOAD = values.preload ? path.resolve(values.preload) : null

// ---- the provider harness, bundled next to node_modules so that its bare imports resolve
const outDir = path.join(ROOT, 'node_modules', '.cache', 'codex-authd-bench')
const outfile = path.join(outDir, `provider-${process.pid}.mjs`)
fs.mkdirSync(outDir, { recursive: true })
await build({
  absWorkingDir: ROOT,
  entryPoints: ['test/support/provider.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  outfile,
  logLevel: 'warning',
})
process.on('exit', () => fs.rmSync(outfile, { force: true }))
const { startProvider, mintTokens } = await import(pathToFileURL(outfile).href)

if (!fs.existsSync(DAEMON_BIN)) throw new Error(`${DAEMON_BIN} is missing: run npm run build`)

/** auth.json in Codex's format (docs/codex-compat.md#file-format), last_refresh a minute ago. */
function authText(tokens) {
  const lastRefresh = new Date(Date.now() - 60_000).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z')
  const json = {
    auth_mode: 'chatgpt',
    OPENAI_API_KEY: null,
    tokens: { id_token: tokens.idToken, access_token: tokens.accessToken, refresh_token: tokens.refreshToken, account_id: tokens.accountId },
    last_refresh: lastRefresh,
  }
  return JSON.stringify(json, null, 2)
}

/** The daemon bundle on a temp home with `tokens`, pointed at the provider; resolves once it listens. */
async function daemonWith(provider, tokens) {
  const home = tempDir('cab-home-')
  const socket = path.join(tempDir('cab-s-'), 's.sock')
  renameInto(path.join(home, 'auth.json'), authText(tokens))
  const env = PRELOAD !== null ? { NODE_OPTIONS: `--require ${PRELOAD}` } : {}
  return launchDaemon({ home, socket, env, args: ['--issuer', provider.issuer, '--issuer-kind', 'openai'], waitMs: 30_000 })
}

/** One storm: CALLS getAuth calls over CONNECTIONS connections, all written at once. */
async function storm(socket, params) {
  const conns = await Promise.all(Array.from({ length: CONNECTIONS }, () => connect(socket)))
  const lat = []
  const tokens = new Set()
  let errors = 0
  const t0 = nowMs()
  await Promise.all(
    conns.flatMap((c) =>
      Array.from({ length: PER_CONNECTION }, async () => {
        const s = nowMs()
        const r = await c.call('getAuth', params)
        lat.push(nowMs() - s)
        if (r.result) tokens.add(r.result.token)
        else errors++
      }),
    ),
  )
  const wall = nowMs() - t0
  for (const c of conns) c.close()
  return { wall, lat, tokens, errors }
}

const refreshCalls = (p) => p.countCalls({ endpoint: 'token', grantType: 'refresh_token' })

// The token endpoint's own latency, as the provider sees it (arrival to answer): what a due storm
// cannot avoid waiting for; the rest of its wall over the fresh storm's is the daemon's.
const endpointMs = []
const provider = await startProvider({
  ttl: { authorizationCode: 3600, refreshToken: 3600 },
  onAnswer: (a) => {
    if (a.call.endpoint === 'token' && a.call.grantType === 'refresh_token') endpointMs.push(Date.now() - a.call.at)
  },
})
provider.tokenDelayMs = TOKEN_DELAY_MS
const results = { fresh: [], due: [] }
try {
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order so that background load is shared evenly.
    for (const kind of round % 2 === 0 ? ['fresh', 'due'] : ['due', 'fresh']) {
      provider.setTtl({ authorizationCode: kind === 'fresh' ? 3600 : 900 })
      const tokens = await mintTokens(provider)
      const d = await daemonWith(provider, tokens)
      try {
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
        const before = refreshCalls(provider)
        const endpointBefore = endpointMs.length
        const params = kind === 'due' ? { minValiditySeconds: 1200 } : undefined
        const r = await storm(d.socket, params)
        const calls = refreshCalls(provider) - before
        const changed = ![...r.tokens].includes(tokens.accessToken)
        const endpoint = endpointMs.slice(endpointBefore).reduce((a, b) => a + b, 0)
        results[kind].push({ ...r, calls, changed, endpoint })
        if (r.errors > 0) throw new Error(`${kind}: ${r.errors} getAuth calls failed`)
        if (r.tokens.size !== 1) throw new Error(`${kind}: ${r.tokens.size} different tokens served`)
        if (kind === 'due' && (calls !== 1 || !changed)) throw new Error(`due: ${calls} token-endpoint calls, token changed: ${changed}`)
        if (kind === 'fresh' && (calls !== 0 || changed)) throw new Error(`fresh: ${calls} token-endpoint calls`)
      } finally {
        await d.stop()
      }
    }
  }
} finally {
  await provider.stop()
}

function summary(rs) {
  const lat = rs.flatMap((r) => r.lat).sort((a, b) => a - b)
  const walls = rs.map((r) => r.wall).sort((a, b) => a - b)
  return {
    wallMs: percentile(walls, 50),
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    maxMs: lat[lat.length - 1],
    tokenEndpointCalls: Math.max(...rs.map((r) => r.calls)),
    tokensServed: Math.max(...rs.map((r) => r.tokens.size)),
  }
}
const fresh = summary(results.fresh)
const due = summary(results.due)
// What the daemon adds to a due storm beyond the token endpoint's own latency: each due round's
// wall minus its refresh call's latency, minus the fresh storms' median wall.
const endpoint = percentile(results.due.map((r) => r.endpoint).sort((a, b) => a - b), 50)
const overheadMs = percentile(results.due.map((r) => r.wall - r.endpoint).sort((a, b) => a - b), 50) - fresh.wallMs
printTable(
  `refresh storm: ${CALLS} concurrent getAuth over ${CONNECTIONS} connections, ${ROUNDS} rounds (median wall; latency over all rounds)`,
  ['token', 'wall ms', 'p50 ms', 'p99 ms', 'max ms', 'token-endpoint calls', 'distinct tokens'],
  [
    ['fresh (baseline)', fmt(fresh.wallMs, 1), fmt(fresh.p50Ms, 2), fmt(fresh.p99Ms, 2), fmt(fresh.maxMs, 2), fresh.tokenEndpointCalls, fresh.tokensServed],
    ['needs refresh', fmt(due.wallMs, 1), fmt(due.p50Ms, 2), fmt(due.p99Ms, 2), fmt(due.maxMs, 2), due.tokenEndpointCalls, due.tokensServed],
    ['ratio', fmt(due.wallMs / fresh.wallMs, 2), fmt(due.p50Ms / fresh.p50Ms, 2), fmt(due.p99Ms / fresh.p99Ms, 2), '', '', ''],
  ],
)
console.log(`token endpoint latency (median of the due rounds): ${fmt(endpoint, 1)} ms; due wall beyond it and the fresh wall: ${fmt(overheadMs, 1)} ms`)
console.log(
  JSON.stringify({
    bench: 'refresh-storm',
    calls: CALLS,
    connections: CONNECTIONS,
    rounds: ROUNDS,
    tokenDelayMs: TOKEN_DELAY_MS,
    settleMs: SETTLE_MS,
    fresh,
    due,
    wallRatio: due.wallMs / fresh.wallMs,
    endpointMs: endpoint,
    overheadMs,
    oneRefreshPerStorm: results.due.every((r) => r.calls === 1),
  }),
)
