// A promise raced against a timer, for the places that wait a bounded time for work they cannot
// cancel (a refresh in flight, a revocation, a login's end).

/**
 * What `work` gives, or `onTimeout` if `ms` pass first. The timer is cleared either way. A plain
 * timer, not an aborted timers/promises sleep: each abort builds an AbortError with a stack, and
 * a thousand getAuth calls waiting for one refresh each clear their own timer.
 */
export async function orTimeout<T, F>(work: Promise<T>, ms: number, onTimeout: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<F>((resolve) => {
    timer = setTimeout(resolve, ms, onTimeout)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}
