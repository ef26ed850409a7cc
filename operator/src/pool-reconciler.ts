/**
 * The reconcile of one warm pool, by key: read the pool and the namespace's Spawner Pods from the
 * caches, let `decidePool` say what to create, delete and report, apply it. Like a ReplicaSet's,
 * it remembers the Pods it created until its cache shows them (so a lagging cache never makes it
 * create twice as many), and deletes with a resourceVersion precondition, so a Pod claimed by a
 * backend meanwhile is left alone. Claimed Pods are not the pool's any more (their controller is
 * their backend): nothing here touches them.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { SessionBackendPool } from '../../common/src/backend';
import { FIELD_MANAGER } from '../../common/src/constants';
import { isAlreadyExists } from '../../common/src/errors';
import { PODS, splitKey } from '../../common/src/kube/resources';
import type { KubeClient } from '../../common/src/kube/types';
import { writePoolStatus } from '../../common/src/lifecycle';
import type { Logger } from '../../common/src/logger';
import type { HandlerResult } from '../../common/src/work-queue';
import type { OperatorMetrics } from './metrics';
import { buildPoolPod, decidePool, poolStatusChanged, type PoolPodConfig } from './pool';
import { keyFingerprint } from '../../common/src/pool-assign';

export interface PoolCache {
  pool(namespace: string, name: string): SessionBackendPool | undefined;
  pods(namespace: string): Iterable<V1Pod>;
}

/** A created Pod the cache has not shown after this long is no longer counted as on its way. */
const PENDING_TTL_MS = 30_000;

/**
 * How long a refill waits, at most, for the pool's claims in flight. A claim's last writes (the
 * handover, the Ready status) take tens of milliseconds; a refill Pod's start (two processes, a
 * scheduling, status writes) made them several times slower when both ran at once on the same
 * control plane. Bounded, so a stream of claims never starves the refill.
 */
export const REFILL_DEFER_MAX_MS = 1000;

export class PoolReconciler {
  /** Per pool key: Pods created and not yet seen in the cache (name → when created). */
  private readonly pending = new Map<string, Map<string, number>>();
  /** Per pool key: since when its refill has waited for claims in flight. */
  private readonly deferredSince = new Map<string, number>();
  private readonly keyFp: string;
  /** The pool's claims in flight, by pool key (the backend reconciler's count; absent: none). */
  claimsInFlight?: (key: string) => number;

  constructor(
    private readonly kube: KubeClient,
    private readonly cache: PoolCache,
    private readonly config: PoolPodConfig,
    private readonly metrics: Pick<OperatorMetrics, 'poolReadyPods'>,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.keyFp = keyFingerprint(config.assignKey);
  }

  forget(key: string): void {
    this.pending.delete(key);
    this.deferredSince.delete(key);
    this.metrics.poolReadyPods.remove({ pool: splitKey(key).name });
  }

  async reconcile(key: string): Promise<HandlerResult> {
    const { namespace, name } = splitKey(key);
    const pool = this.cache.pool(namespace, name);
    if (!pool || pool.metadata.deletionTimestamp) {
      this.pending.delete(key);
      return {};
    }
    const pods = [...this.cache.pods(namespace)];
    const nowMs = this.now().getTime();
    const pending = this.pending.get(key) ?? new Map<string, number>();
    const seen = new Set(pods.map((p) => p.metadata?.name));
    for (const [podName, at] of pending) if (seen.has(podName) || nowMs - at > PENDING_TTL_MS) pending.delete(podName);

    const plan = decidePool({ pool, pods, pending: pending.size, now: this.now(), keyFp: this.keyFp });
    for (const { pod, why } of plan.delete) {
      const deleted = await this.kube.delete(PODS, namespace, pod.metadata?.name as string, {
        uid: pod.metadata?.uid,
        resourceVersion: pod.metadata?.resourceVersion,
        propagationPolicy: 'Background',
      });
      if (deleted) this.logger.info('replaced an unclaimed pool Pod', { pool: key, pod: pod.metadata?.name, why });
    }
    // Claims in flight finish first (each one's end enqueues this pool again), up to a bound.
    let create = plan.create;
    let deferMs: number | undefined;
    if (create > 0 && (this.claimsInFlight?.(key) ?? 0) > 0) {
      const since = this.deferredSince.get(key) ?? nowMs;
      this.deferredSince.set(key, since);
      if (nowMs - since < REFILL_DEFER_MAX_MS) {
        deferMs = REFILL_DEFER_MAX_MS - (nowMs - since);
        create = 0;
      }
    }
    if (create > 0 || plan.create === 0) this.deferredSince.delete(key);
    const creates: Array<Promise<void>> = [];
    for (let i = 0; i < create; i++) {
      const pod = buildPoolPod(pool, this.config);
      const podName = pod.metadata?.name as string;
      pending.set(podName, nowMs);
      creates.push(
        this.kube.create(PODS, namespace, pod as never, { fieldManager: FIELD_MANAGER }).then(
          () => undefined,
          (err: unknown) => {
            pending.delete(podName);
            if (!isAlreadyExists(err)) throw err;
          },
        ),
      );
    }
    if (pending.size > 0) this.pending.set(key, pending);
    else this.pending.delete(key);
    const results = await Promise.allSettled(creates);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');

    this.metrics.poolReadyPods.set({ pool: name }, plan.status.readyReplicas ?? 0);
    const written = poolStatusChanged(pool.status, plan.status) ? await writePoolStatus(this.kube, pool, plan.status) : undefined;
    if (failed) throw failed.reason;
    // A status computed from a pool that changed meanwhile: again, from the newer one.
    if (written === 'stale') return { requeueAfterMs: 250 };
    const after = [plan.requeueAfterMs, deferMs].filter((ms): ms is number => ms !== undefined);
    return { requeueAfterMs: after.length > 0 ? Math.min(...after) : undefined };
  }
}
