// Noticing a relinked CODEX_HOME (docs/watching.md#a-symlinked-codex_home): when the home's path
// goes through symlinks, each symlink's parent directory is watched for that one name. Nothing is
// watched for a path without symlinks, so the usual home keeps its zero idle wake-ups. The
// watcher only says "look again"; the daemon decides what a new target means.
import fs, { type FSWatcher } from 'node:fs'
import path from 'node:path'
import { EventEmitter } from 'node:events'
import { resolvePathLinks, type PathLink } from '../codex/home.js'

export interface HomeLinkEvents {
  /** A symlink on the home's path may have changed: resolve again (sync). */
  change: []
  /** A watch failed (e.g. ENOSPC for the inotify limit); the next sync retries it. */
  error: [unknown]
}

export class HomeLinkWatcher extends EventEmitter<HomeLinkEvents> {
  /** One fs.watch per directory that holds a symlink of the path, with the names that matter there. */
  private watches = new Map<string, { w: FSWatcher; names: Set<string> }>()
  private closed = false
  /** Wake-up accounting, as HomeWatcher's. */
  readonly stats = { callbacks: 0, ignored: 0 }

  constructor(readonly given: string) {
    super()
  }

  get watchedPaths(): string[] {
    return [...this.watches.keys()]
  }

  /**
   * Resolve the home now and watch the symlinks met on the way. Returns where it leads (null:
   * nowhere usable). A relink made while the watches were re-armed is caught by resolving once
   * more after arming: the loop runs until two resolutions agree.
   */
  sync(): string | null {
    let now = resolvePathLinks(this.given)
    for (let round = 0; round < 5 && !this.closed; round++) {
      this.arm(now.links)
      const again = resolvePathLinks(this.given)
      if (again.target === now.target && sameLinks(again.links, now.links)) return now.target
      now = again
    }
    return now.target
  }

  close(): void {
    this.closed = true
    for (const { w } of this.watches.values()) w.close()
    this.watches.clear()
  }

  private arm(links: PathLink[]): void {
    if (this.closed) return
    const wanted = new Map<string, Set<string>>()
    for (const l of links) {
      const names = wanted.get(l.dir) ?? new Set<string>()
      names.add(l.name)
      wanted.set(l.dir, names)
    }
    for (const [dir, entry] of this.watches) {
      if (!wanted.has(dir)) {
        entry.w.close()
        this.watches.delete(dir)
      }
    }
    for (const [dir, names] of wanted) {
      const cur = this.watches.get(dir)
      if (cur !== undefined) {
        cur.names = names // the filter reads the field
        continue
      }
      const entry = { w: null as unknown as FSWatcher, names }
      try {
        entry.w = fs.watch(dir, { persistent: true }, (_event, name) => {
          this.stats.callbacks++
          // inotify wakes us for every entry of the directory; drop the others on the name alone.
          if (name !== null && !entry.names.has(name) && name !== path.basename(dir)) {
            this.stats.ignored++
            return
          }
          this.emit('change')
        })
      } catch (e) {
        this.reportError(e)
        continue
      }
      entry.w.on('error', (e) => {
        entry.w.close()
        if (this.watches.get(dir) === entry) this.watches.delete(dir)
        this.reportError(e)
        this.emit('change')
      })
      this.watches.set(dir, entry)
    }
  }

  private reportError(e: unknown): void {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return // gone meanwhile: the next sync sees it
    if (this.listenerCount('error') > 0) this.emit('error', e)
  }
}

function sameLinks(a: PathLink[], b: PathLink[]): boolean {
  return a.length === b.length && a.every((l, i) => l.dir === b[i]!.dir && l.name === b[i]!.name)
}
