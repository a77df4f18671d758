// Who holds a flock: Linux lists every lock in /proc/locks by device and inode, with the holder's
// pid. Elsewhere (and when /proc is not mounted) nobody can be named.
import fs from 'node:fs'

export interface LockHolder {
  pid: number
  /** The holder's command name (/proc/<pid>/comm), null when it cannot be read. */
  command: string | null
  /** The holder's uid (owner of /proc/<pid>), null when it cannot be read. */
  uid: number | null
}

/** Major and minor numbers of a Linux dev_t as st_dev gives it (the kernel's new_encode_dev). */
function devParts(dev: number): [number, number] {
  const major = Math.floor(dev / 256) & 0xfff
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00)
  return [major, minor]
}

/**
 * The pid holding a FLOCK on the file (dev, ino), from the text of /proc/locks. Pure. Lines look
 * like `3: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (device numbers in hex); waiters'
 * lines (`3: -> FLOCK ...`) are skipped.
 */
export function flockHolderIn(procLocks: string, dev: number, ino: number): number | null {
  const [major, minor] = devParts(dev)
  for (const line of procLocks.split('\n')) {
    const cols = line.trim().split(/\s+/)
    if (cols[1] !== 'FLOCK') continue
    const m = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/i.exec(cols[5] ?? '')
    if (m === null) continue
    if (Number.parseInt(m[1]!, 16) === major && Number.parseInt(m[2]!, 16) === minor && Number(m[3]) === ino) {
      const pid = Number(cols[4])
      if (Number.isInteger(pid) && pid > 0) return pid
    }
  }
  return null
}

/** The holder of a flock on the open file `fd`, or null when it cannot be found. */
export function flockHolder(fd: number): LockHolder | null {
  if (process.platform !== 'linux') return null
  try {
    const st = fs.fstatSync(fd)
    const pid = flockHolderIn(fs.readFileSync('/proc/locks', 'utf8'), st.dev, st.ino)
    if (pid === null) return null
    let command: string | null = null
    let uid: number | null = null
    try {
      command = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
      uid = fs.statSync(`/proc/${pid}`).uid
    } catch {
      // gone meanwhile: the pid is still worth naming
    }
    return { pid, command, uid }
  } catch {
    return null
  }
}

/** "pid 1234 (flock, uid 65534)" for messages. */
export function describeHolder(h: LockHolder): string {
  const parts = [h.command, h.uid !== null ? `uid ${h.uid}` : null].filter((x) => x !== null)
  return `pid ${h.pid}${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`
}
