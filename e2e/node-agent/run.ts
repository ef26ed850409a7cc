import { spawner, type RunResult } from './spawner';

export type { RunResult };

/** Runs a short-lived host command (ip, nsenter); rejects on a non-zero exit unless told not to. */
export async function run(
  cmd: string,
  args: string[],
  opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {},
): Promise<RunResult> {
  const result = await spawner().run(cmd, args, opts.input, opts.timeoutMs ?? 15_000);
  if (result.code !== 0 && !opts.allowFail)
    throw new Error(`${cmd} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`);
  return result;
}

/** Runs `fn` with at most `limit` calls in flight, in arrival order. */
export function limiter(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: Array<() => void> = [];
  const next = (): void => {
    if (active >= limit) return;
    const start = queue.shift();
    if (start) {
      active++;
      start();
    }
  };
  return <T>(fn: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        fn()
          .then(resolve, reject)
          .finally(() => {
            active--;
            next();
          });
      });
      next();
    });
}
