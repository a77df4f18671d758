// Watching CODEX_HOME's two files (docs/watching.md), so that an idle daemon is woken by nothing
// but auth.json and config.toml. The watcher only says "something changed"; the cache (cache.ts)
// decides what to read and when.
import fs, { type FSWatcher, type Stats } from 'node:fs'
import path from 'node:path'
import { EventEmitter } from 'node:events'
import { resolveAuthTarget } from '../store/authstore.js'

const WATCHED = new Set(['auth.json', 'config.toml'])

export interface WatcherEvents {
  /** One of the watched names may have changed: read again. */
  change: []
  /** CODEX_HOME itself disappeared or was replaced; the owner recreates it. */
  homeGone: []
  /** A watch failed (e.g. ENOSPC for the inotify limit, ELOOP from a planted symlink loop). */
  error: [unknown]
}

/*
 * inotify wakes the process for every event in a watched directory, and any filter (chokidar's
 * `ignored` included) runs only after the wake-up; chokidar also re-reads the whole directory on
 * each directory event (measured: a parent watch with files created beside the home cost over 100
 * context switches per created file). Hence plain fs.watch, in three modes:
 *   - files:  auth.json and config.toml both plain files, or symlinks to files (the usual home):
 *             watch the two files only. Codex's sqlite files, sessions/ and logs beside them, and
 *             anything in the parent, wake nothing. A rename over a file, its deletion, or the
 *             removal of CODEX_HOME (rm -r deletes the files first) is an event on the old inode.
 *   - home:   one of them missing (its creation must be seen) or a symlink (so must a relink):
 *             watch CODEX_HOME itself too. Other names wake the process but are dropped on the
 *             name alone: no stat, no read.
 *   - parent: CODEX_HOME missing: emit homeGone (the owner recreates it at once) and watch its
 *             parent (nearest existing ancestor) for the home's name only, until it is back.
 * The owner calls sync() before every read: it compares what is on disk (CODEX_HOME's dev:ino,
 * each file's dev:ino and kind) with what is watched and re-arms; the read itself comes after,
 * so whatever changed while re-arming is read anyway. CODEX_HOME replaced by a new directory
 * (rm -r + mkdir before we looked) has another dev:ino — we hold the old one open, so its number
 * cannot be reused — hence homeGone (the owner retakes its lock there) and fresh watches.
 * Not seen in `files` mode: CODEX_HOME renamed away while nothing writes to its two files
 * afterwards; the next reload (SIGHUP, a refresh) notices. `home` here is the directory served
 * (symlinks resolved): a relinked symlink in front of it is homelink.ts's to notice.
 */
export class HomeWatcher extends EventEmitter<WatcherEvents> {
  /** fs.watch on home/<name> (follows a symlink to its target), with the file it was set up on. */
  private fileWatches = new Map<string, { w: FSWatcher; id: string }>()
  /** fs.watch on CODEX_HOME itself: only while one of the two files is missing or not a plain file. */
  private homeDirWatch: FSWatcher | null = null
  /** fs.watch on the parent (nearest existing ancestor): only while CODEX_HOME is missing. */
  private parentWatch: { w: FSWatcher; dir: string; child: string } | null = null
  /** fs.watch on a symlinked auth.json's target directory. */
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
  private closed = false
  /** Wake-up accounting, for tests and benchmarks (never reset). */
  readonly stats = {
    /** fs.watch callbacks of any kind: each one is a wake-up of the process. */
    callbacks: 0,
    /** Callbacks about other files (Codex's sqlite, sessions, siblings while the home is missing). */
    ignored: 0,
  }

  constructor(readonly home: string) {
    super()
  }

  /** What is watched right now (for tests and diagnostics). */
  get watchedPaths(): string[] {
    const out = [...this.fileWatches.keys()].map((n) => path.join(this.home, n))
    if (this.homeDirWatch) out.push(this.home)
    if (this.parentWatch) out.push(this.parentWatch.dir)
    if (this.targetWatch) out.push(this.targetWatch.dir)
    return out
  }

  close(): void {
    this.closed = true
    this.closeHomeWatches()
    this.closeParentWatch()
    this.closeTargetWatch()
    this.pinHome(null)
  }

  /** Bring the watches in line with what is on disk now (call before each read). */
  sync(): void {
    // A few rounds: the homeGone handler may recreate the home synchronously, and the home may
    // come and go while we arm.
    for (let round = 0; round < 5 && !this.closed; round++) {
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

  /**
   * After a read of a readable (or absent) auth.json: a symlinked auth.json gets its target's
   * directory watched too, for the target's name only. The file watch on home/auth.json already
   * follows the link to the target itself; this one sees the target created again after a
   * deletion. true: a watch was armed after the read, so the owner must read once more.
   */
  async followTarget(): Promise<boolean> {
    if (this.closed) return false
    const target = await resolveAuthTarget(this.home)
    if (this.closed) return false
    let armed = false
    const dir = target.isSymlink ? path.dirname(target.targetPath) : null
    const name = path.basename(target.targetPath)
    const inHome = dir !== null && dir === this.home ? name : null
    if (inHome !== this.targetInHome) {
      // The home directory's watch lets this name through too (its filter reads the field).
      this.targetInHome = inHome
      this.sync()
      armed = true
    }
    if (dir === null || dir === this.home) {
      this.closeTargetWatch()
      return armed
    }
    if (this.targetWatch?.dir === dir && this.targetWatch.name === name) return armed
    this.closeTargetWatch()
    const w = this.fsWatch(dir, (n) => n === name)
    if (w === null) return armed
    this.targetWatch = { w, dir, name }
    w.on('error', (e) => {
      if (this.targetWatch?.w === w) this.targetWatch = null
      this.watchFailed(w, e)
    })
    return true
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
        this.stats.callbacks++
        if (name !== null && !relevant(name)) {
          this.stats.ignored++
          return
        }
        if (event === 'rename') onRename?.()
        this.emit('change')
      })
      return w
    } catch (e) {
      if (!vanished(e)) this.reportError(e)
      return null
    }
  }

  private watchFailed(w: FSWatcher, e: unknown): void {
    w.close()
    this.reportError(e)
    // Look again: the next read re-arms what is missing.
    this.emit('change')
  }

  /** Emitting 'error' with no listener would throw: a watch failure is reported, never thrown. */
  private reportError(e: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', e)
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
