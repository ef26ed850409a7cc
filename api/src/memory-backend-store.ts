/**
 * A BackendStore in memory: for unit and integration tests of the API, and a base for stores
 * that keep their own state (local mode). It behaves like the Kubernetes one where the API
 * depends on it: create is an atomic arbiter (AlreadyExists), deletes honour a uid precondition,
 * and watchers hear about every change. `createDelayMs` spreads creates over the event loop so
 * that concurrency tests really interleave.
 */
import { randomUUID } from 'node:crypto';
import { type Phase, type SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, phaseOf, planTransition, type Transition, type Writer } from '../../common/src/lifecycle';
import { SIDECAR_SERVE_PORT } from '../../common/src/constants';
import { matchesSelector, type Requirement } from '../../common/src/kube/selectors';
import { validateSpec } from '../../crd-schemas/src/validators';
import {
  BackendAlreadyExistsError,
  type BackendListener,
  type BackendStore,
  type DeleteBackendOptions,
  type Endpoint,
  type GetOptions,
} from './backend-store';
import { BackendListeners } from './backend-listeners';
import { DEFAULT_ENDED_RETENTION_SECONDS, EndedBackends } from './ended-backends';

const clone = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T));

export interface MemoryBackendStoreOptions {
  namespace?: string;
  /** Where a backend's traffic goes; by default its status.podIP on the sidecar port. */
  endpointOf?: (backend: SessionLivedBackend) => Endpoint | undefined;
  createDelayMs?: number;
  now?: () => Date;
  /** How long a deleted backend's last state is remembered (`ended`). */
  endedRetentionSeconds?: number;
  /** What `routesStale` answers (tests of the entry point's refusal); by default always false. */
  routesStale?: () => boolean;
}

export class MemoryBackendStore implements BackendStore {
  readonly namespace: string;
  private readonly items = new Map<string, SessionLivedBackend>();
  private readonly listeners = new BackendListeners();
  private readonly endedBackends: EndedBackends;
  private rv = 0;
  private isReady = true;
  /** Makes the next store call fail with this error (fault injection for tests). */
  failNext?: Error;
  readonly calls: string[] = [];

  constructor(private readonly opts: MemoryBackendStoreOptions = {}) {
    this.namespace = opts.namespace ?? 'spawner';
    this.endedBackends = new EndedBackends({
      retentionMs: (opts.endedRetentionSeconds ?? DEFAULT_ENDED_RETENTION_SECONDS) * 1000,
      now: () => this.now().getTime(),
    });
  }

  private now(): Date {
    return this.opts.now ? this.opts.now() : new Date();
  }

  private fault(call: string): void {
    this.calls.push(call);
    const err = this.failNext;
    if (err) {
      this.failNext = undefined;
      throw err;
    }
  }

  setReady(ready: boolean): void {
    this.isReady = ready;
  }

  async create(backend: SessionLivedBackend): Promise<SessionLivedBackend> {
    if (this.opts.createDelayMs) await new Promise((r) => setTimeout(r, Math.random() * (this.opts.createDelayMs ?? 0)));
    this.fault('create');
    const name = backend.metadata.name ?? '';
    if (this.items.has(name)) throw new BackendAlreadyExistsError(name);
    const stored = clone(backend);
    // The API server applies the CRD's defaults; so does this store, from the same schema.
    validateSpec(stored.spec);
    stored.metadata = {
      ...stored.metadata,
      namespace: this.namespace,
      uid: randomUUID(),
      resourceVersion: String(++this.rv),
      generation: 1,
      creationTimestamp: this.now().toISOString() as unknown as Date,
    };
    this.items.set(name, stored);
    this.endedBackends.revived(stored);
    this.notify(name);
    return clone(stored);
  }

  /** The cache answers unless a fault is armed (then `get` is asked, and fails as told). */
  getCached(name: string): SessionLivedBackend | undefined {
    return this.failNext === undefined ? clone(this.items.get(name)) : undefined;
  }

  async get(name: string, _opts?: GetOptions): Promise<SessionLivedBackend | undefined> {
    this.fault('get');
    return clone(this.items.get(name));
  }

  async list(selector: Requirement[] = []): Promise<SessionLivedBackend[]> {
    this.fault('list');
    return [...this.items.values()].filter((b) => matchesSelector(b.metadata.labels, selector)).map(clone);
  }

  async delete(name: string, opts: DeleteBackendOptions = {}): Promise<SessionLivedBackend | undefined> {
    this.fault('delete');
    const current = this.items.get(name);
    if (!current) return undefined;
    if (opts.uid && current.metadata.uid !== opts.uid) return undefined;
    if (opts.reason && !isTerminal(phaseOf(current))) {
      this.transition(name, { phase: 'Swept', reason: opts.reason, message: opts.message }, 'api');
    }
    const last = this.items.get(name) as SessionLivedBackend;
    this.items.delete(name);
    this.endedBackends.record(clone(last));
    this.notify(name);
    return clone(last);
  }

  watch(name: string, listener: BackendListener): () => void {
    return this.listeners.add(name, listener, () => clone(this.items.get(name)));
  }

  ended(name: string): SessionLivedBackend | undefined {
    return clone(this.endedBackends.get(name));
  }

  endpoint(backend: SessionLivedBackend): Endpoint | undefined {
    if (this.opts.endpointOf) return this.opts.endpointOf(backend);
    const ip = backend.status?.podIP;
    return ip ? { host: ip, port: SIDECAR_SERVE_PORT } : undefined;
  }

  /** An in-memory view is never stale (unless a test says so). */
  routesStale(): boolean {
    return this.opts.routesStale?.() ?? false;
  }

  countLive(): number {
    let n = 0;
    for (const b of this.items.values()) if (!isTerminal(phaseOf(b))) n++;
    return n;
  }

  ready(): boolean {
    return this.isReady;
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  // ---- test and local-mode helpers: what the operator and the sweeper do in a cluster ----

  /** Moves a backend through the transition module, as `writer` (by default the operator); false if refused. */
  transition(name: string, t: Transition, writer: Writer = 'operator'): boolean {
    const current = this.items.get(name);
    if (!current) return false;
    const verdict = planTransition(current, t, writer, this.now());
    if (!verdict.ok) return false;
    const status = verdict.status;
    this.items.set(name, { ...current, status, metadata: { ...current.metadata, resourceVersion: String(++this.rv) } });
    this.notify(name);
    return true;
  }

  /** Shortcut for tests: walk a backend to `phase`, setting podIP on the way. */
  advance(name: string, phase: Phase, fields: Transition['fields'] = {}): boolean {
    return this.transition(name, { phase, fields });
  }

  /** The stored object, bypassing fault injection and call recording. */
  peek(name: string): SessionLivedBackend | undefined {
    return clone(this.items.get(name));
  }

  /** Deletes without recording an ending, as `kubectl delete` would. */
  remove(name: string): void {
    const last = this.items.get(name);
    if (!last) return;
    this.items.delete(name);
    this.endedBackends.record(clone(last));
    this.notify(name);
  }

  listenerCount(name?: string): number {
    return this.listeners.count(name);
  }

  private notify(name: string): void {
    this.listeners.emit(name, clone(this.items.get(name)));
  }
}
