// Composition root: wires the served home (state, refresher, logins and locks: served-home.ts),
// the method table and the transport; follows a relinked CODEX_HOME (docs/architecture.md#a-relinked-home);
// owns start-up order and shutdown (docs/architecture.md#start-up-and-shutdown). Start-up order: lock the home, load and
// resolve, then listen; what was started is closed in reverse, by stop() and by a failed start.
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { DaemonExit } from '../rpc/contract.js'
import { HomeError, resolveCodexHome, type CodexHome } from '../codex/home.js'
import type { Logger } from '../log.js'
import { resolveSocketPath } from '../paths.js'
import {
  SocketPathError,
  inheritedSocketPath,
  listenOnFd,
  listenOnPath,
  prepareSocketDir,
  removeBoundSocket,
  takeActivationFd,
  type BoundSocket,
} from '../rpc/socket.js'
import { RpcServer, type MethodHandler } from '../rpc/server.js'
import { Transport, type TransportLimits } from '../rpc/transport.js'
import { HomeLinkWatcher } from '../state/homelink.js'
import { OwnedElsewhereError } from '../store/ownership.js'
import type { Status } from '../rpc/contract.js'
import type { Snapshot } from '../state/cache.js'
import type { Problem } from '../types.js'
import { peerCredentials } from '../os/peercred.js'
import { AuditLog } from './audit.js'
import { toRpcError } from './errors.js'
import { methodTable, type MethodDeps } from './methods.js'
import { Broker } from '../broker/broker.js'
import { revokeTokens } from '../login/oauth.js'
import { HomeLockError, ServedHome, UnservedHome, type HomeContext, type HomeDeps, type HomeView } from './served-home.js'
import { recoveryScaleFromEnv, type DaemonOptions } from './options.js'
import { buildStatus, type DaemonInfo } from './views.js'

export class StartError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number) {
    super(message)
    this.name = 'StartError'
    this.exitCode = exitCode
  }
}

export interface DaemonContext extends HomeContext {
  pid: number
  uid: number
  limits?: Partial<TransportLimits>
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
  let codexHome: CodexHome
  try {
    codexHome = resolveCodexHome(ctx.env, options.codexHome)
  } catch (e) {
    if (e instanceof HomeError) throw new StartError(e.message, DaemonExit.Config)
    throw e
  }
  const given = codexHome.given

  const activationFd = takeActivationFd(ctx.env, ctx.pid)
  // Named after the home as given, not where it leads: it stays put across a relink.
  const computed = resolveSocketPath({ flag: options.socket, codexHome: given, env: ctx.env, uid: ctx.uid })
  const computedSocket = computed.path
  // Rule 3 puts the socket inside the home, through the link: it moves with a relink (moveSocket).
  const socketInHome = activationFd === null && computed.source === 'home'
  // Under activation the socket is whatever the unit listens on, not necessarily our own rule's.
  const socketPath = activationFd !== null ? (inheritedSocketPath(activationFd) ?? computedSocket) : computedSocket

  const daemon: DaemonInfo = {
    version: ctx.version,
    pid: ctx.pid,
    startedAt: new Date().toISOString(),
    socket: socketPath,
    activated: activationFd !== null,
  }
  // The listening server, and the socket file it bound. With rule 3 the path goes through a
  // symlinked home, and after a relink it names another file: the socket is bound at the resolved
  // path, and removed at stop only while that path still names the file we bound.
  let server = net.createServer({ pauseOnConnect: false })
  let bound: BoundSocket | null = null
  const bindPath = (): string => {
    prepareSocketDir(socketPath, ctx.uid)
    if (!socketInHome) return socketPath
    const resolved = resolvedSocketPath(socketPath)
    prepareSocketDir(resolved, ctx.uid) // its length too
    return resolved
  }
  let listening = false
  const rpc = new RpcServer({
    mapError: toRpcError,
    onInternalError: (method, error) => log.error({ method, err: errorSummary(error) }, 'method failed'),
  })
  const transport = new Transport(
    (message, conn) => rpc.receive(message, conn),
    {
      onReceiveError: (error) => log.error({ err: errorSummary(error) }, 'message failed'),
      onLimit: (kind, connId, held) => log.warn({ kind, connId, held }, 'connection limit reached'),
      identify: (socket) => {
        try {
          return peerCredentials(socket)
        } catch (e) {
          // The C library could not be loaded (flock would have failed first): audit without a peer.
          log.debug({ err: errorSummary(e) }, 'cannot ask for peer credentials')
          return null
        }
      },
    },
    ctx.limits,
  )

  // The home served now; a relink replaces it (follow() below).
  let served: HomeView
  // The refresh broker (docs/broker.md): one per daemon; it asks the home served at each request.
  const broker = new Broker({
    refresher: () => (served.serving && served.refresherStarted ? served.refresher : null),
    reload: () => served.reload(),
    revoke: (tokens) => revokeTokens(homeDeps.issuer, ctx.env, tokens),
    remove: () => served.logins.logout(false),
    log,
    recoveryScale: recoveryScaleFromEnv(ctx.env),
  })
  const counters = (): Status['counters'] => ({ refreshTokenSpends: served.refresher.spendsByReason(), broker: broker.counters() })
  const statusNow = (): Status => buildStatus(served.snapshot(), daemon, served.refresher.status(), { given, target: served.target }, counters())
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
  const announce = (): void => {
    const s = statusNow()
    log.info({ loggedIn: s.loggedIn, mode: s.mode, source: s.source, accountId: s.account?.accountId ?? null }, 'auth changed')
    logProblems(served.snapshot().problems)
    transport.broadcast('authChanged', s)
  }
  const homeDeps: HomeDeps = {
    options,
    ctx,
    issuer: { issuer: options.issuer, kind: options.issuerKind, clientId: options.clientId },
    lockNote: activationFd !== null ? `${socketPath} (socket-activated)` : socketPath,
    journalFallbackDir: journalFallbackDir(ctx.env, activationFd === null ? socketPath : null),
    broadcast: (method, params) => transport.broadcast(method, params),
    // Only the home served now speaks to subscribers; a closing one may still re-read its files.
    onChange: (home) => {
      if (home === served) announce()
    },
    onError: (what, e) => log.error({ err: errorSummary(e) }, what),
  }

  let first: ServedHome
  try {
    first = await ServedHome.open(codexHome.path, homeDeps)
  } catch (e) {
    if (e instanceof OwnedElsewhereError) throw new StartError(e.message, DaemonExit.HomeOwned)
    if (e instanceof HomeLockError) throw new StartError(e.message, DaemonExit.Config)
    throw e
  }
  served = first
  /** Callers waiting on the home served now, woken when a relink replaces it. */
  const replacedWaiters = new Set<() => void>()
  // Whatever is served at the end (follow() replaces it), after any relink still under way.
  let following: Promise<void> = Promise.resolve()
  let stopping = false
  closers.add('served home', async () => {
    stopping = true
    await following
    await served.close()
  })

  if (activationFd === null) {
    try {
      prepareSocketDir(socketPath, ctx.uid)
    } catch (e) {
      if (e instanceof SocketPathError) throw new StartError(e.message, DaemonExit.SocketUnusable)
      throw e
    }
  }
  await first.activate()

  /**
   * A relink (docs/architecture.md#a-relinked-home): where does the home lead now? Somewhere else:
   * open that directory (its locks first), serve it, then close the old one (its in-flight refresh
   * commits into the old directory) and only then let the new one refresh. Serialized: each step
   * starts from what is on disk when it runs, so a burst of relinks ends at the last target.
   */
  const links = new HomeLinkWatcher(given)
  const follow = (why: string): Promise<void> => {
    following = following.then(async () => {
      if (stopping) return
      const target = links.sync()
      // The same place: nothing to do, unless a reload retries a home we could not serve.
      if (target === served.target && (served.serving || why !== 'reload')) return
      const old = served
      const handover = old instanceof ServedHome ? old.credentialLock : null
      let next: HomeView
      if (target === null) {
        next = new UnservedHome(null, homeProblem('home_invalid', given, `CODEX_HOME ${given} no longer leads to a directory: not serving anything until it does`))
        log.error({ home: given }, 'CODEX_HOME no longer leads to a directory')
      } else {
        try {
          next = await ServedHome.open(target, homeDeps, handover)
        } catch (e) {
          const owned = e instanceof OwnedElsewhereError
          const message = owned || e instanceof HomeLockError ? (e as Error).message : `cannot serve ${target}: ${errorSummary(e).code ?? errorSummary(e).type}`
          next = new UnservedHome(target, homeProblem(owned ? 'home_owned' : 'home_invalid', target, `CODEX_HOME ${given} now leads to ${target}, which is not served: ${message}`))
          log.error({ home: given, target, err: errorSummary(e) }, 'CODEX_HOME was relinked to a directory this daemon cannot own')
        }
      }
      if (stopping) {
        await next.close(handover)
        return
      }
      served = next
      for (const wake of [...replacedWaiters]) wake()
      log.warn({ home: given, from: old.target, to: next.target, why }, 'CODEX_HOME was relinked')
      announce()
      if (socketInHome && listening && next instanceof ServedHome) await moveSocket()
      await old.close(next instanceof ServedHome ? next.credentialLock : null)
      if (next instanceof ServedHome) await next.activate()
    }).catch((e) => log.error({ err: errorSummary(e) }, 'could not follow CODEX_HOME'))
    return following
  }
  /** Rule 3: bind the same path again, now in the new target, and stop accepting on the old one. */
  const moveSocket = async (): Promise<void> => {
    const moved = net.createServer({ pauseOnConnect: false })
    let at: BoundSocket
    try {
      const where = bindPath()
      transport.attach(moved)
      at = await listenOnPath(moved, where)
    } catch (e) {
      moved.close()
      log.error({ socket: socketPath, err: errorSummary(e) }, 'could not move the socket into the new CODEX_HOME; set CODEX_AUTHD_SOCK')
      return
    }
    const [old, oldAt] = [server, bound]
    server = moved
    bound = at
    old.close() // open connections stay with the transport
    removeBoundSocket(oldAt)
  }
  links.on('change', () => void follow('relinked'))
  links.on('error', (e) => log.error({ err: errorSummary(e) }, 'watcher error'))
  closers.add('link watcher', () => links.close())
  // Armed only when the home's path goes through a symlink; it also catches a relink made while we started.
  await follow('start')

  /**
   * `work` on the home served now; settles 'replaced' as soon as a relink replaces that home, so
   * that a caller waiting on the old home's refresh (up to its HTTP timeout) is answered from the
   * new home at once. The abandoned work goes on in the old home, which commits it there.
   */
  const onServedHome = async (work: (home: HomeView) => Promise<void>): Promise<'done' | 'replaced'> => {
    const home = served
    let wake!: () => void
    const replaced = new Promise<'replaced'>((resolve) => (wake = () => resolve('replaced')))
    replacedWaiters.add(wake)
    try {
      const r = await Promise.race([work(home).then(() => ({ ok: true as const }), (error: unknown) => ({ ok: false as const, error })), replaced])
      if (r === 'replaced' || served !== home) return 'replaced'
      if (!r.ok) throw r.error
      return 'done'
    } finally {
      replacedWaiters.delete(wake)
    }
  }
  const refresher: MethodDeps['refresher'] = {
    // getAuth: for the home served when it answers (a relink meanwhile: ask the new home).
    ensureFresh: async (min) => {
      const fresh = async (home: HomeView): Promise<void> => {
        // Until the old home's refresh has landed, the new one may not refresh: a token valid
        // long enough is served at once, anything else waits (docs/architecture.md#a-relinked-home).
        if (!home.refresherStarted) {
          if (validFor(home.snapshot(), min)) return
          await home.ready
        }
        await home.refresher.ensureFresh(min)
      }
      let outcome: 'done' | 'replaced'
      do outcome = await onServedHome(fresh)
      while (outcome === 'replaced')
    },
    // `refresh` asked for the tokens of the home served then; relinked meanwhile, it answers with
    // the new home's grant rather than spend the new home's token unasked.
    forceRefresh: async () => {
      await onServedHome(async (home) => {
        await home.ready
        await home.refresher.forceRefresh()
      })
    },
    status: () => served.refresher.status(),
    // A read of the served home's store (a keyring entry replaced silently); a relink reads anew anyway.
    rereadIfStale: () => served.refresher.rereadIfStale(),
  }
  const logins: MethodDeps['logins'] = {
    start: (method, apiKey) => served.logins.start(method, apiKey),
    wait: (loginId, timeoutMs, cancel) => served.logins.wait(loginId, timeoutMs, cancel),
    cancel: (loginId) => served.logins.cancel(loginId),
    logout: (revoke) => served.logins.logout(revoke),
  }
  for (const [name, handler] of Object.entries(
    methodTable({
      snapshot: () => served.snapshot(),
      daemon,
      home: () => ({ given, target: served.target }),
      refresher,
      logins,
      broker,
      spendsByReason: () => served.refresher.spendsByReason(),
      log,
      audit: new AuditLog(),
    }),
  )) {
    rpc.addMethod(name, handler as MethodHandler)
  }
  logProblems(served.snapshot().problems)

  transport.attach(server)
  try {
    if (activationFd !== null) await listenOnFd(server, activationFd)
    else {
      bound = await listenOnPath(server, bindPath())
    }
  } catch (e) {
    if (e instanceof SocketPathError) throw new StartError(e.message, DaemonExit.SocketUnusable)
    throw new StartError(`cannot listen: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, DaemonExit.SocketUnusable)
  }
  listening = true
  closers.add('socket', async () => {
    listening = false
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      transport.closeAll()
    })
    // A socket we bound is ours to remove; one systemd handed us is never unlinked.
    removeBoundSocket(bound)
  })
  log.info(
    { version: ctx.version, home: given, target: served.target, socket: socketPath, activated: activationFd !== null, loggedIn: statusNow().loggedIn },
    'codex-authd started',
  )

  let stopped: Promise<void> | null = null
  const stop = (reason: string): Promise<void> => {
    stopped ??= (async () => {
      await closers.closeAll()
      log.info({ reason }, 'codex-authd stopped')
    })()
    return stopped
  }

  return {
    home: given,
    socket: socketPath,
    stop,
    // SIGHUP: look again at where the home leads (a relink of a path we do not watch), then re-read.
    reloadConfig: async () => {
      await follow('reload')
      await served.reload()
    },
  }
}

/** The socket file a path names now, its directory's symlinks resolved (the path itself if that fails). */
function resolvedSocketPath(p: string): string {
  try {
    return path.join(fs.realpathSync(path.dirname(p)), path.basename(p))
  } catch {
    return p
  }
}

/** The served ChatGPT access token is valid for at least `minSeconds` more. */
function validFor(snap: Snapshot, minSeconds: number): boolean {
  const r = snap.resolved
  return r.kind === 'chatgpt' && r.accessClaims.exp !== null && r.accessClaims.exp * 1000 - Date.now() >= minSeconds * 1000
}

function homeProblem(code: 'home_invalid' | 'home_owned', file: string, message: string): Problem {
  return { code, message, file, line: null, column: null }
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
