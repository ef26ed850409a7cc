import type { SessionLivedBackend } from '../../common/src/backend';
import { KubeApiError, KubeUnavailableError } from '../../common/src/errors';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS } from '../../common/src/kube/resources';
import type { KubeObject, ResourceType, WatchEvent, WatchHandle, WatchOptions } from '../../common/src/kube/types';
import { createLogger } from '../../common/src/logger';
import { newBackend } from '../../common/src/backend';
import { BackendAlreadyExistsError } from './backend-store';
import { KubeBackendStore } from './kube-backend-store';
import { waitUntil } from './test-harness';

/** A fake API server whose watch events arrive late, as they do over a real network. */
class SlowWatchClient extends FakeKubeClient {
  delayMs = 100;
  override watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (event: WatchEvent<T>) => void,
  ): WatchHandle {
    return super.watch<T>(type, namespace, opts, (e) => {
      setTimeout(() => onEvent(e), this.delayMs);
    });
  }
}

const silent = createLogger('test', 'error', () => undefined);
const backend = (name: string): SessionLivedBackend =>
  newBackend(name, 'spawner', { template: { containers: [{ name: 'app', image: 'x' }] } }, { labels: { team: 'a' } });

let kube: SlowWatchClient;
let store: KubeBackendStore;
beforeEach(async () => {
  kube = new SlowWatchClient();
  store = new KubeBackendStore({ client: kube, namespace: 'spawner', logger: silent });
  await store.start();
  await store.waitForSync();
});
afterEach(() => store.stop());

describe('KubeBackendStore', () => {
  it('reads its own creates before the watch reports them', async () => {
    const created = await store.create(backend('spawner-a'));
    expect(created.metadata.uid).toBeDefined();
    expect((await store.get('spawner-a'))?.metadata.uid).toBe(created.metadata.uid);
    expect((await store.list()).map((b) => b.metadata.name)).toEqual(['spawner-a']);
    expect(store.countLive()).toBe(1);
    await new Promise((r) => setTimeout(r, 150));
    expect((await store.list()).map((b) => b.metadata.name)).toEqual(['spawner-a']);
  });

  it('AlreadyExists becomes BackendAlreadyExistsError; other errors pass through typed', async () => {
    await store.create(backend('spawner-b'));
    await expect(store.create(backend('spawner-b'))).rejects.toBeInstanceOf(BackendAlreadyExistsError);
    kube.failNext('create', new KubeUnavailableError('connect ECONNREFUSED'));
    await expect(store.create(backend('spawner-c'))).rejects.toBeInstanceOf(KubeUnavailableError);
    kube.failNext('create', new KubeApiError(403, 'Forbidden', 'no'));
    await expect(store.create(backend('spawner-c'))).rejects.toBeInstanceOf(KubeApiError);
  });

  it('delete records Swept/DeletedByClient, tells watchers, and hides the object at once', async () => {
    await store.create(backend('spawner-d'));
    await waitUntil(() => store.countLive() === 1);
    await new Promise((r) => setTimeout(r, 150));
    const seen: string[] = [];
    store.watch('spawner-d', (b) => seen.push(b ? (b.status?.phase ?? 'Submitted') : 'gone'));
    await waitUntil(() => seen.length === 1);
    const last = await store.delete('spawner-d', { reason: 'DeletedByClient', message: 'bye' });
    expect(last?.status).toMatchObject({ phase: 'Swept', swept: true, reason: 'DeletedByClient', message: 'bye' });
    expect(kube.peek(BACKENDS, 'spawner', 'spawner-d')).toBeUndefined();
    expect(kube.requests.some((r) => r.verb === 'patch' && r.subresource === 'status')).toBe(true);
    expect(await store.get('spawner-d')).toBeUndefined();
    expect(await store.list()).toEqual([]);
    expect(store.countLive()).toBe(0);
    expect(seen).toEqual(['Submitted', 'Swept', 'gone']);
    // The late watch events change nothing.
    await new Promise((r) => setTimeout(r, 250));
    expect(seen).toEqual(['Submitted', 'Swept', 'gone']);
    expect(await store.delete('spawner-d')).toBeUndefined();
  });

  it('delete answers with the last state even when the operator deletes the Swept backend first', async () => {
    await store.create(backend('raced'));
    // The operator deletes Swept backends as soon as it sees them; here it wins the race.
    const patch = kube.patch.bind(kube);
    kube.patch = (async (...args: Parameters<FakeKubeClient['patch']>) => {
      const result = await patch(...args);
      await kube.delete(BACKENDS, 'spawner', 'raced');
      return result;
    }) as FakeKubeClient['patch'];
    const last = await store.delete('raced', { reason: 'DeletedByClient' });
    expect(last?.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient' });
    expect(await store.get('raced')).toBeUndefined();
    // Without a recorded reason, a backend already gone is simply not found.
    expect(await store.delete('raced')).toBeUndefined();
  });

  it('delete with a uid leaves a successor alone', async () => {
    const first = await store.create(backend('spawner-e'));
    await kube.delete(BACKENDS, 'spawner', 'spawner-e');
    await kube.create(BACKENDS, 'spawner', backend('spawner-e'));
    expect(await store.delete('spawner-e', { uid: first.metadata.uid })).toBeUndefined();
    expect(kube.peek(BACKENDS, 'spawner', 'spawner-e')).toBeDefined();
  });

  it('watch: current state first, then changes from the informer, then undefined on deletion', async () => {
    await kube.create(BACKENDS, 'spawner', backend('spawner-f'));
    await waitUntil(() => store.countLive() === 1);
    const seen: Array<string | undefined> = [];
    const stop = store.watch('spawner-f', (b) => seen.push(b?.status?.phase ?? (b ? 'Submitted' : undefined)));
    await waitUntil(() => seen.length === 1);
    await kube.setStatus(BACKENDS, 'spawner', 'spawner-f', { phase: 'Ready', ready: true, podIP: '10.2.0.9' });
    await waitUntil(() => seen.length === 2);
    const b = await store.get('spawner-f');
    // status.podIP alone routes nowhere: only a verified Pod does (pod-routes.test.ts).
    expect(store.endpoint(b!)).toBeUndefined();
    await kube.delete(BACKENDS, 'spawner', 'spawner-f');
    await waitUntil(() => seen.length === 3);
    expect(seen).toEqual(['Submitted', 'Ready', undefined]);
    stop();
  });

  it('filters lists with label selectors; counts only live backends', async () => {
    await store.create(backend('spawner-g'));
    const other = backend('spawner-h');
    other.metadata.labels = { team: 'b' };
    await store.create(other);
    await kube.setStatus(BACKENDS, 'spawner', 'spawner-h', { phase: 'Failed', failed: true });
    await waitUntil(() => store.countLive() === 1, 1000);
    expect((await store.list([{ key: 'team', op: 'in', values: ['b'] }])).map((b) => b.metadata.name)).toEqual(['spawner-h']);
  });

  it('ended: its own delete is remembered at once with the recorded ending', async () => {
    await store.create(backend('spawner-j'));
    expect(store.ended('spawner-j')).toBeUndefined();
    await store.delete('spawner-j', { reason: 'DeletedByClient', message: 'bye' });
    expect(store.ended('spawner-j')?.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient', message: 'bye' });
    // The late watch event of that deletion keeps it.
    await new Promise((r) => setTimeout(r, 250));
    expect(store.ended('spawner-j')?.status?.reason).toBe('DeletedByClient');
    expect(await store.get('spawner-j')).toBeUndefined();
  });

  it('ended: deletions by others (the operator, kubectl) from the watch, before watchers hear of them', async () => {
    await kube.create(BACKENDS, 'spawner', backend('spawner-k'));
    await kube.create(BACKENDS, 'spawner', backend('spawner-l'));
    await waitUntil(() => store.countLive() === 2);
    const heard: Array<string | undefined> = [];
    store.watch('spawner-k', (b) => {
      if (!b) heard.push(store.ended('spawner-k')?.status?.reason);
    });
    // The operator deletes a Failed backend after its retention: its ending is kept as it was.
    await kube.setStatus(BACKENDS, 'spawner', 'spawner-k', { phase: 'Failed', failed: true, reason: 'ImagePullError' });
    await kube.delete(BACKENDS, 'spawner', 'spawner-k');
    // kubectl delete of a live one: no ending was written.
    await kube.setStatus(BACKENDS, 'spawner', 'spawner-l', { phase: 'Ready', ready: true, podIP: '10.2.0.1' });
    await waitUntil(() => store.countLive() === 1);
    await kube.delete(BACKENDS, 'spawner', 'spawner-l');
    await waitUntil(() => heard.length === 1 && store.ended('spawner-l') !== undefined);
    expect(heard).toEqual(['ImagePullError']);
    expect(store.ended('spawner-k')?.status).toMatchObject({ phase: 'Failed', reason: 'ImagePullError' });
    expect(store.ended('spawner-l')?.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient' });
  });

  it('ended: a new backend under the name replaces the record', async () => {
    await store.create(backend('spawner-m'));
    await store.delete('spawner-m', { reason: 'DeletedByClient' });
    expect(store.ended('spawner-m')).toBeDefined();
    await store.create(backend('spawner-m'));
    expect(store.ended('spawner-m')).toBeUndefined();
    // Created by someone else: the watch brings the news.
    await kube.delete(BACKENDS, 'spawner', 'spawner-m');
    await waitUntil(() => store.ended('spawner-m') !== undefined);
    await kube.create(BACKENDS, 'spawner', backend('spawner-m'));
    await waitUntil(() => store.ended('spawner-m') === undefined);
  });

  it('ended: remembers nothing with a retention of 0', async () => {
    const off = new KubeBackendStore({ client: kube, namespace: 'spawner', logger: silent, endedRetentionSeconds: 0 });
    await off.start();
    await off.waitForSync();
    try {
      await off.create(backend('spawner-n'));
      await off.delete('spawner-n', { reason: 'DeletedByClient' });
      expect(off.ended('spawner-n')).toBeUndefined();
    } finally {
      await off.stop();
    }
  });

  it('a fresh get asks the API server', async () => {
    await kube.create(BACKENDS, 'spawner', backend('spawner-i'));
    expect(await store.get('spawner-i')).toBeUndefined(); // the watch has not told us yet
    expect((await store.get('spawner-i', { fresh: true }))?.metadata.name).toBe('spawner-i');
  });
});
