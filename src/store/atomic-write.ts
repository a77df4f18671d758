// Replacing a file so that a reader sees the old content or the new, never a part: a temp file
// beside it, fsync, rename over it. Used for auth.json (as Codex writes it), the refresher's
// refresh journal and the service files.
import { randomBytes } from 'node:crypto'
import { constants as fsc } from 'node:fs'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { errCode, fileIdentity } from './textfile.js'

const TEMP_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

function tempSuffix(): string {
  // 6 characters like mkstemp's XXXXXX; the slight modulo bias is irrelevant for a name.
  return Array.from(randomBytes(6), (b) => TEMP_ALPHABET[b % TEMP_ALPHABET.length]).join('')
}

export interface AtomicWriteOptions {
  /** The file's permission bits, exactly (the umask does not apply). */
  mode: number
  /** Start of the temp file's name (then six random characters); `.<name>-` unless told. */
  tempPrefix?: string
  /** fsync the directory after the rename, so that the new name survives a crash too. */
  syncDir?: boolean
  /**
   * Called with the new file's fileIdentity just before the rename, so that the caller can
   * recognise the version it wrote the moment anyone (a watcher) sees it.
   */
  beforeRename?: (identity: string) => void
}

/**
 * Writes `text` to `path` atomically: a temp file created O_EXCL in the same directory, chmod,
 * fsync, rename over `path`, then the temp fd is closed. A symlink at `path` itself would be
 * replaced, so callers pass the resolved target. On any error the temp file is removed, `path`
 * is untouched and the error is thrown as it came. Returns the new file's fileIdentity, so that
 * a reader can tell this version from any later one without reading it.
 */
export async function writeFileAtomic(path: string, text: string, opts: AtomicWriteOptions): Promise<string> {
  const dir = dirname(path)
  const prefix = opts.tempPrefix ?? `.${basename(path)}-`
  let tmp = ''
  let fh: FileHandle | null = null
  try {
    for (let attempt = 0; fh === null; attempt++) {
      tmp = join(dir, prefix + tempSuffix())
      try {
        fh = await open(tmp, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, opts.mode)
      } catch (err) {
        if (errCode(err) !== 'EEXIST' || attempt >= 10) {
          tmp = '' // nothing of ours to remove
          throw err
        }
      }
    }
    // Exactly the mode whatever the umask (a umask can only remove bits, e.g. 0277 would give 0400).
    await fh.chmod(opts.mode)
    await fh.writeFile(text, 'utf8')
    await fh.sync()
    const identity = fileIdentity(await fh.stat({ bigint: true }))
    opts.beforeRename?.(identity)
    await rename(tmp, path)
    tmp = ''
    if (opts.syncDir) await syncDirectory(dir)
    return identity
  } finally {
    if (fh) await fh.close().catch(() => {})
    if (tmp) await unlink(tmp).catch(() => {})
  }
}

/** fsync a directory, so that a rename in it survives a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
