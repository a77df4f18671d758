// One task, run at most once at a time: asked for while it runs, it runs once more after, and
// every asker shares that promise. The cache's re-reads and the placeholder file's writes both
// need exactly this (what a run read or wrote may be stale by the time it ends).

export class CoalescedTask {
  private running: Promise<void> | null = null
  private again = false

  /** `repeat` is asked before each extra run (false: stop, e.g. once the owner has stopped). */
  constructor(
    private readonly task: () => Promise<void>,
    private readonly repeat: () => boolean = () => true,
  ) {}

  /** Run now, or once more after the run under way; settles when the last run asked for has. */
  run(): Promise<void> {
    if (this.running !== null) {
      this.again = true
      return this.running
    }
    this.running = (async () => {
      try {
        do {
          this.again = false
          await this.task()
        } while (this.again && this.repeat())
      } finally {
        this.running = null
      }
    })()
    return this.running
  }

  /** What a run under way has read may be stale: it runs once more. No effect when idle. */
  invalidate(): void {
    if (this.running !== null) this.again = true
  }

  /** The run under way, if any (to wait for it at shutdown). */
  get current(): Promise<void> | null {
    return this.running
  }
}
