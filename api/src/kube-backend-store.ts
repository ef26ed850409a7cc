/**
 * The BackendStore over Kubernetes: SessionLivedBackend resources in one namespace.
 *
 * Reads (get, list, watch, endpoint, countLive) come from an informer's watch cache, so the hot
 * paths (every proxied request looks its backend up) never touch the API server. Writes (create,
 * status patch, delete) and `get({fresh: true})` go to the API server, which is the arbiter for
 * get-or-create races.
 *
 * A cache lags its own writes by one watch round trip. Clients do create-then-get and
 * delete-then-get back to back, so this store remembers its recent writes: a created object is
 * visible until the informer reports it, a deleted incarnation (by uid) is hidden until the
 * informer confirms the deletion.
 *
 * A deleted backend's last state is remembered for a while (`ended`, see ended-backends.ts): from
 * this store's own deletes and from the informer's delete events, so a backend deleted by anyone
 * (the operator once it is Swept, `kubectl delete`) is covered, on every API replica.
 *
 * Routing (`endpoint`, `routesStale`) comes from a second informer, on the backends' Pods
 * (pod-routes.ts): a backend is reached only through the Pod its status names, verified there, and
 * the store knows how fresh that view is. A change in a Pod's routability is announced to the
 * backend's watchers (its current object again), so a request held for a Ready backend goes on as
 * soon as its Pod is routable.
 */
import { type SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, phaseOf, writeTransition } from '../../common/src/lifecycle';
import { FIELD_MANAGER, SIDECAR_SERVE_PORT } from '../../common/src/constants';
import { isAlreadyExists } from '../../common/src/errors';
import { Informer } from '../../common/src/kube/informer';
import { BACKENDS } from '../../common/src/kube/resources';
import { matchesSelector, type Requirement } from '../../common/src/kube/selectors';
import type { KubeClient } from '../../common/src/kube/types';
import type { Logger } from '../../common/src/logger';
import { BackendListeners } from './backend-listeners';
import { DEFAULT_ENDED_RETENTION_SECONDS, EndedBackends } from './ended-backends';
import { DEFAULT_ROUTES_FRESHNESS_SECONDS, PodRoutes, type PodRoutesOptions } from './pod-routes';
import {
  BackendAlreadyExistsError,
  type BackendListener,
  type BackendStore,
  type DeleteBackendOptions,
  type Endpoint,
  type GetOptions,
} from './backend-store';

export interface KubeBackendStoreOptions {
  client: KubeClient;
  namespace: string;
  logger: Logger;
  /** How long own writes are remembered while the watch catches up. */
  overlayTtlMs?: number;
  sidecarPort?: number;
  now?: () => Date;
  onWatchError?: (err: unknown) => void;
  /** How long a deleted backend's last state is remembered (`ended`). */
  endedRetentionSeconds?: number;
  /** Past this age the routing view is stale (`routesStale`); default 15. */
  routesFreshnessSeconds?: number;
  /** Finer settings of the routing view (tests). */
  routes?: Partial<
    Pick<PodRoutesOptions, 'freshnessBoundMs' | 'probeIntervalMs' | 'watchTimeoutSeconds' | 'relistAfterMs' | 'now'>
  >;
}

interface Remembered {
  obj: SessionLivedBackend;
  expires: number;
}

export class KubeBackendStore implements BackendStore {
  readonly namespace: string;
  private readonly informer: Informer<SessionLivedBackend>;
  private readonly listeners: BackendListeners;
  /** Created by us, not yet seen by the informer (by name). */
  private readonly created = new Map<string, Remembered>();
  /** Deleted by us, maybe still in the cache (by uid → expiry). */
  private readonly deleted = new Map<string, number>();
  private readonly ttl: number;
  private readonly endedBackends: EndedBackends;
  private readonly routes: PodRoutes;

  constructor(private readonly opts: KubeBackendStoreOptions) {
    this.namespace = opts.namespace;
    this.listeners = new BackendListeners((name, err) => opts.logger.warn('backend listener failed', { name, error: err }));
    this.ttl = opts.overlayTtlMs ?? 60_000;
    this.endedBackends = new EndedBackends({
      retentionMs: (opts.endedRetentionSeconds ?? DEFAULT_ENDED_RETENTION_SECONDS) * 1000,
      now: () => this.now().getTime(),
    });
    this.informer = new Informer<SessionLivedBackend>(
      opts.client,
      BACKENDS,
      {
        onUpsert: (obj) => this.onUpsert(obj),
        onDelete: (obj) => this.onDelete(obj),
      },
      opts.logger,
      { namespace: opts.namespace, onWatchError: opts.onWatchError },
    );
    this.routes = new PodRoutes({
      client: opts.client,
      namespace: opts.namespace,
      logger: opts.logger,
      freshnessBoundMs: (opts.routesFreshnessSeconds ?? DEFAULT_ROUTES_FRESHNESS_SECONDS) * 1000,
      onWatchError: opts.onWatchError,
      ...opts.routes,
      onRouteChange: (name) => {
        // Watchers re-evaluate the backend (a held request, say); never "undefined" for this.
        const backend = this.cached(name);
        if (backend) this.emit(name, backend);
      },
    });
  }

  async start(): Promise<void> {
    this.informer.start();
    this.routes.start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.informer.stop(), this.routes.stop()]);
  }

  ready(): boolean {
    return this.informer.hasSynced && this.routes.hasSynced;
  }

  /** Resolves once the first lists (backends and their Pods) have been cached. */
  async waitForSync(): Promise<void> {
    await Promise.all([this.informer.waitForSync(), this.routes.waitForSync()]);
  }

  async create(backend: SessionLivedBackend): Promise<SessionLivedBackend> {
    const name = backend.metadata.name ?? '';
    let stored: SessionLivedBackend;
    try {
      stored = await this.opts.client.create(BACKENDS, this.namespace, backend, { fieldManager: FIELD_MANAGER });
    } catch (err) {
      if (isAlreadyExists(err)) throw new BackendAlreadyExistsError(name);
      throw err;
    }
    if (!this.informer.get(this.namespace, name)) this.created.set(name, { obj: stored, expires: Date.now() + this.ttl });
    this.endedBackends.revived(stored);
    return stored;
  }

  async get(name: string, opts: GetOptions = {}): Promise<SessionLivedBackend | undefined> {
    if (opts.fresh || !this.informer.hasSynced) {
      const obj = await this.opts.client.get<SessionLivedBackend>(BACKENDS, this.namespace, name);
      return obj && !this.isDeleted(obj) ? obj : undefined;
    }
    return this.cached(name);
  }

  getCached(name: string): SessionLivedBackend | undefined {
    return this.informer.hasSynced ? this.cached(name) : undefined;
  }

  async list(selector: Requirement[] = []): Promise<SessionLivedBackend[]> {
    // An empty cache before the first sync would claim there are no backends.
    const items = this.informer.hasSynced
      ? this.all()
      : (await this.opts.client.list<SessionLivedBackend>(BACKENDS, this.namespace)).items.filter((b) => !this.isDeleted(b));
    return items.filter((b) => matchesSelector(b.metadata.labels, selector));
  }

  async delete(name: string, opts: DeleteBackendOptions = {}): Promise<SessionLivedBackend | undefined> {
    const { client } = this.opts;
    let current = await client.get<SessionLivedBackend>(BACKENDS, this.namespace, name);
    if (!current || (opts.uid && current.metadata.uid !== opts.uid)) return undefined;
    let recorded = false;
    if (opts.reason && !isTerminal(phaseOf(current))) {
      // Record why it ended before it disappears: status streams and the operator read it there.
      const outcome = await writeTransition(
        client,
        'api',
        current,
        { phase: 'Swept', reason: opts.reason, message: opts.message },
        { now: () => this.now() },
      );
      if (outcome.kind === 'gone') return undefined;
      current = outcome.backend;
      recorded = outcome.kind === 'written';
    }
    const uid = current.metadata.uid;
    const deleted = await client.delete(BACKENDS, this.namespace, name, { uid, propagationPolicy: 'Background' });
    // Once it is Swept the operator deletes it too, and may be first: that is still our delete.
    if (!deleted && !recorded) return undefined;
    // Watchers hear the terminal state now rather than after the watch round trip, then the end.
    this.emit(name, current);
    if (uid) this.deleted.set(uid, Date.now() + this.ttl);
    this.created.delete(name);
    this.endedBackends.record(current);
    this.emit(name, undefined);
    return current;
  }

  ended(name: string): SessionLivedBackend | undefined {
    return this.endedBackends.get(name);
  }

  watch(name: string, listener: BackendListener): () => void {
    // Before the first sync the cache knows nothing: "undefined" would read as "deleted".
    const synced = this.informer.hasSynced ? Promise.resolve() : this.informer.waitForSync();
    return this.listeners.add(name, listener, () => this.cached(name), synced);
  }

  /**
   * The sidecar by Pod IP, in every service mode. Never the Service: routing must not depend on
   * kube-proxy or cluster DNS. Only the IP of the Pod the backend's status names (podUID), which
   * that backend controls, and which is Running, Ready and not terminating (pod-routes.ts); never
   * `status.podIP` as such, which may be a dead Pod's address, given to another Pod since.
   */
  endpoint(backend: SessionLivedBackend): Endpoint | undefined {
    const ip = this.routes.route(backend);
    return ip ? { host: ip, port: this.opts.sidecarPort ?? SIDECAR_SERVE_PORT } : undefined;
  }

  routesStale(): boolean {
    return this.routes.stale();
  }

  countLive(): number {
    let n = 0;
    for (const b of this.all()) if (!isTerminal(phaseOf(b)) && !b.metadata.deletionTimestamp) n++;
    return n;
  }

  private now(): Date {
    return this.opts.now ? this.opts.now() : new Date();
  }

  private isDeleted(obj: SessionLivedBackend): boolean {
    const uid = obj.metadata.uid;
    if (!uid) return false;
    const until = this.deleted.get(uid);
    if (until === undefined) return false;
    if (until < Date.now()) {
      this.deleted.delete(uid);
      return false;
    }
    return true;
  }

  private cached(name: string): SessionLivedBackend | undefined {
    const obj = this.informer.get(this.namespace, name);
    if (obj) return this.isDeleted(obj) ? undefined : obj;
    const mine = this.created.get(name);
    if (!mine) return undefined;
    if (mine.expires < Date.now() || this.isDeleted(mine.obj)) {
      this.created.delete(name);
      return undefined;
    }
    return mine.obj;
  }

  private all(): SessionLivedBackend[] {
    const out: SessionLivedBackend[] = [];
    const seen = new Set<string>();
    for (const obj of this.informer.list()) {
      const name = obj.metadata.name ?? '';
      seen.add(name);
      if (!this.isDeleted(obj)) out.push(obj);
    }
    for (const name of [...this.created.keys()]) {
      if (seen.has(name)) continue;
      const obj = this.cached(name);
      if (obj) out.push(obj);
    }
    return out;
  }

  private onUpsert(obj: SessionLivedBackend): void {
    const name = obj.metadata.name ?? '';
    if (this.created.get(name)?.obj.metadata.uid === obj.metadata.uid) this.created.delete(name);
    this.endedBackends.revived(obj);
    if (this.isDeleted(obj)) return;
    this.emit(name, obj);
  }

  private onDelete(obj: SessionLivedBackend): void {
    const name = obj.metadata.name ?? '';
    const uid = obj.metadata.uid;
    const wasHidden = uid !== undefined && this.deleted.has(uid);
    if (uid) this.deleted.delete(uid);
    const mine = this.created.get(name);
    if (mine && mine.obj.metadata.uid === uid) this.created.delete(name);
    // Remembered before watchers hear of it (they ask why it ended), unless a successor holds the name.
    const successor = this.cached(name);
    if (!successor) this.endedBackends.record(obj);
    // Our own deletes were announced already; a successor may exist under the same name.
    if (wasHidden) return;
    this.emit(name, successor);
  }

  private emit(name: string, obj: SessionLivedBackend | undefined): void {
    this.listeners.emit(name, obj);
  }
}
