// Placeholders (docs/remote.md#the-restricted-socket-and-placeholders): what a remote machine's
// auth.json holds instead of the refresh token. A placeholder is a credential of its own:
// unguessable, bound to the socket it was issued on, expiring, rotated on every use, and a rotated
// one presented again (a copy used after the original moved on) revokes its whole chain.
//
// Pure: the clock and the random bytes are passed in; persistence is placeholder-store.ts. Only
// the SHA-256 of a placeholder is kept (and persisted); the string itself exists here only while
// it is handed out, and for a rotation's short retry grace (in memory, never persisted).
import { createHash } from 'node:crypto'
import type { PlaceholderState, SocketKind } from '../rpc/contract.js'
import { PLACEHOLDER_PREFIX, isPlaceholder } from '../placeholder.js'

export { PLACEHOLDER_PREFIX, isPlaceholder }

/** Default lifetime of a placeholder; each rotation or `replaces` starts a new one. */
export const DEFAULT_PLACEHOLDER_TTL_MS = 24 * 3600_000
/**
 * The same rotated placeholder presented again this soon after its rotation, its successor never
 * used: the answer was lost on the way (a forward cut mid-answer), so the same successor is handed
 * out again instead of revoking the chain.
 */
export const ROTATION_GRACE_MS = 10_000
/** Ended records (rotated, revoked, reused, expired) are kept this long after they expire, for reuse detection and the list. */
export const RETAIN_ENDED_MS = 7 * 24 * 3600_000
/** Active placeholders at most: one more is refused (a forwarded socket cannot grow the file without bound). */
export const MAX_ACTIVE = 1000
/** Records at most, ended ones included: the oldest ended ones go first. */
export const MAX_RECORDS = 4000

export type { PlaceholderState }

export interface PlaceholderPeer {
  pid: number | null
  uid: number | null
  exe: string | null
}

/** One placeholder as kept and persisted. `state` is never 'expired': that is read off the clock. */
export interface PlaceholderRecord {
  id: string
  /** The id of the first placeholder of its chain: a rotation keeps it; reuse revokes all of it. */
  family: string
  /** SHA-256 (hex) of the placeholder string. */
  hash: string
  label: string
  socket: SocketKind
  createdAt: number
  lastUsedAt: number | null
  expiresAt: number
  uses: number
  state: Exclude<PlaceholderState, 'expired'>
  /** When it was rotated, and the id of the one that replaced it. */
  rotatedAt: number | null
  successor: string | null
  /** Who asked for it (the chain's first), as the kernel told at connect time. */
  peer: PlaceholderPeer | null
  /**
   * SHA-256 (hex) of the access token handed out with it, or null: a 401 recovery for an older
   * access token than the daemon serves needs the current tokens, not a spend.
   */
  accessHash: string | null
}

/** What presenting a placeholder string on a socket comes to. */
export type Verdict =
  /** Not a placeholder at all: a real token (or anything else). */
  | { kind: 'not_placeholder' }
  /** Unknown, or issued on the other socket (told apart only in `why`, for the log). */
  | { kind: 'unknown'; why: 'unknown' | 'wrong_socket' }
  | { kind: 'ok'; record: PlaceholderRecord }
  | { kind: 'expired'; record: PlaceholderRecord }
  | { kind: 'revoked'; record: PlaceholderRecord }
  /** A rotated one again within the grace: hand out the same successor again. */
  | { kind: 'retry'; record: PlaceholderRecord; successor: PlaceholderRecord; placeholder: string }
  /** A rotated one again: its chain is revoked now (`revoked` records ended by this). */
  | { kind: 'reused'; record: PlaceholderRecord; revoked: number }

export interface Issued {
  record: PlaceholderRecord
  /** The placeholder string: handed to the caller once, never kept. */
  placeholder: string
}

export interface RegistryOptions {
  now?: () => number
  random?: (n: number) => Buffer
  ttlMs?: number
  graceMs?: number
}

/** The placeholder's hash, as kept (and an access token's, for `accessHash`). */
export function hashPlaceholder(placeholder: string): string {
  return createHash('sha256').update(placeholder, 'utf8').digest('hex')
}


/** The placeholder refused: too many active ones. */
export class PlaceholderLimitError extends Error {
  constructor() {
    super(`too many active placeholders (${MAX_ACTIVE}): revoke some (codex-auth placeholders revoke ID)`)
    this.name = 'PlaceholderLimitError'
  }
}

export class PlaceholderRegistry {
  private readonly byId = new Map<string, PlaceholderRecord>()
  private readonly byHash = new Map<string, PlaceholderRecord>()
  /** Successors' strings during their rotation grace, by successor id (memory only). */
  private readonly graceStrings = new Map<string, { placeholder: string; until: number }>()
  private readonly now: () => number
  private readonly random: (n: number) => Buffer
  readonly ttlMs: number
  private readonly graceMs: number

  constructor(opts: RegistryOptions = {}, records: readonly PlaceholderRecord[] = []) {
    this.now = opts.now ?? Date.now
    this.random = opts.random ?? ((n) => process.getBuiltinModule('node:crypto').randomBytes(n))
    this.ttlMs = opts.ttlMs ?? DEFAULT_PLACEHOLDER_TTL_MS
    this.graceMs = opts.graceMs ?? ROTATION_GRACE_MS
    for (const r of records) this.put({ ...r })
  }

  /** A new placeholder (a new chain); `replaces`, an id of the same socket's, is revoked with its chain. */
  issue(req: { label: string; socket: SocketKind; peer: PlaceholderPeer | null; replaces?: string | null; accessToken?: string }): Issued {
    const replaced = req.replaces ? this.byId.get(req.replaces) : undefined
    const freed = replaced !== undefined && replaced.socket === req.socket && this.stateOf(replaced) === 'active' ? 1 : 0
    if (this.activeCount() - freed >= MAX_ACTIVE) throw new PlaceholderLimitError()
    const issued = this.mint({ label: req.label, socket: req.socket, peer: req.peer, family: null, accessToken: req.accessToken ?? null })
    if (replaced !== undefined && replaced.socket === req.socket) this.endFamily(replaced.family, 'revoked')
    this.prune()
    return issued
  }

  /** What presenting `token` on `socket` comes to; a reuse ends its chain here and now. */
  present(token: string, socket: SocketKind): Verdict {
    if (!isPlaceholder(token)) return { kind: 'not_placeholder' }
    const rec = this.byHash.get(hashPlaceholder(token))
    if (rec === undefined) return { kind: 'unknown', why: 'unknown' }
    // Issued for the other socket: as if unknown, and nothing about it changes.
    if (rec.socket !== socket) return { kind: 'unknown', why: 'wrong_socket' }
    const now = this.now()
    // Checked before expiry: a stolen copy used after its rotation is reported, however late.
    if (rec.state === 'rotated') {
      const successor = rec.successor !== null ? this.byId.get(rec.successor) : undefined
      const grace = successor !== undefined ? this.graceStrings.get(successor.id) : undefined
      if (successor !== undefined && grace !== undefined && now <= grace.until && successor.uses === 0 && this.stateOf(successor) === 'active') {
        return { kind: 'retry', record: rec, successor, placeholder: grace.placeholder }
      }
      const revoked = this.endFamily(rec.family, 'revoked')
      rec.state = 'reused'
      rec.lastUsedAt = now
      return { kind: 'reused', record: rec, revoked }
    }
    if (rec.state === 'revoked' || rec.state === 'reused') return { kind: 'revoked', record: rec }
    if (rec.expiresAt <= now) return { kind: 'expired', record: rec }
    return { kind: 'ok', record: rec }
  }

  /** The record `token` names on `socket`, whatever its state, with no consequence (for a revoke). */
  lookup(token: string, socket: SocketKind): PlaceholderRecord | null {
    if (!isPlaceholder(token)) return null
    const rec = this.byHash.get(hashPlaceholder(token))
    return rec !== undefined && rec.socket === socket ? rec : null
  }

  /** The placeholder was used and answered (with `accessToken`): replaced by a new one of the same chain (a fresh lifetime). */
  rotate(id: string, accessToken: string | null = null): Issued {
    const rec = this.mustGet(id)
    const now = this.now()
    const next = this.mint({ label: rec.label, socket: rec.socket, peer: rec.peer, family: rec.family, accessToken })
    rec.state = 'rotated'
    rec.rotatedAt = now
    rec.successor = next.record.id
    rec.uses++
    rec.lastUsedAt = now
    this.graceStrings.set(next.record.id, { placeholder: next.placeholder, until: now + this.graceMs })
    this.prune()
    return next
  }

  /** The placeholder was used and not answered with tokens (a 503, a 401): counted, kept. */
  touch(id: string): void {
    const rec = this.mustGet(id)
    rec.uses++
    rec.lastUsedAt = this.now()
  }

  /** Revokes the chain `id` belongs to; true when an active placeholder was among it. */
  revoke(id: string): boolean {
    const rec = this.byId.get(id)
    if (rec === undefined) return false
    return this.endFamily(rec.family, 'revoked') > 0
  }

  /** Every record, oldest first, with its state as of now. Never a placeholder string (there is none here). */
  list(): Array<Omit<PlaceholderRecord, 'state'> & { state: PlaceholderState }> {
    // Stable: records of the same instant stay in the order they were made.
    return [...this.byId.values()].sort((a, b) => a.createdAt - b.createdAt).map((r) => ({ ...r, state: this.stateOf(r) }))
  }

  /** What is persisted: every record, hashes only. */
  records(): PlaceholderRecord[] {
    return [...this.byId.values()].map((r) => ({ ...r }))
  }

  stateOf(r: PlaceholderRecord): PlaceholderState {
    return r.state === 'active' && r.expiresAt <= this.now() ? 'expired' : r.state
  }

  activeCount(): number {
    let n = 0
    for (const r of this.byId.values()) if (this.stateOf(r) === 'active') n++
    return n
  }

  /** Whether the access token last handed out with `rec` is known and is not `accessToken`. */
  handedOutOtherThan(rec: PlaceholderRecord, accessToken: string): boolean {
    return rec.accessHash !== null && rec.accessHash !== hashPlaceholder(accessToken)
  }

  get(id: string): PlaceholderRecord | undefined {
    return this.byId.get(id)
  }

  private mint(req: { label: string; socket: SocketKind; peer: PlaceholderPeer | null; family: string | null; accessToken: string | null }): Issued {
    const now = this.now()
    let id: string
    do id = `ph-${this.random(8).toString('hex')}`
    while (this.byId.has(id))
    const placeholder = PLACEHOLDER_PREFIX + this.random(32).toString('base64url')
    const record: PlaceholderRecord = {
      id,
      family: req.family ?? id,
      hash: hashPlaceholder(placeholder),
      label: req.label,
      socket: req.socket,
      createdAt: now,
      lastUsedAt: null,
      expiresAt: now + this.ttlMs,
      uses: 0,
      state: 'active',
      rotatedAt: null,
      successor: null,
      peer: req.peer,
      accessHash: req.accessToken === null ? null : hashPlaceholder(req.accessToken),
    }
    this.put(record)
    return { record, placeholder }
  }

  private put(r: PlaceholderRecord): void {
    this.byId.set(r.id, r)
    this.byHash.set(r.hash, r)
  }

  private mustGet(id: string): PlaceholderRecord {
    const rec = this.byId.get(id)
    if (rec === undefined) throw new Error(`no placeholder ${id}`)
    return rec
  }

  /** Ends every active (or expired) record of a chain; how many were active. */
  private endFamily(family: string, state: 'revoked'): number {
    let n = 0
    for (const r of this.byId.values()) {
      if (r.family !== family || r.state !== 'active') continue
      if (this.stateOf(r) === 'active') n++
      r.state = state
      this.graceStrings.delete(r.id)
    }
    return n
  }

  /** Forgets ended records long gone, and the oldest ended ones over MAX_RECORDS; drops expired grace strings. */
  private prune(): void {
    const now = this.now()
    for (const [id, g] of this.graceStrings) if (g.until < now) this.graceStrings.delete(id)
    const ended = [...this.byId.values()].filter((r) => this.stateOf(r) !== 'active').sort((a, b) => a.expiresAt - b.expiresAt)
    let excess = this.byId.size - MAX_RECORDS
    for (const r of ended) {
      if (r.expiresAt + RETAIN_ENDED_MS >= now && excess <= 0) break
      this.byId.delete(r.id)
      this.byHash.delete(r.hash)
      excess--
    }
  }
}
