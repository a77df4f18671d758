// The refresh broker as a benchmark (docs/broker.md): a refresh through `codex-auth exec`'s listener
// (HTTP -> listener -> the daemon's socket -> the daemon's single flight -> the token endpoint) against
// a direct refresh of the same stand-in (HTTP -> the token endpoint), alternating, in one run; and a
// 401 storm: 3 Codex-shaped clients x 10 recovery requests at once -> exactly one token-endpoint call.
// The stand-in is the test harness's real oidc-provider (rotating refresh tokens), bundled at start.
//
// Every broker refresh is a real spend: the daemon runs with CODEX_AUTHD_RECOVERY_SCALE tiny, so its
// recovery guard (one spend per access token, runs spaced out) lets each `unauthorized_recovery`
// through. Prints a table and one JSON line. Usage:
//   node bench/broker-refresh.mjs [--rounds 30] [--token-delay 0]
import { build } from 'esbuild'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import readline from 'node:readline'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { CLI_BIN, DAEMON_BIN, ROOT, fmt, launchDaemon, nowMs, percentile, printTable, renameInto, tempDir, verdict } from './lib.mjs'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '30' }, 'token-delay': { type: 'string', default: '0' } } })
const ROUNDS = Number(values.rounds)
const TOKEN_DELAY_MS = Number(values['token-delay'])
const CLIENT_ID = 'app_EMoamEEZ73f0CkXaXp7hrann'

// ---- the provider harness, bundled next to node_modules so that its bare imports resolve
const outDir = path.join(ROOT, 'node_modules', '.cache', 'codex-authd-bench')
const outfile = path.join(outDir, `provider-broker-${process.pid}.mjs`)
fs.mkdirSync(outDir, { recursive: true })
await build({ absWorkingDir: ROOT, entryPoints: ['test/support/provider.ts'], bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile, logLevel: 'warning' })
process.on('exit', () => fs.rmSync(outfile, { force: true }))
const { startProvider, mintTokens } = await import(pathToFileURL(outfile).href)
for (const f of [DAEMON_BIN, CLI_BIN]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: run npm run build`)

function authText(tokens) {
  const lastRefresh = new Date(Date.now() - 60_000).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z')
  return JSON.stringify(
    {
      auth_mode: 'chatgpt',
      OPENAI_API_KEY: null,
      tokens: { id_token: tokens.idToken, access_token: tokens.accessToken, refresh_token: tokens.refreshToken, account_id: tokens.accountId },
      last_refresh: lastRefresh,
    },
    null,
    2,
  )
}

async function daemonWith(provider, tokens, env = {}) {
  const home = tempDir('cab-home-')
  const socket = path.join(tempDir('cab-s-'), 's.sock')
  renameInto(path.join(home, 'auth.json'), authText(tokens))
  return launchDaemon({ home, socket, args: ['--issuer', provider.issuer, '--issuer-kind', 'openai'], env, waitMs: 30_000 })
}

/** `codex-auth exec` with a child that prints the broker URL and waits: the listener stays up meanwhile. */
async function execListener(d) {
  const child = `console.log(process.env.CODEX_REFRESH_TOKEN_URL_OVERRIDE); process.stdin.resume(); process.stdin.on('end', () => process.exit(0))`
  const proc = spawn(process.execPath, [CLI_BIN, '--socket', d.socket, 'exec', '--', process.execPath, '-e', child], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.dirname(d.home), CODEX_HOME: d.home },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const url = await new Promise((resolve, reject) => {
    readline.createInterface({ input: proc.stdout }).once('line', resolve)
    proc.once('exit', (code) => reject(new Error(`codex-auth exec exited ${code}`)))
  })
  return { url, stop: () => new Promise((r) => (proc.once('exit', r), proc.stdin.end())) }
}

/**
 * Codex's refresh request (docs/codex-compat.md#refresh-request) over node:http, as Codex's reqwest
 * sends it (fetch would add `sec-fetch-mode`, which the listener refuses as a browser's); keep-alive
 * as reqwest keeps its connection. Resolves with the answer's tokens.
 */
const agent = new http.Agent({ keepAlive: true })
function refresh(url, refreshToken, reason = 'unauthorized_recovery') {
  const u = new URL(url)
  const body = JSON.stringify({ client_id: CLIENT_ID, grant_type: 'refresh_token', refresh_reason: reason, refresh_token: refreshToken })
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), originator: 'codex_exec', 'user-agent': 'codex_exec/0.171.0 (bench)' } },
      (res) => {
        let text = ''
        res.setEncoding('utf8').on('data', (c) => (text += c))
        res.on('end', () => {
          let parsed = null
          try {
            parsed = JSON.parse(text)
          } catch {}
          if (res.statusCode !== 200) reject(new Error(`refresh answered ${res.statusCode} ${parsed?.error?.code ?? parsed?.error ?? ''}`))
          else resolve(parsed)
        })
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

const refreshCalls = (p) => p.countCalls({ endpoint: 'token', grantType: 'refresh_token' })

const provider = await startProvider({ ttl: { authorizationCode: 3600, refreshToken: 3600 } })
provider.tokenDelayMs = TOKEN_DELAY_MS
const lat = { direct: [], broker: [] }
let storm
try {
  // ---- one refresh at a time: broker vs direct, alternating (the order too, for fairness)
  const direct = await mintTokens(provider)
  const viaDaemon = await mintTokens(provider)
  const d = await daemonWith(provider, viaDaemon, { CODEX_AUTHD_RECOVERY_SCALE: '0.000001' })
  const l = await execListener(d)
  try {
    let rtDirect = direct.refreshToken
    let rtBroker = viaDaemon.refreshToken
    const one = {
      direct: async () => (rtDirect = (await refresh(provider.tokenUrl, rtDirect)).refresh_token),
      broker: async () => (rtBroker = (await refresh(l.url, rtBroker)).refresh_token),
    }
    // warm-up: a connection each way, the daemon's first spend
    await one.direct()
    await one.broker()
    for (let i = 0; i < ROUNDS; i++) {
      for (const kind of i % 2 === 0 ? ['direct', 'broker'] : ['broker', 'direct']) {
        const s = nowMs()
        await one[kind]()
        lat[kind].push(nowMs() - s)
      }
    }
    if (provider.countCalls({ refreshTokenReuse: true }) !== 0) throw new Error('a refresh token was used twice')
  } finally {
    await l.stop()
    await d.stop()
  }

  // ---- the 401 storm: 3 clients x 10 recovery requests with the same token, all at once
  const minted = await mintTokens(provider)
  const d2 = await daemonWith(provider, minted)
  const clients = await Promise.all([1, 2, 3].map(() => execListener(d2)))
  try {
    const before = refreshCalls(provider)
    const s = nowMs()
    const answers = await Promise.all(clients.flatMap((c) => Array.from({ length: 10 }, () => refresh(c.url, minted.refreshToken))))
    const wall = nowMs() - s
    const calls = refreshCalls(provider) - before
    const distinct = new Set(answers.map((a) => a.refresh_token)).size
    storm = { requests: answers.length, tokenEndpointCalls: calls, distinctAnswers: distinct, wallMs: wall }
  } finally {
    await Promise.all(clients.map((c) => c.stop()))
    await d2.stop()
  }
} finally {
  await provider.stop()
}

const stat = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return { p50: percentile(s, 50), p90: percentile(s, 90), max: s[s.length - 1] }
}
const D = stat(lat.direct)
const B = stat(lat.broker)
const ratio = B.p50 / D.p50
printTable(`refresh: through the broker vs direct (${ROUNDS} each, alternating; token delay ${TOKEN_DELAY_MS} ms)`, ['path', 'p50 ms', 'p90 ms', 'max ms'], [
  ['direct', fmt(D.p50, 1), fmt(D.p90, 1), fmt(D.max, 1)],
  ['broker', fmt(B.p50, 1), fmt(B.p90, 1), fmt(B.max, 1)],
])
printTable('401 storm: 3 clients x 10 requests', ['requests', 'token-endpoint calls', 'distinct answers', 'wall ms'], [[storm.requests, storm.tokenEndpointCalls, storm.distinctAnswers, fmt(storm.wallMs, 1)]])
printTable('targets', ['target', 'value', ''], [
  ['broker p50 / direct p50 <= 1.2', fmt(ratio, 2), verdict(ratio <= 1.2)],
  ['storm: exactly one token-endpoint call', String(storm.tokenEndpointCalls), verdict(storm.tokenEndpointCalls === 1)],
])
console.log(JSON.stringify({ bench: 'broker-refresh', rounds: ROUNDS, directMs: D, brokerMs: B, ratioP50: ratio, storm }))
