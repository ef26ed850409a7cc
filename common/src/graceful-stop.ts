/**
 * How a container is stopped, as a kubelet does it: SIGTERM, then SIGKILL once the grace period is
 * over, then wait for the exit. Local mode stops its apps this way (local/src/app-process.ts) and
 * the e2e node agent its containers (e2e/node-agent/pod-worker.ts); what "signal" reaches (a
 * process group, a cgroup's members) is theirs to say.
 */
export interface Stoppable<T> {
  signal(sig: NodeJS.Signals): void;
  /** Settles when the process has exited. */
  exited: Promise<T>;
}

/** SIGTERM, SIGKILL after `graceMs` (0: at once) unless it exited by then; resolves with the exit. */
export async function stopGracefully<T>(target: Stoppable<T>, graceMs: number): Promise<T> {
  target.signal('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), graceMs);
  });
  const exitedInTime = await Promise.race([target.exited.then(() => true), graceOver]);
  clearTimeout(timer);
  if (!exitedInTime) target.signal('SIGKILL');
  return target.exited;
}
