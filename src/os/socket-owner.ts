// Whom a client is about to talk to (docs/contract.md#whom-the-client-talks-to). Before anything is
// sent, the socket and the directory it sits in must belong to the user running the client (or
// root), the directory must not be writable by group or other (else someone could swap the
// socket), and, for a socket another user owns by the user's explicit choice
// (CODEX_AUTH_ALLOW_SOCKET_OWNER), the peer's uid as the kernel tells it.
import fs from 'node:fs'
import path from 'node:path'

/** The opt-in for a deliberately shared socket: a uid or a user name. */
export const ALLOW_OWNER_ENV = 'CODEX_AUTH_ALLOW_SOCKET_OWNER'

/** What the rules need of an lstat/stat. */
export interface OwnerStat {
  uid: number
  mode: number
  kind: 'socket' | 'directory' | 'symlink' | 'other'
}

export interface SocketFacts {
  socketPath: string
  /** lstat of the socket path; null when it does not exist (the connect then fails as usual). */
  socket: OwnerStat | null
  /** stat of its directory (symlinks on the way followed); null when it does not exist. */
  dir: OwnerStat | null
  /** The uid running the client. */
  me: number
  /** The uid CODEX_AUTH_ALLOW_SOCKET_OWNER names, or null. */
  allowed: number | null
}

export type SocketVerdict =
  | {
      ok: true
      /**
       * The uids the peer may have when it must be asked (SO_PEERCRED), or null when the file
       * checks settle it: a socket owned by us (or root) in a directory only we (or root) can
       * write was bound by us (or root), and nobody else can have replaced it.
       */
      peerUids: readonly number[] | null
    }
  | { ok: false; owner: number; what: 'socket' | 'directory'; problem: string }

function kindOf(st: fs.Stats): OwnerStat['kind'] {
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isSocket()) return 'socket'
  if (st.isDirectory()) return 'directory'
  return 'other'
}

/** The rules, pure: all I/O comes in through `facts`. */
export function judgeSocket(facts: SocketFacts): SocketVerdict {
  const { me, allowed } = facts
  const ours = (uid: number): boolean => uid === me || uid === 0
  const trusted = (uid: number): boolean => ours(uid) || uid === allowed
  const dirPath = path.dirname(facts.socketPath)
  let viaAllowed = false
  const dir = facts.dir
  if (dir !== null) {
    if (!trusted(dir.uid)) return { ok: false, owner: dir.uid, what: 'directory', problem: `the socket's directory ${dirPath} is owned by uid ${dir.uid}` }
    if ((dir.mode & 0o022) !== 0) {
      return {
        ok: false,
        owner: dir.uid,
        what: 'directory',
        problem: `the socket's directory ${dirPath} is writable by group or other (mode ${(dir.mode & 0o7777).toString(8)}): anyone could replace the socket (run: chmod go-w ${dirPath})`,
      }
    }
    viaAllowed ||= !ours(dir.uid)
  }
  const sock = facts.socket
  if (sock !== null) {
    if (sock.kind === 'symlink') {
      return { ok: false, owner: sock.uid, what: 'socket', problem: `${facts.socketPath} is a symlink: give the socket's own path` }
    }
    if (!trusted(sock.uid)) return { ok: false, owner: sock.uid, what: 'socket', problem: `${facts.socketPath} is owned by uid ${sock.uid}` }
    viaAllowed ||= !ours(sock.uid)
  }
  if (!viaAllowed) return { ok: true, peerUids: null }
  return { ok: true, peerUids: [...new Set([me, 0, allowed!])] }
}

/** The facts of the real file system for `socketPath`. */
export function socketFacts(socketPath: string, me: number, allowed: number | null): SocketFacts {
  const look = (p: string, follow: boolean): OwnerStat | null => {
    try {
      const st = follow ? fs.statSync(p) : fs.lstatSync(p)
      return { uid: st.uid, mode: st.mode, kind: kindOf(st) }
    } catch {
      return null
    }
  }
  return { socketPath, socket: look(socketPath, false), dir: look(path.dirname(socketPath), true), me, allowed }
}

/**
 * The uid CODEX_AUTH_ALLOW_SOCKET_OWNER names: digits are a uid, anything else a user name looked
 * up in /etc/passwd (enough for the local accounts a shared socket is made for). Unset or empty:
 * null. A name that is not found: an Error saying so.
 */
export function allowedOwnerFrom(env: NodeJS.ProcessEnv, passwd: () => string = () => fs.readFileSync('/etc/passwd', 'utf8')): number | null {
  const v = env[ALLOW_OWNER_ENV]
  if (!v) return null
  if (/^\d+$/.test(v)) return Number(v)
  const uid = uidOfUser(v, passwd)
  if (uid === null) throw new Error(`${ALLOW_OWNER_ENV}=${v}: no such user (give a uid or a user name from /etc/passwd)`)
  return uid
}

function readPasswd(passwd: () => string): string[][] {
  try {
    return passwd()
      .split('\n')
      .map((l) => l.split(':'))
  } catch {
    return []
  }
}

function uidOfUser(name: string, passwd: () => string): number | null {
  const row = readPasswd(passwd).find((cols) => cols[0] === name && cols.length >= 3)
  return row !== undefined && /^\d+$/.test(row[2]!) ? Number(row[2]) : null
}

/** The user name of a uid from /etc/passwd, or null. */
export function userNameOf(uid: number, passwd: () => string = () => fs.readFileSync('/etc/passwd', 'utf8')): string | null {
  const row = readPasswd(passwd).find((cols) => cols[2] === String(uid) && cols[0])
  return row !== undefined ? row[0]! : null
}

/** "uid 1001 (alice)" for messages; the name only when /etc/passwd has it. */
export function describeUid(uid: number, passwd?: () => string): string {
  const name = userNameOf(uid, passwd)
  return name !== null ? `uid ${uid} (${name})` : `uid ${uid}`
}
