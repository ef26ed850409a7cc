/**
 * Get-or-create by key: one live backend per key, whoever wins the race, with the store's
 * "already exists" as the only lock.
 */
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS } from '../../common/src/kube/resources';
import { createLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import type { SessionLivedBackend } from '../../common/src/backend';
import { ConnectionTokens } from './connection-tokens';
import { KubeBackendStore } from './kube-backend-store';
import { ApiMetrics } from './metrics';
import { TokenBucket } from './rate-limit';
import { createBackend } from './use-cases/create-backend';
import type { UseCaseDeps } from './use-cases/deps';
import { jsonOf, json, startHarness, type Harness } from './test-harness';
import type { BackendStore } from './backend-store';

const silent = createLogger('test', 'error', () => undefined);

function deps(store: BackendStore, limits: Partial<UseCaseDeps['limits']> = {}): UseCaseDeps {
  return {
    store,
    tokens: new ConnectionTokens(Buffer.from('0123456789abcdef0123456789abcdef')),
    metrics: new ApiMetrics(createRegistry('t', false)),
    logger: silent,
    limits: { bucket: new TokenBucket(0, 1), maxLive: 0, liveRetryAfterSeconds: 5, ...limits },
  };
}

describe('get-or-create through the HTTP API (in-memory store)', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({}, { createDelayMs: 5 });
  });
  afterEach(() => h.close());

  it('50 concurrent calls with one key create one backend; everyone gets the same name and URL', async () => {
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => h.api('/v1/backends', json({ image: 'editor', key: 'doc-1' }))),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(49);
    const bodies = await Promise.all(responses.map(jsonOf));
    expect(new Set(bodies.map((b) => b.name)).size).toBe(1);
    expect(new Set(bodies.map((b) => b.url)).size).toBe(1);
    expect(h.store.calls.filter((c) => c === 'create').length).toBeGreaterThanOrEqual(1);
    expect(await h.store.list()).toHaveLength(1);
    const metrics = await (await fetch(`${h.base}/metrics`)).text();
    expect(metrics).toMatch(/spawner_api_backends_created_total\{[^}]*\} 1\n/);
  });

  it('different keys get different backends, concurrently', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => h.api('/v1/backends', json({ image: 'editor', key: `doc-${i % 5}` }))),
    );
    const names = new Set((await Promise.all(responses.map(jsonOf))).map((b) => b.name));
    expect(names.size).toBe(5);
    expect(await h.store.list()).toHaveLength(5);
  });

  it('a terminal backend under the key is replaced by a new one', async () => {
    const first = await jsonOf(await h.api('/v1/backends', json({ image: 'editor', key: 'doc-9' })));
    const firstUid = h.store.peek(first.name)!.metadata.uid;
    h.store.transition(first.name, { phase: 'Swept', reason: 'IdleTimeout' });
    const res = await h.api('/v1/backends', json({ image: 'editor', key: 'doc-9' }));
    expect(res.status).toBe(201);
    const second = await jsonOf(res);
    expect(second.name).toBe(first.name);
    expect(second.phase).toBe('Submitted');
    expect(h.store.peek(first.name)!.metadata.uid).not.toBe(firstUid);
    // A new incarnation gets a new token: the old URL does not open it.
    expect(second.url).not.toBe(first.url);
  });

  it('a terminal backend under the key is replaced exactly once under concurrency', async () => {
    const first = await jsonOf(await h.api('/v1/backends', json({ image: 'editor', key: 'doc-10' })));
    h.store.transition(first.name, { phase: 'Failed', reason: 'ContainerExited' });
    const responses = await Promise.all(
      Array.from({ length: 30 }, () => h.api('/v1/backends', json({ image: 'editor', key: 'doc-10' }))),
    );
    const bodies = await Promise.all(responses.map(jsonOf));
    expect(responses.every((r) => r.status === 200 || r.status === 201)).toBe(true);
    expect(new Set(bodies.map((b) => b.url)).size).toBe(1);
    expect(bodies[0].phase).toBe('Submitted');
  });
});

describe('get-or-create against the Kubernetes store (fake API server)', () => {
  let kube: FakeKubeClient;
  let store: KubeBackendStore;
  beforeEach(async () => {
    kube = new FakeKubeClient();
    store = new KubeBackendStore({ client: kube, namespace: 'spawner', logger: silent });
    await store.start();
    await store.waitForSync();
  });
  afterEach(() => store.stop());

  it('50 concurrent calls: one resource, the same name for all, the API server as arbiter', async () => {
    const d = deps(store);
    const results = await Promise.all(Array.from({ length: 50 }, () => createBackend(d, { image: 'editor', key: 'room-7' })));
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.backend.metadata.name)).size).toBe(1);
    expect(new Set(results.map((r) => r.backend.metadata.uid)).size).toBe(1);
    expect(kube.all(BACKENDS)).toHaveLength(1);
  });

  it('replaces a Swept backend with a uid precondition and creates a new incarnation', async () => {
    const d = deps(store);
    const { backend } = await createBackend(d, { image: 'editor', key: 'room-8' });
    await kube.setStatus(BACKENDS, 'spawner', backend.metadata.name!, { phase: 'Swept', swept: true, reason: 'IdleTimeout' });
    const again = await createBackend(d, { image: 'editor', key: 'room-8' });
    expect(again.created).toBe(true);
    expect(again.backend.metadata.uid).not.toBe(backend.metadata.uid);
    const all = kube.all<SessionLivedBackend>(BACKENDS);
    expect(all).toHaveLength(1);
    expect(all[0].metadata.uid).toBe(again.backend.metadata.uid);
  });

  it('over the rate limit, a caller still joins a backend that exists', async () => {
    const d = deps(store, { bucket: new TokenBucket(0.001, 1) });
    const first = await createBackend(d, { image: 'editor', key: 'room-9' });
    const second = await createBackend(d, { image: 'editor', key: 'room-9' });
    expect(second.created).toBe(false);
    expect(second.backend.metadata.name).toBe(first.backend.metadata.name);
    await expect(createBackend(d, { image: 'editor', key: 'room-10' })).rejects.toMatchObject({ status: 429 });
  });
});
