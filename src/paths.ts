// Socket-path rules (docs/contract.md#socket-path). The daemon and every client compute the same path with these
// functions; nothing here creates a file or a directory.

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

// ---------------------------------------------------------------------------------------------
// Socket path (docs/contract.md#socket-path)
// ---------------------------------------------------------------------------------------------

export type SocketSource = 'flag' | 'env' | 'runtime' | 'home'

export interface SocketPathInput {
  /** `--socket PATH`; null, undefined or '' means not given. */
  flag?: string | null
  env: NodeJS.ProcessEnv
  /** CODEX_HOME as given, absolute and normalized, symlinks kept (see givenCodexHome). */
  codexHome: string
  /** `~/.codex` the same way (defaultCodexHomeFor, absolute). */
  defaultCodexHome: string
  uid: number
  /** Whether `/run/user/<uid>` exists, is owned by `uid` and has no group/other bits. */
  runUserDirOk: (dir: string) => boolean
}

export interface SocketPathResult {
  path: string
  source: SocketSource
}

/** Directory under the runtime directory that holds the sockets. */
export const RUNTIME_SUBDIR = 'codex-authd'

/**
 * `<id>` of `<runtime>/codex-authd/<id>.sock`: `default`, or 16 hex of SHA-256 of the home. Both
 * paths are as given (givenCodexHome), never symlink-resolved: a symlinked CODEX_HOME relinked to
 * another profile keeps its socket, so clients and the daemon agree across the relink.
 */
export function socketIdFor(codexHome: string, defaultCodexHome: string): string {
  if (codexHome === defaultCodexHome) return 'default'
  // crypto is loaded only here: the CLI's start-up time matters (docs/architecture.md#library-choices).
  const { createHash } = process.getBuiltinModule('node:crypto')
  return createHash('sha256').update(codexHome, 'utf8').digest('hex').slice(0, 16)
}

/**
 * The socket path, by the rules 1-3 of docs/contract.md#socket-path. Pure: all I/O comes in through `input`.
 * Empty strings count as unset. A relative `XDG_RUNTIME_DIR` is ignored, as the XDG Base
 * Directory spec requires.
 */
export function computeSocketPath(input: SocketPathInput): SocketPathResult {
  if (input.flag) return { path: input.flag, source: 'flag' }
  const envSock = input.env.CODEX_AUTHD_SOCK
  if (envSock) return { path: envSock, source: 'env' }

  let runtime: string | null = null
  const xdg = input.env.XDG_RUNTIME_DIR
  if (xdg && path.isAbsolute(xdg)) {
    runtime = xdg
  } else {
    const runUser = `/run/user/${input.uid}`
    if (input.runUserDirOk(runUser)) runtime = runUser
  }
  if (runtime !== null) {
    const id = socketIdFor(input.codexHome, input.defaultCodexHome)
    return { path: path.join(runtime, RUNTIME_SUBDIR, `${id}.sock`), source: 'runtime' }
  }
  return { path: path.join(input.codexHome, 'run', 'authd.sock'), source: 'home' }
}

/**
 * The restricted socket beside the main one (docs/remote.md#the-restricted-socket-and-placeholders):
 * `.sock` replaced by `.restricted.sock`, else the path with `.restricted` appended. Same
 * directory, so the same directory rules cover it.
 */
export function restrictedSocketPath(mainPath: string): string {
  return mainPath.endsWith('.sock') ? `${mainPath.slice(0, -'.sock'.length)}.restricted.sock` : `${mainPath}.restricted`
}

/** The I/O edge of rule 2: a directory owned by `uid` with no group/other permission bits. */
export function checkRunUserDir(dir: string, uid: number): boolean {
  try {
    const st = fs.statSync(dir)
    return st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0
  } catch {
    return false
  }
}

/** Longest usable socket path in bytes (sun_path minus the NUL): 107 on Linux, 104 on macOS. */
export const SOCKET_PATH_MAX: Readonly<Record<'linux' | 'darwin', number>> = Object.freeze({
  linux: 107,
  darwin: 104,
})

/** The limit for a platform; other platforms get the smaller (BSD) limit. */
export function socketPathMax(platform: NodeJS.Platform | string = process.platform): number {
  return platform === 'linux' ? SOCKET_PATH_MAX.linux : SOCKET_PATH_MAX.darwin
}

/** libuv truncates longer paths silently, so both ends must check. Counts UTF-8 bytes. */
export function socketPathTooLong(p: string, platform: NodeJS.Platform | string = process.platform): boolean {
  return Buffer.byteLength(p, 'utf8') > socketPathMax(platform)
}

// ---------------------------------------------------------------------------------------------
// CODEX_HOME, as far as the socket rules need it (no creation, no checks)
// ---------------------------------------------------------------------------------------------

/** `$HOME/.codex` (os.homedir() when HOME is unset or empty). Not canonicalized. */
export function defaultCodexHomeFor(env: NodeJS.ProcessEnv): string {
  const home = env.HOME || os.homedir()
  return path.join(home, '.codex')
}

/**
 * CODEX_HOME as the socket rules see it: `flag` (`--codex-home`), else env `CODEX_HOME` when
 * non-empty, else `$HOME/.codex`; made absolute and normalized (`..`, `//`, a trailing `/`) but
 * never symlink-resolved, so that it names the same socket whatever the path leads to now.
 */
export function givenCodexHome(env: NodeJS.ProcessEnv, flag?: string | null): string {
  return path.resolve(flag || env.CODEX_HOME || defaultCodexHomeFor(env))
}

/** Convenience for clients and the daemon: the whole rule with the real file system. */
export function resolveSocketPath(opts: {
  flag?: string | null
  codexHome?: string | null
  env?: NodeJS.ProcessEnv
  uid?: number
}): SocketPathResult & { codexHome: string } {
  const env = opts.env ?? process.env
  const uid = opts.uid ?? (typeof process.getuid === 'function' ? process.getuid() : 0)
  const codexHome = givenCodexHome(env, opts.codexHome)
  const result = computeSocketPath({
    flag: opts.flag ?? null,
    env,
    codexHome,
    defaultCodexHome: path.resolve(defaultCodexHomeFor(env)),
    uid,
    runUserDirOk: (dir) => checkRunUserDir(dir, uid),
  })
  return { ...result, codexHome }
}
