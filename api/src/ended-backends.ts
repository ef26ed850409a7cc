/**
 * What a store remembers of the backends that are gone: the last state of each deleted backend,
 * by name, for a while. The original Spawner kept answering a finished backend's status (its
 * clients show "session ended" from it); here the resource is deleted as soon as it ends, so the
 * status routes answer from this record instead: the terminal phase and reason for `retentionMs`
 * (--ended-retention-seconds), then 404 as for any unknown name.
 *
 * - Every entry is terminal. A backend whose last state seen was live (deleted outright, e.g.
 *   `kubectl delete slab x`, with no ending written) is recorded as Swept with reason
 *   DeletedByClient: the ending the API writes (as writer 'api') when a client deletes one
 *   through it, planned by the same lifecycle module, and written nowhere.
 * - Bounded: entries expire `retentionMs` after the end was recorded, and beyond `maxEntries` the
 *   oldest ending is forgotten first (all entries live equally long, so the oldest is also the
 *   next to expire; a read does not make an entry younger).
 * - A new backend under the same name replaces the record (`revived`).
 * - In memory, per process: each API replica remembers what its own watch saw.
 *
 * One instance per store; the store calls `record` when a backend disappears and `revived` when one
 * appears, and answers `BackendStore.ended(name)` with `get`.
 */
import type { SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, phaseOf, planTransition, Reasons } from '../../common/src/lifecycle';

export const DEFAULT_ENDED_RETENTION_SECONDS = 600;
export const DEFAULT_ENDED_MAX_ENTRIES = 10_000;

/** The message of a backend recorded as ended because it was deleted while live. */
export const DELETED_WHILE_LIVE_MESSAGE = 'deleted while live, without an ending recorded (e.g. kubectl delete)';

export interface EndedBackendsOptions {
  /** How long an ended backend is remembered (0: not at all). */
  retentionMs?: number;
  maxEntries?: number;
  /** Milliseconds since the epoch (tests inject a clock). */
  now?: () => number;
}

interface Entry {
  backend: SessionLivedBackend;
  uid?: string;
  expires: number;
}

export class EndedBackends {
  readonly retentionMs: number;
  readonly maxEntries: number;
  private readonly now: () => number;
  /** In the order the endings were recorded, which is also the order of expiry. */
  private readonly byName = new Map<string, Entry>();

  constructor(opts: EndedBackendsOptions = {}) {
    this.retentionMs = opts.retentionMs ?? DEFAULT_ENDED_RETENTION_SECONDS * 1000;
    this.maxEntries = Math.max(0, opts.maxEntries ?? DEFAULT_ENDED_MAX_ENTRIES);
    this.now = opts.now ?? Date.now;
  }

  /** Remembers `last`, the last state of a backend that has just been deleted. */
  record(last: SessionLivedBackend): void {
    const name = last.metadata.name;
    if (!name || this.retentionMs <= 0 || this.maxEntries === 0) return;
    const now = this.now();
    const uid = last.metadata.uid;
    const existing = this.byName.get(name);
    const sameIncarnation = existing !== undefined && uid !== undefined && existing.uid === uid;
    // Heard twice (its deleter, then the watch): an ending already known is never replaced by a
    // synthesized one, and the entry keeps its place and expiry.
    if (sameIncarnation && !isTerminal(phaseOf(last))) return;
    const entry: Entry = { backend: ended(slim(last), new Date(now)), uid, expires: now + this.retentionMs };
    if (sameIncarnation) {
      entry.expires = existing.expires;
    } else {
      this.byName.delete(name);
    }
    this.byName.set(name, entry);
    this.prune(now);
  }

  /** A backend exists under `backend`'s name: a record of another incarnation is forgotten. */
  revived(backend: SessionLivedBackend): void {
    const name = backend.metadata.name;
    if (!name) return;
    const existing = this.byName.get(name);
    if (existing && existing.uid !== backend.metadata.uid) this.byName.delete(name);
  }

  /** The last state (terminal) of the backend of that name that ended within the retention. */
  get(name: string): SessionLivedBackend | undefined {
    const entry = this.byName.get(name);
    if (!entry) return undefined;
    if (entry.expires <= this.now()) {
      this.byName.delete(name);
      return undefined;
    }
    return entry.backend;
  }

  /** Entries held (expired ones included until the next record or read prunes them). */
  get size(): number {
    return this.byName.size;
  }

  private prune(now: number): void {
    for (const [name, entry] of this.byName) {
      if (entry.expires > now && this.byName.size <= this.maxEntries) break;
      this.byName.delete(name);
    }
  }
}

/** What the API reads of a backend; managedFields, owner references and the like are dropped. */
function slim(b: SessionLivedBackend): SessionLivedBackend {
  const m = b.metadata;
  const metadata: SessionLivedBackend['metadata'] = { name: m.name, namespace: m.namespace, uid: m.uid };
  if (m.resourceVersion !== undefined) metadata.resourceVersion = m.resourceVersion;
  if (m.generation !== undefined) metadata.generation = m.generation;
  if (m.creationTimestamp !== undefined) metadata.creationTimestamp = m.creationTimestamp;
  if (m.deletionTimestamp !== undefined) metadata.deletionTimestamp = m.deletionTimestamp;
  if (m.labels) metadata.labels = m.labels;
  if (m.annotations) metadata.annotations = m.annotations;
  const out: SessionLivedBackend = { apiVersion: b.apiVersion, kind: b.kind, metadata, spec: b.spec };
  if (b.status) out.status = b.status;
  return out;
}

/** `b` if it ended; otherwise `b` ended now as Swept, DeletedByClient. */
function ended(b: SessionLivedBackend, now: Date): SessionLivedBackend {
  if (isTerminal(phaseOf(b))) return b;
  const t = { phase: 'Swept' as const, reason: Reasons.DeletedByClient, message: DELETED_WHILE_LIVE_MESSAGE };
  const verdict = planTransition(b, t, 'api', now);
  // The API may end any live backend this way: the plan is not refused.
  return verdict.ok ? { ...b, status: verdict.status } : b;
}
