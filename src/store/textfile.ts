// Reading a small text file that someone else controls: never blocks on a FIFO, never reads a
// huge file whole, never hands back bytes that are not UTF-8. Used for auth.json and config.toml.
import { constants as fsc, type BigIntStats, type Stats } from 'node:fs'
import { lstat, open, readlink, stat, type FileHandle } from 'node:fs/promises'

export type TextRead =
  | { state: 'absent' }
  | {
      state: 'ok'
      text: string
      mode: number
      /** The version read (fileIdentity), taken before the bytes were. */
      identity: string
    }
  | { state: 'error'; reason: string }

/**
 * What tells one version of a file's content from another without reading it: device, inode,
 * size and modification time in nanoseconds. A rename over the file gives another inode; a write
 * in place changes the modification time (and usually the size). Not the change time: a rename
 * changes it, and a writer learns the identity of what it writes before renaming it into place.
 */
export function fileIdentity(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`
}

export async function readSmallTextFile(path: string, maxBytes: number): Promise<TextRead> {
  return (await readSmallTextFileUnless(path, maxBytes, null)) as TextRead
}

/**
 * readSmallTextFile, but when the file opened is still the version `known` names (fileIdentity),
 * 'unchanged' without reading its bytes: the caller already holds them (it wrote them itself).
 */
export async function readSmallTextFileUnless(path: string, maxBytes: number, known: string | null): Promise<TextRead | { state: 'unchanged' }> {
  let fh: FileHandle
  try {
    // O_NONBLOCK so that a FIFO planted here never blocks the open; fstat below rejects it.
    fh = await open(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
  } catch (err) {
    const code = errCode(err)
    if (code === 'ENOENT') return { state: 'absent' }
    if (code === 'EACCES' || code === 'EPERM') return { state: 'error', reason: 'permission denied' }
    if (code === 'ELOOP') return { state: 'error', reason: 'too many levels of symbolic links' }
    if (code === 'ENOTDIR') return { state: 'error', reason: 'a path component is not a directory' }
    if (code === 'ENXIO') return { state: 'error', reason: 'not a regular file (socket or device)' }
    return { state: 'error', reason: errText(err) }
  }
  try {
    const st = await fh.stat({ bigint: true })
    if (!st.isFile()) return { state: 'error', reason: `not a regular file (${fileKind(st)})` }
    const identity = fileIdentity(st)
    if (known !== null && identity === known) return { state: 'unchanged' }
    const size = Number(st.size)
    if (size > maxBytes) return { state: 'error', reason: `larger than ${maxBytes} bytes (${size} bytes)` }
    // Read until EOF but never more than one byte past the cap: the size may change after fstat.
    let buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(size + 1, 4096)))
    let len = 0
    for (;;) {
      if (len === buf.length) {
        if (len > maxBytes) return { state: 'error', reason: `larger than ${maxBytes} bytes` }
        const bigger = Buffer.alloc(Math.min(maxBytes + 1, buf.length * 2))
        buf.copy(bigger, 0, 0, len)
        buf = bigger
      }
      const { bytesRead } = await fh.read(buf, len, buf.length - len, len)
      if (bytesRead === 0) break
      len += bytesRead
    }
    try {
      // ignoreBOM keeps a BOM in the text, so the parser judges it as Codex's serde would.
      const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf.subarray(0, len))
      return { state: 'ok', text, mode: Number(st.mode) & 0o7777, identity }
    } catch {
      return { state: 'error', reason: 'not valid UTF-8' }
    }
  } catch (err) {
    return { state: 'error', reason: errText(err) }
  } finally {
    await fh.close().catch(() => {})
  }
}

/** The target of `path` when it is a symlink to nothing, else null. */
export async function danglingLinkTarget(path: string): Promise<string | null> {
  try {
    if (!(await lstat(path)).isSymbolicLink()) return null
    const to = await readlink(path)
    try {
      await stat(path)
      return null // resolves now: it was replaced meanwhile
    } catch {
      return to
    }
  } catch {
    return null
  }
}

export function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code
}

/** errno code (or class name) only: an error's message may quote file contents. */
export function errText(err: unknown): string {
  return errCode(err) ?? (err instanceof Error ? err.name : 'error')
}

function fileKind(st: Stats | BigIntStats): string {
  if (st.isDirectory()) return 'a directory'
  if (st.isFIFO()) return 'a FIFO'
  if (st.isSocket()) return 'a socket'
  if (st.isCharacterDevice()) return 'a character device'
  if (st.isBlockDevice()) return 'a block device'
  return 'not a file'
}
