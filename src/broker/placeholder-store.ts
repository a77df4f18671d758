// The placeholder registry's file (docs/remote.md#the-restricted-socket-and-placeholders):
// `$CODEX_HOME/authd-placeholders.json`, 0600, replaced atomically, hashes only. Read once at
// start so that a sink or a remote Codex survives the daemon going away and coming back.
import { readFile } from 'node:fs/promises'
import { writeFileAtomic } from '../store/atomic-write.js'
import type { PlaceholderRecord } from './placeholders.js'
import { CoalescedTask } from '../coalesce.js'

export const PLACEHOLDER_FILE = 'authd-placeholders.json'
const FORMAT_VERSION = 1

export interface LoadedPlaceholders {
  records: PlaceholderRecord[]
  /** Why the file was not used (damaged, unreadable), for the log; null when it was, or is absent. */
  problem: string | null
}

/** The file's records; a missing file is none, a damaged one none with a problem (its placeholders then fail as unknown). */
export async function loadPlaceholders(file: string): Promise<LoadedPlaceholders> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    return { records: [], problem: code === 'ENOENT' ? null : `cannot read ${file}: ${code ?? 'error'}` }
  }
  try {
    const doc = JSON.parse(text) as { version?: unknown; records?: unknown }
    if (doc.version !== FORMAT_VERSION || !Array.isArray(doc.records)) throw new Error(`${file} is not a placeholder file of version ${FORMAT_VERSION}`)
    const records = doc.records.map((r, i) => {
      if (!isRecord(r)) throw new Error(`${file}: entry ${i} is not a placeholder record`)
      return r
    })
    return { records, problem: null }
  } catch (e) {
    return { records: [], problem: e instanceof SyntaxError ? `${file} is not JSON` : (e as Error).message }
  }
}

export async function savePlaceholders(file: string, records: readonly PlaceholderRecord[]): Promise<void> {
  await writeFileAtomic(file, JSON.stringify({ version: FORMAT_VERSION, records }, null, 1) + '\n', { mode: 0o600, syncDir: true })
}

const STATES = new Set(['active', 'rotated', 'revoked', 'reused'])

function isRecord(r: unknown): r is PlaceholderRecord {
  if (typeof r !== 'object' || r === null) return false
  const x = r as Record<string, unknown>
  const str = (v: unknown): boolean => typeof v === 'string'
  const num = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v)
  const orNull = (v: unknown, f: (v: unknown) => boolean): boolean => v === null || f(v)
  const peer = (v: unknown): boolean => {
    if (typeof v !== 'object' || v === null) return false
    const p = v as Record<string, unknown>
    return orNull(p.pid, num) && orNull(p.uid, num) && orNull(p.exe, str)
  }
  return (
    str(x.id) &&
    str(x.family) &&
    typeof x.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(x.hash) &&
    str(x.label) &&
    (x.socket === 'main' || x.socket === 'restricted') &&
    num(x.createdAt) &&
    orNull(x.lastUsedAt, num) &&
    num(x.expiresAt) &&
    num(x.uses) &&
    STATES.has(x.state as string) &&
    orNull(x.rotatedAt, num) &&
    orNull(x.successor, str) &&
    orNull(x.peer, peer) &&
    (x.accessHash === null || (typeof x.accessHash === 'string' && /^[0-9a-f]{64}$/.test(x.accessHash)))
  )
}

/**
 * Saves one at a time, always the latest records: a save asked while one runs is done once it
 * ends (with whatever is current then), so bursts cost two writes, never a queue.
 */
export class PlaceholderWriter {
  private readonly writes: CoalescedTask

  constructor(
    private readonly file: string,
    private readonly records: () => PlaceholderRecord[],
    private readonly onError: (e: unknown) => void,
  ) {
    this.writes = new CoalescedTask(() => savePlaceholders(this.file, this.records()).catch(this.onError))
  }

  /**
   * Resolves once the records as they are now (or later) are on disk, or the write failed
   * (reported): a save asked for during a write makes one more write, which holds these records.
   */
  save(): Promise<void> {
    return this.writes.run()
  }
}
