// The cache: watch CODEX_HOME -> read -> resolve -> notify. Never stale for longer than one read
// after a change, and never replaces a good credential with a half-written file (docs/watching.md).
import fs, { type FSWatcher, type Stats } from 'node:fs'
import path from 'node:path'
import { EventEmitter } from 'node:events'
import { resolveSettings, type ConfigOverride } from '../codex/config.js'
import { resolveAuth } from '../codex/resolve.js'
import { readAuth, resolveAuthTarget, type AuthRead } from '../store/authstore.js'
import { danglingLinkTarget, readSmallTextFile } from '../store/textfile.js'
import type { AuthFile, Problem, Resolved, Settings } from '../types.js'

export const CONFIG_MAX_BYTES = 1024 * 1024
const WATCHED = new Set(['auth.json', 'config.toml'])

/** New tokens a refresh obtained but could not write yet (docs/refresh.md#pending-tokens). */
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
  /**
   * Second read after the last event: a read can overlap a write that the kernel reported as one
   * coalesced event (and with chokidar, a change within 50 ms of the previous was dropped).
   */
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
  /** fs.watch on home/<name> (follows a symlink to its target), with the file it was set up on. */
  private fileWatches = new Map<string, { w: FSWatcher; id: string }>()
  /** fs.watch on CODEX_HOME itself: only while one of the two files is missing or not a plain file. */
  private homeDirWatch: FSWatcher | null = null
  /** fs.watch on the parent (nearest existing ancestor): only while CODEX_HOME is missing. */
  private parentWatch: { w: FSWatcher; dir: string; child: string } | null = null
  /** fs.watch on a symlinked auth.json's target directory (docs/watching.md#what-the-daemon-watches). */
  private targetWatch: { w: FSWatcher; dir: string; name: string } | null = null
  /** The target's name when a symlinked auth.json points into CODEX_HOME itself. */
  private targetInHome: string | null = null
  /** dev:ino of CODEX_HOME the watches belong to; null: missing; undefined: not looked yet. */
  private homeId: string | null | undefined = undefined
  /**
   * An open descriptor on that directory: it pins the inode, so a directory created at the same
   * path after `rm -r` cannot get the same inode number (filesystems reuse them at once) and
   * pass for the old one. It costs no wake-up.
   */
  private homeFd: number | null = null
  /** Wake-up accounting, for tests and benchmarks (never reset). */
  readonly watchStats = {
    /** fs.watch callbacks of any kind: each one is a wake-up of the process. */
    callbacks: 0,
    /** Callbacks about other files (Codex's sqlite, sessions, siblings while the home is missing). */
    ignored: 0,
    /** Reads of auth.json and config.toml (readAndResolve runs). */
    reads: 0,
  }
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

  /** Watch, then load once (before the daemon listens). */
  async start(): Promise<void> {
    // Every read first sets up the watches (syncWatches): nothing written after them is missed.
    await this.reload()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.trailing) clearTimeout(this.trailing)
    this.closeHomeWatches()
    this.closeParentWatch()
    this.closeTargetWatch()
    this.pinHome(null)
    await this.running?.catch(() => {})
  }

  /** What is watched right now (for tests and diagnostics). */
  get watchedPaths(): string[] {
    const out = [...this.fileWatches.keys()].map((n) => path.join(this.home, n))
    if (this.homeDirWatch) out.push(this.home)
    if (this.parentWatch) out.push(this.parentWatch.dir)
    if (this.targetWatch) out.push(this.targetWatch.dir)
    return out
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

  /**
   * A reload started from a watcher callback or a timer: nobody awaits it, so a failure is
   * reported (logged by the daemon) rather than left as an unhandled rejection, which would end
   * the process. The last snapshot stays; the next event or timer reads again.
   */
  private reloadInBackground(): Promise<void> {
    return this.reload().catch((e) => this.watchError(e))
  }

  private schedule(): void {
    if (this.stopped) return
    void this.reloadInBackground()
    if (this.trailing) clearTimeout(this.trailing)
    this.trailing = setTimeout(() => {
      this.trailing = null
      void this.reloadInBackground()
    }, this.opts.trailingMs)
    this.trailing.unref()
  }

  private async readAndResolve(): Promise<void> {
    this.watchStats.reads++
    this.syncWatches()
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
    // A dangling symlink reads as absent (as in Codex), but the user should hear why.
    if (configText.state === 'absent') {
      const to = await danglingLinkTarget(configFile)
      if (to !== null) configProblems.push(fileProblem('config_invalid', configFile, `${configFile} is a symlink to ${to}, which does not exist; using defaults`))
    }
    if (read.state === 'absent') {
      const authFile = path.join(this.home, 'auth.json')
      const to = await danglingLinkTarget(authFile)
      if (to !== null) {
        configProblems.push(fileProblem('auth_unreadable', authFile, `${authFile} is a symlink to ${to}, which does not exist: not logged in (a login writes through the link)`))
      }
    }

    let served: AuthFile | null
    if (read.state === 'ok') served = read.auth
    else if (read.state === 'absent') served = null
    else {
      // Unparsable: maybe a writer is half-way through. Look again once before believing it.
      if (this.snap.read.state === 'ok' && !this.settling) {
        this.settling = true
        setTimeout(() => {
          void this.reloadInBackground().finally(() => {
            this.settling = false
          })
        }, this.opts.settleMs).unref()
        return
      }
      served = this.snap.served
    }
    if (read.state !== 'unreadable') await this.watchTarget()
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

  /*
   * Watching (docs/watching.md), so that an idle daemon is woken by nothing but the two files it
   * serves. inotify wakes the process for every event in a watched directory, and any filter
   * (chokidar's `ignored` included) runs only after the wake-up; chokidar also re-reads the whole
   * directory on each directory event (measured: a parent watch with files created beside the home
   * cost over 100 context switches per created file). Hence plain fs.watch, in three modes:
   *   - files:  auth.json and config.toml both plain files, or symlinks to files (the usual home):
   *             watch the two files only. Codex's sqlite files, sessions/ and logs beside them, and
   *             anything in the parent, wake nothing. A rename over a file, its deletion, or the
   *             removal of CODEX_HOME (rm -r deletes the files first) is an event on the old inode.
   *   - home:   one of them missing (its creation must be seen) or a symlink (so must a relink):
   *             watch CODEX_HOME itself too. Other names wake the process but are dropped on the
   *             name alone: no stat, no read.
   *   - parent: CODEX_HOME missing: emit homeGone (the daemon recreates it at once) and watch its
   *             parent (nearest existing ancestor) for the home's name only, until it is back.
   * Every read first calls syncWatches(), which compares what is on disk (CODEX_HOME's dev:ino,
   * each file's dev:ino and kind) with what is watched and re-arms; the read itself comes after,
   * so whatever changed while re-arming is read anyway. CODEX_HOME replaced by a new directory
   * (rm -r + mkdir before we looked) has another dev:ino — we hold the old one open, so its number
   * cannot be reused — hence homeGone (the daemon retakes its lock there) and fresh watches.
   * Not seen in `files` mode: CODEX_HOME renamed away (or a symlinked CODEX_HOME relinked) while
   * nothing writes to its two files afterwards; the next reload (SIGHUP, a refresh) notices.
   */
  private syncWatches(): void {
    // A few rounds: the homeGone handler may recreate the home synchronously, and the home may
    // come and go while we arm.
    for (let round = 0; round < 5 && !this.stopped; round++) {
      const id = dirIdOf(this.home)
      if (id !== this.homeId) {
        const known = this.homeId
        this.closeHomeWatches()
        if (this.pinHome(id) !== id) continue // replaced again meanwhile
        this.homeId = id
        if (known !== undefined && known !== null) {
          // Removed, or replaced by another directory: the owner recreates it and retakes its lock.
          this.emit('homeGone')
          continue
        }
      }
      if (id === null) {
        if (!this.watchParent() || dirIdOf(this.home) === null) return
        continue // it came back while we armed the parent watch
      }
      if (this.watchHome()) {
        this.closeParentWatch()
        return
      }
      // The home went away while we armed its watches: look again.
    }
  }

  /** Arm the watches of an existing CODEX_HOME. false: it vanished meanwhile. */
  private watchHome(): boolean {
    const files = [...WATCHED].map((name) => {
      const p = path.join(this.home, name)
      const lst = lstatQuiet(p)
      const st = lst?.isSymbolicLink() ? statQuiet(p) : lst
      return { name, p, lst, st }
    })
    // A file missing: its creation is only seen on the directory; a symlink: so is a relink.
    let needDir = this.targetInHome !== null || files.some((f) => f.lst === undefined || !f.lst.isFile())
    if (needDir && !this.watchHomeDir()) return false
    for (const f of files) {
      // The directory's watch reports writes to its plain files; a symlink's target needs its own.
      const own = f.st?.isFile() === true && (!needDir || f.lst?.isSymbolicLink() === true)
      if (own && this.watchFile(f.name, f.p, idOf(f.st!))) continue
      this.closeFileWatch(f.name)
      if (own && !needDir) {
        needDir = true // vanished while we armed: its re-creation needs the directory
        if (!this.watchHomeDir()) return false
      }
    }
    if (!needDir) {
      this.homeDirWatch?.close()
      this.homeDirWatch = null
    }
    return true
  }

  /** Watch CODEX_HOME itself, for the names that matter. false: it vanished meanwhile. */
  private watchHomeDir(): boolean {
    if (this.homeDirWatch !== null) return true
    const self = path.basename(this.home)
    const w = this.fsWatch(this.home, (name) => name === self || WATCHED.has(name) || name === this.targetInHome)
    if (w === null) return dirIdOf(this.home) !== null
    this.homeDirWatch = w
    w.on('error', (e) => {
      if (this.homeDirWatch === w) this.homeDirWatch = null
      this.watchFailed(w, e)
    })
    return true
  }

  /** Hold CODEX_HOME open (or nothing, for null); the dev:ino of what is held. */
  private pinHome(id: string | null): string | null {
    if (this.homeFd !== null) fs.closeSync(this.homeFd)
    this.homeFd = null
    if (id === null) return null
    try {
      this.homeFd = fs.openSync(this.home, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
      return idOf(fs.fstatSync(this.homeFd))
    } catch {
      return dirIdOf(this.home) === null ? null : id
    }
  }

  /** Watch home/<name> (the file itself, or a symlink's target). false: not watchable now. */
  private watchFile(name: string, p: string, id: string): boolean {
    const cur = this.fileWatches.get(name)
    if (cur?.id === id) return true
    this.closeFileWatch(name)
    // 'rename' on a file watch: the inode was deleted or moved, and this watch is dead. Drop it
    // now: its inode number may come back for the next file of that name.
    const w = this.fsWatch(p, () => true, () => {
      if (this.fileWatches.get(name)?.w === w) this.closeFileWatch(name)
    })
    if (w === null) return false
    this.fileWatches.set(name, { w, id })
    w.on('error', (e) => {
      if (this.fileWatches.get(name)?.w === w) this.fileWatches.delete(name)
      this.watchFailed(w, e)
    })
    return true
  }

  /** CODEX_HOME missing: watch its nearest existing ancestor for the one name that leads to it. */
  private watchParent(): boolean {
    let dir = path.dirname(this.home)
    let child = path.basename(this.home)
    while (!statQuiet(dir)?.isDirectory()) {
      const up = path.dirname(dir)
      if (up === dir) return false
      child = path.basename(dir)
      dir = up
    }
    if (this.parentWatch?.dir === dir && this.parentWatch.child === child) return true
    this.closeParentWatch()
    const self = path.basename(dir)
    const w = this.fsWatch(dir, (name) => name === child || name === self)
    if (w === null) return false
    this.parentWatch = { w, dir, child }
    w.on('error', (e) => {
      if (this.parentWatch?.w === w) this.parentWatch = null
      this.watchFailed(w, e)
    })
    return true
  }

  /**
   * fs.watch with the earliest possible filter: `relevant` sees the entry name (for a directory)
   * and anything else is counted and dropped without touching the disk. null: could not watch
   * (vanished: silently; anything else, e.g. ENOSPC for the inotify limit, is reported).
   */
  private fsWatch(p: string, relevant: (name: string) => boolean, onRename?: () => void): FSWatcher | null {
    try {
      const w = fs.watch(p, { persistent: true }, (event, name) => {
        this.watchStats.callbacks++
        if (name !== null && !relevant(name)) {
          this.watchStats.ignored++
          return
        }
        if (event === 'rename') onRename?.()
        this.schedule()
      })
      return w
    } catch (e) {
      if (!vanished(e)) this.watchError(e)
      return null
    }
  }

  private watchFailed(w: FSWatcher, e: unknown): void {
    w.close()
    this.watchError(e)
    // Look again: the next read re-arms what is missing.
    this.schedule()
  }

  private closeFileWatch(name: string): void {
    this.fileWatches.get(name)?.w.close()
    this.fileWatches.delete(name)
  }

  private closeHomeWatches(): void {
    for (const name of [...this.fileWatches.keys()]) this.closeFileWatch(name)
    this.homeDirWatch?.close()
    this.homeDirWatch = null
  }

  private closeParentWatch(): void {
    this.parentWatch?.w.close()
    this.parentWatch = null
  }

  private closeTargetWatch(): void {
    this.targetWatch?.w.close()
    this.targetWatch = null
  }

  /**
   * A watcher error (e.g. ELOOP from a symlink loop planted as auth.json) is reported, never
   * thrown: emitting 'error' with no listener throws, and during start() the daemon has not
   * subscribed yet. The file itself is reported by the read (auth_unreadable).
   */
  private watchError(e: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', e)
  }

  /**
   * A symlinked auth.json: watch the target's directory too (docs/watching.md#what-the-daemon-watches), for the target's name
   * only. The file watch on home/auth.json already follows the link to the target itself; this
   * one sees the target created again after a deletion.
   */
  private async watchTarget(): Promise<void> {
    if (this.stopped) return
    const target = await resolveAuthTarget(this.home)
    if (this.stopped) return
    const dir = target.isSymlink ? path.dirname(target.targetPath) : null
    const name = path.basename(target.targetPath)
    const inHome = dir !== null && dir === this.home ? name : null
    if (inHome !== this.targetInHome) {
      // The home directory's watch lets this name through too (its filter reads the field).
      this.targetInHome = inHome
      this.syncWatches()
      this.again = true // armed after the read: read once more
    }
    if (dir === null || dir === this.home) {
      this.closeTargetWatch()
      return
    }
    if (this.targetWatch?.dir === dir && this.targetWatch.name === name) return
    this.closeTargetWatch()
    const w = this.fsWatch(dir, (n) => n === name)
    if (w === null) return
    this.again = true // armed after the read: read once more
    this.targetWatch = { w, dir, name }
    w.on('error', (e) => {
      if (this.targetWatch?.w === w) this.targetWatch = null
      this.watchFailed(w, e)
    })
  }
}

const idOf = (st: Stats): string => `${st.dev}:${st.ino}`

/** stat() without throwing: undefined when missing, looping or unreachable. */
function statQuiet(p: string): Stats | undefined {
  try {
    return fs.statSync(p)
  } catch {
    return undefined
  }
}

function lstatQuiet(p: string): Stats | undefined {
  try {
    return fs.lstatSync(p)
  } catch {
    return undefined
  }
}

function dirIdOf(p: string): string | null {
  const st = statQuiet(p)
  return st?.isDirectory() ? idOf(st) : null
}

/** fs.watch on something that vanished or is not what we expected: not worth reporting. */
function vanished(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP'
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

function fileProblem(code: Problem['code'], file: string, message: string): Problem {
  return { code, message, file, line: null, column: null }
}
