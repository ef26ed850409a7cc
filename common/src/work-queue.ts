/**
 * A keyed work queue in the manner of client-go's workqueue:
 *
 * - adding a key that is already waiting does nothing (events coalesce);
 * - a key is never processed twice at once: added while running, it runs again after;
 * - at most `concurrency` keys run at a time;
 * - a failing key is retried with exponential backoff; a handler may also ask to run again later
 *   (`{ requeueAfterMs }`), and the earlier of two scheduled times wins.
 *
 * Handlers never see an event, only a key: they read the world and act on what it is now.
 */
import { backoffDelay } from './backoff';
import { isTransient } from './errors';

export interface HandlerResult {
  requeueAfterMs?: number;
}

export type Handler = (key: string) => Promise<HandlerResult | void>;

export interface WorkQueueOptions {
  concurrency?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Backoff for errors that retrying cannot fix; they are still retried, slowly. */
  permanentBackoffMs?: number;
  onError?: (key: string, err: unknown, attempt: number) => void;
  onProcessed?: (key: string, seconds: number, ok: boolean) => void;
  /** A key starts running after waiting this long since it was (first) added: the queue's latency. */
  onStart?: (key: string, waitedSeconds: number) => void;
  now?: () => number;
}

export class WorkQueue {
  private readonly waiting: string[] = [];
  /** Keys waiting to run, with when each was first added (coalesced adds keep the earliest). */
  private readonly waitingSince = new Map<string, number>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private active = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];
  private readonly concurrency: number;

  constructor(
    private readonly handler: Handler,
    private readonly opts: WorkQueueOptions = {},
  ) {
    this.concurrency = Math.max(1, opts.concurrency ?? 4);
  }

  /** Keys waiting to run (not counting those scheduled for later or running). */
  get depth(): number {
    return this.waiting.length;
  }

  get scheduled(): number {
    return this.timers.size;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.waitingSince.has(key)) return;
    this.waitingSince.set(key, performance.now());
    this.waiting.push(key);
    this.pump();
  }

  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.add(key);
    const at = (this.opts.now ?? Date.now)() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.timers.set(key, { at, timer });
  }

  /** Forget a key's failure count and any scheduled run (the object is gone). */
  forget(key: string): void {
    this.failures.delete(key);
    const t = this.timers.get(key);
    if (t) clearTimeout(t.timer);
    this.timers.delete(key);
  }

  /** Resolves when nothing is waiting or running (scheduled retries may remain). */
  whenIdle(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stop taking work; resolves when running handlers have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    this.waiting.length = 0;
    this.waitingSince.clear();
    await this.whenIdle();
  }

  private pump(): void {
    while (!this.stopped && this.active < this.concurrency && this.waiting.length > 0) {
      const key = this.waiting.shift() as string;
      const since = this.waitingSince.get(key) ?? performance.now();
      this.waitingSince.delete(key);
      this.opts.onStart?.(key, (performance.now() - since) / 1000);
      this.running.add(key);
      this.active++;
      void this.run(key);
    }
    if (this.active === 0 && this.waiting.length === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async run(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    let ok = true;
    try {
      const result = await this.handler(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      ok = false;
      const attempt = this.failures.get(key) ?? 0;
      this.failures.set(key, attempt + 1);
      this.opts.onError?.(key, err, attempt);
      const delay = isTransient(err)
        ? backoffDelay(attempt, this.opts.baseBackoffMs ?? 200, this.opts.maxBackoffMs ?? 60_000)
        : (this.opts.permanentBackoffMs ?? 300_000);
      this.addAfter(key, delay);
    } finally {
      this.opts.onProcessed?.(key, Number(process.hrtime.bigint() - started) / 1e9, ok);
      this.running.delete(key);
      this.active--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
