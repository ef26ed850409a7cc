/**
 * The routing view of KubeBackendStore (pod-routes.ts): which Pod a backend's traffic may go to,
 * and how the store knows the view is fresh.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import { API_VERSION, KIND, LABEL_MANAGED_BY, MANAGED_BY } from '../../common/src/constants';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS, EVENTS, PODS } from '../../common/src/kube/resources';
import type {
  KubeObject,
  ListOptions,
  ListResult,
  ResourceType,
  WatchEvent,
  WatchHandle,
  WatchOptions,
} from '../../common/src/kube/types';
import { createLogger } from '../../common/src/logger';
import { KubeBackendStore } from './kube-backend-store';
import { MemoryBackendStore } from './memory-backend-store';
import { rvAtLeast } from './pod-routes';
import { waitUntil } from './test-harness';

const NS = 'spawner';
const silent = createLogger('test', 'error', () => undefined);

interface OpenWatch {
  type: ResourceType;
  onEvent: (e: WatchEvent<KubeObject>) => void;
  /** A stalled connection: its events never arrive. */
  wedged: boolean;
}

/**
 * A fake API server that sends bookmarks (as a real one does before a watch's deadline, carrying
 * its current resourceVersion), can be frozen (lists wait, watch events are held until thawed),
 * and can stall the watches open at one moment while answering everything else.
 */
class RoutingClient extends FakeKubeClient {
  private frozen = false;
  private held: Array<() => void> = [];
  private thawed?: Promise<void>;
  private thaw_?: () => void;
  private readonly open = new Set<OpenWatch>();
  private timer?: NodeJS.Timeout;

  /** Bookmarks to every watch this often (0: never). */
  startBookmarks(everyMs: number): void {
    this.stopBookmarks();
    this.timer = setInterval(() => this.bookmark(), everyMs);
  }

  stopBookmarks(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get currentRv(): string {
    return String((this as unknown as { rv: number }).rv);
  }

  bookmark(): void {
    const object = { metadata: { resourceVersion: this.currentRv } };
    for (const w of this.open) this.deliver(w, { type: 'BOOKMARK', object });
  }

  freeze(): void {
    this.frozen = true;
    this.thawed = new Promise((r) => (this.thaw_ = r));
  }

  thaw(): void {
    this.frozen = false;
    this.thaw_?.();
    for (const f of this.held.splice(0)) f();
  }

  /** The Pod watches open now stop delivering anything, for good. */
  wedgePodWatches(): void {
    for (const w of this.open) if (w.type.plural === 'pods') w.wedged = true;
  }

  private deliver(w: OpenWatch, e: WatchEvent<KubeObject>): void {
    if (w.wedged) return;
    if (this.frozen) this.held.push(() => this.deliver(w, e));
    else w.onEvent(e);
  }

  override async list<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts?: ListOptions,
  ): Promise<ListResult<T>> {
    if (this.frozen) await this.thawed;
    return super.list<T>(type, namespace, opts);
  }

  override watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (event: WatchEvent<T>) => void,
  ): WatchHandle {
    const w: OpenWatch = { type, onEvent: onEvent as (e: WatchEvent<KubeObject>) => void, wedged: false };
    const handle = super.watch<T>(type, namespace, opts, (e) => this.deliver(w, e as WatchEvent<KubeObject>));
    this.open.add(w);
    const close = (): void => void this.open.delete(w);
    handle.done.then(close, close);
    return handle;
  }
}

/** Polls an async condition (5 ms apart). */
async function eventually(cond: () => Promise<boolean>, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const backend = (name: string): SessionLivedBackend =>
  newBackend(name, NS, { template: { containers: [{ name: 'app', image: 'x' }] } });

/** The backend's Pod as the operator makes it: labelled, controlled by the backend. */
async function createPod(kube: FakeKubeClient, owner: SessionLivedBackend, name = owner.metadata.name!): Promise<V1Pod> {
  return kube.create<V1Pod>(PODS, NS, {
    metadata: {
      name,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY, run: owner.metadata.name! },
      ownerReferences: [
        { apiVersion: API_VERSION, kind: KIND, name: owner.metadata.name!, uid: owner.metadata.uid!, controller: true },
      ],
    },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  });
}

const running = (ip: string, ready = true): V1Pod['status'] => ({
  phase: 'Running',
  podIP: ip,
  conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
});

/** The backend Ready, its status naming `pod` (as the operator writes it). */
async function markReady(
  kube: FakeKubeClient,
  b: SessionLivedBackend,
  pod: V1Pod,
  podIP = pod.status?.podIP ?? '10.0.0.1',
): Promise<void> {
  await kube.setStatus(BACKENDS, NS, b.metadata.name!, { phase: 'Ready', ready: true, podIP, podUID: pod.metadata!.uid });
}

describe('rvAtLeast', () => {
  test('compares etcd revisions as numbers, anything else only for equality', () => {
    expect(rvAtLeast('10', '9')).toBe(true);
    expect(rvAtLeast('9', '10')).toBe(false);
    expect(rvAtLeast('123456789012345678901', '123456789012345678900')).toBe(true);
    expect(rvAtLeast('abc', 'abc')).toBe(true);
    expect(rvAtLeast('abd', 'abc')).toBe(false);
  });
});

describe('KubeBackendStore routing view', () => {
  let kube: RoutingClient;
  let store: KubeBackendStore;

  const start = async (routes: ConstructorParameters<typeof KubeBackendStore>[0]['routes'] = {}): Promise<void> => {
    store = new KubeBackendStore({
      client: kube,
      namespace: NS,
      logger: silent,
      routes: { freshnessBoundMs: 600, probeIntervalMs: 50, ...routes },
    });
    await store.start();
    await store.waitForSync();
  };

  beforeEach(() => {
    kube = new RoutingClient();
    kube.startBookmarks(100);
  });
  afterEach(async () => {
    kube.stopBookmarks();
    kube.thaw();
    await store?.stop();
  });

  /** A Ready backend with its Running, Ready Pod at `ip`; the store has seen both. */
  async function readyBackend(name: string, ip: string): Promise<{ b: SessionLivedBackend; pod: V1Pod }> {
    const b = await store.create(backend(name));
    let pod = await createPod(kube, b);
    await kube.setStatus(PODS, NS, name, running(ip));
    pod = kube.peek<V1Pod>(PODS, NS, name)!;
    await markReady(kube, b, pod);
    await eventually(async () => (await endpointOf(name)) === ip);
    return { b: (await store.get(name))!, pod };
  }

  /** Where the store routes the backend it holds under `name` now. */
  const endpointOf = async (name: string): Promise<string | undefined> => {
    const b = await store.get(name);
    return b ? store.endpoint(b)?.host : undefined;
  };

  test('routes only through the Pod the status names: Running, Ready, controlled by the backend, not terminating', async () => {
    await start();
    const b = await store.create(backend('a'));
    await waitUntil(() => store.countLive() === 1);
    // Ready in its status with an IP, but no Pod known: no route (the IP may be anyone's by now).
    await kube.setStatus(BACKENDS, NS, 'a', { phase: 'Ready', ready: true, podIP: '10.0.0.7', podUID: 'gone-uid' });
    await eventually(async () => (await store.get('a'))?.status?.ready === true);
    expect(await endpointOf('a')).toBeUndefined();

    const pod = await createPod(kube, b);
    await markReady(kube, b, pod, '10.0.0.7');
    // Pending, then Running but not Ready: still none.
    await kube.setStatus(PODS, NS, 'a', { phase: 'Pending', podIP: '10.0.0.7' });
    await new Promise((r) => setTimeout(r, 20));
    expect(await endpointOf('a')).toBeUndefined();
    await kube.setStatus(PODS, NS, 'a', running('10.0.0.7', false));
    await new Promise((r) => setTimeout(r, 20));
    expect(await endpointOf('a')).toBeUndefined();
    // Running and Ready: the Pod's own IP.
    await kube.setStatus(PODS, NS, 'a', running('10.0.0.7'));
    await eventually(async () => (await endpointOf('a')) === '10.0.0.7');
    expect(store.endpoint((await store.get('a'))!)).toEqual({ host: '10.0.0.7', port: 9090 });

    // Terminating: none.
    await kube.patch(PODS, NS, 'a', { metadata: { deletionTimestamp: new Date().toISOString() } }, 'merge');
    await eventually(async () => (await endpointOf('a')) === undefined);
    await kube.patch(PODS, NS, 'a', { metadata: { deletionTimestamp: null } }, 'merge');
    await eventually(async () => (await endpointOf('a')) === '10.0.0.7');

    // Failed or Succeeded keeps its podIP in the status: never used.
    for (const phase of ['Failed', 'Succeeded']) {
      await kube.setStatus(PODS, NS, 'a', { phase, podIP: '10.0.0.7', conditions: [{ type: 'Ready', status: 'True' }] });
      await eventually(async () => (await endpointOf('a')) === undefined);
      await kube.setStatus(PODS, NS, 'a', running('10.0.0.7'));
      await eventually(async () => (await endpointOf('a')) === '10.0.0.7');
    }

    // A status without podUID (an older operator's) names no Pod.
    const noUid = (await store.get('a'))!;
    expect(store.endpoint({ ...noUid, status: { ...noUid.status, podUID: undefined } })).toBeUndefined();
  });

  test('a reused IP: a stale status, another backend’s Pod, or a same-named successor never gets the traffic', async () => {
    await start();
    const { b: a, pod: podA } = await readyBackend('a', '10.0.0.9');
    expect(await endpointOf('a')).toBe('10.0.0.9');

    // Pod A is deleted; its IP goes to backend B's Pod at once. A's status (the operator has not
    // caught up) still says Ready at 10.0.0.9 with A's Pod uid.
    await kube.delete(PODS, NS, 'a');
    const { b: bb } = await readyBackend('b', '10.0.0.9');
    expect(await endpointOf('b')).toBe('10.0.0.9');
    const staleA = (await store.get('a'))!;
    expect(staleA.status).toMatchObject({ phase: 'Ready', podIP: '10.0.0.9', podUID: podA.metadata!.uid });
    expect(store.endpoint(staleA)).toBeUndefined();

    // A status naming B's Pod uid while A is the backend: the controller check refuses it.
    expect(
      store.endpoint({ ...staleA, status: { ...staleA.status, podUID: kube.peek<V1Pod>(PODS, NS, 'b')!.metadata!.uid } }),
    ).toBeUndefined();

    // A Pod of A's name again, controlled by B (say, a warm pool's): not A's.
    const impostor = await createPod(kube, bb, 'a');
    await kube.setStatus(PODS, NS, 'a', running('10.0.0.10'));
    await new Promise((r) => setTimeout(r, 20));
    expect(store.endpoint({ ...staleA, status: { ...staleA.status, podUID: impostor.metadata!.uid } })).toBeUndefined();

    // A new incarnation of backend "a" whose status still names the old incarnation's Pod.
    await kube.delete(PODS, NS, 'a');
    await kube.delete(BACKENDS, NS, 'a');
    const a2 = await kube.create<SessionLivedBackend>(BACKENDS, NS, backend('a'));
    const oldPod = await createPod(kube, a);
    await kube.setStatus(PODS, NS, 'a', running('10.0.0.11'));
    await kube.setStatus(BACKENDS, NS, 'a', { phase: 'Ready', ready: true, podIP: '10.0.0.11', podUID: oldPod.metadata!.uid });
    await eventually(async () => (await store.get('a'))?.status?.podUID === oldPod.metadata!.uid);
    const b2 = (await store.get('a'))!;
    expect(b2.metadata.uid).toBe(a2.metadata.uid);
    expect(store.endpoint(b2)).toBeUndefined();
  });

  test("watchers hear the backend again when its Pod's routability changes (a held request goes on)", async () => {
    await start();
    const b = await store.create(backend('held'));
    const pod = await createPod(kube, b);
    await markReady(kube, b, pod, '10.0.0.5');
    await eventually(async () => (await store.get('held'))?.status?.ready === true);
    const routable: boolean[] = [];
    const stop = store.watch('held', (x) => routable.push(x ? store.endpoint(x) !== undefined : false));
    await waitUntil(() => routable.length >= 1);
    expect(routable).toEqual([false]);
    // Only the Pod changes: the backend object is the same, yet watchers hear it, now routable.
    await kube.setStatus(PODS, NS, 'held', running('10.0.0.5'));
    await waitUntil(() => routable[routable.length - 1] === true);
    const heard = routable.length;
    // A change that does not touch routing (a label) is not announced.
    await kube.patch(PODS, NS, 'held', { metadata: { labels: { extra: 'x' } } }, 'merge');
    await new Promise((r) => setTimeout(r, 30));
    expect(routable.length).toBe(heard);
    await kube.setStatus(PODS, NS, 'held', running('10.0.0.5', false));
    await waitUntil(() => routable[routable.length - 1] === false);
    stop();
  });

  test('routesStale: fresh while probes are proven by the watch, stale past the bound while frozen, fresh again after', async () => {
    kube.startBookmarks(100);
    await start();
    expect(store.routesStale()).toBe(false);
    // Well past the bound, with nothing changing: the probes and bookmarks keep it fresh.
    const samples: boolean[] = [];
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      samples.push(store.routesStale());
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(samples.filter(Boolean)).toEqual([]);

    kube.freeze();
    const frozenAt = Date.now();
    await waitUntil(() => store.routesStale(), 2000);
    const staleAfter = Date.now() - frozenAt;
    // Not before the bound (minus a probe interval of slack for when the last proof was), not long after.
    expect(staleAfter).toBeGreaterThanOrEqual(400);
    expect(staleAfter).toBeLessThan(1000);
    kube.thaw();
    await waitUntil(() => !store.routesStale(), 1000);
  });

  test('routesStale: Pod changes prove freshness too, without bookmarks', async () => {
    kube.stopBookmarks();
    await start({ relistAfterMs: 60_000 });
    const b = await store.create(backend('busy'));
    await createPod(kube, b);
    // Pod events every 100 ms: each carries a version at or past the last probe's.
    let n = 0;
    const timer = setInterval(
      () => void kube.patch(PODS, NS, 'busy', { metadata: { labels: { n: String(n++) } } }, 'merge'),
      100,
    );
    try {
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        expect(store.routesStale()).toBe(false);
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      clearInterval(timer);
    }
    // No Pod changes and no bookmarks, while other writes move the API server's version on:
    // nothing proves the probes any more.
    const others = setInterval(() => void kube.create(EVENTS, NS, { metadata: { generateName: 'e-' } }), 50);
    try {
      await waitUntil(() => store.routesStale(), 2000);
    } finally {
      clearInterval(others);
    }
  });

  test('a watch that stalls while the API server answers: the view is rebuilt from a relist', async () => {
    await start({ relistAfterMs: 300 });
    await readyBackend('w', '10.0.0.20');
    kube.wedgePodWatches();
    // The Pod goes away; the stalled watch never says so.
    await kube.delete(PODS, NS, 'w');
    await new Promise((r) => setTimeout(r, 100));
    expect(await endpointOf('w')).toBe('10.0.0.20');
    // The relist sees it: no route, and the view is fresh again; the stalled watch is closed.
    await eventually(async () => (await endpointOf('w')) === undefined, 2000);
    await waitUntil(() => !store.routesStale(), 1000);
    await waitUntil(() => kube.watchCount('pods') === 1, 1000);
  });

  test('routesStale until the first list; ready() waits for the Pods too', async () => {
    kube.freeze();
    store = new KubeBackendStore({
      client: kube,
      namespace: NS,
      logger: silent,
      routes: { freshnessBoundMs: 600, probeIntervalMs: 50 },
    });
    await store.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(store.ready()).toBe(false);
    expect(store.routesStale()).toBe(true);
    kube.thaw();
    await store.waitForSync();
    expect(store.ready()).toBe(true);
    expect(store.routesStale()).toBe(false);
  });
});

test('the memory store is never stale unless a test says so', () => {
  expect(new MemoryBackendStore().routesStale()).toBe(false);
  let stale = true;
  const store = new MemoryBackendStore({ routesStale: () => stale });
  expect(store.routesStale()).toBe(true);
  stale = false;
  expect(store.routesStale()).toBe(false);
});
