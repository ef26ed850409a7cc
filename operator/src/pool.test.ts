/**
 * Warm pools: the pure parts (pool Pods, claimability, the claim patch, the pool's plan, the
 * backend's launch decisions) and the operator against the in-memory API (fill, claim, refill,
 * fall back, reject, template change, no double claim).
 */
import { KubeConfig, type V1Pod, type V1Service } from '@kubernetes/client-node';
import type { SessionBackendPool, SessionLivedBackend } from '../../common/src/backend';
import {
  ANNOTATION_KEY,
  ANNOTATION_TOKEN_HASH,
  ENV_SIDECAR_APP_ASSIGN_PATH,
  ENV_SIDECAR_ASSIGN_HASH,
  LABEL_MANAGED_BY,
  LABEL_POOL,
  LABEL_POOL_TEMPLATE_HASH,
  LABEL_RUN,
  POOL_API_VERSION,
  POOL_KIND,
  SIDECAR_CONTAINER,
} from '../../common/src/constants';
import { KubeApiError, TransientError } from '../../common/src/errors';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS, PODS, POOLS, SERVICES } from '../../common/src/kube/resources';
import { phaseOf } from '../../common/src/lifecycle';
import { silentLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { waitFor } from '../../common/src/testing/wait-for';
import { decide, type Action } from './decide';
import { createOperatorMetrics } from './metrics';
import { SpawnerOperator } from './operator';
import { assignSecret, keyFingerprint, type Assignment } from '../../common/src/pool-assign';
import { sha256Hex } from '../../common/src/connection-token';
import { assignmentOf, waitsForAssignment, type AssignFn } from './assign-client';
import { buildPod } from './desired-state';
import { buildPoolPod, claimablePods, claimPatch, decidePool, templateHash, unclaimedPods } from './pool';
import { REFILL_DEFER_MAX_MS } from './pool-reconciler';
import { backendFixture, CREATED, runningReady, secondsAfter, testConfig } from './test-fixtures';

const NS = 'ns';
const KEY_FP = keyFingerprint(testConfig.assignKey);

function poolFixture(spec: Partial<SessionBackendPool['spec']> = {}): SessionBackendPool {
  return {
    apiVersion: POOL_API_VERSION,
    kind: POOL_KIND,
    metadata: {
      name: 'warm',
      namespace: NS,
      uid: 'pool-uid',
      generation: 1,
      resourceVersion: '5',
      creationTimestamp: CREATED,
    },
    spec: { template: { containers: [{ name: 'app', image: 'spawner-test-app' }] }, httpPort: 8080, replicas: 2, ...spec },
  };
}

let n = 0;
function readyPoolPod(pool: SessionBackendPool, ageSeconds = 0): V1Pod {
  const pod = buildPoolPod(pool, testConfig, `warm-${++n}`);
  pod.metadata = {
    ...pod.metadata,
    uid: `pod-${n}`,
    resourceVersion: String(100 + n),
    creationTimestamp: new Date(secondsAfter(10).getTime() - ageSeconds * 1000),
  };
  pod.spec = { ...pod.spec!, nodeName: 'node-a' };
  pod.status = runningReady(true);
  return pod;
}

describe('warm pools: pure parts', () => {
  it('a pool Pod is a backend Pod (app + sidecar), controlled by the pool, with no run label', () => {
    const pool = poolFixture();
    const pod = buildPoolPod(pool, testConfig);
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(['app', SIDECAR_CONTAINER]);
    expect(pod.spec?.containers[0].env).toContainEqual({ name: 'PORT', value: '8080' });
    expect(pod.metadata?.ownerReferences).toEqual([
      {
        apiVersion: POOL_API_VERSION,
        kind: POOL_KIND,
        name: 'warm',
        uid: 'pool-uid',
        controller: true,
        blockOwnerDeletion: false,
      },
    ]);
    expect(pod.metadata?.labels).toEqual({
      [LABEL_MANAGED_BY]: 'spawner',
      [LABEL_POOL]: 'warm',
      [LABEL_POOL_TEMPLATE_HASH]: templateHash(pool, KEY_FP),
    });
    expect(pod.metadata?.labels?.[LABEL_RUN]).toBeUndefined();
    expect(pod.metadata?.name).toMatch(/^warm-[0-9a-f]{5}$/);
  });

  it("a pool Pod's sidecar, and only it, holds the hash of that Pod's assign secret", () => {
    const pool = poolFixture();
    const pod = buildPoolPod(pool, testConfig, 'warm-abcde');
    const [app, sidecar] = pod.spec!.containers;
    const secret = assignSecret(testConfig.assignKey, NS, 'warm-abcde');
    expect(sidecar.env).toContainEqual({ name: ENV_SIDECAR_ASSIGN_HASH, value: sha256Hex(secret) });
    expect(JSON.stringify(app)).not.toContain(sha256Hex(secret));
    expect(JSON.stringify(pod)).not.toContain(secret);
    expect(waitsForAssignment(pod)).toBe(true);
    expect(waitsForAssignment(buildPod(backendFixture(), testConfig))).toBe(false);
  });

  it("a pool's assignPath goes to its Pods' sidecars, and changing it replaces unclaimed Pods", () => {
    const plain = poolFixture();
    const told = poolFixture({ assignPath: '/spawner/assign' });
    const sidecarEnv = (pod: V1Pod) => pod.spec!.containers.find((c) => c.name === SIDECAR_CONTAINER)!.env;
    expect(sidecarEnv(buildPoolPod(told, testConfig, 'warm-abcde'))).toContainEqual({
      name: ENV_SIDECAR_APP_ASSIGN_PATH,
      value: '/spawner/assign',
    });
    expect(sidecarEnv(buildPoolPod(plain, testConfig, 'warm-abcde'))?.map((e) => e.name)).not.toContain(
      ENV_SIDECAR_APP_ASSIGN_PATH,
    );
    expect(templateHash(told, KEY_FP)).not.toBe(templateHash(plain, KEY_FP));
  });

  it('Pods built under another assign key are neither claimable nor kept', () => {
    const pool = poolFixture();
    const other = { ...testConfig, assignKey: Buffer.from('the key of an earlier operator') };
    const stale = buildPoolPod(pool, other, 'warm-old');
    stale.metadata = { ...stale.metadata, uid: 'old', resourceVersion: '9', creationTimestamp: secondsAfter(5) };
    stale.spec = { ...stale.spec!, nodeName: 'node-a' };
    stale.status = runningReady(true);
    expect(claimablePods(pool, [stale], KEY_FP)).toEqual([]);
    const plan = decidePool({ pool, pods: [stale], pending: 0, now: secondsAfter(10), keyFp: KEY_FP });
    expect(plan.delete.map((d) => d.pod.metadata?.name)).toEqual(['warm-old']);
    expect(plan.create).toBe(2);
  });

  it('only Ready, running, current-template, unclaimed Pods are claimable', () => {
    const pool = poolFixture();
    const ready = readyPoolPod(pool);
    const starting = readyPoolPod(pool);
    starting.status = runningReady(false);
    const old = readyPoolPod(poolFixture({ template: { containers: [{ name: 'app', image: 'v0' }] } }));
    const claimed = readyPoolPod(pool);
    claimed.metadata!.ownerReferences = [
      { apiVersion: 'spawner.dev/v1', kind: 'SessionLivedBackend', name: 'b', uid: 'b', controller: true },
    ];
    expect(claimablePods(pool, [ready, starting, old, claimed], KEY_FP)).toEqual([ready]);
    expect(unclaimedPods(pool, [ready, starting, old, claimed])).toHaveLength(3);
  });

  it('the claim is one patch: the backend becomes the controller, under the Pod resourceVersion', () => {
    const pool = poolFixture();
    const pod = readyPoolPod(pool);
    const b = backendFixture({ poolRef: { name: 'warm' } });
    expect(claimPatch(pod, b)).toEqual({
      metadata: {
        resourceVersion: pod.metadata?.resourceVersion,
        ownerReferences: [
          {
            apiVersion: 'spawner.dev/v1',
            kind: 'SessionLivedBackend',
            name: 'b1',
            uid: 'uid-1',
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
        labels: { team: 'x', [LABEL_RUN]: 'b1', [LABEL_MANAGED_BY]: 'spawner', [LABEL_POOL_TEMPLATE_HASH]: null },
      },
    });
  });

  it('the pool fills up, counts what is ready, and says so in its conditions', () => {
    const pool = poolFixture({ replicas: 3 });
    const plan = decidePool({ pool, pods: [readyPoolPod(pool)], pending: 1, now: secondsAfter(10), keyFp: KEY_FP });
    expect(plan.create).toBe(1);
    expect(plan.delete).toEqual([]);
    expect(plan.status).toMatchObject({ replicas: 1, readyReplicas: 1, observedGeneration: 1 });
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'Filling' });
  });

  it('replaces Pods of an older template and Pods older than maxIdleAgeSeconds, never claimed ones', () => {
    const pool = poolFixture({ replicas: 2, maxIdleAgeSeconds: 60 });
    const fresh = readyPoolPod(pool, 10);
    const aged = readyPoolPod(pool, 61);
    const oldTemplate = readyPoolPod(poolFixture({ template: { containers: [{ name: 'app', image: 'v0' }] } }));
    const claimed = readyPoolPod(pool, 500);
    claimed.metadata!.ownerReferences = [
      { apiVersion: 'spawner.dev/v1', kind: 'SessionLivedBackend', name: 'b', uid: 'b', controller: true },
    ];
    const plan = decidePool({
      pool,
      pods: [fresh, aged, oldTemplate, claimed],
      pending: 0,
      now: secondsAfter(10),
      keyFp: KEY_FP,
    });
    expect(plan.delete.map((d) => d.pod)).toEqual(expect.arrayContaining([aged, oldTemplate]));
    expect(plan.delete).toHaveLength(2);
    expect(plan.create).toBe(1);
    expect(plan.requeueAfterMs).toBe(50_000); // when `fresh` reaches its maximum age
  });

  it('scales down by removing the Pods not ready first', () => {
    const pool = poolFixture({ replicas: 1 });
    const ready = readyPoolPod(pool);
    const starting = readyPoolPod(pool);
    starting.status = runningReady(false);
    const plan = decidePool({ pool, pods: [ready, starting], pending: 0, now: secondsAfter(10), keyFp: KEY_FP });
    expect(plan.delete.map((d) => d.pod)).toEqual([starting]);
    expect(plan.create).toBe(0);
  });

  it('says why its Pods do not start', () => {
    const pool = poolFixture({ replicas: 1 });
    const pod = readyPoolPod(pool);
    pod.status = {
      phase: 'Pending',
      containerStatuses: [
        {
          name: 'app',
          image: 'x',
          imageID: '',
          ready: false,
          restartCount: 0,
          state: { waiting: { reason: 'ImagePullBackOff', message: 'no such image' } },
        },
      ],
    };
    const plan = decidePool({ pool, pods: [pod], pending: 0, now: secondsAfter(10), keyFp: KEY_FP });
    const failing = plan.status.conditions?.find((c) => c.type === 'PodsFailing');
    expect(failing?.status).toBe('True');
    expect(failing?.message).toContain(pod.metadata?.name as string);
  });
});

describe('warm pools: a backend with spec.poolRef (decide)', () => {
  const b = backendFixture({ poolRef: { name: 'warm' } });
  const run = (pool: Parameters<typeof decide>[0]['pool']) =>
    decide({ backend: b, now: secondsAfter(1), failedRetentionMs: 60_000, pool });
  const transitionOf = (actions: Action[]) =>
    actions.find((a) => a.kind === 'transition') as Extract<Action, { kind: 'transition' }>;

  it('claims a ready Pod, and nothing else', () => {
    const pod = readyPoolPod(poolFixture());
    expect(run({ found: true, whenEmpty: 'ColdStart', claimable: [pod] }).actions).toEqual([{ kind: 'claim', pods: [pod] }]);
  });

  it('once claimed, goes straight to Ready naming its Pod, launch Warm', () => {
    const pod = readyPoolPod(poolFixture());
    pod.metadata!.ownerReferences = [
      { apiVersion: 'spawner.dev/v1', kind: 'SessionLivedBackend', name: 'b1', uid: 'uid-1', controller: true },
    ];
    const plan = decide({ backend: b, pod, now: secondsAfter(1), failedRetentionMs: 60_000, serviceMode: 'None' });
    const t = transitionOf(plan.actions).transition;
    expect(t.phase).toBe('Ready');
    expect(t.fields).toMatchObject({
      launch: 'Warm',
      podName: pod.metadata?.name,
      podUID: pod.metadata?.uid,
      podIP: '10.88.0.5',
    });
    expect(t.fields?.launchReason).toBeUndefined();
  });

  it('with no ready Pod and whenEmpty ColdStart, starts cold and says why', () => {
    const plan = run({ found: true, whenEmpty: 'ColdStart', claimable: [] });
    expect(plan.actions.map((a) => a.kind)).toEqual(['createPod', 'createService', 'transition']);
    expect(transitionOf(plan.actions).transition.fields).toMatchObject({ launch: 'Cold', launchReason: 'PoolEmpty' });
    const missing = run({ found: false, whenEmpty: 'ColdStart', claimable: [] });
    expect(transitionOf(missing.actions).transition.fields).toMatchObject({ launch: 'Cold', launchReason: 'PoolNotFound' });
  });

  it('with no ready Pod and whenEmpty Reject, fails with PoolEmpty', () => {
    const t = transitionOf(run({ found: true, whenEmpty: 'Reject', claimable: [] }).actions).transition;
    expect(t).toMatchObject({ phase: 'Failed', reason: 'PoolEmpty' });
  });
});

describe('warm pools: the operator against the in-memory API', () => {
  let kube: FakeKubeClient;
  let registry: ReturnType<typeof createRegistry>;
  let op: SpawnerOperator;
  let kubelet: ReturnType<typeof setInterval>;
  /** The assignments handed to claimed Pods' sidecars, with the backend's phase at that moment. */
  let assigned: Array<{ assignment: Assignment; pod: string; phase: string }>;
  let failAssign: number;
  let assignDelayMs: number;

  const manifest = (name: string, pool = 'warm'): SessionLivedBackend => ({
    apiVersion: 'spawner.dev/v1',
    kind: 'SessionLivedBackend',
    metadata: {
      name,
      namespace: NS,
      annotations: { [ANNOTATION_KEY]: `doc-${name}`, [ANNOTATION_TOKEN_HASH]: sha256Hex(`token-${name}`) },
    },
    spec: { template: { containers: [{ name: 'app', image: 'spawner-test-app' }] }, httpPort: 8080, poolRef: { name: pool } },
  });
  const poolManifest = (spec: Partial<SessionBackendPool['spec']> = {}): SessionBackendPool => ({
    apiVersion: POOL_API_VERSION,
    kind: POOL_KIND,
    metadata: { name: 'warm', namespace: NS },
    spec: { template: { containers: [{ name: 'app', image: 'spawner-test-app' }] }, httpPort: 8080, replicas: 3, ...spec },
  });
  const backend = (name: string) => kube.peek<SessionLivedBackend>(BACKENDS, NS, name);
  const pool = () => kube.peek<SessionBackendPool>(POOLS, NS, 'warm');
  const readyCount = () => pool()?.status?.readyReplicas ?? 0;

  beforeEach(async () => {
    kube = new FakeKubeClient();
    registry = createRegistry('operator', false);
    const ref: { op?: SpawnerOperator } = {};
    const metrics = createOperatorMetrics(
      registry,
      () => ref.op?.backends() ?? [],
      () => 0,
    );
    assigned = [];
    failAssign = 0;
    assignDelayMs = 0;
    const assign: AssignFn = async (b, pod) => {
      if (assignDelayMs > 0) await new Promise((r) => setTimeout(r, assignDelayMs));
      if (failAssign > 0) {
        failAssign--;
        throw new TransientError('sidecar not answering');
      }
      const live = kube.peek<SessionLivedBackend>(BACKENDS, NS, b.metadata.name as string);
      assigned.push({ assignment: assignmentOf(b), pod: pod.metadata?.name as string, phase: live ? phaseOf(live) : 'gone' });
    };
    op = new SpawnerOperator(
      new KubeConfig(),
      kube,
      { ...testConfig, serviceMode: 'None' },
      metrics,
      silentLogger,
      undefined,
      assign,
    );
    ref.op = op;
    await op.start();
    await op.activate();
    // A kubelet stand-in: every Pod is bound and Ready soon after it is made.
    kubelet = setInterval(() => {
      for (const p of kube.all<V1Pod & { metadata: object }>(PODS)) {
        if (p.spec?.nodeName || !p.metadata?.name) continue;
        const name = p.metadata.name;
        void kube
          .patch(PODS, NS, name, { spec: { nodeName: 'node-a' } }, 'merge')
          .then(() => kube.setStatus(PODS, NS, name, runningReady(true)))
          .catch(() => undefined);
      }
    }, 20);
  });
  afterEach(async () => {
    clearInterval(kubelet);
    await op.shutdown();
  });

  it('fills the pool, a backend claims a Pod with one Pod write and is Ready (Warm), the pool refills', async () => {
    await kube.create(POOLS, NS, poolManifest());
    await waitFor(() => readyCount() === 3, { description: 'pool full' });
    const before = new Set(kube.all<V1Pod>(PODS).map((p) => p.metadata?.uid));

    const writesBefore = kube.writes('pods').length;
    await kube.create(BACKENDS, NS, manifest('b1'));
    await waitFor(() => (backend('b1') ? phaseOf(backend('b1')!) : '') === 'Ready', { description: 'Ready' });
    const b = backend('b1')!;
    expect(b.status).toMatchObject({ launch: 'Warm', ready: true, constructed: true });
    expect(before.has(b.status?.podUID)).toBe(true);
    const pod = kube.all<V1Pod>(PODS).find((p) => p.metadata?.uid === b.status?.podUID)!;
    expect(pod.metadata?.name).toBe(b.status?.podName);
    expect(pod.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'SessionLivedBackend', uid: b.metadata.uid, controller: true }),
    ]);
    expect(kube.writes('pods').filter((w) => w.verb === 'patch' && w.name === pod.metadata?.name).length).toBeGreaterThanOrEqual(
      1,
    );
    // One write to the Pod for the claim; the other Pod writes are the pool's refill.
    const claimWrites = kube
      .writes('pods')
      .slice(writesBefore)
      .filter((w) => w.name === pod.metadata?.name);
    expect(claimWrites.map((w) => w.verb)).toEqual(['patch']);
    // The API writes of the claim (Events apart): the Pod patch, one status write, the node label.
    const backendWrites = kube
      .writes('sessionlivedbackends')
      .filter((w) => w.name === 'b1' && w.verb !== 'create')
      .map((w) => `${w.verb}${w.subresource ? `/${w.subresource}` : ''}`);
    expect(backendWrites.sort()).toEqual(['patch', 'patch/status']);
    expect(kube.all<V1Service>(SERVICES)).toHaveLength(0);
    // The claimed Pod's sidecar learnt its backend once, before the backend was Ready.
    expect(assigned).toEqual([
      {
        assignment: { name: 'b1', uid: b.metadata.uid, key: 'doc-b1', tokenSha256: sha256Hex('token-b1') },
        pod: pod.metadata?.name,
        phase: 'Submitted',
      },
    ]);

    await waitFor(() => readyCount() === 3 && pool()?.status?.replicas === 3, { description: 'refilled' });
    expect(kube.all(PODS)).toHaveLength(4);
    const starts = (await registry.getSingleMetric('spawner_backend_start_seconds')!.get()).values as Array<{
      metricName?: string;
      labels: Record<string, string | number>;
      value: number;
    }>;
    const count = (launch: string) =>
      starts.find((v) => v.metricName === 'spawner_backend_start_seconds_count' && v.labels.launch === launch)?.value;
    expect(count('warm')).toBe(1);
    expect(count('cold')).toBeUndefined();
  });

  it("a refill waits for the claim's last writes: its Pod is created after the Ready status write", async () => {
    await kube.create(POOLS, NS, poolManifest({ replicas: 2 }));
    await waitFor(() => readyCount() === 2, { description: 'pool full' });
    // A slow handover: without the wait, the refill's Pod would be created during it.
    assignDelayMs = 150;
    const from = kube.writes().length;
    await kube.create(BACKENDS, NS, manifest('b3'));
    await waitFor(() => readyCount() === 2 && kube.all(PODS).length === 3, { description: 'refilled' });
    const writes = kube.writes().slice(from);
    const claimAt = writes.findIndex((w) => w.plural === 'pods' && w.verb === 'patch');
    const readyAt = writes.findIndex((w) => w.plural === 'sessionlivedbackends' && w.name === 'b3' && w.subresource === 'status');
    const refillAt = writes.findIndex((w) => w.plural === 'pods' && w.verb === 'create');
    expect(backend('b3')?.status).toMatchObject({ phase: 'Ready', launch: 'Warm' });
    expect(claimAt).toBeGreaterThanOrEqual(0);
    expect(readyAt).toBeGreaterThan(claimAt);
    expect(refillAt).toBeGreaterThan(readyAt);
  });

  it('a refill waits for claims in flight at most REFILL_DEFER_MAX_MS', async () => {
    await kube.create(POOLS, NS, poolManifest({ replicas: 1 }));
    await waitFor(() => readyCount() === 1, { description: 'pool full' });
    // A handover that hangs far longer than the bound: the pool refills anyway.
    assignDelayMs = REFILL_DEFER_MAX_MS * 4;
    const started = Date.now();
    await kube.create(BACKENDS, NS, manifest('b4'));
    await waitFor(() => kube.all(PODS).length === 2, { description: 'a refill Pod', timeoutMs: REFILL_DEFER_MAX_MS * 3 });
    expect(backend('b4')?.status?.phase).not.toBe('Ready');
    expect(Date.now() - started).toBeGreaterThanOrEqual(REFILL_DEFER_MAX_MS - 50);
  });

  it('a sidecar that does not take its assignment yet keeps the backend from Ready until it does', async () => {
    await kube.create(POOLS, NS, poolManifest({ replicas: 1 }));
    await waitFor(() => readyCount() === 1, { description: 'pool full' });
    failAssign = 2;
    await kube.create(BACKENDS, NS, manifest('b2'));
    await waitFor(() => assigned.length === 1, { description: 'assigned after retries', timeoutMs: 10_000 });
    expect(failAssign).toBe(0);
    expect(assigned[0].phase).not.toBe('Ready');
    await waitFor(() => backend('b2')?.status?.phase === 'Ready', { description: 'Ready' });
    expect(backend('b2')?.status).toMatchObject({ launch: 'Warm', podName: assigned[0].pod });
  });

  it('an empty pool: ColdStart starts the backend cold (PoolEmpty); Reject fails it (PoolEmpty)', async () => {
    await kube.create(POOLS, NS, poolManifest({ replicas: 0 }));
    await waitFor(() => pool()?.status?.replicas === 0, { description: 'pool status' });
    await kube.create(BACKENDS, NS, manifest('cold'));
    await waitFor(() => backend('cold')?.status?.phase === 'Ready', { description: 'cold Ready' });
    expect(backend('cold')?.status).toMatchObject({ launch: 'Cold', launchReason: 'PoolEmpty', podName: 'cold' });

    await kube.patch(POOLS, NS, 'warm', { spec: { whenEmpty: 'Reject' } }, 'merge');
    await waitFor(() => op.pool(NS, 'warm')?.spec.whenEmpty === 'Reject');
    await kube.create(BACKENDS, NS, manifest('rejected'));
    await waitFor(() => backend('rejected')?.status?.phase === 'Failed', { description: 'Failed' });
    expect(backend('rejected')?.status?.reason).toBe('PoolEmpty');
    expect(kube.peek(PODS, NS, 'rejected')).toBeUndefined();

    await kube.create(BACKENDS, NS, manifest('nopool', 'missing'));
    await waitFor(() => backend('nopool')?.status?.launch === 'Cold');
    expect(backend('nopool')?.status?.launchReason).toBe('PoolNotFound');
  });

  it('a template change replaces unclaimed Pods and leaves claimed ones alone', async () => {
    await kube.create(POOLS, NS, poolManifest({ replicas: 2 }));
    await waitFor(() => readyCount() === 2);
    await kube.create(BACKENDS, NS, manifest('b1'));
    await waitFor(() => backend('b1')?.status?.phase === 'Ready');
    await waitFor(() => readyCount() === 2);
    const claimedUid = backend('b1')!.status?.podUID;
    const oldHash = templateHash(pool()!, KEY_FP);
    await kube.patch(
      POOLS,
      NS,
      'warm',
      { spec: { template: { containers: [{ name: 'app', image: 'spawner-test-app:v2' }] } } },
      'merge',
    );
    await waitFor(
      () => {
        const unclaimed = unclaimedPods(pool()!, kube.all<V1Pod>(PODS));
        return unclaimed.length === 2 && unclaimed.every((p) => p.metadata?.labels?.[LABEL_POOL_TEMPLATE_HASH] !== oldHash);
      },
      { description: 'replaced' },
    );
    expect(kube.all<V1Pod>(PODS).some((p) => p.metadata?.uid === claimedUid)).toBe(true);
    expect(backend('b1')?.status?.phase).toBe('Ready');
  });

  it('no double claim: 12 concurrent backends against a pool of 6 each get exactly one Pod', async () => {
    await kube.create(POOLS, NS, poolManifest({ replicas: 6 }));
    await waitFor(() => readyCount() === 6);
    await Promise.all(Array.from({ length: 12 }, (_, i) => kube.create(BACKENDS, NS, manifest(`c${i}`))));
    await waitFor(() => Array.from({ length: 12 }, (_, i) => backend(`c${i}`)?.status?.phase).every((p) => p === 'Ready'), {
      description: 'all Ready',
      timeoutMs: 10_000,
    });
    const backends = Array.from({ length: 12 }, (_, i) => backend(`c${i}`)!);
    const pods = kube.all<V1Pod>(PODS);
    for (const b of backends) {
      const owned = pods.filter((p) => p.metadata?.ownerReferences?.some((r) => r.uid === b.metadata.uid));
      expect(owned.map((p) => p.metadata?.uid)).toEqual([b.status?.podUID]);
    }
    expect(new Set(backends.map((b) => b.status?.podUID)).size).toBe(12);
    expect(backends.filter((b) => b.status?.launch === 'Warm').length).toBeGreaterThanOrEqual(6);
    // One operator's concurrent claims reserve their Pod before the write: none lost to another.
    const conflicts = (await registry.getSingleMetric('spawner_pool_claim_conflicts_total')!.get()).values;
    expect(conflicts.reduce((n, v) => n + v.value, 0)).toBe(0);
  });

  it('a claimed Pod refills its pool when the cache shows the claim, even if the nudge at the claim saw an older cache', async () => {
    await kube.create(POOLS, NS, poolManifest({ replicas: 2 }));
    await waitFor(() => readyCount() === 2, { description: 'pool full' });
    // The nudge at the claim is what may run too early; without it the claimed Pod's own event
    // must bring the pool back to two unclaimed Pods.
    (op as unknown as { reconciler: { onPoolChanged?: unknown } }).reconciler.onPoolChanged = undefined;
    await kube.create(BACKENDS, NS, manifest('r1'));
    await waitFor(() => backend('r1')?.status?.phase === 'Ready', { description: 'Ready' });
    await waitFor(() => unclaimedPods(pool()!, kube.all<V1Pod>(PODS)).length === 2, {
      description: 'refilled',
      timeoutMs: 5_000,
    });
    expect(kube.all(PODS)).toHaveLength(3);
  });
});

describe('warm pools: without the pool CRD (a helm upgrade installs no new CRD)', () => {
  it('the operator is ready and reconciles backends; one from a pool waits instead of starting cold', async () => {
    const fake = new FakeKubeClient();
    // The API server without the pool resource: every list of pools is a 404.
    const kube = new Proxy(fake, {
      get(target, prop, receiver) {
        if (prop === 'list') {
          return (type: { plural: string }, ...rest: unknown[]) =>
            type.plural === POOLS.plural
              ? Promise.reject(new KubeApiError(404, 'NotFound', 'the server could not find the requested resource'))
              : (target.list as (...a: unknown[]) => unknown)(type, ...rest);
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as FakeKubeClient;
    const metrics = createOperatorMetrics(
      createRegistry('operator', false),
      () => [],
      () => 0,
    );
    const op = new SpawnerOperator(new KubeConfig(), kube, { ...testConfig, serviceMode: 'None' }, metrics, silentLogger);
    try {
      await op.start();
      await op.activate();
      expect(op.synced).toBe(true);
      const spec = { template: { containers: [{ name: 'app', image: 'spawner-test-app' }] } };
      await fake.create(BACKENDS, NS, {
        apiVersion: 'spawner.dev/v1',
        kind: 'SessionLivedBackend',
        metadata: { name: 'plain', namespace: NS },
        spec,
      });
      await fake.create(BACKENDS, NS, {
        apiVersion: 'spawner.dev/v1',
        kind: 'SessionLivedBackend',
        metadata: { name: 'pooled', namespace: NS },
        spec: { ...spec, poolRef: { name: 'warm' } },
      });
      await waitFor(() => fake.peek<SessionLivedBackend>(BACKENDS, NS, 'plain')?.status?.phase === 'Constructed');
      await new Promise((r) => setTimeout(r, 300));
      expect(fake.peek<SessionLivedBackend>(BACKENDS, NS, 'pooled')?.status).toBeUndefined();
      expect(fake.peek(PODS, NS, 'pooled')).toBeUndefined();
    } finally {
      await op.shutdown();
    }
  });
});
