// The cache: watch CODEX_HOME -> read -> resolve -> notify. Never stale for longer than one read
// after a change, and never replaces a good credential with a half-written file (DESIGN §1, §11).
import { stat } from 'node:fs/promises'
import path from 'node:path'
import { EventEmitter } from 'node:events'
import type { FSWatcher } from 'chokidar'
import { resolveSettings, type ConfigOverride } from './config.js'
import { resolveAuth } from './resolve.js'
import { readAuth, resolveAuthTarget, type AuthRead } from './store/authstore.js'
import { readSmallTextFile } from './store/textfile.js'
import type { AuthFile, Problem, Resolved, Settings } from './types.js'

export const CONFIG_MAX_BYTES = 1024 * 1024
const WATCHED = new Set(['auth.json', 'config.toml'])

/** New tokens a refresh obtained but could not write yet (DESIGN §9 step 3). */
export interface PendingTokens {
  /** The refresh token that was spent to get them. */
  spentRefreshToken: string
  accountId: string | null
  /** The whole file as it should be once committed. */
  auth: AuthFile
  /** A commit was tried and failed: reported as the `refresh_pending` problem. */
  stuck: boolean
}

export interface Snapshot {
  /** Bumped on every change that subscribers are told about. */
  generation: number
  /** What the last read of auth.json gave. */
  read: AuthRead
  /** The file the credential was resolved from: the last good one while auth.json is unreadable. */
  served: AuthFile | null
  settings: Settings
  resolved: Resolved
  problems: Problem[]
  pending: PendingTokens | null
}

export interface StateOptions {
  home: string
  envApiKey: string | null
  overrides: ConfigOverride[]
  /** Wait before believing an unparsable auth.json (older writers wrote in place). */
  settleMs?: number
  /** Second read after the last event: chokidar drops a change within 50 ms of the previous. */
  trailingMs?: number
}

export interface StateEvents {
  change: [Snapshot]
  /** CODEX_HOME itself disappeared; the owner recreates it. */
  homeGone: []
  /** Pending tokens were dropped because the file changed under them. */
  pendingDropped: [PendingTokens]
  error: [unknown]
}

export class AuthState extends EventEmitter<StateEvents> {
  readonly home: string
  private readonly opts: Required<Omit<StateOptions, 'home' | 'envApiKey' | 'overrides'>>
  private envApiKey: string | null
  private overrides: ConfigOverride[]
  private snap: Snapshot
  private fingerprint = ''
  private watcher: FSWatcher | null = null
  private targetWatcher: FSWatcher | null = null
  private watchedTargetDir: string | null = null
  /** dev:ino of CODEX_HOME when the watcher was set up (null: missing then). */
  private watchedHomeId: string | null = null
  /** homeGone was emitted for the home being watched (chokidar saw it go). */
  private homeGoneSeen = false
  private running: Promise<void> | null = null
  private again = false
  private trailing: NodeJS.Timeout | null = null
  private settling = false
  private stopped = false
  /** The last read, kept so that setPending can resolve again without I/O. */
  private inputs: { read: AuthRead; fileAuth: AuthFile | null; settings: Settings; configProblems: Problem[] } | null = null

  constructor(options: StateOptions) {
    super()
    this.home = options.home
    this.envApiKey = options.envApiKey
    this.overrides = options.overrides
    this.opts = { settleMs: options.settleMs ?? 50, trailingMs: options.trailingMs ?? 60 }
    const settings = resolveSettings(null, path.join(this.home, 'config.toml'), []).settings
    this.snap = {
      generation: 0,
      read: { state: 'absent' },
      served: null,
      settings,
      resolved: { kind: 'none' },
      problems: [],
      pending: null,
    }
  }

  get current(): Snapshot {
    return this.snap
  }

  /** Load once (before the daemon listens), then watch. */
  async start(): Promise<void> {
    await this.reload()
    await this.watch()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.trailing) clearTimeout(this.trailing)
    await Promise.all([this.watcher?.close(), this.targetWatcher?.close()])
    await this.running?.catch(() => {})
  }

  /** Re-read now (coalesced: a reload asked for while one runs makes one more run). */
  reload(): Promise<void> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = (async () => {
      try {
        do {
          this.again = false
          await this.readAndResolve()
        } while (this.again && !this.stopped)
      } finally {
        this.running = null
      }
    })()
    return this.running
  }

  /** SIGHUP: the overrides stay, the file is read again. */
  setOverrides(overrides: ConfigOverride[]): Promise<void> {
    this.overrides = overrides
    return this.reload()
  }

  /** The refresher holds new tokens it could not write yet; they are served until committed. */
  setPending(pending: PendingTokens | null): void {
    this.snap = { ...this.snap, pending }
    this.recompute()
  }

  private schedule(): void {
    if (this.stopped) return
    void this.reload()
    if (this.trailing) clearTimeout(this.trailing)
    this.trailing = setTimeout(() => {
      this.trailing = null
      void this.reload()
    }, this.opts.trailingMs)
    this.trailing.unref()
  }

  private async readAndResolve(): Promise<void> {
    const configFile = path.join(this.home, 'config.toml')
    const [read, configText] = await Promise.all([readAuth(this.home), readSmallTextFile(configFile, CONFIG_MAX_BYTES)])
    const configProblems: Problem[] = []
    let text: string | null = null
    if (configText.state === 'ok') text = configText.text
    else if (configText.state === 'error') {
      configProblems.push({
        code: 'config_invalid',
        message: `cannot read ${configFile}: ${configText.reason}; using defaults`,
        file: configFile,
        line: null,
        column: null,
      })
    }
    const settingsResult = resolveSettings(text, configFile, this.overrides)
    configProblems.push(...settingsResult.problems)

    let served: AuthFile | null
    if (read.state === 'ok') served = read.auth
    else if (read.state === 'absent') served = null
    else {
      // Unparsable: maybe a writer is half-way through. Look again once before believing it.
      if (this.snap.read.state === 'ok' && !this.settling) {
        this.settling = true
        setTimeout(() => {
          void this.reload().finally(() => {
            this.settling = false
          })
        }, this.opts.settleMs).unref()
        return
      }
      served = this.snap.served
    }
    if (read.state === 'ok') await this.watchTarget()
    await this.rewatchIfHomeReplaced()
    this.inputs = { read, fileAuth: served, settings: settingsResult.settings, configProblems }
    this.recompute()
  }

  private recompute(): void {
    if (this.inputs === null) return
    const { read, fileAuth, settings, configProblems } = this.inputs
    let pending = this.snap.pending
    let served = fileAuth
    if (pending !== null) {
      const t = read.state === 'ok' ? read.auth.tokens : null
      if (read.state === 'unreadable') {
        // Keep serving the pending tokens: the file may be mid-write by someone else.
        served = pending.auth
      } else if (t !== null && t.refreshToken === pending.spentRefreshToken && t.accountId === pending.accountId) {
        served = pending.auth
      } else {
        this.emit('pendingDropped', pending)
        pending = null
      }
    }
    const problems = [...configProblems]
    if (read.state === 'unreadable') problems.push(read.problem)
    if (read.state === 'ok' && (read.mode & 0o044) !== 0) {
      problems.push({
        code: 'auth_permissions',
        message: `${read.targetPath} is readable by group or other (mode ${read.mode.toString(8)}); run: chmod 600 ${read.targetPath}`,
        file: read.targetPath,
        line: null,
        column: null,
      })
    }
    if (pending !== null && pending.stuck) {
      problems.push({
        code: 'refresh_pending',
        message: 'refreshed tokens are held in memory until auth.json can be written',
        file: path.join(this.home, 'auth.json'),
        line: null,
        column: null,
      })
    }
    const { resolved, problems: resolveProblems } = resolveAuth({ envApiKey: this.envApiKey, settings, auth: served })
    problems.push(...resolveProblems)
    const next: Snapshot = { generation: this.snap.generation, read, served, settings, resolved, problems, pending }
    const fp = fingerprintOf(next)
    if (fp !== this.fingerprint) {
      this.fingerprint = fp
      next.generation++
      this.snap = next
      this.emit('change', next)
    } else {
      this.snap = next
    }
  }

  private async watch(): Promise<void> {
    const { watch } = await import('chokidar')
    // Watch the parent with depth 1: a watcher on CODEX_HOME itself dies when the directory is
    // removed, and one on a missing directory misses its creation (STACK §2b).
    const parent = path.dirname(this.home)
    const home = this.home
    const watcher = watch(parent, {
      depth: 1,
      ignoreInitial: true,
      atomic: false,
      // Only the two files matter: Codex writes sqlite files and sessions beside them all the time.
      ignored: (p: string) => !(p === parent || p === home || (path.dirname(p) === home && WATCHED.has(path.basename(p)))),
    })
    watcher.on('all', (event, p) => {
      if (p === home && event === 'unlinkDir') {
        this.homeGoneSeen = true
        this.emit('homeGone')
      }
      if (p !== parent) this.schedule()
    })
    // The parent's own fs.watch events for the home entry: a home removed and created again in
    // quick succession may produce no normalized event at all (see rewatchIfHomeReplaced).
    const homeName = path.basename(home)
    watcher.on('raw', (_event, evPath, details) => {
      if (evPath === homeName && (details as { watchedPath?: string } | undefined)?.watchedPath === parent) this.schedule()
    })
    watcher.on('error', (e) => this.emit('error', e))
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()))
    if (this.stopped) {
      await watcher.close()
      return
    }
    this.watcher = watcher
    this.homeGoneSeen = false
    this.watchedHomeId = await homeIdOf(home)
  }

  /**
   * CODEX_HOME removed and created again before chokidar noticed the removal: chokidar keeps its
   * dead fs.watch handle for the old directory (keyed by path) and never sees the new one's files.
   * A home with another inode than the one watched gets a fresh watcher.
   */
  private async rewatchIfHomeReplaced(): Promise<void> {
    if (this.stopped || this.watcher === null) return
    const id = await homeIdOf(this.home)
    if (id === null || id === this.watchedHomeId) return
    // Replaced without an unlinkDir: the owner must take its lock in the new directory too.
    if (!this.homeGoneSeen) this.emit('homeGone')
    const old = this.watcher
    this.watcher = null
    await old.close()
    if (this.stopped) return
    await this.watch()
    // Anything written between the replacement and the new watcher: read once more.
    this.again = true
  }

  /** A symlinked auth.json: watch the target's directory too (DESIGN §11). */
  private async watchTarget(): Promise<void> {
    if (this.stopped) return
    const target = await resolveAuthTarget(this.home)
    const dir = target.isSymlink ? path.dirname(target.targetPath) : null
    if (dir === this.watchedTargetDir) return
    this.watchedTargetDir = dir
    await this.targetWatcher?.close()
    this.targetWatcher = null
    if (dir === null || dir === this.home) return
    const { watch } = await import('chokidar')
    const file = target.targetPath
    const w = watch(dir, { depth: 0, ignoreInitial: true, atomic: false, ignored: (p: string) => !(p === dir || p === file) })
    w.on('all', () => this.schedule())
    w.on('error', (e) => this.emit('error', e))
    this.targetWatcher = w
  }
}

async function homeIdOf(home: string): Promise<string | null> {
  try {
    const st = await stat(home)
    return `${st.dev}:${st.ino}`
  } catch {
    return null
  }
}

/** What subscribers see changing: the credential served, its account, settings and problems. */
function fingerprintOf(s: Snapshot): string {
  const r = s.resolved
  const cred =
    r.kind === 'apikey'
      ? ['apikey', r.source, r.apiKey]
      : r.kind === 'chatgpt'
        ? ['chatgpt', r.tokens.accessToken, r.tokens.accountId, r.idClaims.email, r.idClaims.planType]
        : r.kind === 'forbidden'
          ? ['forbidden', r.message]
          : r.kind === 'unsupported'
            ? ['unsupported', r.mode]
            : ['none']
  return JSON.stringify([cred, s.settings, s.problems.map((p) => [p.code, p.message, p.line, p.column])])
}
