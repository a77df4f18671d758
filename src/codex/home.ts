// CODEX_HOME resolution as Codex does it (docs/codex-compat.md#the-home-directory). The daemon's per-home
// ownership locks are in store/ownership.ts.
import fs from 'node:fs'
import path from 'node:path'
import { defaultCodexHomeFor } from '../paths.js'

export class HomeError extends Error {
  readonly code = 'home_invalid'
  readonly path: string
  constructor(message: string, homePath: string) {
    super(message)
    this.name = 'HomeError'
    this.path = homePath
  }
}

export interface CodexHome {
  /**
   * The home as given: absolute and normalized, symlinks kept. It names the socket
   * (docs/contract.md#socket-path) and is what a relink is noticed on (docs/watching.md).
   */
  given: string
  /** Where `given` leads now (symlinks resolved): the directory whose files are served. */
  path: string
  /** True when `given` is the default ~/.codex, whatever it links to (socket id "default"). */
  isDefault: boolean
}

/** A symlink met on the way from a path to its target: `dir` (itself resolved) holds `name`. */
export interface PathLink {
  dir: string
  name: string
}

/** The kernel's symlink limit on one lookup (Linux MAXSYMLINKS). */
const MAX_LINKS = 40

/**
 * realpath, done component by component so that it also says which directory entries decide
 * where the path leads: every symlink met (a relink is an event on its parent directory,
 * docs/watching.md#a-symlinked-codex_home) and, when the path stops short, the entry that is
 * missing (its creation is). `target` is null when the path does not lead to a directory now
 * (missing, dangling, a loop, a file). A path without symlinks that exists has no entries: nothing
 * but a rename can change where it leads, and that is the home watcher's (docs/watching.md).
 */
export function resolvePathLinks(given: string): { target: string | null; links: PathLink[] } {
  const links: PathLink[] = []
  let rest = path.resolve(given).split(path.sep).filter((c) => c !== '')
  let resolved = path.parse(path.resolve(given)).root
  while (rest.length > 0) {
    const name = rest.shift()!
    if (name === '.') continue
    if (name === '..') {
      resolved = path.dirname(resolved) // `resolved` has no symlink left: its parent is real
      continue
    }
    const next = path.join(resolved, name)
    let st: fs.Stats
    try {
      st = fs.lstatSync(next)
    } catch {
      // Missing (a removed link, a dangling one's target): its creation would change the answer.
      links.push({ dir: resolved, name })
      return { target: null, links }
    }
    if (!st.isSymbolicLink()) {
      resolved = next
      continue
    }
    links.push({ dir: resolved, name })
    if (links.length > MAX_LINKS) return { target: null, links }
    let to: string
    try {
      to = fs.readlinkSync(next)
    } catch {
      return { target: null, links } // replaced since the lstat: the caller looks again on its event
    }
    if (path.isAbsolute(to)) resolved = path.parse(to).root
    rest = [...to.split(path.sep).filter((c) => c !== ''), ...rest]
  }
  try {
    return { target: fs.statSync(resolved).isDirectory() ? resolved : null, links }
  } catch {
    return { target: null, links }
  }
}

/**
 * `--codex-home` flag, else non-empty `CODEX_HOME` (must exist and be a directory, as Codex
 * requires), else `~/.codex`, created 0700 when missing so that a fresh machine just works.
 */
export function resolveCodexHome(env: NodeJS.ProcessEnv, flag?: string | null): CodexHome {
  const explicit = flag ?? (env.CODEX_HOME ? env.CODEX_HOME : null)
  const defaultPath = defaultCodexHomeFor(env)
  let target: string
  if (explicit !== null) {
    target = path.resolve(explicit)
    let st: fs.Stats
    try {
      st = fs.statSync(target)
    } catch {
      const what = flag != null ? '--codex-home' : 'CODEX_HOME'
      throw new HomeError(`${what} points to "${target}", but that path does not exist`, target)
    }
    if (!st.isDirectory()) {
      const what = flag != null ? '--codex-home' : 'CODEX_HOME'
      throw new HomeError(`${what} points to "${target}", but that path is not a directory`, target)
    }
  } else {
    target = defaultPath
    try {
      fs.mkdirSync(target, { recursive: true, mode: 0o700 })
    } catch (e) {
      throw new HomeError(`cannot create "${target}": ${(e as NodeJS.ErrnoException).code ?? 'error'}`, target)
    }
    if (!fs.statSync(target).isDirectory()) throw new HomeError(`"${target}" is not a directory`, target)
  }
  const canonical = fs.realpathSync(target)
  return { given: target, path: canonical, isDefault: target === path.resolve(defaultPath) }
}
