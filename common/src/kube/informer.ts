/**
 * List-then-watch with a local cache, that never gives up: a watch that ends is resumed from the
 * last resourceVersion; one that fails (410 Gone, network error, API server restart) is followed by
 * a fresh list after a backoff, and objects that vanished meanwhile are reported as deleted. A
 * periodic resync reports every cached object again, so a handler that missed something catches
 * up (level-triggered: handlers get objects, never diffs).
 */
import { backoffDelay, sleep } from '../backoff';
import type { Logger } from '../logger';
import { objectKey } from './resources';
import type { KubeClient, KubeObject, ResourceType, WatchHandle } from './types';

export interface InformerHandlers<T> {
  onUpsert?(obj: T): void;
  onDelete?(obj: T): void;
  /** Called after each full list (first sync and every relist). */
  onSynced?(): void;
}

export interface InformerOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  resyncMs?: number;
  watchTimeoutSeconds?: number;
  onWatchError?: (err: unknown) => void;
}

/**
 * Server-side apply bookkeeping: often the larger part of an object, and read by nobody here
 * (client-go informers drop it the same way, with TransformStripManagedFields).
 */
function stripManagedFields(obj: KubeObject): void {
  if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
}

export class Informer<T extends KubeObject> {
  readonly cache = new Map<string, T>();
  private handle?: WatchHandle;
  private readonly abort = new AbortController();
  private resyncTimer?: NodeJS.Timeout;
  private synced = false;
  private syncWaiters: Array<() => void> = [];
  private loop?: Promise<void>;

  constructor(
    private readonly client: KubeClient,
    private readonly type: ResourceType,
    private readonly handlers: InformerHandlers<T>,
    private readonly logger: Logger,
    private readonly opts: InformerOptions = {},
  ) {}

  get hasSynced(): boolean {
    return this.synced;
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(objectKey(namespace, name));
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
    if (this.opts.resyncMs) {
      this.resyncTimer = setInterval(() => {
        for (const obj of this.cache.values()) this.handlers.onUpsert?.(obj);
      }, this.opts.resyncMs);
      this.resyncTimer.unref?.();
    }
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.handle?.abort();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.loop;
  }

  private key(obj: T): string {
    return objectKey(obj.metadata?.namespace, obj.metadata?.name ?? '');
  }

  private async relist(): Promise<string> {
    const seen = new Set<string>();
    let resourceVersion = '';
    let cont: string | undefined;
    do {
      const page = await this.client.list<T>(this.type, this.opts.namespace, {
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
        limit: 500,
        continue: cont,
      });
      resourceVersion = page.resourceVersion;
      cont = page.continue;
      for (const obj of page.items) {
        stripManagedFields(obj);
        const key = this.key(obj);
        seen.add(key);
        this.cache.set(key, obj);
        this.handlers.onUpsert?.(obj);
      }
    } while (cont);
    for (const [key, obj] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.handlers.onDelete?.(obj);
      }
    }
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
    this.handlers.onSynced?.();
    return resourceVersion;
  }

  private async run(): Promise<void> {
    let failures = 0;
    let resourceVersion: string | undefined;
    while (!this.abort.signal.aborted) {
      try {
        resourceVersion ??= await this.relist();
        const rv = { current: resourceVersion };
        this.handle = this.client.watch<T>(
          this.type,
          this.opts.namespace,
          {
            resourceVersion: rv.current,
            labelSelector: this.opts.labelSelector,
            fieldSelector: this.opts.fieldSelector,
            allowWatchBookmarks: true,
            timeoutSeconds: this.opts.watchTimeoutSeconds ?? 300,
          },
          (event) => {
            const newRv = event.object.metadata?.resourceVersion;
            if (newRv) rv.current = newRv;
            if (event.type === 'BOOKMARK') return;
            stripManagedFields(event.object);
            const key = this.key(event.object);
            if (event.type === 'DELETED') {
              this.cache.delete(key);
              this.handlers.onDelete?.(event.object);
            } else {
              this.cache.set(key, event.object);
              this.handlers.onUpsert?.(event.object);
            }
            failures = 0;
          },
        );
        await this.handle.done;
        // A clean end (server timeout): resume from where we are.
        resourceVersion = rv.current;
      } catch (err) {
        if (this.abort.signal.aborted) break;
        resourceVersion = undefined;
        this.opts.onWatchError?.(err);
        const delay = backoffDelay(failures++, 250, 10_000);
        this.logger.warn('watch failed; relisting after backoff', {
          resource: this.type.plural,
          error: err,
          retryInMs: delay,
        });
        await sleep(delay, this.abort.signal);
      }
    }
  }
}
