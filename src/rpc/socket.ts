// The listening socket: directory checks, stale-socket probe, systemd activation (docs/contract.md#socket-path).
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { socketPathMax, socketPathTooLong } from '../paths.js'
import { LISTEN_BACKLOG } from './transport.js'

/** The socket path or its directory cannot be used: daemon exit 4. */
export class SocketPathError extends Error {
  readonly code = 'socket_unusable'
  constructor(message: string) {
    super(message)
    this.name = 'SocketPathError'
  }
}

/** One listening socket systemd (or systemd-socket-activate) handed us. */
export interface ActivationFd {
  fd: number
  /** Its LISTEN_FDNAMES entry ('' when none). */
  name: string
}

/**
 * The fds systemd handed us, from 3 on, named by LISTEN_FDNAMES (colon-separated). The variables
 * are removed so that children do not think the sockets are theirs. null: not activated.
 */
export function takeActivationFds(env: NodeJS.ProcessEnv, pid: number): ActivationFd[] | null {
  const listenPid = env.LISTEN_PID
  const fds = Number(env.LISTEN_FDS ?? '0')
  if (listenPid === undefined || Number(listenPid) !== pid || !(fds >= 1)) return null
  const names = (env.LISTEN_FDNAMES ?? '').split(':')
  delete env.LISTEN_PID
  delete env.LISTEN_FDS
  delete env.LISTEN_FDNAMES
  return Array.from({ length: Math.min(fds, 16) }, (_, i) => ({ fd: 3 + i, name: names[i] ?? '' }))
}

/**
 * Which inherited fd is the main socket and which the restricted one (docs/contract.md#the-restricted-socket):
 * the restricted one is named `restricted` (FileDescriptorName=restricted), or listens on the
 * restricted path of another fd's path (a second ListenStream= of the same unit, whose fds share
 * one name and come in the unit's order); the main one is the first other fd. Pure: `pathOf`
 * asks the system.
 */
export function pickActivationFds(fds: readonly ActivationFd[], pathOf: (fd: number) => string | null, restrictedOf: (mainPath: string) => string): { main: number; restricted: number | null } | null {
  const paths = new Map(fds.map((f) => [f.fd, pathOf(f.fd)]))
  const restrictedPaths = new Set([...paths.values()].filter((p): p is string => p !== null).map(restrictedOf))
  const isRestricted = (f: ActivationFd): boolean => f.name === 'restricted' || restrictedPaths.has(paths.get(f.fd) ?? '')
  const main = fds.find((f) => !isRestricted(f))
  if (main === undefined) return null
  const restricted = fds.find((f) => f !== main && isRestricted(f))
  return { main: main.fd, restricted: restricted?.fd ?? null }
}

/**
 * The socket's directory must be ours and closed to group and other, for explicit paths too:
 * the socket's own mode is not a reliable barrier on every platform, the directory is. Its parent
 * must be ours (or root's) and not writable by others unless sticky: whoever controls the parent
 * could swap the directory (for instance another user's $XDG_RUNTIME_DIR inherited through `su`).
 * The parent is checked before anything is created in it.
 */
export function prepareSocketDir(socketPath: string, uid: number, platform: NodeJS.Platform = process.platform): void {
  if (socketPathTooLong(socketPath, platform)) {
    throw new SocketPathError(
      `socket path is ${Buffer.byteLength(socketPath)} bytes, over the ${socketPathMax(platform)}-byte limit: ` +
        `set CODEX_AUTHD_SOCK (or --socket) to a shorter path`,
    )
  }
  const dir = path.dirname(socketPath)
  checkParent(dir, uid)
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (e) {
    throw new SocketPathError(`cannot create socket directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  const st = fs.lstatSync(dir)
  if (!st.isDirectory()) throw new SocketPathError(`socket directory ${dir} is not a directory`)
  if (st.uid !== uid) throw new SocketPathError(`socket directory ${dir} is owned by uid ${st.uid}, not by us (uid ${uid})`)
  const loose = st.mode & 0o077
  if (loose !== 0) {
    throw new SocketPathError(
      `socket directory ${dir} has mode ${(st.mode & 0o777).toString(8)}: group and other must have no access ` +
        `(run: chmod 700 ${dir})`,
    )
  }
}

/** The directory holding the socket's directory: ours or root's, and nobody else may rename in it. */
function checkParent(dir: string, uid: number): void {
  const parent = path.dirname(dir)
  let st: fs.Stats
  try {
    st = fs.statSync(parent)
  } catch {
    return // missing: mkdir creates it, ours
  }
  if (st.uid !== uid && st.uid !== 0) {
    throw new SocketPathError(
      `socket directory ${dir} would sit in ${parent}, owned by uid ${st.uid}, not by us (uid ${uid}): that user could replace it ` +
        `(another user's XDG_RUNTIME_DIR inherited through su or sudo?); set XDG_RUNTIME_DIR or CODEX_AUTHD_SOCK to a directory of your own`,
    )
  }
  const sticky = (st.mode & 0o1000) !== 0
  if ((st.mode & 0o022) !== 0 && !sticky) {
    throw new SocketPathError(
      `socket directory ${dir} would sit in ${parent}, which group or other may write (mode ${(st.mode & 0o7777).toString(8)}): ` +
        `anyone could replace it (run: chmod go-w ${parent})`,
    )
  }
}

/** The socket file we bound: removed at stop only while the path still names this very file. */
export interface BoundSocket {
  path: string
  dev: number
  ino: number
}

/** Removes the socket file we bound, unless something else (another dev/ino) has replaced it. */
export function removeBoundSocket(bound: BoundSocket | null): void {
  if (bound === null) return
  try {
    const st = fs.lstatSync(bound.path)
    if (st.isSocket() && st.dev === bound.dev && st.ino === bound.ino) fs.rmSync(bound.path, { force: true })
  } catch {
    // already gone
  }
}

/** Connects to a leftover socket file: true when something answers. */
function probe(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/**
 * Bind `socketPath` (mode 0600). Called only while holding the home's authd.lock, so a leftover
 * file is ours to replace when nothing answers on it; if something answers, a daemon of another
 * home was given this path.
 *
 * The socket is bound under a temporary name and renamed into place: libuv unlinks the path it
 * bound when the server closes, whatever that path names by then, and it must never remove a
 * file we did not create. The temporary name is gone by then; the socket itself is removed by
 * removeBoundSocket, only while it is still the file we bound.
 */
export async function listenOnPath(server: net.Server, socketPath: string): Promise<BoundSocket> {
  let st: fs.Stats | null = null
  try {
    st = fs.lstatSync(socketPath)
  } catch {
    st = null
  }
  if (st !== null) {
    if (!st.isSocket()) throw new SocketPathError(`${socketPath} exists and is not a socket`)
    if (await probe(socketPath)) throw new SocketPathError(`socket in use: another daemon answers on ${socketPath}`)
  }
  // A path at the limit has no room for a suffix: bound directly, libuv's unlink then names the
  // real path (still inside our own 0700 directory, which nobody else can write).
  const suffixed = `${socketPath}.${process.pid}~`
  const bindAt = socketPathTooLong(suffixed) ? socketPath : suffixed
  fs.rmSync(bindAt, { force: true })
  // The umask makes the socket 0600 from its first instant, not after a chmod.
  const oldMask = process.umask(0o177)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ path: bindAt, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (e) {
    throw new SocketPathError(`cannot listen on ${socketPath}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)
  } finally {
    process.umask(oldMask)
  }
  fs.chmodSync(bindAt, 0o600)
  // Atomic: a stale socket is replaced in one step, and clients never see the path missing.
  if (bindAt !== socketPath) fs.renameSync(bindAt, socketPath)
  const bound = fs.lstatSync(socketPath)
  return { path: socketPath, dev: bound.dev, ino: bound.ino }
}

/**
 * The path of a socket systemd handed us, for status and logs (Node cannot ask an inherited fd
 * for its address). Linux: the fd's inode looked up in /proc/net/unix; null elsewhere.
 */
export function inheritedSocketPath(fd: number): string | null {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))
    if (m === null) return null
    for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n')) {
      const cols = line.trim().split(/\s+/)
      if (cols[6] === m[1] && cols[7] !== undefined && cols[7].startsWith('/')) return cols[7]
    }
  } catch {
    // not Linux, or /proc not mounted
  }
  return null
}

export function listenOnFd(server: net.Server, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ fd, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject)
      resolve()
    })
  })
}
