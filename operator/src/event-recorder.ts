/**
 * Records core/v1 Events off the reconcile's critical path, as client-go's event recorder does:
 * a reconcile hands its Events over and goes on; a small queue of its own writes them, retrying
 * with backoff. An Event is a record of a transition, not a step of it, so the next phase of a
 * backend never waits for the Event of the last one.
 *
 * "Recorded once" still holds: Event names are deterministic, so a retry or a second recorder
 * (a restarted operator) gets AlreadyExists and stops; an Event lost with a crashed operator is
 * re-emitted after restart, because `known` only answers for Events seen to exist or still queued.
 */
import type { CoreV1Event } from '@kubernetes/client-node';
import { isAlreadyExists, isNotFound, KubeApiError } from '../../common/src/errors';
import { EVENTS } from '../../common/src/kube/resources';
import type { KubeClient } from '../../common/src/kube/types';
import type { Logger } from '../../common/src/logger';
import { WorkQueue } from '../../common/src/work-queue';

export class EventRecorder {
  /** Events that exist in the API server (created by us, or found there at start). */
  private readonly existing = new Set<string>();
  /** Events handed over and not yet written, by name. */
  private readonly pending = new Map<string, CoreV1Event>();
  /** Pending Events of deleted backends: written all the same, then not remembered. */
  private readonly forgotten = new Set<string>();
  private readonly queue: WorkQueue;

  constructor(
    private readonly kube: KubeClient,
    logger: Logger,
    concurrency = 4,
  ) {
    this.queue = new WorkQueue((name) => this.write(name), {
      concurrency,
      onError: (name, err, attempt) =>
        logger[attempt >= 3 ? 'warn' : 'debug']('could not record an event; retrying', {
          event: name,
          attempt,
          error: err,
        }),
    });
  }

  /** True when the Event exists or is on its way: the caller need not hand it over again. */
  known(name: string): boolean {
    return this.existing.has(name) || this.pending.has(name);
  }

  /** An Event found in the API server (listed at start), or one too old to be worth re-creating. */
  markExisting(name: string): void {
    this.existing.add(name);
  }

  record(event: CoreV1Event): void {
    const name = event.metadata?.name;
    if (!name || this.known(name)) return;
    this.pending.set(name, event);
    this.queue.add(name);
  }

  /**
   * The backend is gone: stop remembering its Events. Those still queued are written all the same
   * (a swept backend is deleted at once, and its Swept Event is the one users look for); a new
   * backend of the same name has another uid, hence other Event names.
   */
  forget(names: Iterable<string>): void {
    for (const name of names) {
      this.existing.delete(name);
      if (this.pending.has(name)) this.forgotten.add(name);
    }
  }

  /** Resolves when every Event handed over so far has been written (or given up for now). */
  whenIdle(): Promise<void> {
    return this.queue.whenIdle();
  }

  async stop(): Promise<void> {
    await this.queue.stop();
  }

  private async write(name: string): Promise<void> {
    const event = this.pending.get(name);
    if (!event) return;
    try {
      await this.kube.create(EVENTS, event.metadata?.namespace, event as never);
    } catch (err) {
      // AlreadyExists: recorded before (a retry, or another operator). NotFound, or Forbidden in a
      // terminating namespace: the namespace goes, and the Event would go with it.
      if (!isAlreadyExists(err) && !isNotFound(err) && !isNamespaceTerminating(err)) throw err;
    }
    this.pending.delete(name);
    if (!this.forgotten.delete(name)) this.existing.add(name);
  }
}

const isNamespaceTerminating = (err: unknown): boolean =>
  err instanceof KubeApiError && err.status === 403 && /because it is being terminated/.test(err.message);
