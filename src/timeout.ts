// A promise raced against a timer, for the places that wait a bounded time for work they cannot
// cancel (a refresh in flight, a revocation, a login's end).
import { setTimeout as sleep } from 'node:timers/promises'

/** What `work` gives, or `onTimeout` if `ms` pass first. The timer is cleared either way. */
export async function orTimeout<T, F>(work: Promise<T>, ms: number, onTimeout: F): Promise<T | F> {
  const timer = new AbortController()
  try {
    // The aborted timer rejects, but the race has already settled and handles it.
    return await Promise.race([work, sleep(ms, onTimeout, { signal: timer.signal })])
  } finally {
    timer.abort()
  }
}
