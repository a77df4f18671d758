// Who holds a loopback TCP socket, best effort, on Linux: /proc/net/tcp{,6} give each socket's
// owner uid and inode, and /proc/<pid>/fd/* links read `socket:[inode]` for the process holding
// it (readable for our own processes; root sees all). Used to name who squats both login ports
// and who sent a /cancel. Elsewhere (macOS) or when /proc says nothing, the answer is null and
// messages say less; nothing here ever throws.
import fs from 'node:fs/promises'
import os from 'node:os'
import { clip } from '../text.js'

export interface ProcNetEntry {
  localAddress: string
  localPort: number
  remoteAddress: string
  remotePort: number
  /** kernel TCP state: 0x0A listen, 0x01 established */
  state: number
  uid: number
  inode: number
}

export const TCP_LISTEN = 0x0a
export const TCP_ESTABLISHED = 0x01

/** One `ADDR:PORT` of /proc/net/tcp{,6}: the address is 32-bit words in host byte order. */
function parseEndpoint(field: string, littleEndian: boolean): { address: string; port: number } | null {
  const m = /^([0-9A-F]{8}|[0-9A-F]{32}):([0-9A-F]{4})$/i.exec(field)
  if (!m) return null
  const hex = m[1] as string
  const bytes: number[] = []
  for (let w = 0; w < hex.length; w += 8) {
    const word = [0, 2, 4, 6].map((i) => parseInt(hex.slice(w + i, w + i + 2), 16))
    bytes.push(...(littleEndian ? word.reverse() : word))
  }
  let address: string
  if (bytes.length === 4) address = bytes.join('.')
  else {
    const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff
    if (mapped) address = `::ffff:${bytes.slice(12).join('.')}`
    else {
      const groups: string[] = []
      for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16))
      address = groups.join(':')
    }
  }
  return { address, port: parseInt(m[2] as string, 16) }
}

/** The rows of /proc/net/tcp or /proc/net/tcp6 (the header and malformed rows skipped). Pure. */
export function parseProcNetTcp(text: string, littleEndian: boolean = os.endianness() === 'LE'): ProcNetEntry[] {
  const out: ProcNetEntry[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10) continue
    const local = parseEndpoint(f[1] as string, littleEndian)
    const remote = parseEndpoint(f[2] as string, littleEndian)
    const state = parseInt(f[3] as string, 16)
    const uid = Number(f[7])
    const inode = Number(f[9])
    if (!local || !remote || !Number.isInteger(uid) || !Number.isInteger(inode)) continue
    out.push({ localAddress: local.address, localPort: local.port, remoteAddress: remote.address, remotePort: remote.port, state, uid, inode })
  }
  return out
}

async function readTcpTables(): Promise<ProcNetEntry[]> {
  const tables = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map((f) => fs.readFile(f, 'utf8').catch(() => '')))
  return tables.flatMap((t) => parseProcNetTcp(t))
}

export interface SocketOwner {
  uid: number
  /** null when no process we can see holds it (another user's, without root) */
  pid: number | null
  /** the process's name (/proc/<pid>/comm), cut to a sane length; null with pid */
  command: string | null
}

/** Bounds the /proc walk: a busy machine has many processes, and this is only a courtesy. */
const MAX_PIDS = 4096

/** The process holding socket `inode`, among those of `uid` (others' fds cannot be read anyway unless we are root). */
async function processOf(inode: number, uid: number): Promise<{ pid: number; command: string } | null> {
  const wanted = `socket:[${inode}]`
  const mine = process.getuid?.() ?? -1
  let pids: string[]
  try {
    pids = (await fs.readdir('/proc')).filter((n) => /^\d+$/.test(n)).slice(0, MAX_PIDS)
  } catch {
    return null
  }
  for (const pid of pids) {
    if (mine !== 0) {
      const st = await fs.stat(`/proc/${pid}`).catch(() => null)
      if (st === null || st.uid !== uid) continue
    }
    let fds: string[]
    try {
      fds = await fs.readdir(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      const link = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
      if (link === wanted) {
        const comm = (await fs.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '?')).trim()
        return { pid: Number(pid), command: clip(comm, 64) }
      }
    }
  }
  return null
}

async function ownerOf(entry: ProcNetEntry | undefined): Promise<SocketOwner | null> {
  if (entry === undefined) return null
  const p = entry.inode > 0 ? await processOf(entry.inode, entry.uid) : null
  return { uid: entry.uid, pid: p?.pid ?? null, command: p?.command ?? null }
}

/** Who listens on `port` (any local address), or null when it cannot be told. */
export async function listenerOf(port: number): Promise<SocketOwner | null> {
  if (process.platform !== 'linux') return null
  try {
    const rows = await readTcpTables()
    return await ownerOf(rows.find((r) => r.state === TCP_LISTEN && r.localPort === port))
  } catch {
    return null
  }
}

/** Who opened the loopback connection from `peerPort` to our `localPort`, or null. */
export async function connectionOwner(peerPort: number, localPort: number): Promise<SocketOwner | null> {
  if (process.platform !== 'linux') return null
  try {
    const rows = await readTcpTables()
    // The client's end of the connection: its local port is our peer port, its remote ours.
    return await ownerOf(rows.find((r) => r.localPort === peerPort && r.remotePort === localPort && r.state !== TCP_LISTEN))
  } catch {
    return null
  }
}

/** "pid 123 (python3, uid 1000)", "a process of uid 65534 (not visible to this user)". */
export function describeOwner(o: SocketOwner): string {
  if (o.pid !== null) return `pid ${o.pid} (${o.command ?? '?'}, uid ${o.uid})`
  return `a process of uid ${o.uid} (not visible to this user)`
}
