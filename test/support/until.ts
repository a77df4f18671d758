// Waiting on a condition that has no event to wait for: polls, never a fixed sleep.

/**
 * Polls `check` every `intervalMs` until it returns something other than false, null or
 * undefined, and resolves with that; throws naming `what` once `timeoutMs` has passed. The
 * deadline only matters when the condition never comes, so it is generous for loaded machines.
 */
export async function until<T>(what: string, check: () => T | Promise<T>, timeoutMs = 15_000, intervalMs = 10): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v !== undefined && v !== null && v !== false) return v as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}
