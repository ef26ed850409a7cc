import { KubeApiError } from '../errors';
import { silentLogger } from '../logger';
import { waitFor } from '../testing/wait-for';
import { FakeKubeClient } from './fake-client';
import { Informer } from './informer';
import { PODS } from './resources';
import type { KubeObject } from './types';

const pod = (name: string, labels: Record<string, string> = { app: 'x' }): KubeObject => ({
  metadata: { name, namespace: 'ns', labels },
});

describe('Informer', () => {
  it('lists, then follows changes, keeping a cache filtered by label', async () => {
    const kube = new FakeKubeClient();
    await kube.create(PODS, 'ns', pod('a'));
    await kube.create(PODS, 'ns', pod('other', { app: 'y' }));
    const upserts: string[] = [];
    const deletes: string[] = [];
    const inf = new Informer(
      kube,
      PODS,
      { onUpsert: (o) => upserts.push(o.metadata!.name!), onDelete: (o) => deletes.push(o.metadata!.name!) },
      silentLogger,
      {
        namespace: 'ns',
        labelSelector: 'app=x',
      },
    );
    inf.start();
    await inf.waitForSync();
    expect([...inf.cache.keys()]).toEqual(['ns/a']);
    await kube.create(PODS, 'ns', pod('b'));
    await kube.delete(PODS, 'ns', 'a');
    await waitFor(() => deletes.length === 1);
    expect(upserts).toEqual(['a', 'b']);
    expect(deletes).toEqual(['a']);
    expect(inf.get('ns', 'b')).toBeDefined();
    await inf.stop();
  });

  it('keeps objects without their managedFields, from the list and from the watch', async () => {
    const kube = new FakeKubeClient();
    const managed = (name: string): KubeObject => ({
      metadata: {
        ...pod(name).metadata,
        managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:spec': {} } }],
      },
    });
    await kube.create(PODS, 'ns', managed('listed'));
    const inf = new Informer(kube, PODS, {}, silentLogger, { namespace: 'ns' });
    inf.start();
    await inf.waitForSync();
    await kube.create(PODS, 'ns', managed('watched'));
    await waitFor(() => inf.get('ns', 'watched') !== undefined);
    expect(inf.get('ns', 'listed')?.metadata).not.toHaveProperty('managedFields');
    expect(inf.get('ns', 'watched')?.metadata).not.toHaveProperty('managedFields');
    expect(inf.get('ns', 'watched')?.metadata?.labels).toEqual({ app: 'x' });
    await inf.stop();
  });

  it('relists after the watch fails with 410 Gone and reports what vanished meanwhile', async () => {
    const kube = new FakeKubeClient();
    await kube.create(PODS, 'ns', pod('a'));
    const deletes: string[] = [];
    const errors: unknown[] = [];
    const inf = new Informer(kube, PODS, { onDelete: (o) => deletes.push(o.metadata!.name!) }, silentLogger, {
      namespace: 'ns',
      onWatchError: (e) => errors.push(e),
    });
    inf.start();
    await inf.waitForSync();
    await waitFor(() => kube.watchCount('pods') === 1);
    // While the watch is broken, `a` goes away unseen.
    kube.dropWatches(new KubeApiError(410, 'Expired', 'too old'));
    await kube.delete(PODS, 'ns', 'a');
    await kube.create(PODS, 'ns', pod('c'));
    await waitFor(() => inf.get('ns', 'c') && !inf.get('ns', 'a'), { description: 'cache caught up' });
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(deletes).toContain('a');
    await inf.stop();
  });

  it('keeps retrying while the API server is unreachable', async () => {
    const kube = new FakeKubeClient();
    kube.failNext('list', new Error('ECONNREFUSED'));
    kube.failNext('list', new Error('ECONNREFUSED'));
    const inf = new Informer(kube, PODS, {}, silentLogger, { namespace: 'ns' });
    inf.start();
    await waitFor(() => inf.hasSynced, { timeoutMs: 5000, description: 'synced after failures' });
    expect(kube.requests.filter((r) => r.verb === 'list')).toHaveLength(3);
    await inf.stop();
  });
});
