/**
 * Warm pools (SPEC section 12), as pure functions: the Pods a SessionBackendPool keeps, which of
 * them a backend may claim, the one patch that claims one, and what the pool's reconcile should
 * do (create, delete, the status). The reconcilers apply these; tests check them without a cluster.
 *
 * A pool Pod is a backend's Pod (app + sidecar, from `buildPod`) built from the pool's template,
 * with a pool-made name, the pool's labels (no `run` label: no Service selects it) and a controller
 * ownerReference to the pool. The API's routing view ignores it: it routes only to a Pod whose
 * controller is the backend its status names. A claim moves that controller ownerReference to the
 * backend in one patch with the Pod's resourceVersion as precondition, so two claims can never
 * take the same Pod: the second gets a Conflict and takes the next Pod.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { V1OwnerReference, V1Pod } from '@kubernetes/client-node';
import {
  newBackend,
  replicasOf,
  type Condition,
  type SessionBackendPool,
  type SessionBackendPoolStatus,
  type SessionLivedBackend,
} from '../../common/src/backend';
import { sha256Hex } from '../../common/src/connection-token';
import {
  ENV_SIDECAR_ASSIGN_HASH,
  ENV_SIDECAR_APP_ASSIGN_PATH,
  LABEL_MANAGED_BY,
  LABEL_POOL,
  LABEL_POOL_TEMPLATE_HASH,
  MANAGED_BY,
  POOL_KIND,
  SIDECAR_CONTAINER,
} from '../../common/src/constants';
import { poolCondition } from '../../common/src/lifecycle';
import { assignSecret, keyFingerprint } from '../../common/src/pool-assign';
import { buildPod, childLabels, ownerReference, specProblems, type SidecarConfig } from './desired-state';
import { observePod } from './observe-pod';

/** The pool's template as a backend of it would have it: what its Pods are built from. */
function asBackend(pool: SessionBackendPool, podName: string): SessionLivedBackend {
  const spec = { template: pool.spec.template, ...(pool.spec.httpPort !== undefined ? { httpPort: pool.spec.httpPort } : {}) };
  return newBackend(podName, pool.metadata.namespace as string, spec, { uid: pool.metadata.uid });
}

/**
 * Short hash of what a pool Pod is built from (template, port, assignPath, and the fingerprint of
 * the operator's assign key, common/src/pool-assign.ts): a change replaces unclaimed Pods, so none
 * is left whose sidecar the operator could not assign.
 */
export function templateHash(pool: SessionBackendPool, keyFp: string): string {
  const text = JSON.stringify({
    template: pool.spec.template,
    httpPort: pool.spec.httpPort ?? null,
    key: keyFp,
    // Only when set, so the Pods of pools without one keep their hash.
    ...(pool.spec.assignPath !== undefined ? { assignPath: pool.spec.assignPath } : {}),
  });
  return createHash('sha256').update(text).digest('hex').slice(0, 10);
}

/** What pool Pods are built with: the sidecar settings and the operator's assign key. */
export type PoolPodConfig = SidecarConfig & { assignKey: Buffer };

/** Problems of the pool's template a backend's spec could not have either (reserved ports, names). */
export const poolSpecProblems = (pool: SessionBackendPool): string[] => specProblems(asBackend(pool, 'x'));

export function poolOwnerReference(pool: SessionBackendPool): V1OwnerReference {
  const { name, uid } = pool.metadata;
  if (!name || !uid) throw new Error('pool has no name or uid yet');
  // blockOwnerDeletion stays off: deleting a pool never waits for its Pods (nor asks for RBAC on
  // the pool's finalizers); the garbage collector removes the unclaimed ones afterwards.
  return { apiVersion: pool.apiVersion, kind: pool.kind, name, uid, controller: true, blockOwnerDeletion: false };
}

export const newPoolPodName = (pool: SessionBackendPool): string =>
  `${(pool.metadata.name as string).slice(0, 52)}-${randomBytes(4).toString('hex').slice(0, 5)}`;

/**
 * An unclaimed Pod of the pool, built like a backend's Pod, whose sidecar waits for its
 * assignment: it holds the hash of this Pod's assign secret and refuses all traffic until then.
 */
export function buildPoolPod(pool: SessionBackendPool, cfg: PoolPodConfig, name = newPoolPodName(pool)): V1Pod {
  const pod = buildPod(asBackend(pool, name), cfg);
  const sidecar = pod.spec?.containers.find((c) => c.name === SIDECAR_CONTAINER);
  if (!sidecar) throw new Error('a pool Pod without its sidecar');
  const secret = assignSecret(cfg.assignKey, pool.metadata.namespace as string, name);
  sidecar.env = [...(sidecar.env ?? []), { name: ENV_SIDECAR_ASSIGN_HASH, value: sha256Hex(secret) }];
  if (pool.spec.assignPath !== undefined) sidecar.env.push({ name: ENV_SIDECAR_APP_ASSIGN_PATH, value: pool.spec.assignPath });
  const meta = pod.metadata ?? {};
  meta.labels = {
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_POOL]: pool.metadata.name as string,
    [LABEL_POOL_TEMPLATE_HASH]: templateHash(pool, keyFingerprint(cfg.assignKey)),
  };
  meta.ownerReferences = [poolOwnerReference(pool)];
  pod.metadata = meta;
  return pod;
}

/** The controller ownerReference of a Pod, when it is a pool's: the Pod is unclaimed. */
export function poolOf(pod: V1Pod): string | undefined {
  const ref = pod.metadata?.ownerReferences?.find((r) => r.controller === true);
  return ref?.kind === POOL_KIND ? ref.name : undefined;
}

const controllerUid = (pod: V1Pod): string | undefined => pod.metadata?.ownerReferences?.find((r) => r.controller === true)?.uid;

/** The pool's unclaimed Pods among `pods` (its controller is this pool, by uid). */
export function unclaimedPods(pool: SessionBackendPool, pods: Iterable<V1Pod>): V1Pod[] {
  const out: V1Pod[] = [];
  for (const p of pods) if (controllerUid(p) === pool.metadata.uid && poolOf(p) !== undefined) out.push(p);
  return out;
}

const appName = (pool: SessionBackendPool): string => pool.spec.template.containers[0].name;

/** Whether a backend may claim this Pod: the pool's, of its current template and key, started and Ready. */
export function isClaimable(pool: SessionBackendPool, pod: V1Pod, keyFp: string): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  if (pod.metadata?.labels?.[LABEL_POOL_TEMPLATE_HASH] !== templateHash(pool, keyFp)) return false;
  const obs = observePod(pod, appName(pool));
  return obs.ready && obs.running && !!obs.nodeName && !obs.terminated;
}

/** The Pods a backend of this pool may claim, in the order to try them. */
export function claimablePods(pool: SessionBackendPool, pods: Iterable<V1Pod>, keyFp: string): V1Pod[] {
  return unclaimedPods(pool, pods).filter((p) => isClaimable(pool, p, keyFp));
}

/**
 * The one write of a claim: a merge patch of the Pod's metadata that makes the backend its
 * controller (the pool's reference goes: the list is replaced) and gives it the backend's labels
 * (`run=<backend>`, so a backend's Service selects it), with the Pod's resourceVersion as
 * precondition: whoever patched the Pod since (another claim) makes this one a Conflict.
 */
export function claimPatch(pod: V1Pod, backend: SessionLivedBackend): object {
  const resourceVersion = pod.metadata?.resourceVersion;
  if (!resourceVersion) throw new Error('a claim needs the Pod resourceVersion');
  return {
    metadata: {
      resourceVersion,
      ownerReferences: [ownerReference(backend)],
      labels: { ...childLabels(backend), [LABEL_POOL_TEMPLATE_HASH]: null },
    },
  };
}

export interface PoolPlan {
  /** How many Pods to create. */
  create: number;
  /** Unclaimed Pods to delete, each with why. */
  delete: Array<{ pod: V1Pod; why: string }>;
  status: SessionBackendPoolStatus;
  requeueAfterMs?: number;
}

export interface DecidePoolInput {
  pool: SessionBackendPool;
  /** The namespace's Spawner Pods (the unclaimed ones of this pool are picked by owner uid). */
  pods: Iterable<V1Pod>;
  /** Pods this operator created that its cache has not shown yet. */
  pending: number;
  now: Date;
  /** The fingerprint of the operator's assign key (Pods built under another are replaced). */
  keyFp: string;
}

const created = (p: V1Pod): number => new Date(p.metadata?.creationTimestamp as unknown as string).getTime();

/**
 * What the pool's reconcile does: keep `replicas` unclaimed Pods of the current template; replace
 * those that failed, that are older than maxIdleAgeSeconds, or that were built from an older
 * template (claimed Pods are not the pool's any more, so never touched); say how many are ready.
 */
export function decidePool(input: DecidePoolInput): PoolPlan {
  const { pool, now } = input;
  const nowMs = now.getTime();
  const hash = templateHash(pool, input.keyFp);
  const want = replicasOf(pool);
  const maxAge = pool.spec.maxIdleAgeSeconds;
  const toDelete: PoolPlan['delete'] = [];
  const keep: V1Pod[] = [];
  const failing: string[] = [];
  let nextExpiry: number | undefined;
  const problems = poolSpecProblems(pool);

  for (const pod of unclaimedPods(pool, input.pods)) {
    if (pod.metadata?.deletionTimestamp) continue;
    const obs = observePod(pod, appName(pool));
    if (pod.metadata?.labels?.[LABEL_POOL_TEMPLATE_HASH] !== hash) {
      toDelete.push({ pod, why: 'template or assign key changed' });
      continue;
    }
    if (obs.terminated) {
      const t = obs.terminated;
      failing.push(`${pod.metadata?.name}: container ${t.container} exited with code ${t.exitCode} (${t.reason})`);
      toDelete.push({ pod, why: 'exited' });
      continue;
    }
    if (obs.imagePullError) failing.push(`${pod.metadata?.name}: ${obs.imagePullError}`);
    else if (obs.waitingProblem) failing.push(`${pod.metadata?.name}: ${obs.waitingProblem}`);
    else if (obs.unschedulable) failing.push(`${pod.metadata?.name}: ${obs.unschedulable}`);
    if (maxAge !== undefined) {
      const expiry = created(pod) + maxAge * 1000;
      if (nowMs >= expiry) {
        toDelete.push({ pod, why: `older than maxIdleAgeSeconds (${maxAge})` });
        continue;
      }
      nextExpiry = nextExpiry === undefined ? expiry : Math.min(nextExpiry, expiry);
    }
    keep.push(pod);
  }
  // Too many (scaled down): the ones not ready first, then the newest.
  if (keep.length > want) {
    const ranked = [...keep].sort(
      (a, b) => Number(isClaimable(pool, a, input.keyFp)) - Number(isClaimable(pool, b, input.keyFp)) || created(b) - created(a),
    );
    for (const pod of ranked.slice(0, keep.length - want)) {
      toDelete.push({ pod, why: 'more than spec.replicas' });
      keep.splice(keep.indexOf(pod), 1);
    }
  }
  const create = problems.length > 0 ? 0 : Math.max(0, want - keep.length - input.pending);
  const ready = keep.filter((p) => isClaimable(pool, p, input.keyFp)).length;

  const previous = pool.status?.conditions;
  const conditions: Condition[] = [
    poolCondition(
      previous,
      problems.length > 0
        ? { type: 'Ready', status: 'False', reason: 'InvalidSpec', message: problems.join('; ') }
        : ready >= want
          ? { type: 'Ready', status: 'True', reason: 'Full', message: `${ready} of ${want} Pods ready` }
          : { type: 'Ready', status: 'False', reason: 'Filling', message: `${ready} of ${want} Pods ready` },
      now,
    ),
    poolCondition(
      previous,
      failing.length > 0
        ? { type: 'PodsFailing', status: 'True', reason: 'PodsFailing', message: failing.slice(0, 5).join('; ') }
        : { type: 'PodsFailing', status: 'False', reason: 'None' },
      now,
    ),
  ];
  const status: SessionBackendPoolStatus = {
    replicas: keep.length,
    readyReplicas: ready,
    conditions,
  };
  if (pool.metadata.generation !== undefined) status.observedGeneration = pool.metadata.generation;
  return {
    create,
    delete: toDelete,
    status,
    requeueAfterMs: nextExpiry !== undefined ? Math.max(0, nextExpiry - nowMs) : undefined,
  };
}

/** Whether writing `next` would change the pool's status (the times of unchanged conditions aside). */
export function poolStatusChanged(current: SessionBackendPoolStatus | undefined, next: SessionBackendPoolStatus): boolean {
  const strip = (s: SessionBackendPoolStatus | undefined) =>
    JSON.stringify({
      replicas: s?.replicas,
      readyReplicas: s?.readyReplicas,
      observedGeneration: s?.observedGeneration,
      conditions: (s?.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message ?? '']),
    });
  return strip(current) !== strip(next);
}

/** Pods whose controller is the backend (by uid): one after a claim or a cold start. */
export function podsControlledBy(uid: string | undefined, pods: Iterable<V1Pod>): V1Pod[] {
  if (!uid) return [];
  const out: V1Pod[] = [];
  for (const p of pods) if (controllerUid(p) === uid) out.push(p);
  return out;
}
