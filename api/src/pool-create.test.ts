/**
 * Creating a backend from a warm pool (issue 16): the body's `pool` alone (no image, template or
 * httpPort), the pool's template and port copied into the spec with spec.poolRef, 404 for a
 * missing pool, 429 + Retry-After for a Reject pool with no ready Pod, 400 without pools.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { newBackend, type SessionBackendPool, type SessionLivedBackend } from '../../common/src/backend';
import { API_VERSION, KIND, LABEL_MANAGED_BY, MANAGED_BY, POOL_API_VERSION, POOL_KIND } from '../../common/src/constants';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS, PODS, POOLS } from '../../common/src/kube/resources';
import { createLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { ConnectionTokens } from './connection-tokens';
import { ApiError } from './errors';
import { KubeBackendStore } from './kube-backend-store';
import { ApiMetrics } from './metrics';
import { PodRoutes } from './pod-routes';
import { TokenBucket } from './rate-limit';
import { bodyValidator } from './schemas';
import { createBackend } from './use-cases/create-backend';
import type { UseCaseDeps } from './use-cases/deps';
import { waitUntil } from './test-harness';

const silent = createLogger('test', 'error', () => undefined);
const NS = 'spawner';

const pool = (name: string, spec: Partial<SessionBackendPool['spec']> = {}, readyReplicas = 1): SessionBackendPool => ({
  apiVersion: POOL_API_VERSION,
  kind: POOL_KIND,
  metadata: { name, namespace: NS },
  spec: { template: { containers: [{ name: 'app', image: 'editor:1' }] }, httpPort: 3000, replicas: 2, ...spec },
  status: { replicas: 2, readyReplicas },
});

describe('create from a warm pool', () => {
  let kube: FakeKubeClient;
  let store: KubeBackendStore;
  let deps: UseCaseDeps;

  beforeEach(async () => {
    kube = new FakeKubeClient();
    store = new KubeBackendStore({ client: kube, namespace: NS, logger: silent });
    await store.start();
    await store.waitForSync();
    deps = {
      store,
      pools: { get: (name) => kube.get<SessionBackendPool>(POOLS, NS, name) },
      tokens: new ConnectionTokens(Buffer.from('0123456789abcdef0123456789abcdef')),
      metrics: new ApiMetrics(createRegistry('t', false)),
      logger: silent,
      limits: { bucket: new TokenBucket(0, 100), maxLive: 0, liveRetryAfterSeconds: 5 },
    };
  });
  afterEach(() => store.stop());

  it('accepts `pool` alone in the body', () => {
    expect(bodyValidator('CreateBackendRequest')({ pool: 'editors', key: 'doc-1', labels: { a: 'b' } })).toEqual([]);
    for (const bad of [
      { pool: 'editors', image: 'x' },
      { pool: 'editors', template: { containers: [] } },
      { pool: 'editors', httpPort: 80 },
    ]) {
      expect(bodyValidator('CreateBackendRequest')(bad)).not.toEqual([]);
    }
  });

  it("copies the pool's template and port into the spec, with spec.poolRef", async () => {
    await kube.create(POOLS, NS, pool('editors'));
    const { backend } = await createBackend(deps, { pool: 'editors', gracePeriodSeconds: 60 });
    const stored = kube.peek<SessionLivedBackend>(BACKENDS, NS, backend.metadata.name as string)!;
    expect(stored.spec).toMatchObject({
      template: { containers: [{ name: 'app', image: 'editor:1' }] },
      httpPort: 3000,
      poolRef: { name: 'editors' },
      gracePeriodSeconds: 60,
    });
  });

  it('404 for a pool that does not exist', async () => {
    await expect(createBackend(deps, { pool: 'nope' })).rejects.toMatchObject({ status: 404 });
  });

  it('429 with Retry-After for a Reject pool without a ready Pod; a ColdStart pool lets it through', async () => {
    await kube.create(POOLS, NS, pool('strict', { whenEmpty: 'Reject' }, 0));
    await kube.create(POOLS, NS, pool('lenient', { whenEmpty: 'ColdStart' }, 0));
    const err = await createBackend(deps, { pool: 'strict', key: 'doc-9' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(429);
    expect((err as ApiError).headers?.['retry-after']).toBe('2');
    expect(kube.all(BACKENDS)).toHaveLength(0);
    await expect(createBackend(deps, { pool: 'lenient' })).resolves.toMatchObject({ created: true });
  });

  it('400 where pools are not available (local mode)', async () => {
    await expect(createBackend({ ...deps, pools: undefined }, { pool: 'editors' })).rejects.toMatchObject({ status: 400 });
  });
});

describe('routing view and warm pools', () => {
  it("never routes to a pool's unclaimed Pod; routes to it once a backend controls it and its status names it", async () => {
    const kube = new FakeKubeClient();
    const routes = new PodRoutes({ client: kube, namespace: NS, logger: silent, freshnessBoundMs: 5000 });
    routes.start();
    try {
      await routes.waitForSync();
      const podPool = pool('editors');
      podPool.metadata.uid = 'pool-uid';
      const pod: V1Pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: 'editors-abcde',
          namespace: NS,
          labels: { [LABEL_MANAGED_BY]: MANAGED_BY },
          ownerReferences: [
            { apiVersion: POOL_API_VERSION, kind: POOL_KIND, name: 'editors', uid: 'pool-uid', controller: true },
          ],
        },
        status: { phase: 'Running', podIP: '10.1.2.3', conditions: [{ type: 'Ready', status: 'True' }] },
      };
      const podUid = (await kube.create<V1Pod & { metadata: object }>(PODS, NS, pod as never)).metadata?.uid as string;
      await kube.setStatus(PODS, NS, 'editors-abcde', pod.status);
      const backend = newBackend('b1', NS, { template: podPool.spec.template, poolRef: { name: 'editors' } }, { uid: 'b-uid' });
      // A status naming the pool's Pod is not enough: its controller is the pool.
      backend.status = { podUID: podUid, podName: 'editors-abcde' };
      await waitUntil(() => kube.all(PODS).length === 1);
      await new Promise((r) => setTimeout(r, 50));
      expect(routes.route(backend)).toBeUndefined();
      await kube.patch(
        PODS,
        NS,
        'editors-abcde',
        {
          metadata: { ownerReferences: [{ apiVersion: API_VERSION, kind: KIND, name: 'b1', uid: 'b-uid', controller: true }] },
        },
        'merge',
      );
      await waitUntil(() => routes.route(backend) === '10.1.2.3');
    } finally {
      await routes.stop();
    }
  });
});
