/**
 * The Spawner operator, on `@dot-i/k8s-operator`: `init()` registers the SessionLivedBackend
 * handler (and the Pod/Service watches that feed it) through `watchResource`, as the library
 * intends. The library's own watch loop is replaced (see docs/adr/0001-operator-framework.md):
 * in 1.3.9 it calls `process.exit(1)` on any watch error and runs every handler on one serial
 * queue that drops handler errors. Here `watchResource` is backed by a never-giving-up Informer,
 * and handlers only enqueue keys into a keyed WorkQueue that runs the reconcile.
 */
import Operator, { ResourceEventType, type ResourceEvent } from '@dot-i/k8s-operator';
import type { KubeConfig, V1Pod, V1Service } from '@kubernetes/client-node';
import type { SessionBackendPool, SessionLivedBackend } from '../../common/src/backend';
import {
  GROUP,
  LABEL_MANAGED_BY,
  LABEL_POOL,
  MANAGED_BY,
  PLURAL,
  POOL_KIND,
  POOL_PLURAL,
  POOL_VERSION,
  VERSION,
} from '../../common/src/constants';
import { isTransient } from '../../common/src/errors';
import { Informer } from '../../common/src/kube/informer';
import { BACKENDS, objectKey, PODS, POOLS, SERVICES } from '../../common/src/kube/resources';
import type { KubeClient, KubeObject, ResourceType } from '../../common/src/kube/types';
import type { Logger } from '../../common/src/logger';
import { WorkQueue } from '../../common/src/work-queue';
import type { OperatorConfig } from './config';
import type { OperatorMetrics } from './metrics';
import type { AssignFn } from './assign-client';
import { PoolReconciler } from './pool-reconciler';
import { Reconciler, type ObjectCache } from './reconciler';

const TYPES: Record<string, ResourceType> = { [PLURAL]: BACKENDS, [POOL_PLURAL]: POOLS, pods: PODS, services: SERVICES };

/** Adapts the library's OperatorLogger (message only) to our structured logger. */
const operatorLogger = (logger: Logger) => ({
  debug: (m: string) => logger.debug(m),
  info: (m: string) => logger.info(m),
  warn: (m: string) => logger.warn(m),
  error: (m: string) => logger.error(m),
});

export class SpawnerOperator extends Operator implements ObjectCache {
  readonly queue: WorkQueue;
  /** Warm pools have their own queue (a pool and a backend may share a name). */
  readonly poolQueue: WorkQueue;
  private readonly reconciler: Reconciler;
  private readonly poolReconciler: PoolReconciler;
  private readonly informers = new Map<string, Informer<KubeObject>>();
  private active = false;

  constructor(
    kubeConfig: KubeConfig,
    private readonly kube: KubeClient,
    private readonly config: OperatorConfig,
    private readonly metrics: OperatorMetrics,
    private readonly log: Logger,
    now: () => Date = () => new Date(),
    /** How a claimed pool Pod's sidecar is told its backend (default: over HTTP; tests fake it). */
    assign?: AssignFn,
  ) {
    super(operatorLogger(log));
    this.kubeConfig = kubeConfig;
    this.reconciler = new Reconciler(kube, this, config, metrics, log, now, assign);
    this.queue = new WorkQueue((key) => this.reconciler.reconcile(key), {
      concurrency: config.concurrency,
      onError: (key, err, attempt) => {
        const kind = isTransient(err) ? 'transient' : 'permanent';
        metrics.reconcileErrors.inc({ kind });
        const level = attempt >= 3 || kind === 'permanent' ? 'warn' : 'debug';
        log[level]('reconcile failed; retrying with backoff', { backend: key, attempt, kind, error: err });
      },
      onStart: (_key, waited) => metrics.queueWait.observe(waited),
      onProcessed: (_key, seconds, ok) => metrics.reconcileDuration.observe({ result: ok ? 'ok' : 'error' }, seconds),
    });
    this.poolReconciler = new PoolReconciler(kube, this, config, metrics, log, now);
    this.poolQueue = new WorkQueue((key) => this.poolReconciler.reconcile(key), {
      concurrency: 2,
      onError: (key, err, attempt) => {
        const kind = isTransient(err) ? 'transient' : 'permanent';
        metrics.reconcileErrors.inc({ kind });
        const level = attempt >= 3 || kind === 'permanent' ? 'warn' : 'debug';
        log[level]('pool reconcile failed; retrying with backoff', { pool: key, attempt, kind, error: err });
      },
    });
    // A claim is over: refill its pool now, not at the next Pod event. Until then the pool waits.
    this.reconciler.onPoolChanged = (namespace, pool) => {
      if (this.active) this.poolQueue.add(objectKey(namespace, pool));
    };
    this.poolReconciler.claimsInFlight = (key) => this.reconciler.claimsInFlight(key);
  }

  /** Registers the handlers: backends by key, and their Pods and Services mapped to the owner's key. */
  protected async init(): Promise<void> {
    for (const ns of this.config.namespaces) {
      await this.watchResource(GROUP, VERSION, PLURAL, (e) => this.onBackendEvent(e), ns);
      await this.watchResource('', 'v1', 'pods', (e) => this.onChildEvent(e), ns);
      await this.watchResource('', 'v1', 'services', (e) => this.onChildEvent(e), ns);
      await this.watchResource(GROUP, POOL_VERSION, POOL_PLURAL, (e) => this.onPoolEvent(e), ns);
    }
  }

  /**
   * Replaces the library's watch (which exits the process on error) with an Informer: list, then
   * watch from that version, relist after any failure, report deletions missed meanwhile, resync
   * periodically. The callback receives the library's ResourceEvent, as before.
   */
  protected override async watchResource(
    group: string,
    version: string,
    plural: string,
    onEvent: (event: ResourceEvent) => Promise<void>,
    namespace?: string,
  ): Promise<void> {
    const type = TYPES[plural];
    if (!type || type.group !== group || type.version !== version)
      throw new Error(`unexpected resource ${plural}.${group}/${version}`);
    const deliver = (eventType: ResourceEventType, object: KubeObject): void => {
      const meta = {
        id: `${plural}.${type.group ? `${group}/${version}` : version}`,
        name: object.metadata?.name ?? '',
        namespace: object.metadata?.namespace,
        resourceVersion: object.metadata?.resourceVersion ?? '',
        apiVersion: object.apiVersion ?? '',
        kind: object.kind ?? type.kind,
      };
      onEvent({ meta, type: eventType, object: object as never }).catch((err: unknown) =>
        this.log.error('event handler failed', { resource: plural, error: err }),
      );
    };
    const informer = new Informer<KubeObject>(
      this.kube,
      type,
      {
        onUpsert: (o) => deliver(ResourceEventType.Modified, o),
        onDelete: (o) => deliver(ResourceEventType.Deleted, o),
      },
      this.log,
      {
        namespace,
        // Only what Spawner made: a namespace's other Pods never reach the cache.
        labelSelector: type === PODS || type === SERVICES ? `${LABEL_MANAGED_BY}=${MANAGED_BY}` : undefined,
        resyncMs: type === BACKENDS || type === POOLS ? this.config.resyncSeconds * 1000 : undefined,
        onWatchError: () => this.metrics.watchErrors.inc({ resource: plural }),
      },
    );
    this.informers.set(`${plural}/${namespace ?? ''}`, informer);
    informer.start();
  }

  private async onBackendEvent(e: ResourceEvent): Promise<void> {
    const key = objectKey(e.meta.namespace, e.meta.name);
    if (e.type === ResourceEventType.Deleted) {
      this.queue.forget(key);
      this.reconciler.forget(key);
      this.reconciler.forgetEvents(e.object as unknown as SessionLivedBackend);
      return;
    }
    if (this.active) this.queue.add(key);
  }

  private async onChildEvent(e: ResourceEvent): Promise<void> {
    const owner = e.object.metadata?.ownerReferences?.find((r) => r.controller);
    if (!owner || !this.active) return;
    if (owner.kind === BACKENDS.kind) this.queue.add(objectKey(e.meta.namespace, owner.name));
    else if (owner.kind === POOL_KIND) this.poolQueue.add(objectKey(e.meta.namespace, owner.name));
    // A claimed Pod keeps its pool's label: its pool reconciles once the cache shows the claim, or
    // it would refill only at its next own event (the claim's own nudge may run on an older cache).
    const pool = e.object.metadata?.labels?.[LABEL_POOL];
    if (pool && owner.kind !== POOL_KIND) this.poolQueue.add(objectKey(e.meta.namespace, pool));
  }

  private async onPoolEvent(e: ResourceEvent): Promise<void> {
    const key = objectKey(e.meta.namespace, e.meta.name);
    if (e.type === ResourceEventType.Deleted) {
      this.poolQueue.forget(key);
      this.poolReconciler.forget(key);
      return;
    }
    if (this.active) this.poolQueue.add(key);
  }

  private informer<T extends KubeObject>(plural: string, namespace: string): Informer<T> | undefined {
    return this.informers.get(`${plural}/${namespace}`) as Informer<T> | undefined;
  }

  backend(namespace: string, name: string): SessionLivedBackend | undefined {
    return this.informer<SessionLivedBackend>(PLURAL, namespace)?.get(namespace, name);
  }

  pod(namespace: string, name: string): V1Pod | undefined {
    return this.informer<V1Pod & KubeObject>('pods', namespace)?.get(namespace, name);
  }

  service(namespace: string, name: string): V1Service | undefined {
    return this.informer<V1Service & KubeObject>('services', namespace)?.get(namespace, name);
  }

  pool(namespace: string, name: string): SessionBackendPool | undefined {
    return this.informer<SessionBackendPool>(POOL_PLURAL, namespace)?.get(namespace, name);
  }

  pods(namespace: string): Iterable<V1Pod> {
    return this.informer<V1Pod & KubeObject>('pods', namespace)?.list() ?? [];
  }

  /** Every cached pool. */
  *pools(): Iterable<SessionBackendPool> {
    for (const ns of this.config.namespaces) yield* this.informer<SessionBackendPool>(POOL_PLURAL, ns)?.list() ?? [];
  }

  /** Every cached backend (for the phase gauge). */
  *backends(): Iterable<SessionLivedBackend> {
    for (const ns of this.config.namespaces) yield* this.informer<SessionLivedBackend>(PLURAL, ns)?.list() ?? [];
  }

  /**
   * The caches readiness waits for. Pools are not among them: after a `helm upgrade` (which never
   * installs new CRDs) the pool CRD may be missing, and backends must go on without it; a backend
   * from a pool waits while its namespace's pools are not synced (`poolsSynced`).
   */
  private required(): Array<Informer<KubeObject>> {
    return [...this.informers.entries()].filter(([k]) => !k.startsWith(`${POOL_PLURAL}/`)).map(([, i]) => i);
  }

  get synced(): boolean {
    return this.required().every((i) => i.hasSynced);
  }

  async waitForSync(): Promise<void> {
    await Promise.all(this.required().map((i) => i.waitForSync()));
  }

  poolsSynced(namespace: string): boolean {
    return this.informer(POOL_PLURAL, namespace)?.hasSynced ?? false;
  }

  /**
   * Start reconciling (when elected): seed the known Events, then enqueue every cached backend.
   * A standby keeps its caches warm but writes nothing.
   */
  async activate(): Promise<void> {
    if (this.active) return;
    await this.waitForSync();
    for (const ns of this.config.namespaces) {
      await this.reconciler
        .loadEmittedEvents(ns)
        .catch((err: unknown) =>
          this.log.warn('could not list existing events; some may be created again', { namespace: ns, error: err }),
        );
    }
    this.active = true;
    for (const b of this.backends()) this.queue.add(objectKey(b.metadata.namespace, b.metadata.name as string));
    for (const p of this.pools()) this.poolQueue.add(objectKey(p.metadata.namespace, p.metadata.name as string));
    this.log.info('reconciling', { namespaces: this.config.namespaces });
  }

  override stop(): void {
    this.active = false;
    for (const i of this.informers.values()) void i.stop();
  }

  async shutdown(): Promise<void> {
    this.active = false;
    await Promise.all([this.queue.stop(), this.poolQueue.stop()]);
    // Events already handed over are written before we go (one attempt each; the rest are
    // re-emitted by the next operator, which lists what exists).
    await this.reconciler.events.whenIdle();
    await this.reconciler.events.stop();
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
  }
}
