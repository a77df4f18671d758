// Who is at the other end of a connected Unix socket: SO_PEERCRED on Linux, getpeereid (and
// LOCAL_PEERPID) on macOS. Node has no API for either; libc's getsockopt/getpeereid are called
// through koffi (os/libc.ts). The kernel records the credentials when the connection (or the
// listening socket) was made, so they hold even if the peer later changes uid or exits.
import fs from 'node:fs'
import type net from 'node:net'
import { errnoError, libc } from './libc.js'

export interface PeerCred {
  /** null when the platform does not tell (or the peer is in another pid namespace: 0). */
  pid: number | null
  uid: number
  /** The peer's executable (Linux: /proc/<pid>/exe), or null when it cannot be read. */
  exe: string | null
}

// <sys/socket.h>
const LINUX_SOL_SOCKET = 1
const LINUX_SO_PEERCRED = 17
const DARWIN_SOL_LOCAL = 0
const DARWIN_LOCAL_PEERPID = 2

type PeerQuery = (fd: number) => { pid: number | null; uid: number }
let query: PeerQuery | null | undefined

/** Whether this platform can tell a peer's uid (Linux and macOS). */
export function peerCredSupported(platform: NodeJS.Platform = process.platform): boolean {
  return platform === 'linux' || platform === 'darwin'
}

function binding(): PeerQuery | null {
  if (query !== undefined) return query
  if (!peerCredSupported()) return (query = null)
  const { koffi, lib } = libc()
  const getsockopt = lib.func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)') as (
    fd: number,
    level: number,
    name: number,
    val: Buffer,
    len: number[],
  ) => number
  if (process.platform === 'linux') {
    query = (fd) => {
      // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
      const buf = Buffer.alloc(12)
      if (getsockopt(fd, LINUX_SOL_SOCKET, LINUX_SO_PEERCRED, buf, [12]) !== 0) throw errnoError(koffi.errno(), 'getsockopt')
      const pid = buf.readInt32LE(0)
      return { pid: pid > 0 ? pid : null, uid: buf.readUInt32LE(4) }
    }
  } else {
    const getpeereid = lib.func('int getpeereid(int fd, _Out_ uint32_t *uid, _Out_ uint32_t *gid)') as (fd: number, uid: number[], gid: number[]) => number
    query = (fd) => {
      const uid = [0]
      if (getpeereid(fd, uid, [0]) !== 0) throw errnoError(koffi.errno(), 'getpeereid')
      const buf = Buffer.alloc(4)
      const pid = getsockopt(fd, DARWIN_SOL_LOCAL, DARWIN_LOCAL_PEERPID, buf, [4]) === 0 ? buf.readInt32LE(0) : 0
      return { pid: pid > 0 ? pid : null, uid: uid[0]! }
    }
  }
  return query
}

/** The file descriptor under a connected net.Socket (Node keeps it on the libuv handle). */
function socketFd(socket: net.Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : null
}

/** The executable of a process, where the platform tells (Linux /proc); null otherwise. */
export function executableOf(pid: number): string | null {
  if (process.platform !== 'linux') return null
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`)
  } catch {
    return null // another user's process (without CAP_SYS_PTRACE), or gone already
  }
}

/**
 * The credentials of the peer of a connected Unix socket, or null where the platform cannot tell
 * (Windows, the BSDs) or the socket has no fd. Throws only if the C library cannot be loaded.
 */
export function peerCredentials(socket: net.Socket): PeerCred | null {
  const q = binding()
  const fd = socketFd(socket)
  if (q === null || fd === null) return null
  let cred: { pid: number | null; uid: number }
  try {
    cred = q(fd)
  } catch {
    return null // EBADF/ENOTCONN: the peer is gone already
  }
  return { ...cred, exe: cred.pid !== null ? executableOf(cred.pid) : null }
}
