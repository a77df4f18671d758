// Composition root: wires home, state, refresher, logins, the method table and the transport;
// owns start-up order and shutdown (docs/architecture.md#start-up-and-shutdown). Start-up order: lock the home, load and
// resolve, then listen; what was started is closed in reverse, by stop() and by a failed start.
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { DaemonExit } from '../rpc/contract.js'
import { HomeError, resolveCodexHome } from '../codex/home.js'
import type { Logger } from '../log.js'
import { resolveSocketPath } from '../paths.js'
import { LoginManager } from '../login/manager.js'
import { Refresher, type RefresherOptions } from '../refresh/refresher.js'
import { SocketPathError, inheritedSocketPath, listenOnFd, listenOnPath, prepareSocketDir, takeActivationFd } from '../rpc/socket.js'
import { RpcServer, type MethodHandler } from '../rpc/server.js'
import { Transport, type TransportLimits } from '../rpc/transport.js'
import { AuthState, type Snapshot } from '../state/cache.js'
import { resolveAuthTarget } from '../store/authstore.js'
import { OwnedElsewhereError, takeCredentialLock, takeHomeLock } from '../store/ownership.js'
import type { LockHandle } from '../store/flock.js'
import type { Problem } from '../types.js'
import { toRpcError } from './errors.js'
import { methodTable } from './methods.js'
import type { DaemonOptions } from './options.js'
import { buildStatus, type DaemonInfo } from './views.js'

export class StartError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number) {
    super(message)
    this.name = 'StartError'
    this.exitCode = exitCode
  }
}

export interface DaemonContext {
  env: NodeJS.ProcessEnv
  pid: number
  uid: number
  version: string
  log: Logger
  limits?: Partial<TransportLimits>
  /** Test and tuning knobs of the refresher (lock and HTTP timeouts, backoff scale). */
  refresh?: Partial<Pick<RefresherOptions, 'lockTimeoutMs' | 'httpTimeoutMs' | 'getAuthWaitMs' | 'backoffScale'>>
  /** Test knobs of the logins (CODEX_AUTHD_LOGIN_TIMEOUT_MS, CODEX_AUTHD_DEVICE_INTERVAL_MS). */
  login?: { loginTimeoutMs?: number; deviceIntervalMs?: number }
}

export interface RunningDaemon {
  readonly home: string
  readonly socket: string
  stop(reason: string): Promise<void>
  reloadConfig(): Promise<void>
}

/**
 * What the daemon has started, in order. stop() and a failed start close all of it from the last
 * one back, each once; a closer that fails is logged and the rest still run.
 */
class Closers {
  private readonly list: Array<{ what: string; close: () => unknown }> = []
  constructor(private readonly log: Logger) {}

  add(what: string, close: () => unknown): void {
    this.list.push({ what, close })
  }

  async closeAll(): Promise<void> {
    for (const { what, close } of this.list.splice(0).reverse()) {
      try {
        await close()
      } catch (e) {
        this.log.error({ what, err: errorSummary(e) }, 'could not close')
      }
    }
  }
}

export async function startDaemon(options: DaemonOptions, ctx: DaemonContext): Promise<RunningDaemon> {
  const closers = new Closers(ctx.log)
  try {
    return await start(options, ctx, closers)
  } catch (e) {
    await closers.closeAll()
    throw e
  }
}

/** Start-up in order (docs/architecture.md): lock the home, load and resolve, then listen. Each part, once started, goes on `closers`. */
async function start(options: DaemonOptions, ctx: DaemonContext, closers: Closers): Promise<RunningDaemon> {
  const { log } = ctx
  let home: string
  try {
    home = resolveCodexHome(ctx.env, options.codexHome).path
  } catch (e) {
    if (e instanceof HomeError) throw new StartError(e.message, DaemonExit.Config)
    throw e
  }

  const activationFd = takeActivationFd(ctx.env, ctx.pid)
  const computedSocket = resolveSocketPath({ flag: options.socket, codexHome: home, env: ctx.env, uid: ctx.uid }).path
  // Under activation the socket is whatever the unit listens on, not necessarily our own rule's.
  const socketPath = activationFd !== null ? (inheritedSocketPath(activationFd) ?? computedSocket) : computedSocket

  let homeLock: LockHandle
  try {
    homeLock = await takeHomeLock(home, activationFd !== null ? `${socketPath} (socket-activated)` : socketPath)
  } catch (e) {
    if (e instanceof OwnedElsewhereError) throw new StartError(e.message, DaemonExit.HomeOwned)
    throw new StartError(`cannot lock ${home}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, DaemonExit.Config)
  }
  // The lock in force (homeGone below replaces it).
  closers.add('home lock', () => homeLock.release())

  // One daemon per credential file too, whichever home's auth.json leads to it.
  const takeOwnCredential = async (): Promise<LockHandle | null> => takeCredentialLock((await resolveAuthTarget(home)).targetPath, home)
  let credentialLock: LockHandle | null
  try {
    credentialLock = await takeOwnCredential()
  } catch (e) {
    if (e instanceof OwnedElsewhereError) throw new StartError(e.message, DaemonExit.HomeOwned)
    throw new StartError(`cannot lock the credential file of ${home}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, DaemonExit.Config)
  }
  closers.add('credential lock', () => credentialLock?.release())

  if (activationFd === null) {
    try {
      prepareSocketDir(socketPath, ctx.uid)
    } catch (e) {
      if (e instanceof SocketPathError) throw new StartError(e.message, DaemonExit.SocketUnusable)
      throw e
    }
  }

  const envApiKey = ctx.env.OPENAI_API_KEY?.trim() ? ctx.env.OPENAI_API_KEY : null
  const state = new AuthState({ home, envApiKey, overrides: options.overrides })
  closers.add('state', () => state.stop())
  await state.start()

  const daemon: DaemonInfo = {
    version: ctx.version,
    pid: ctx.pid,
    startedAt: new Date().toISOString(),
    socket: socketPath,
    activated: activationFd !== null,
  }
  const issuer = { issuer: options.issuer, kind: options.issuerKind, clientId: options.clientId }
  const refresher = new Refresher({
    home,
    state,
    issuer,
    env: ctx.env,
    log,
    userAgent: `codex-authd/${ctx.version}`,
    journalFallbackDir: journalFallbackDir(ctx.env, activationFd === null ? socketPath : null),
    ...ctx.refresh,
  })
  closers.add('refresher', () => refresher.stop())
  await refresher.start()

  const server = net.createServer({ pauseOnConnect: false })
  const rpc = new RpcServer({
    mapError: toRpcError,
    onInternalError: (method, error) => log.error({ method, err: errorSummary(error) }, 'method failed'),
  })
  const transport = new Transport(
    (message, conn) => rpc.receive(message, conn),
    {
      onReceiveError: (error) => log.error({ err: errorSummary(error) }, 'message failed'),
      onLimit: (kind, connId) => log.warn({ kind, connId }, 'connection limit reached'),
    },
    ctx.limits,
  )
  const logins = new LoginManager({
    home,
    state,
    issuer,
    env: ctx.env,
    log,
    loginPorts: options.loginPorts,
    broadcast: (method, params) => transport.broadcast(method, params),
    ...ctx.login,
  })
  closers.add('logins', () => logins.stop())
  for (const [name, handler] of Object.entries(methodTable({ snapshot: () => state.current, daemon, codexHome: home, refresher, logins, log }))) {
    rpc.addMethod(name, handler as MethodHandler)
  }

  const statusNow = (snap: Snapshot) => buildStatus(snap, daemon, refresher.status(), home)
  let loggedProblems = new Set<string>()
  const logProblems = (problems: Problem[]): void => {
    const now = new Set<string>()
    for (const p of problems) {
      const key = `${p.code}\u0000${p.message}`
      now.add(key)
      if (!loggedProblems.has(key)) log.warn({ problem: p.code, file: p.file, line: p.line, column: p.column }, p.message)
    }
    loggedProblems = now
  }
  logProblems(state.current.problems)

  state.on('change', (snap) => {
    const s = statusNow(snap)
    log.info({ loggedIn: s.loggedIn, mode: s.mode, source: s.source, accountId: s.account?.accountId ?? null }, 'auth changed')
    logProblems(snap.problems)
    transport.broadcast('authChanged', s)
  })
  state.on('error', (e) => log.error({ err: errorSummary(e) }, 'watcher error'))
  state.on('homeGone', () => {
    // docs/contract.md#ownership: recreate the home (0700) and its lock as soon as we notice.
    void (async () => {
      try {
        fs.mkdirSync(home, { recursive: true, mode: 0o700 })
        const old = homeLock
        homeLock = await takeHomeLock(home, socketPath)
        await old.release()
        // The old credential lock went with the home when auth.json lived there. Released first:
        // a second flock of ours on a surviving lock file would conflict with our own.
        await credentialLock?.release()
        credentialLock = await takeOwnCredential()
        log.warn({ home }, 'CODEX_HOME was removed; recreated it')
      } catch (e) {
        log.error({ home, err: errorSummary(e) }, 'CODEX_HOME was removed and could not be recreated')
      }
    })()
  })

  transport.attach(server)
  try {
    if (activationFd !== null) await listenOnFd(server, activationFd)
    else await listenOnPath(server, socketPath)
  } catch (e) {
    if (e instanceof SocketPathError) throw new StartError(e.message, DaemonExit.SocketUnusable)
    throw new StartError(`cannot listen: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, DaemonExit.SocketUnusable)
  }
  closers.add('socket', async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      transport.closeAll()
    })
    // A socket we bound is ours to remove; one systemd handed us is never unlinked.
    if (activationFd === null) {
      try {
        if (fs.lstatSync(socketPath).isSocket()) fs.rmSync(socketPath, { force: true })
      } catch {
        // already gone
      }
    }
  })
  log.info(
    { version: ctx.version, home, socket: socketPath, activated: activationFd !== null, loggedIn: statusNow(state.current).loggedIn },
    'codex-authd started',
  )

  let stopping: Promise<void> | null = null
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      await closers.closeAll()
      log.info({ reason }, 'codex-authd stopped')
    })()
    return stopping
  }

  return {
    home,
    socket: socketPath,
    stop,
    reloadConfig: () => state.reload(),
  }
}

/**
 * Where refresh answers are journaled when the home's disk cannot take them (docs/refresh.md#the-journal):
 * the socket's directory, which prepareSocketDir made 0700 and ours; under socket activation
 * $XDG_RUNTIME_DIR/codex-authd (created 0700), or none.
 */
function journalFallbackDir(env: NodeJS.ProcessEnv, ownSocket: string | null): string | null {
  if (ownSocket !== null) return path.dirname(ownSocket)
  const xdg = env.XDG_RUNTIME_DIR
  if (!xdg || !path.isAbsolute(xdg)) return null
  const dir = path.join(xdg, 'codex-authd')
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    return dir
  } catch {
    return null
  }
}

/** An error for the log: its class and errno code, never its message (it may quote input). */
export function errorSummary(e: unknown): { type: string; code?: string } {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code
    return code !== undefined ? { type: e.name, code: String(code) } : { type: e.name }
  }
  return { type: typeof e }
}
