/**
 * Warm pools (SPEC section 12, issue 16) on the real control plane: a SessionBackendPool keeps
 * started, unassigned Pods; a backend created from it through the API claims one (one Pod write
 * moving the controller ownerReference) and is Ready at once, served through the entry point; the
 * pool refills. An empty pool starts cold (ColdStart, and says so) or answers 429 (Reject). A
 * template change replaces the unclaimed Pods only. The operator runs with --service-mode=None,
 * as pool Pods have no Service.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { SessionBackendPool, SessionLivedBackend } from '../common/src/backend';
import {
  LABEL_POOL_TEMPLATE_HASH,
  POOL_API_VERSION,
  POOL_KIND,
  SIDECAR_ADMIN_PORT,
  SIDECAR_SERVE_PORT,
} from '../common/src/constants';
import { Informer } from '../common/src/kube/informer';
import { BACKENDS, PODS, POOLS } from '../common/src/kube/resources';
import type { KubeObject } from '../common/src/kube/types';
import { silentLogger } from '../common/src/logger';
import { TEST_IMAGE } from './support/backends';
import { adminClient, describeWithAgent, useNamespace, waitFor } from './support/cluster';
import { E2E_API_TOKEN, startApi, startComponent, stopAll, type Component } from './support/components';
import { sleep, writeFigures } from './support/faults';

jest.setTimeout(480_000);

describeWithAgent('pool', () => {
  const ns = useNamespace('pool');
  let operator: Component;
  let api: Component;
  let base: string;
  const auth = { authorization: `Bearer ${E2E_API_TOKEN}` };
  const kube = () => adminClient();

  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`, '--service-mode=None']);
    api = await startApi(ns.name);
    base = `http://127.0.0.1:${api.port}`;
  });
  afterAll(() => stopAll([api, operator]));

  const poolManifest = (name: string, spec: Partial<SessionBackendPool['spec']> = {}): SessionBackendPool => ({
    apiVersion: POOL_API_VERSION,
    kind: POOL_KIND,
    metadata: { name, namespace: ns.name },
    spec: { template: { containers: [{ name: 'app', image: TEST_IMAGE }] }, replicas: 2, ...spec },
  });

  const getPool = (name: string) => kube().get<SessionBackendPool>(POOLS, ns.name, name);
  const getBackend = (name: string) => kube().get<SessionLivedBackend>(BACKENDS, ns.name, name);
  const poolPods = async (pool: SessionBackendPool): Promise<V1Pod[]> =>
    (await kube().list<V1Pod & { metadata: object }>(PODS, ns.name, {})).items.filter((p) =>
      p.metadata?.ownerReferences?.some((r) => r.controller && r.uid === pool.metadata.uid),
    );
  const waitReady = (name: string, n: number, timeoutMs = 120_000) =>
    waitFor(
      async () => {
        const p = await getPool(name);
        return p?.status?.readyReplicas === n && p.status.replicas === n ? p : undefined;
      },
      { description: `pool ${name} to have ${n} ready Pods`, timeoutMs, intervalMs: 100 },
    );

  const create = (body: Record<string, unknown>) =>
    fetch(`${base}/v1/backends`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify(body),
    });

  /** POST, then poll the backend until Ready: create→Ready as a client sees it (ms). */
  async function createReady(
    body: Record<string, unknown>,
  ): Promise<{ name: string; url: string; ms: number; backend: SessionLivedBackend }> {
    const t0 = performance.now();
    const res = await create(body);
    expect(res.status).toBe(201);
    const created = (await res.json()) as { name: string; url: string };
    const backend = await waitFor(
      async () => {
        const b = await getBackend(created.name);
        return b?.status?.phase === 'Ready' ? b : undefined;
      },
      { description: `backend ${created.name} Ready`, timeoutMs: 120_000, intervalMs: 10 },
    );
    return { ...created, ms: Math.round(performance.now() - t0), backend };
  }

  test('pool: warm claim — a backend from a pool is Ready at once, serves through the entry point, and the pool refills', async () => {
    const pool = await kube().create<SessionBackendPool>(POOLS, ns.name, poolManifest('warm'));
    await waitReady('warm', 2);
    const unclaimedBefore = await poolPods(pool);
    const before = new Set(unclaimedBefore.map((p) => p.metadata?.uid));
    // An unclaimed Pod serves nobody: its sidecar refuses everything, and takes an assignment only
    // with the secret the operator derives for it.
    const idle = unclaimedBefore[0];
    const idleSidecar = `http://${idle.status?.podIP}:${SIDECAR_SERVE_PORT}`;
    const refused = await fetch(`${idleSidecar}/echo`);
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unassigned');
    const forged = await fetch(`http://${idle.status?.podIP}:${SIDECAR_ADMIN_PORT}/assign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer guessed' },
      body: JSON.stringify({ name: 'intruder', uid: 'x' }),
    });
    expect(forged.status).toBe(401);

    const warm: number[] = [];
    const first = await createReady({ pool: 'warm', key: 'doc/7 é', gracePeriodSeconds: 120 });
    warm.push(first.ms);
    const b = first.backend;
    expect(b.status).toMatchObject({ launch: 'Warm', ready: true });
    expect(b.spec.poolRef).toEqual({ name: 'warm' });
    expect(before.has(b.status?.podUID)).toBe(true);
    // The claimed Pod: controlled by the backend now, not the pool; named in the status.
    const pod = (await kube().get<V1Pod & { metadata: object }>(PODS, ns.name, b.status?.podName as string))!;
    expect(pod.metadata?.uid).toBe(b.status?.podUID);
    expect(pod.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'SessionLivedBackend', uid: b.metadata.uid, controller: true }),
    ]);

    // Served through the entry point, with the backend's identity headers.
    const url = new URL(first.url);
    url.pathname = `${url.pathname.replace(/\/?$/, '/')}echo`;
    const echoed = await fetch(url);
    expect(echoed.status).toBe(200);
    const seen = (await echoed.json()) as { headers: Record<string, string> };
    expect(seen.headers['x-spawner-backend']).toBe(first.name);
    expect(seen.headers['x-spawner-backend-uid']).toBe(b.metadata.uid);
    expect(decodeURIComponent(seen.headers['x-spawner-key'])).toBe('doc/7 é');

    // The claimed Pod's sidecar took the backend's token at the claim: straight to the Pod, no
    // token is 401, the backend's token opens it, and the sidecar itself tells the app whom it
    // serves (a client's forged identity dropped).
    const direct = `http://${pod.status?.podIP}:${SIDECAR_SERVE_PORT}/echo`;
    expect((await fetch(direct)).status).toBe(401);
    const token = url.searchParams.get('spawner_token') as string;
    const straight = await fetch(direct, { headers: { 'X-Spawner-Token': token, 'X-Spawner-Backend': 'forged' } });
    expect(straight.status).toBe(200);
    const told = ((await straight.json()) as { headers: Record<string, string> }).headers;
    expect([told['x-spawner-backend'], told['x-spawner-backend-uid']]).toEqual([first.name, b.metadata.uid]);
    expect(decodeURIComponent(told['x-spawner-key'])).toBe('doc/7 é');

    // The pool refills: two unclaimed, ready Pods again, none of them the claimed one.
    const refilled = await waitReady('warm', 2, 60_000);
    const unclaimed = await poolPods(refilled);
    expect(unclaimed.map((p) => p.metadata?.uid)).not.toContain(pod.metadata?.uid);

    // More warm claims, one at a time, each after the refill; and cold starts for comparison.
    for (let i = 0; i < 3; i++) {
      const r = await createReady({ pool: 'warm', gracePeriodSeconds: 120 });
      expect(r.backend.status?.launch).toBe('Warm');
      warm.push(r.ms);
      await waitReady('warm', 2, 60_000);
    }
    const cold: number[] = [];
    for (let i = 0; i < 2; i++) cold.push((await createReady({ image: TEST_IMAGE, gracePeriodSeconds: 120 })).ms);
    const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
    writeFigures('pool-warm-claim', {
      'warm create→Ready ms (POST sent → backend Ready seen, polled every 10 ms)': sorted(warm),
      'cold create→Ready ms (image, no pool)': sorted(cold),
      'warm median ms': sorted(warm)[Math.floor(warm.length / 2)],
      'cold median ms': sorted(cold)[Math.floor(cold.length / 2)],
    });
  });

  test('pool: app told at the claim — with an assignPath the app learns its backend before Ready, and a refusal holds Ready until it takes it', async () => {
    // The app refuses its first assignment: the sidecar answers the operator 502, the operator tries again.
    const template = {
      containers: [{ name: 'app', image: TEST_IMAGE, env: [{ name: 'REFUSE_ASSIGNMENTS', value: '1' }] }],
    };
    await kube().create(POOLS, ns.name, poolManifest('told', { replicas: 1, assignPath: '/assigned', template }));
    await waitReady('told', 1);
    const r = await createReady({ pool: 'told', key: 'doc/9', gracePeriodSeconds: 120 });
    expect(r.backend.status?.launch).toBe('Warm');
    const url = new URL(r.url);
    url.pathname = `${url.pathname.replace(/\/?$/, '/')}assigned`;
    const res = await fetch(url);
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { received: Array<{ at: number; body: unknown }>; refused: number };
    expect(seen.refused).toBe(1);
    expect(seen.received).toEqual([
      { at: expect.any(Number), body: { name: r.name, uid: r.backend.metadata.uid, key: 'doc/9' } },
    ]);
    // Told before the operator decided Ready (the same host clock; the status stamps that moment).
    const readyAt = Date.parse(r.backend.status?.transitions?.find((t) => t.phase === 'Ready')?.time as string);
    expect(seen.received[0].at).toBeLessThanOrEqual(readyAt);
    writeFigures('pool-app-told', { 'create→Ready ms (one refusal, then the retry)': r.ms, refused: seen.refused });
  });

  test('pool: empty pool — ColdStart falls back and says so; Reject answers 429 with Retry-After', async () => {
    await kube().create(POOLS, ns.name, poolManifest('empty-cold', { replicas: 0, whenEmpty: 'ColdStart' }));
    await kube().create(POOLS, ns.name, poolManifest('empty-reject', { replicas: 0, whenEmpty: 'Reject' }));
    await waitFor(async () => (await getPool('empty-reject'))?.status?.observedGeneration === 1, {
      description: 'empty-reject observed',
    });
    await waitFor(async () => (await getPool('empty-cold'))?.status?.observedGeneration === 1, {
      description: 'empty-cold observed',
    });

    const cold = await createReady({ pool: 'empty-cold', gracePeriodSeconds: 60 });
    expect(cold.backend.status).toMatchObject({ launch: 'Cold', launchReason: 'PoolEmpty', podName: cold.name });

    const res = await create({ pool: 'empty-reject' });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.message).toContain('empty-reject');

    const missing = await create({ pool: 'no-such-pool' });
    expect(missing.status).toBe(404);
    writeFigures('pool-empty', {
      'cold fallback create→Ready ms': cold.ms,
      'Reject status': res.status,
      'Retry-After': res.headers.get('retry-after'),
    });
  });

  test('pool: template change replaces unclaimed Pods and leaves claimed ones alone', async () => {
    await kube().create(POOLS, ns.name, poolManifest('tpl'));
    await waitReady('tpl', 2);
    const claimed = await createReady({ pool: 'tpl', gracePeriodSeconds: 120 });
    expect(claimed.backend.status?.launch).toBe('Warm');
    const pool = await waitReady('tpl', 2, 60_000);
    const oldHash = (await poolPods(pool))[0].metadata?.labels?.[LABEL_POOL_TEMPLATE_HASH];
    const oldUids = new Set((await poolPods(pool)).map((p) => p.metadata?.uid));

    const t0 = performance.now();
    await kube().patch(
      POOLS,
      ns.name,
      'tpl',
      { spec: { template: { containers: [{ name: 'app', image: TEST_IMAGE, env: [{ name: 'VERSION', value: '2' }] }] } } },
      'merge',
    );
    const replaced = await waitFor(
      async () => {
        const p = await getPool('tpl');
        if (!p || p.status?.observedGeneration !== p.metadata.generation || p.status?.readyReplicas !== 2) return undefined;
        const pods = (await poolPods(p)).filter((x) => !x.metadata?.deletionTimestamp);
        const fresh = pods.every(
          (x) => !oldUids.has(x.metadata?.uid) && x.metadata?.labels?.[LABEL_POOL_TEMPLATE_HASH] !== oldHash,
        );
        return pods.length === 2 && fresh ? pods : undefined;
      },
      { description: 'unclaimed Pods replaced', timeoutMs: 120_000, intervalMs: 200 },
    );
    const replacedMs = Math.round(performance.now() - t0);
    expect(replaced).toHaveLength(2);

    // The claimed Pod and its backend: untouched, still Ready, still serving.
    const pod = await kube().get<V1Pod & { metadata: object }>(PODS, ns.name, claimed.backend.status?.podName as string);
    expect(pod?.metadata?.uid).toBe(claimed.backend.status?.podUID);
    expect(pod?.metadata?.deletionTimestamp).toBeUndefined();
    expect((await getBackend(claimed.name))?.status?.phase).toBe('Ready');
    expect((await fetch(claimed.url)).status).toBe(200);
    // New claims get the new template.
    const next = await createReady({ pool: 'tpl', gracePeriodSeconds: 60 });
    expect(next.backend.status?.launch).toBe('Warm');
    const nextPod = await kube().get<V1Pod & { metadata: object }>(PODS, ns.name, next.backend.status?.podName as string);
    expect(nextPod?.spec?.containers[0].env).toContainEqual({ name: 'VERSION', value: '2' });
    writeFigures('pool-template-change', { 'template change → 2 new unclaimed Pods ready, ms': replacedMs });
  });
});

describeWithAgent('pool (operator killed)', () => {
  const ns = useNamespace('pool-kill');
  let operator: Component | undefined;
  afterAll(() => operator?.stop());

  test('pool: no double claim — 60 concurrent claims against a pool of 30 while the operator is SIGKILLed repeatedly', async () => {
    const N = 60;
    const POOL = 30;
    const kube = adminClient();
    const start = () =>
      startComponent('operator', [`--namespaces=${ns.name}`, '--service-mode=None', '--concurrency=16'], {
        logName: 'pool-kill-operator',
      });
    operator = await start();
    const pool = await kube.create<SessionBackendPool>(POOLS, ns.name, {
      apiVersion: POOL_API_VERSION,
      kind: POOL_KIND,
      metadata: { name: 'big', namespace: ns.name },
      spec: { template: { containers: [{ name: 'app', image: TEST_IMAGE }] }, replicas: POOL, whenEmpty: 'ColdStart' },
    });
    await waitFor(async () => ((await kube.get<SessionBackendPool>(POOLS, ns.name, 'big'))?.status?.readyReplicas ?? 0) >= POOL, {
      description: `${POOL} ready pool Pods`,
      timeoutMs: 240_000,
      intervalMs: 500,
    });

    // Every controller a Pod ever had, from a watch (every event, not samples).
    const controllers = new Map<string, Set<string>>();
    const note = (p: V1Pod): void => {
      const uid = p.metadata?.uid as string;
      const ref = p.metadata?.ownerReferences?.find((r) => r.controller);
      if (!ref || ref.kind !== 'SessionLivedBackend') return;
      const seen = controllers.get(uid) ?? new Set<string>();
      seen.add(ref.uid);
      controllers.set(uid, seen);
    };
    const watch = new Informer<V1Pod & KubeObject>(kube, PODS, { onUpsert: note, onDelete: note }, silentLogger, {
      namespace: ns.name,
    });
    watch.start();
    await watch.waitForSync();

    const t0 = Date.now();
    const kills: number[] = [];
    let done = false;
    const killer = (async () => {
      while (!done && Date.now() - t0 < 120_000) {
        await sleep(700 + (kills.length % 3) * 500);
        if (done) break;
        await operator!.kill();
        kills.push(Date.now() - t0);
        await sleep(300);
        operator = await start();
      }
    })();

    const names = Array.from({ length: N }, (_, i) => `claim-${String(i).padStart(2, '0')}`);
    await Promise.all(
      names.map((name) =>
        kube.create(BACKENDS, ns.name, {
          apiVersion: 'spawner.dev/v1',
          kind: 'SessionLivedBackend',
          metadata: { name, namespace: ns.name },
          spec: { template: pool.spec.template, poolRef: { name: 'big' }, gracePeriodSeconds: 600 },
        }),
      ),
    );
    let all: SessionLivedBackend[] = [];
    try {
      all = await waitFor(
        async () => {
          const items = (await kube.list<SessionLivedBackend>(BACKENDS, ns.name, {})).items;
          return items.length === N && items.every((b) => b.status?.phase === 'Ready') ? items : undefined;
        },
        { description: `all ${N} backends Ready`, timeoutMs: 300_000, intervalMs: 1000 },
      );
    } finally {
      done = true;
      await killer;
    }
    const allReadyMs = Date.now() - t0;
    await sleep(2000); // a late double claim would show now
    await watch.stop();

    const pods = (await kube.list<V1Pod & KubeObject>(PODS, ns.name, {})).items.filter((p) => !p.metadata?.deletionTimestamp);
    const backendUids = new Set(all.map((b) => b.metadata.uid));
    // Every backend: exactly one Pod controlled by it, the one its status names.
    for (const b of all) {
      const owned = pods.filter((p) => p.metadata?.ownerReferences?.some((r) => r.uid === b.metadata.uid));
      expect({ backend: b.metadata.name, pods: owned.map((p) => p.metadata?.uid) }).toEqual({
        backend: b.metadata.name,
        pods: [b.status?.podUID],
      });
    }
    expect(new Set(all.map((b) => b.status?.podUID)).size).toBe(N);
    // Every Pod served at most one backend, ever; no orphan: each is a live backend's or the pool's.
    const doubles = [...controllers.entries()].filter(([, s]) => s.size > 1);
    expect(doubles).toEqual([]);
    const orphans = pods.filter((p) => {
      const ref = p.metadata?.ownerReferences?.find((r) => r.controller);
      return !ref || (ref.kind === 'SessionLivedBackend' ? !backendUids.has(ref.uid) : ref.uid !== pool.metadata.uid);
    });
    expect(orphans.map((p) => p.metadata?.name)).toEqual([]);
    const warm = all.filter((b) => b.status?.launch === 'Warm').length;
    writeFigures('pool-no-double-claim', {
      backends: N,
      pool: POOL,
      kills: kills.length,
      killTimesMs: kills,
      warm,
      cold: N - warm,
      allReadySeconds: allReadyMs / 1000,
      podsAtEnd: pods.length,
    });
  });
});
