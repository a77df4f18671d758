// `codex-auth`, the thin client (docs/contract.md#codex-auth). Bundled to dist/codex-auth.cjs (CommonJS, no pino).
// It never starts a daemon. Secrets go to stdout only where asked for (token, env) and to a
// child's environment (exec); never to stderr, never to argv.

import type { spawn as spawnType } from 'node:child_process'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  AuthdError,
  AuthdTimeoutError,
  ConnectionClosedError,
  DaemonUnreachableError,
  SocketTrustError,
  VersionMismatchError,
  connect,
  socketPathFor,
  type AuthdClient,
} from './index.js'
import { CliExit, ErrorCode, type AuthGrant, type LoginResult, type LoginStarted, type Status } from '../rpc/contract.js'
import { UsageError, usageLines } from '../cli-common.js'
import {
  auditLines,
  placeholderLines,
  childEnv,
  commandHelp,
  completionScript,
  credentialEnv,
  envLines,
  jsonRequested,
  lookupCommand,
  parseArgs,
  humanLines,
  type ParsedArgs,
} from './cli-util.js'
import { browserLoginLines, browserOpener, deviceLoginLines, loginOutcome, Progress, progressLine, type BrowserPlan } from './login-view.js'
import { serviceSetup } from './service-hint.js'
import { envKeyHint, statusJson, statusLines } from './status-view.js'
import { jsonForTerminal } from '../text.js'
import { VERSION } from '../version.js'
import { givenCodexHome } from '../paths.js'
import type { BrokerListener, Forwarded } from './broker-listener.js'


/** child_process is loaded only by the commands that start a process: it costs start-up time. */
const spawn = (): typeof spawnType => process.getBuiltinModule('node:child_process').spawn

/** Raw stdout: only for what a program reads (the token, export lines, help). */
const out = (s: string): void => {
  process.stdout.write(s)
}
/**
 * Every line for a person goes through these two: each line is escaped (text.ts escapeControls),
 * so no id_token claim, config value, file content or path can drive the terminal or forge a line.
 */
const say = (...lines: string[]): void => {
  process.stdout.write(humanLines(lines))
}
const err = (...lines: string[]): void => {
  process.stderr.write(humanLines(lines))
}
/** JSON output (`--json`, `watch`): one value, its unsafe characters as `\uXXXX`. */
const json = (value: unknown, indent?: number): void => {
  process.stdout.write(jsonForTerminal(value, indent) + '\n')
}

// ---------------------------------------------------------------------------------------------
// Error -> exit code
// ---------------------------------------------------------------------------------------------

function describeDaemonError(e: AuthdError): string {
  const data = (e.data ?? {}) as Record<string, unknown>
  switch (e.code) {
    case ErrorCode.RefreshFailed:
      return `token refresh failed${typeof data.kind === 'string' ? ` (${data.kind})` : ''}: ${e.message}`
    case ErrorCode.LoginInProgress:
      return `a login is already in progress${typeof data.loginId === 'string' ? ` (${data.loginId})` : ''}: ${e.message}`
    case ErrorCode.LoginFailed:
      return `login failed: ${e.message}`
    case ErrorCode.ForbiddenByPolicy:
      return `forbidden by policy: ${e.message}`
    case ErrorCode.StoreUnreadable: {
      const where =
        typeof data.file === 'string'
          ? ` [${data.file}${typeof data.line === 'number' ? `:${data.line}${typeof data.column === 'number' ? `:${data.column}` : ''}` : ''}]`
          : ''
      return `credential store unreadable: ${e.message}${where}`
    }
    case ErrorCode.InternalError:
      return `internal daemon error: ${e.message}`
    case ErrorCode.MethodNotFound:
      return `this daemon does not support the request (${e.message})`
    case ErrorCode.InvalidParams:
      return `invalid request${typeof data.field === 'string' ? ` (${data.field})` : ''}: ${e.message}`
    default:
      return `daemon error ${e.code}: ${e.message}`
  }
}

/** How a failure is printed: words on stderr, a JSON object on stdout (`--json`), or on stderr (`exec --json`). */
type FailureForm = 'text' | 'json' | 'json-stderr'

/**
 * A failure as both forms tell it: a stable `code` (docs/contract.md#errors-as-json), the exit
 * status and the words. The daemon's reasons are its `data.reason`; the client adds its own.
 */
interface Failure {
  code: string
  exitCode: number
  /** The text form's line, without the `codex-auth: ` prefix. */
  message: string
  /** The daemon's `data` minus `reason` (`kind`, `loginId`, `file`, `line`, `column`, `field`...), or the socket. */
  details?: Record<string, unknown>
}

const PROTOCOL_CODES: Record<number, string> = {
  [ErrorCode.ParseError]: 'parse_error',
  [ErrorCode.InvalidRequest]: 'invalid_request',
  [ErrorCode.MethodNotFound]: 'method_not_found',
  [ErrorCode.InvalidParams]: 'invalid_params',
  [ErrorCode.InternalError]: 'internal_error',
}

function classify(e: unknown): Failure {
  if (e instanceof UsageError) return { code: 'usage', exitCode: CliExit.Usage, message: e.message }
  if (e instanceof DaemonUnreachableError) {
    return { code: 'daemon_unreachable', exitCode: CliExit.Unreachable, message: e.message, details: { socket: e.socket, errno: e.errno } }
  }
  if (e instanceof SocketTrustError) {
    return { code: 'socket_untrusted', exitCode: CliExit.SocketUntrusted, message: e.message, details: { socket: e.socket, owner: e.owner } }
  }
  if (e instanceof VersionMismatchError) {
    return {
      code: 'version_mismatch',
      exitCode: CliExit.DaemonFailure,
      message: e.message,
      details: { daemonVersion: e.daemonVersion, daemonProtocol: e.daemonProtocol, clientVersion: e.clientVersion, clientProtocol: e.clientProtocol },
    }
  }
  if (e instanceof AuthdError) {
    const { reason: _reason, ...rest } = (e.data !== null && typeof e.data === 'object' ? e.data : {}) as Record<string, unknown>
    const details = Object.keys(rest).length > 0 ? { details: rest } : {}
    const code = e.reason ?? PROTOCOL_CODES[e.code] ?? 'daemon_error'
    if (e.code === ErrorCode.NotLoggedIn) {
      const why = e.message && e.message !== 'Not logged in' ? ` (${e.message})` : ''
      return { code, exitCode: CliExit.NotLoggedIn, message: `Not logged in${why}. Run \`codex-auth login\`.`, ...details }
    }
    return { code, exitCode: CliExit.DaemonFailure, message: describeDaemonError(e), ...details }
  }
  if (e instanceof ConnectionClosedError) return { code: 'connection_lost', exitCode: CliExit.DaemonFailure, message: e.message }
  if (e instanceof AuthdTimeoutError) return { code: 'timeout', exitCode: CliExit.DaemonFailure, message: e.message }
  return { code: 'client_error', exitCode: CliExit.DaemonFailure, message: e instanceof Error ? e.message : String(e) }
}

/** Prints a failure in the form asked for and returns its exit status. */
function report(f: Failure, form: FailureForm, helpFor: string | null = null): number {
  if (form === 'text') {
    if (f.code === 'usage') err(...usageLines('codex-auth', f.message, helpFor))
    // "Not logged in" is a state a person reads, not a program's complaint: no prefix.
    else err(f.code === 'not_logged_in' ? f.message : `codex-auth: ${f.message}`)
  } else {
    const line = jsonForTerminal({ code: f.code, exitCode: f.exitCode, message: f.message, ...(f.details ? { details: f.details } : {}) }) + '\n'
    if (form === 'json') process.stdout.write(line)
    else process.stderr.write(line)
  }
  return f.exitCode
}

/** Prints why and returns the exit status for a failure of a non-exec command. */
function failureExit(e: unknown, a: { json: boolean; command?: string | null }): number {
  const helpFor = e instanceof UsageError ? e.command : null
  return report(classify(e), a.json ? 'json' : 'text', helpFor)
}

/** exec: codex-auth's own failures exit 125 (the child's statuses keep their meaning); JSON goes to stderr. */
function execFailure(e: unknown, json: boolean): number {
  report({ ...classify(e), exitCode: CliExit.ExecSetupFailed }, json ? 'json-stderr' : 'text', 'exec')
  return CliExit.ExecSetupFailed
}

/**
 * `exec --remote` and `sink` write a CODEX_HOME of this machine; the daemon is elsewhere. There
 * `--codex-home` names that home, not the daemon: the socket comes from --socket, CODEX_AUTHD_SOCK
 * or the default rules.
 */
function writesHome(a: ParsedArgs): boolean {
  return a.command === 'sink' || (a.command === 'exec' && a.remote)
}

function connectOptions(a: ParsedArgs, reconnect = false): Parameters<typeof connect>[0] & object {
  const opts: Parameters<typeof connect>[0] & object = { reconnect, clientName: 'codex-auth' }
  if (a.socket !== null) opts.socket = a.socket
  if (a.codexHome !== null && !writesHome(a)) opts.codexHome = a.codexHome
  return opts
}

function open(a: ParsedArgs, reconnect = false): Promise<AuthdClient> {
  return connect(connectOptions(a, reconnect))
}

/** The socket `open` talks to, for messages. */
function socketOf(a: ParsedArgs): string {
  return socketPathFor(connectOptions(a)).path
}

function publicGrant(g: AuthGrant): Omit<AuthGrant, 'token'> {
  return { mode: g.mode, accountId: g.accountId, expiresAt: g.expiresAt, email: g.email, planType: g.planType }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

async function cmdStatus(a: ParsedArgs): Promise<number> {
  const client = await open(a)
  try {
    const status = await client.status()
    if (a.json) {
      json(statusJson(status), 2)
    } else {
      let key: string | null = null
      if (status.loggedIn && status.mode === 'apikey') {
        try {
          const g = await client.getAuth()
          if (g.mode === 'apikey') key = g.token
        } catch {
          // the headline then goes without the mask
        }
      }
      say(...statusLines(status, key, { now: Date.now(), setup: serviceSetup(process.platform, process.env) }))
    }
    return status.loggedIn ? CliExit.Ok : CliExit.NotLoggedIn
  } finally {
    client.close()
  }
}

async function cmdToken(a: ParsedArgs): Promise<number> {
  const client = await open(a)
  try {
    const g = await client.getAuth(a.minValidity !== null ? { minValiditySeconds: a.minValidity } : undefined)
    if (a.json) json(g)
    else out(g.token + '\n')
    return CliExit.Ok
  } finally {
    client.close()
  }
}

async function cmdEnv(a: ParsedArgs): Promise<number> {
  const client = await open(a)
  try {
    const g = await client.getAuth(a.minValidity !== null ? { minValiditySeconds: a.minValidity } : undefined)
    if (a.json) json({ variables: Object.fromEntries(credentialEnv(g)) })
    else out(envLines(g, a.shell))
    return CliExit.Ok
  } finally {
    client.close()
  }
}

async function cmdExec(a: ParsedArgs): Promise<number> {
  const cmd = a.argv[0] as string
  const found = lookupCommand(cmd, process.env.PATH, process.cwd())
  if (!found.ok) {
    const code = found.status === CliExit.ExecNotFound ? 'command_not_found' : 'command_not_executable'
    return report({ code, exitCode: found.status, message: found.reason }, a.json ? 'json-stderr' : 'text')
  }
  if (a.remote) return cmdExecRemote(a, cmd, found.file)
  let grant: AuthGrant
  try {
    const client = await open(a)
    try {
      grant = await client.getAuth(a.minValidity !== null ? { minValiditySeconds: a.minValidity } : undefined)
    } finally {
      client.close()
    }
  } catch (e) {
    return execFailure(e, a.json)
  }
  // The refresh broker (docs/broker.md): Codex's own refreshes go to the daemon through it.
  let broker: BrokerListener | null = null
  try {
    const { codexEndpoints, startBrokerListener, homeOwned } = await loadExecParts()
    broker = await startBrokerListener({
      upstream: codexEndpoints(process.env),
      forward: (kind, body) => forwardToDaemon(a, kind, body),
      homeOwned: () => homeOwned(givenCodexHome(process.env, a.codexHome)),
      note: err,
    })
  } catch (e) {
    err(`codex-auth: the refresh broker could not start (${e instanceof Error ? e.message : String(e)}); ${cmd} refreshes its tokens by itself`)
  }
  const env = { ...childEnv(process.env, grant), ...(broker?.env ?? {}) }
  const code = await runChild(cmd, found.file, a.argv.slice(1), env)
  await broker?.close()
  return code
}

/**
 * What only `exec` and `sink` need, loaded when they run: node:http, node:crypto, the lock and
 * auth.json-writing code would otherwise cost every other command (`token` first) at start-up
 * (docs/architecture.md#library-choices).
 */
async function loadExecParts() {
  const [listener, owner, sink] = await Promise.all([import('./broker-listener.js'), import('../os/home-owner.js'), import('./sink.js')])
  return { ...listener, ...owner, ...sink }
}

/** What `exec --remote` adds to `codex`'s arguments: the file store, whatever config.toml says (Codex reads no variable for it). */
const FILE_STORE_OVERRIDE = ['-c', 'cli_auth_credentials_store="file"'] as const

/**
 * `exec --remote -- codex …` (docs/remote.md#exec---remote): the daemon is elsewhere (its socket
 * forwarded). Codex's own CODEX_HOME gets an auth.json with a placeholder, kept fresh while Codex
 * runs; Codex is told to use the file store; its refreshes go to the daemon through the broker.
 */
async function cmdExecRemote(a: ParsedArgs, cmd: string, file: string): Promise<number> {
  if (path.basename(cmd) !== 'codex') {
    return execFailure(
      new UsageError(`exec --remote runs codex only (it must tell codex to read the auth.json it writes: ${FILE_STORE_OVERRIDE.join(' ')}); ${cmd} is not codex`, 'exec'),
      a.json,
    )
  }
  const home = givenCodexHome(process.env, a.codexHome)
  const { Keeper, LoginPresentError, placeholderLabel, codexEndpoints, startBrokerListener } = await loadExecParts()
  const keeper = new Keeper({
    open: () => open(a, true),
    socket: socketOf(a),
    tokenFile: null,
    codexHome: home,
    label: placeholderLabel('exec'),
    force: a.force,
    note: err,
    speaker: 'codex-auth exec',
  })
  try {
    await keeper.start(false)
  } catch (e) {
    keeper.stop()
    if (e instanceof LoginPresentError) return report({ code: e.code, exitCode: CliExit.ExecSetupFailed, message: e.message }, a.json ? 'json-stderr' : 'text')
    return execFailure(e, a.json)
  }
  let broker: BrokerListener | null = null
  try {
    broker = await startBrokerListener({
      upstream: codexEndpoints(process.env),
      forward: (kind, body) => forwardToDaemon(a, kind, body),
      // The daemon is elsewhere: a placeholder is worth nothing at the real endpoint, so nothing
      // is ever passed through (503 while the daemon cannot be reached; Codex tries again).
      homeOwned: async () => true,
      note: err,
    })
  } catch (e) {
    keeper.stop()
    return execFailure(new Error(`the refresh broker could not start (${e instanceof Error ? e.message : String(e)})`), a.json)
  }
  const grant = keeper.lastGrant
  const env = { ...(grant !== null ? childEnv(process.env, grant) : process.env), CODEX_HOME: home, ...broker.env }
  const code = await runChild(cmd, file, [...FILE_STORE_OVERRIDE, ...a.argv.slice(1)], env)
  keeper.stop()
  await broker.close()
  return code
}

/** `sink` (docs/remote.md#sinks): keeps the files fresh until killed; exits only when it cannot start. */
async function cmdSink(a: ParsedArgs): Promise<number> {
  const { Keeper, LoginPresentError, placeholderLabel } = await loadExecParts()
  const keeper = new Keeper({
    open: () => open(a, true),
    socket: socketOf(a),
    tokenFile: a.tokenFile !== null ? path.resolve(a.tokenFile) : null,
    codexHome: a.codexHome !== null ? path.resolve(a.codexHome) : null,
    label: placeholderLabel('sink'),
    force: a.force,
    note: err,
    speaker: 'codex-auth sink',
  })
  const stop = () => {
    keeper.stop()
    finish(CliExit.Ok)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  try {
    await keeper.start(true)
  } catch (e) {
    keeper.stop()
    if (e instanceof LoginPresentError) return report({ code: e.code, exitCode: CliExit.LoginPresent, message: e.message }, a.json ? 'json' : 'text')
    throw e
  }
  const files = [a.tokenFile, a.codexHome !== null ? path.join(a.codexHome, 'auth.json') : null].filter((f) => f !== null)
  err(`codex-auth sink: keeping ${files.join(' and ')} fresh (Ctrl-C to stop)`)
  return new Promise<number>(() => {})
}

/** One broker request to the daemon, on a connection of its own (the daemon may restart between two). */
async function forwardToDaemon(a: ParsedArgs, kind: 'refresh' | 'revoke', body: Record<string, unknown>): Promise<Forwarded> {
  let client: AuthdClient
  try {
    client = await open(a)
  } catch (e) {
    if (e instanceof DaemonUnreachableError) return 'unreachable'
    throw e
  }
  try {
    // The daemon checks every field (-32602 otherwise): the body goes as Codex sent it.
    return kind === 'refresh' ? await client.brokerRefresh(body as never) : await client.brokerRevoke(body as never)
  } catch (e) {
    if (e instanceof AuthdError && e.code === ErrorCode.InvalidParams) {
      return { status: 400, body: { error: { message: 'The request is missing a field or has one of the wrong type', type: 'invalid_request_error', param: null, code: 'invalid_request' } } }
    }
    if (e instanceof AuthdError && e.code === ErrorCode.MethodNotFound) return 'unsupported'
    // Sent, and then the connection or the daemon failed: a spend may have happened, so never
    // around the daemon; Codex tries again later.
    return { status: 503, body: { error: { message: 'codex-authd did not answer', type: 'server_error', param: null, code: 'temporarily_unavailable' } } }
  } finally {
    client.close()
  }
}

function runChild(cmd: string, file: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise<number>((resolve) => {
    let child: ReturnType<typeof spawnType>
    try {
      child = spawn()(file, args, { stdio: 'inherit', env, argv0: cmd })
    } catch (e) {
      err(`codex-auth: cannot run ${cmd}: ${e instanceof Error ? e.message : String(e)}`)
      return resolve(CliExit.ExecSetupFailed)
    }
    // The terminal sends SIGINT/SIGQUIT to the whole process group: the child gets them itself.
    const ignore = () => {}
    const forward = (sig: NodeJS.Signals) => () => {
      child.kill(sig)
    }
    const handlers: Array<[NodeJS.Signals, () => void]> = [
      ['SIGINT', ignore],
      ['SIGQUIT', ignore],
      ['SIGTERM', forward('SIGTERM')],
      ['SIGHUP', forward('SIGHUP')],
      ['SIGUSR1', forward('SIGUSR1')],
      ['SIGUSR2', forward('SIGUSR2')],
    ]
    for (const [s, h] of handlers) process.on(s, h)
    child.on('error', (e: NodeJS.ErrnoException) => {
      for (const [s, h] of handlers) process.off(s, h)
      err(`codex-auth: ${cmd}: ${e.code === 'ENOENT' ? 'command not found' : e.message}`)
      resolve(e.code === 'ENOENT' ? CliExit.ExecNotFound : e.code === 'EACCES' || e.code === 'ENOEXEC' ? CliExit.ExecNotExecutable : CliExit.ExecSetupFailed)
    })
    child.on('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h)
      if (code !== null) return resolve(code)
      const n = signal ? os.constants.signals[signal] : undefined
      resolve(128 + (n ?? 0))
    })
  })
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * Opens `url` in a browser when there is one here (login-view.ts browserOpener), and tells through
 * `note` when the opener could not run or failed. Returns what is being done, for the words.
 */
function openBrowser(url: string, noBrowser: boolean, note: (line: string) => void): BrowserPlan {
  if (noBrowser) return { kind: 'not-asked' }
  const opener = browserOpener(url, process.platform, process.env)
  if (!opener.ok) return { kind: 'none', reason: opener.reason }
  try {
    const child = spawn()(opener.command, opener.args, { stdio: 'ignore', detached: true })
    child.on('error', (e: NodeJS.ErrnoException) => note(`Could not open a browser (${opener.command}: ${e.code === 'ENOENT' ? 'not installed' : e.message}); open the URL above.`))
    child.on('exit', (code) => {
      if (code !== null && code !== 0) note(`Could not open a browser (${opener.command} exited ${code}); open the URL above.`)
    })
    child.unref()
  } catch (e) {
    return { kind: 'none', reason: `${opener.command} could not be run (${e instanceof Error ? e.message : String(e)})` }
  }
  return { kind: 'open' }
}

/** Subscribes before the login starts, so that no loginCompleted can be missed. */
async function loginWaiter(client: AuthdClient): Promise<{ wait(loginId: string): Promise<LoginResult>; close(): void }> {
  const seen = new Map<string, LoginResult>()
  let want: { loginId: string; resolve: (r: LoginResult) => void } | null = null
  const unsubscribe = await client.subscribe({
    loginCompleted: (r) => {
      if (r.status === 'pending') return
      if (want && want.loginId === r.loginId) want.resolve(r)
      else seen.set(r.loginId, r)
    },
  })
  return {
    async wait(loginId: string): Promise<LoginResult> {
      const notified = new Promise<LoginResult>((resolve) => {
        const early = seen.get(loginId)
        if (early) resolve(early)
        else want = { loginId, resolve }
      })
      const polled = (async () => {
        for (;;) {
          const r = await client.awaitLogin({ loginId, timeoutSeconds: 30 })
          if (r.status !== 'pending') return r
        }
      })()
      polled.catch(() => {})
      return Promise.race([notified, polled])
    },
    close: unsubscribe,
  }
}

async function cmdLogin(a: ParsedArgs): Promise<number> {
  if (a.withApiKey) {
    if (process.stdin.isTTY) {
      throw new UsageError(
        '--with-api-key expects the API key on stdin. Try piping it, e.g. `printenv OPENAI_API_KEY | codex-auth login --with-api-key`.',
        'login',
      )
    }
    if (!a.json) err('Reading API key from stdin...')
    const apiKey = (await readStdin()).trim()
    if (apiKey === '') throw new UsageError('no API key provided via stdin', 'login')
    const client = await open(a)
    try {
      const started = await client.login({ method: 'apikey', apiKey })
      if (a.json) json(started)
      else say('Successfully logged in')
      return CliExit.Ok
    } finally {
      client.close()
    }
  }

  const client = await open(a)
  // Ctrl-C asks the daemon to cancel; how the login ended is then printed once, by the one path
  // that prints every ending (the result: `cancelled`, or whatever came first). Printing it in
  // the signal handler too raced the loginCompleted notification: two "Login cancelled" lines.
  let interrupted: NodeJS.Signals | null = null
  let cancelled: () => void = () => {}
  const cancelRequested = new Promise<void>((resolve) => {
    cancelled = resolve
  })
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted !== null) return
    interrupted = signal
    cancelled()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  let progress: Progress | null = null
  const interruptedExit = () => 128 + (os.constants.signals[interrupted ?? 'SIGINT'] ?? 2)
  try {
    const waiter = await loginWaiter(client)
    const started: LoginStarted = await client.login({ method: a.device ? 'device' : 'browser' })
    if (started.method === 'apikey') return CliExit.Ok
    const startedAt = Date.now()
    const expiresAt = Date.parse(started.expiresAt)
    if (!a.json) progress = new Progress(process.stderr, () => progressLine(startedAt, Date.now(), Number.isNaN(expiresAt) ? null : expiresAt))
    const note = (line: string) => (progress !== null ? progress.note(line) : err(line))
    const plan = openBrowser(started.method === 'browser' ? started.authUrl : started.verificationUrl, a.noBrowser, note)
    if (a.json) {
      json(started)
    } else if (started.method === 'browser') {
      say(...browserLoginLines(started, plan))
    } else {
      // The QR code only for a person at a terminal; a pipe or a log gets the URL and the code.
      const qr = process.stdout.isTTY === true ? (await import('./qr.js')).qrLines(started.verificationUrl) : null
      say(...deviceLoginLines(started, qr, plan))
    }
    progress?.start()
    const ended = waiter.wait(started.loginId)
    const first = await Promise.race([ended, cancelRequested.then(() => null)])
    let result: LoginResult
    if (first !== null) result = first
    else {
      // Interrupted: ask the daemon to end the login, then report the ending it answers (which
      // is `succeeded` when the login completed meanwhile). A daemon that does not answer within
      // 5 s is not waited for.
      const asked = client.cancelLogin({ loginId: started.loginId }).catch(() => null)
      const local: LoginResult = { loginId: started.loginId, status: 'cancelled', error: null }
      result = await Promise.race([ended, asked.then(() => ended), new Promise<LoginResult>((r) => setTimeout(() => r(local), 5000).unref())])
    }
    waiter.close()
    progress?.stop()
    if (a.json) json(result)
    const { ok, line } = loginOutcome(result)
    if (!a.json) {
      if (ok) say(line)
      else err(line)
    }
    if (ok) return CliExit.Ok
    return interrupted !== null && result.status === 'cancelled' ? interruptedExit() : CliExit.DaemonFailure
  } catch (e) {
    if (interrupted !== null) {
      progress?.stop()
      if (!a.json) err('Login cancelled')
      return interruptedExit()
    }
    throw e
  } finally {
    progress?.stop()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    client.close()
  }
}

async function cmdLogout(a: ParsedArgs): Promise<number> {
  const client = await open(a)
  try {
    const revoke = !a.noRevoke
    let hadTokens = false
    if (revoke) {
      try {
        const s = await client.status()
        hadTokens = s.mode === 'chatgpt' || s.tokens !== null
      } catch {
        // only used for the note below
      }
    }
    const r = await client.logout({ revoke })
    // logout removes auth.json; a key from the daemon's environment is still served after it.
    let after: Status | null = null
    try {
      after = await client.status()
    } catch {
      // the words below then say only what logout did
    }
    const envKey = after !== null && after.loggedIn && after.source === 'env'
    if (a.json) json(r)
    else if (envKey) {
      say(
        r.wasLoggedIn ? 'Successfully logged out (auth.json removed)' : 'No auth.json to remove',
        "An API key from codex-authd's environment (OPENAI_API_KEY) is still served: logout cannot remove it.",
        envKeyHint(serviceSetup(process.platform, process.env)),
      )
    } else say(r.wasLoggedIn ? 'Successfully logged out' : 'Not logged in')
    if (revoke && r.wasLoggedIn && hadTokens && !r.revoked) {
      err('Note: the refresh token could not be revoked at the issuer; the local credentials were removed.')
    }
    return CliExit.Ok
  } finally {
    client.close()
  }
}

async function cmdRefresh(a: ParsedArgs): Promise<number> {
  const client = await open(a)
  try {
    const g = await client.refresh()
    if (a.json) json(publicGrant(g))
    else if (g.mode === 'apikey') say('Refreshed (an API key is being served)')
    else say(`Token refreshed${g.expiresAt ? `; valid until ${g.expiresAt}` : ''}`)
    return CliExit.Ok
  } finally {
    client.close()
  }
}

async function cmdAudit(a: ParsedArgs): Promise<number> {
  const client = await open(a)
  try {
    const r = await client.audit()
    if (a.json) out(JSON.stringify(r, null, 2) + '\n')
    else for (const line of auditLines(r)) out(line + '\n')
    return CliExit.Ok
  } finally {
    client.close()
  }
}

async function cmdPlaceholders(a: ParsedArgs): Promise<number> {
  const client = await open(a)
  try {
    if (a.revokeId !== null) {
      const r = await client.placeholderRevoke({ id: a.revokeId })
      if (a.json) json(r)
      else say(r.revoked ? `Revoked ${a.revokeId} (and every placeholder rotated from it)` : `Nothing to revoke: ${a.revokeId} is unknown or no longer active`)
      return CliExit.Ok
    }
    const r = await client.placeholderList()
    // Labels come from whoever asked for a placeholder: escaped like every line for a person.
    if (a.json) json(r, 2)
    else say(...placeholderLines(r.placeholders))
    return CliExit.Ok
  } finally {
    client.close()
  }
}

async function cmdWatch(a: ParsedArgs): Promise<number> {
  const client = await open(a, true)
  const line = (s: Status) => json(s)
  await client.subscribe({
    authChanged: line,
    resubscribed: () => {
      // The daemon restarted: what changed meanwhile was not notified, so say where things stand.
      client.status().then(line, () => {})
    },
  })
  err(`Watching ${client.socket} for auth changes (one JSON line each; Ctrl-C to stop)`)
  return new Promise<number>(() => {})
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

export async function main(args: readonly string[]): Promise<number> {
  let a: ParsedArgs
  try {
    a = parseArgs(args)
  } catch (e) {
    if (e instanceof UsageError && e.command === 'exec') return execFailure(e, jsonRequested(args))
    return failureExit(e, { json: jsonRequested(args) })
  }
  // Remote mode is said, never guessed: the flag, or exactly CODEX_AUTH_REMOTE=1.
  if (a.command === 'exec' && process.env.CODEX_AUTH_REMOTE === '1') a.remote = true
  try {
    switch (a.command) {
      case 'help':
        if (a.json) json({ usage: commandHelp(a.helpFor) }, 2)
        else out(commandHelp(a.helpFor))
        return CliExit.Ok
      case 'version':
        if (a.json) json({ version: VERSION })
        else say(`codex-auth ${VERSION}`)
        return CliExit.Ok
      case 'completion': {
        const shell = a.completionShell ?? 'bash'
        if (a.json) json({ shell, script: completionScript(shell) })
        else out(completionScript(shell))
        return CliExit.Ok
      }
      case 'status':
        return await cmdStatus(a)
      case 'token':
        return await cmdToken(a)
      case 'env':
        return await cmdEnv(a)
      case 'exec':
        return await cmdExec(a)
      case 'sink':
        return await cmdSink(a)
      case 'login':
        return await cmdLogin(a)
      case 'logout':
        return await cmdLogout(a)
      case 'refresh':
        return await cmdRefresh(a)
      case 'watch':
        return await cmdWatch(a)
      case 'audit':
        return await cmdAudit(a)
      case 'doctor':
        return await (await import('./doctor-gather.js')).runDoctor(a)
      case 'placeholders':
        return await cmdPlaceholders(a)
    }
  } catch (e) {
    if (a.command === 'exec') return execFailure(e, a.json)
    return failureExit(e, a)
  }
}

function finish(code: number): void {
  // Let stdout drain (a pipe to a slow reader) before exiting.
  process.stdout.write('', () => process.exit(code))
}

main(process.argv.slice(2)).then(finish, (e: unknown) => {
  err(`codex-auth: ${e instanceof Error ? e.message : String(e)}`)
  finish(CliExit.DaemonFailure)
})
