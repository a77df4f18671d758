// CODEX_HOME resolution as Codex does it (docs/codex-compat.md#the-home-directory). The daemon's per-home
// ownership locks are in store/ownership.ts.
import fs from 'node:fs'
import path from 'node:path'
import { canonicalizePath, defaultCodexHomeFor } from '../paths.js'

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
  /** Canonical path (symlinks resolved). */
  path: string
  /** True when this is the default ~/.codex (it decides the socket id "default"). */
  isDefault: boolean
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
  return { path: canonical, isDefault: canonical === canonicalizePath(defaultPath) }
}
