// Who asked (docs/contract.md#audit): a record of every token handed out (getAuth), forced refresh,
// login and logout, broker request and placeholder issued or revoked, with the peer's pid, uid and executable as the kernel told them when the
// connection was made. Kept in memory only, in a ring of fixed size: what a user wants to know
// ("which tool logged me out?") is recent, and a file would be one more place to guard and bound.
import type { AuditEntry, AuditResult, AuditedMethod, SocketKind } from '../rpc/contract.js'
import type { PeerCred } from '../os/peercred.js'

export const DEFAULT_AUDIT_CAPACITY = 1000

export class AuditLog {
  private readonly ring: AuditEntry[] = []
  /** Index of the oldest record once the ring is full. */
  private head = 0
  private recorded = 0

  constructor(
    readonly capacity = DEFAULT_AUDIT_CAPACITY,
    private readonly now: () => Date = () => new Date(),
  ) {}

  record(method: AuditedMethod, peer: PeerCred | null, detail: string | null, outcome: string, socket: SocketKind = 'main'): void {
    const entry: AuditEntry = {
      time: this.now().toISOString(),
      method,
      detail,
      outcome,
      peer: { pid: peer?.pid ?? null, uid: peer?.uid ?? null, exe: peer?.exe ?? null },
      socket,
    }
    this.recorded++
    if (this.ring.length < this.capacity) {
      this.ring.push(entry)
      return
    }
    this.ring[this.head] = entry
    this.head = (this.head + 1) % this.capacity
  }

  /** The newest `limit` records (all when null), oldest first. */
  read(limit: number | null): AuditResult {
    const ordered = [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)]
    const entries = limit !== null && limit < ordered.length ? ordered.slice(ordered.length - limit) : ordered
    return { entries, capacity: this.capacity, recorded: this.recorded }
  }
}
