// Runs the REAL Codex CLI (@openai/codex 0.171.0, pinned by test/codex-cli/package-lock.json and
// installed into .cache/codex-cli/ by scripts/codex-cli.sh, which `npm test` runs first) in tests,
// with no way off the machine:
//
//  - every Codex process runs inside a fresh, loopback-only network namespace
//    (`unshare -n sh -c 'ip link set lo up && …'`, as root; docs/testing.md#the-real-codex-cli);
//  - the servers it must reach (the oidc-provider harness with its JSON adapter, and a stub
//    backend answering 400) live in the test process, OUTSIDE that namespace. A tiny Node relay,
//    started inside the namespace just before Codex, listens on 127.0.0.1:<same port numbers> and
//    forwards each TCP connection over a Unix socket that the test process serves. Unix sockets
//    are file-system objects, so they cross network namespaces; TCP does not.
//    Because the relay reuses the real port numbers, the URLs are the same inside and outside
//    (provider.tokenUrl works verbatim as CODEX_REFRESH_TOKEN_URL_OVERRIDE);
//  - HOME and CODEX_HOME are temp directories; config.toml points chatgpt_base_url and
//    openai_base_url at the stub (docs/testing.md#the-real-codex-cli). `codex doctor` is never run.
//
// Nothing here prints a token. Test output shows only call counts, user agents, jti claims and
// SHA-256 prefixes.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import { formatLastRefresh, serializeAuthFile } from '../../src/codex/authfile.js'
import type { AuthFile } from '../../src/types.js'
import { CODEX_VERIFIED_VERSION } from '../../src/version.js'
import { makeHome, ROOT, startDaemon, stopAtTeardown, tempDir, type RunningDaemon } from './daemon.js'
import type { TestProvider, TokenSet } from './provider.js'
import { registerAuthJsonSecrets, registerSecret } from './secrets.js'

/** The wrapper the package installs (it execve()s the native musl binary). */
export const CODEX_BIN = path.join(ROOT, '.cache', 'codex-cli', 'node_modules', '.bin', 'codex')
/** The one constant (src/version.ts): `codex-auth doctor` compares the user's `codex` with it. */
export const CODEX_VERSION = CODEX_VERIFIED_VERSION

/**
 * CODEX_BIN, or an error that says how to get it. Its absence is a broken test set-up, never a
 * reason to skip: the interop tests are what prove we share auth.json and its locks with Codex.
 */
export function codexBin(): string {
  if (!fs.existsSync(CODEX_BIN)) {
    throw new Error(`the Codex CLI is not installed at ${CODEX_BIN}: run \`bash scripts/codex-cli.sh\` (npm test runs it first)`)
  }
  return CODEX_BIN
}
/**
 * `codex login status` with CODEX_HOME=home (no network needed: it only reads auth.json); its exit
 * code and output, stdout and stderr together.
 */
export function codexLoginStatus(home: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(codexBin(), ['login', 'status'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CODEX_HOME: home, HOME: tempDir('cad-codex-') },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    p.stderr.setEncoding('utf8').on('data', (d: string) => (out += d))
    p.on('error', reject)
    p.on('close', (code) => resolve({ code, out }))
  })
}
/** A Codex process's own token-endpoint user agent: codex_exec/…, codex_cli_rs/… (never codex-authd/). */
export const CODEX_UA = /^codex_[a-z_]+\//
export const DAEMON_UA = /^codex-authd\//

// ------------------------------------------------------------------ can we run Codex at all?

let probe: Promise<string | null> | undefined

/**
 * null when Codex can run here isolated (root, unshare, ip, the binary); else the reason.
 * Probes `unshare -n` once.
 */
export function codexUnavailable(): Promise<string | null> {
  probe ??= (async () => {
    if (process.platform !== 'linux') return 'the real Codex CLI runs only on Linux here'
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root for unshare -n'
    codexBin()
    const r = await run('unshare', ['-n', 'sh', '-c', 'ip link set lo up && ip -o addr show lo && echo --- && ip -o link show'], {
      timeoutMs: 10_000,
    })
    if (r.code !== 0 || !r.stdout.includes('127.0.0.1')) return `unshare -n does not work here: ${r.stderr.trim() || `exit ${r.code}`}`
    // The namespace must hold nothing but loopback, or Codex could reach the outside.
    const links = (r.stdout.split('---')[1] ?? '').trim().split('\n').filter((l) => l.trim() !== '')
    if (links.length !== 1 || !/^\d+: lo:/.test(links[0] ?? '')) throw new Error(`unshare -n left interfaces other than lo: ${links.join('; ')}`)
    return null
  })()
  return probe
}

/**
 * Throws when Codex cannot run here: a test file that drives the real Codex CLI fails rather than
 * skips. CI runs as root with util-linux, where Codex always runs isolated (docs/testing.md#the-real-codex-cli).
 */
export async function requireCodex(): Promise<void> {
  const why = await codexUnavailable()
  if (why !== null) throw new Error(`the Codex CLI cannot run in a loopback-only namespace here: ${why}`)
}

// ------------------------------------------------------------------ the backend stub

export interface StubRequest {
  method: string
  path: string
  userAgent: string
  /** the bearer token's `jti` (or sha256 prefix for non-JWTs); null without Authorization */
  bearerId: string | null
  at: number
  /** the status the stub answered */
  status: number
}

export interface BackendStub {
  readonly port: number
  readonly url: string
  readonly requests: StubRequest[]
  /** Token ids (tokenId) answered 401, as a backend that no longer accepts them (the 401 path). */
  readonly rejected: Set<string>
  /** Answer 401 to every authenticated request (a backend that rejects every token). */
  rejectAll: boolean
  /** Called for each request the stub answered 401. */
  on401: ((r: StubRequest) => void) | null
  /**
   * When set, each 401 answer waits for the promise it returns (a slow backend), so a test can
   * place an event (the daemon's due time, a restart) before Codex sees its 401.
   */
  hold401: ((r: StubRequest) => Promise<void>) | null
  close(): Promise<void>
}

/** Identifies a token without showing it: the JWT's `jti`, else a sha256 prefix. */
export function tokenId(token: string): string {
  const part = token.split('.')[1]
  if (part) {
    try {
      const p = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { jti?: unknown }
      if (typeof p.jti === 'string') return `jti:${p.jti}`
    } catch {
      // not a JWT
    }
  }
  return `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`
}

/**
 * Everything Codex asks of chatgpt_base_url / openai_base_url gets 400 JSON (docs/testing.md#the-real-codex-cli),
 * except 401 for the tokens in `rejected` (or all, with `rejectAll`): that sends Codex down its refresh path.
 */
export async function startBackendStub(): Promise<BackendStub> {
  const requests: StubRequest[] = []
  const rejected = new Set<string>()
  const stub = {
    on401: null as ((r: StubRequest) => void) | null,
    hold401: null as ((r: StubRequest) => Promise<void>) | null,
    rejectAll: false,
  }
  const server = http.createServer((req, res) => {
    const auth = String(req.headers.authorization ?? '')
    const bearer = /^Bearer (.+)$/i.exec(auth)?.[1] ?? null
    const bearerId = bearer === null ? null : tokenId(bearer)
    const status = bearerId !== null && (stub.rejectAll || rejected.has(bearerId)) ? 401 : 400
    const r: StubRequest = {
      method: req.method ?? '',
      path: (req.url ?? '').split('?')[0] ?? '',
      userAgent: String(req.headers['user-agent'] ?? ''),
      bearerId,
      at: Date.now(),
      status,
    }
    requests.push(r)
    if (status === 401) stub.on401?.(r)
    const held = status === 401 && stub.hold401 !== null ? stub.hold401(r) : Promise.resolve()
    req.resume()
    req.on('end', async () => {
      await held.catch(() => {})
      const body =
        status === 401
          ? JSON.stringify({ error: { message: 'test stub: token rejected', type: 'invalid_request_error', code: 'token_expired' } })
          : JSON.stringify({ error: { message: 'test stub: no backend here', type: 'invalid_request_error', code: 'stub' } })
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) })
      res.end(body)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    rejected,
    get on401() {
      return stub.on401
    },
    set on401(f) {
      stub.on401 = f
    },
    get hold401() {
      return stub.hold401
    },
    set hold401(f) {
      stub.hold401 = f
    },
    get rejectAll() {
      return stub.rejectAll
    },
    set rejectAll(v) {
      stub.rejectAll = v
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

// ------------------------------------------------------------------ the Unix-socket bridge

// Runs inside the namespace: `node relay.mjs <port>=<unix socket> … -- <command> <args…>`.
// Listens on 127.0.0.1:<port> for each pair, pipes every connection to its Unix socket, runs the
// command with inherited stdio, and exits as it exits.
const RELAY_SOURCE = `
import net from 'node:net'
import { spawn } from 'node:child_process'
import os from 'node:os'
const argv = process.argv.slice(2)
const sep = argv.indexOf('--')
const pairs = argv.slice(0, sep)
const cmd = argv.slice(sep + 1)
await Promise.all(pairs.map((pair) => {
  const i = pair.indexOf('=')
  const port = Number(pair.slice(0, i))
  const sock = pair.slice(i + 1)
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    const u = net.connect({ path: sock, allowHalfOpen: true })
    c.pipe(u)
    u.pipe(c)
    c.on('error', () => u.destroy())
    u.on('error', () => c.destroy())
    c.on('close', () => u.destroy())
    u.on('close', () => c.destroy())
  })
  server.unref()
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
}))
const child = spawn(cmd[0], cmd.slice(1), { stdio: 'inherit' })
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => child.kill(s))
child.on('error', (e) => { console.error('relay: ' + e.message); process.exit(127) })
child.on('exit', (code, signal) => process.exit(code ?? 128 + (os.constants.signals[signal] ?? 0)))
`

interface Bridge {
  /** port -> Unix socket path served by the test process */
  readonly pairs: Map<number, string>
  close(): Promise<void>
}

async function startBridge(ports: number[], dir: string): Promise<Bridge> {
  const pairs = new Map<number, string>()
  const servers: net.Server[] = []
  const open = new Set<net.Socket>()
  for (const port of ports) {
    const sock = path.join(dir, `p${port}.sock`)
    const server = net.createServer({ allowHalfOpen: true }, (c) => {
      const u = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
      open.add(c)
      open.add(u)
      c.pipe(u)
      u.pipe(c)
      c.on('error', () => u.destroy())
      u.on('error', () => c.destroy())
      c.on('close', () => {
        open.delete(c)
        u.destroy()
      })
      u.on('close', () => {
        open.delete(u)
        c.destroy()
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(sock, () => resolve())
    })
    servers.push(server)
    pairs.set(port, sock)
  }
  return {
    pairs,
    close: async () => {
      for (const s of open) s.destroy()
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
    },
  }
}

// ------------------------------------------------------------------ the world Codex runs in

export interface CodexRun {
  code: number | null
  signal: string | null
  stdout: string
  stderr: string
  ms: number
}

/** Not stopped by `timeout` (exit 124, or 137 after -k) nor by a signal. */
export function endedByItself(r: CodexRun): boolean {
  return r.signal === null && r.code !== null && r.code !== 124 && r.code !== 137
}

/** A Codex run as a failing assertion shows it: the exit and the last lines it printed (stdout and stderr). */
export function shown(r: Pick<CodexRun, 'code' | 'signal' | 'stdout' | 'stderr'>): string {
  const tail = (r.stdout + '\n' + r.stderr).split('\n').filter((l) => l.trim() !== '').slice(-8).join('\n')
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}:\n${tail}`
}

export interface CodexRunOptions {
  /** stdin text; default: stdin is /dev/null ('ignore') */
  input?: string
  /** extra environment (e.g. RUST_LOG) */
  env?: Record<string, string>
  /** `timeout` seconds for the Codex process (default 40) */
  timeoutSec?: number
  /** leave CODEX_REVOKE_TOKEN_URL_OVERRIDE unset (Codex then derives it from the refresh override) */
  noRevokeOverride?: boolean
  /** a command Codex runs under, inside the namespace (e.g. `node codex-auth.cjs exec --`) */
  wrap?: string[]
  /** HOME and working directory (default: a fresh root-only temp directory); another user's when `wrap` runs Codex as that user */
  home?: string
}

export interface CodexWorld {
  readonly provider: TestProvider
  readonly stub: BackendStub
  /** Writes `$codexHome/config.toml` pointing Codex's backend and model traffic at the stub. */
  writeConfig(codexHome: string): void
  /** Runs `codex <args>` with CODEX_HOME=codexHome inside a loopback-only namespace. */
  codex(codexHome: string, args: string[], opts?: CodexRunOptions): Promise<CodexRun>
  close(): Promise<void>
}

export async function startCodexWorld(provider: TestProvider): Promise<CodexWorld> {
  const dir = tempDir('cad-cx-')
  const stub = await startBackendStub()
  const bridge = await startBridge([provider.port, stub.port], dir)
  const relay = path.join(dir, 'relay.mjs')
  fs.writeFileSync(relay, RELAY_SOURCE)
  const running = new Set<ReturnType<typeof spawn>>()

  const world: CodexWorld = {
    provider,
    stub,
    writeConfig(codexHome) {
      fs.writeFileSync(
        path.join(codexHome, 'config.toml'),
        [
          `chatgpt_base_url = "${stub.url}/backend-api/"`,
          `openai_base_url = "${stub.url}/v1"`,
          // no telemetry/analytics anywhere; everything is loopback anyway
          '',
        ].join('\n'),
      )
    },
    codex(codexHome, args, opts = {}) {
      const userHome = opts.home ?? tempDir('cad-uh-')
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        HOME: userHome,
        CODEX_HOME: codexHome,
        TERM: 'dumb',
        NO_COLOR: '1',
        LANG: 'C.UTF-8',
        CODEX_REFRESH_TOKEN_URL_OVERRIDE: provider.tokenUrl,
        ...(opts.noRevokeOverride ? {} : { CODEX_REVOKE_TOKEN_URL_OVERRIDE: provider.revokeUrl }),
        ...opts.env,
      }
      const pairs = [...bridge.pairs].map(([port, sock]) => `${port}=${sock}`)
      const argv = [
        '-n',
        'sh',
        '-c',
        'ip link set lo up && exec "$@"',
        'sh',
        process.execPath,
        relay,
        ...pairs,
        '--',
        'timeout',
        '-k',
        '5',
        String(opts.timeoutSec ?? 40),
        ...(opts.wrap ?? []),
        codexBin(),
        ...args,
      ]
      if (args.includes('--with-api-key') && opts.input !== undefined) registerSecret(opts.input.trim(), 'API key (codex login --with-api-key stdin)')
      const started = Date.now()
      return run('unshare', argv, { env, input: opts.input, cwd: userHome, track: running }).then((r) => ({ ...r, ms: Date.now() - started }))
    },
    async close() {
      for (const p of running) p.kill('SIGKILL')
      await bridge.close()
      await stub.close()
    },
  }
  return world
}

/** A fresh CODEX_HOME whose config.toml points Codex's backend traffic at the world's stub. */
export async function codexHome(world: CodexWorld): Promise<string> {
  const home = await makeHome()
  world.writeConfig(home)
  return home
}

/** A daemon on `home` refreshing against the world's provider, stopped at teardown. */
export async function codexDaemon(t: { teardown(fn: () => unknown): void }, world: CodexWorld, home: string, socket?: string): Promise<RunningDaemon> {
  // Always our provider: a daemon with the default issuer would refresh against auth.openai.com.
  return stopAtTeardown(t, await startDaemon({ home, socket, args: ['--issuer', world.provider.issuer, '--issuer-kind', 'openai'] }))
}

// ------------------------------------------------------------------ auth.json helpers

/** The ChatGPT auth.json our serializer writes for a provider token set. */
export function authFileFor(tokens: TokenSet, opts: { lastRefresh?: Date | null } = {}): AuthFile {
  const lr = opts.lastRefresh === undefined ? new Date() : opts.lastRefresh
  return {
    authMode: 'chatgpt',
    openaiApiKey: null,
    tokens: {
      idToken: tokens.idToken,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      accountId: tokens.accountId,
      extra: {},
    },
    lastRefresh: lr === null ? null : formatLastRefresh(lr),
    extra: {},
  }
}

/** Writes auth.json (0600) the way a writer other than Codex would: temp file + rename. */
export function writeAuthJson(codexHome: string, auth: AuthFile): string {
  const text = serializeAuthFile(auth)
  registerAuthJsonSecrets(text, 'writeAuthJson')
  const file = path.join(codexHome, 'auth.json')
  const tmp = path.join(codexHome, `.auth-test-${process.pid}`)
  fs.writeFileSync(tmp, text, { mode: 0o600 })
  fs.renameSync(tmp, file)
  return text
}

// ------------------------------------------------------------------ process helper

function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; input?: string; cwd?: string; timeoutMs?: number; track?: Set<ReturnType<typeof spawn>> } = {},
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, {
      env: opts.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      cwd: opts.cwd,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    opts.track?.add(p)
    let stdout = ''
    let stderr = ''
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    let timer: NodeJS.Timeout | undefined
    if (opts.timeoutMs) timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs)
    p.on('error', (e) => {
      clearTimeout(timer)
      opts.track?.delete(p)
      reject(e)
    })
    p.on('close', (code, signal) => {
      clearTimeout(timer)
      opts.track?.delete(p)
      resolve({ code, signal, stdout, stderr })
    })
    if (opts.input !== undefined) {
      p.stdin!.on('error', () => {})
      p.stdin!.end(opts.input)
    }
  })
}
