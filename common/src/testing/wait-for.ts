/**
 * Polls until `check` returns a truthy value (which it returns), or fails after `timeoutMs` saying
 * what it waited for and what it saw last. For tests only.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; description?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 5000);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out waiting for ${opts.description ?? 'condition'} (last: ${String(seen).slice(0, 500)})`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}
