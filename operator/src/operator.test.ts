/**
 * The operator end to end against the in-memory API (the real API server is in e2e/): events in,
 * Pods, Services, status and Events out, with a fake kubelet moving the Pod along.
 */
import { KubeConfig, type CoreV1Event, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf } from '../../common/src/lifecycle';
import { KubeApiError, KubeUnavailableError } from '../../common/src/errors';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS, EVENTS, PODS, SERVICES } from '../../common/src/kube/resources';
import { silentLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { waitFor } from '../../common/src/testing/wait-for';
import { createOperatorMetrics } from './metrics';
import { SpawnerOperator } from './operator';
import { runningReady, testConfig } from './test-fixtures';

const NS = 'ns';

function startOperator(kube: FakeKubeClient, config = testConfig) {
  const registry = createRegistry('operator', false);
  const ref: { op?: SpawnerOperator } = {};
  const metrics = createOperatorMetrics(
    registry,
    () => ref.op?.backends() ?? [],
    () => ref.op?.queue.depth ?? 0,
  );
  const op = new SpawnerOperator(new KubeConfig(), kube, config, metrics, silentLogger);
  ref.op = op;
  return { op, registry, ready: op.start().then(() => op.activate()) };
}

const manifest = (name: string, spec: Record<string, unknown> = {}): SessionLivedBackend => ({
  apiVersion: 'spawner.dev/v1',
  kind: 'SessionLivedBackend',
  metadata: { name, namespace: NS },
  spec: {
    template: { containers: [{ name: 'app', image: 'spawner-test-app' }] },
    httpPort: 8080,
    gracePeriodSeconds: 300,
    startupTimeoutSeconds: 300,
    ...spec,
  },
});

const phase = (kube: FakeKubeClient, name: string) => {
  const b = kube.peek<SessionLivedBackend>(BACKENDS, NS, name);
  return b ? phaseOf(b) : 'gone';
};

/** A kubelet stand-in: bind the Pod to a node, then report it running and ready. */
async function runPod(kube: FakeKubeClient, name: string, ready = true): Promise<void> {
  await kube.patch(PODS, NS, name, { spec: { nodeName: 'node-a' } }, 'merge');
  await kube.setStatus(PODS, NS, name, runningReady(ready));
}

describe('operator (against the in-memory API)', () => {
  let kube: FakeKubeClient;
  let op: SpawnerOperator;

  beforeEach(async () => {
    kube = new FakeKubeClient();
    const started = startOperator(kube);
    op = started.op;
    await started.ready;
  });
  afterEach(async () => op.shutdown());

  it('takes a backend through Constructed, Scheduled, Running and Ready with one Event per phase', async () => {
    await kube.create(BACKENDS, NS, manifest('b1'));
    await waitFor(() => phase(kube, 'b1') === 'Constructed', { description: 'Constructed' });
    const pod = kube.peek<V1Pod>(PODS, NS, 'b1')!;
    const svc = kube.peek<V1Service>(SERVICES, NS, 'b1')!;
    const uid = kube.peek<SessionLivedBackend>(BACKENDS, NS, 'b1')!.metadata.uid;
    expect(pod.metadata?.ownerReferences?.[0]).toMatchObject({ uid, controller: true });
    expect(svc.metadata?.ownerReferences?.[0]).toMatchObject({ uid, controller: true });

    await kube.patch(PODS, NS, 'b1', { spec: { nodeName: 'node-a' } }, 'merge');
    await waitFor(() => phase(kube, 'b1') === 'Scheduled', { description: 'Scheduled' });
    await kube.setStatus(PODS, NS, 'b1', runningReady(false));
    await waitFor(() => phase(kube, 'b1') === 'Running', { description: 'Running' });
    await kube.setStatus(PODS, NS, 'b1', runningReady(true));
    await waitFor(() => phase(kube, 'b1') === 'Ready', { description: 'Ready' });

    const b = kube.peek<SessionLivedBackend>(BACKENDS, NS, 'b1')!;
    expect(b.metadata.labels?.spawnerGroup).toBe('node-a');
    expect(b.status).toMatchObject({
      constructed: true,
      scheduled: true,
      running: true,
      ready: true,
      nodeName: 'node-a',
      podIP: '10.88.0.5',
      port: 9090,
    });
    await waitFor(() => kube.all<CoreV1Event>(EVENTS).length === 4, { description: 'four events' });
    expect(
      kube
        .all<CoreV1Event>(EVENTS)
        .map((e) => e.action)
        .sort(),
    ).toEqual(['Constructed', 'Ready', 'Running', 'Scheduled']);
  });

  it('converges after a half-finished pass: the Service create failed after the Pod was made', async () => {
    kube.failNext('create', new KubeUnavailableError('connection reset'), { plural: 'services' });
    await kube.create(BACKENDS, NS, manifest('b2'));
    await waitFor(() => phase(kube, 'b2') === 'Constructed', { description: 'Constructed after retry' });
    expect(kube.all(PODS)).toHaveLength(1);
    expect(kube.all(SERVICES)).toHaveLength(1);
    expect(kube.writes('pods').filter((w) => w.verb === 'create')).toHaveLength(1);
  });

  it('never creates a Pod twice when a create succeeded but its answer was lost', async () => {
    kube.failNext('create', new KubeUnavailableError('timeout'), { plural: 'pods', afterApply: true });
    await kube.create(BACKENDS, NS, manifest('b3'));
    await waitFor(() => phase(kube, 'b3') === 'Constructed', { description: 'Constructed' });
    expect(kube.all(PODS)).toHaveLength(1);
  });

  it('fails a backend whose Pod is deleted by hand (PodDeleted) and does not recreate the Pod', async () => {
    await kube.create(BACKENDS, NS, manifest('b4'));
    await waitFor(() => phase(kube, 'b4') === 'Constructed');
    await runPod(kube, 'b4');
    await waitFor(() => phase(kube, 'b4') === 'Ready');
    await kube.delete(PODS, NS, 'b4');
    await waitFor(() => phase(kube, 'b4') === 'Failed', { description: 'Failed' });
    expect(kube.peek<SessionLivedBackend>(BACKENDS, NS, 'b4')!.status?.reason).toBe('PodDeleted');
    await op.queue.whenIdle();
    expect(kube.peek(PODS, NS, 'b4')).toBeUndefined();
    expect(kube.writes('pods').filter((w) => w.verb === 'create')).toHaveLength(1);
  });

  it('deletes a Swept backend; its Pod and Service go with it', async () => {
    await kube.create(BACKENDS, NS, manifest('b5'));
    await waitFor(() => phase(kube, 'b5') === 'Constructed');
    await runPod(kube, 'b5');
    await waitFor(() => phase(kube, 'b5') === 'Ready');
    const b = kube.peek<SessionLivedBackend>(BACKENDS, NS, 'b5')!;
    // What the sweeper writes:
    await kube.patch(
      BACKENDS,
      NS,
      'b5',
      { status: { ...b.status, phase: 'Swept', swept: true, reason: 'IdleTimeout' } },
      'merge',
      { subresource: 'status' },
    );
    await waitFor(() => phase(kube, 'b5') === 'gone', { description: 'backend deleted' });
    expect(kube.peek(PODS, NS, 'b5')).toBeUndefined();
    expect(kube.peek(SERVICES, NS, 'b5')).toBeUndefined();
  });

  it('enforces maxLifetimeSeconds even while the backend is busy', async () => {
    await kube.create(BACKENDS, NS, manifest('b6', { maxLifetimeSeconds: 1 }));
    await waitFor(() => phase(kube, 'b6') === 'Constructed');
    await runPod(kube, 'b6');
    const seen: string[] = [];
    const watch = kube.watch<SessionLivedBackend>(BACKENDS, NS, { resourceVersion: '0' }, (e) =>
      seen.push(`${phaseOf(e.object)}/${e.object.status?.reason ?? ''}`),
    );
    await waitFor(() => phase(kube, 'b6') === 'gone', { timeoutMs: 5000, description: 'swept and deleted' });
    watch.abort();
    expect(seen).toContain('Swept/LifetimeExceeded');
  });

  it('keeps a Failed backend for the retention, with its Pod stopped, then deletes it', async () => {
    await op.shutdown();
    const started = startOperator(kube, { ...testConfig, failedRetentionSeconds: 1 });
    op = started.op;
    await started.ready;
    await kube.create(BACKENDS, NS, manifest('b7'));
    await waitFor(() => phase(kube, 'b7') === 'Constructed');
    await kube.setStatus(PODS, NS, 'b7', {
      phase: 'Failed',
      containerStatuses: [
        {
          name: 'app',
          image: 'x',
          imageID: '',
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode: 2, reason: 'Error' } },
        },
      ],
    });
    await waitFor(() => phase(kube, 'b7') === 'Failed');
    await waitFor(() => !kube.peek(PODS, NS, 'b7'), { description: 'pod stopped' });
    expect(phase(kube, 'b7')).toBe('Failed');
    await waitFor(() => phase(kube, 'b7') === 'gone', { timeoutMs: 4000, description: 'deleted after retention' });
  });

  it('keeps working after its watches fail (the library would have exited the process)', async () => {
    kube.compact();
    kube.dropWatches(new KubeApiError(410, 'Expired', 'too old resource version'));
    await kube.create(BACKENDS, NS, manifest('b8'));
    await waitFor(() => phase(kube, 'b8') === 'Constructed', { timeoutMs: 5000, description: 'reconciled after relist' });
  });

  it('a restarted operator adopts existing backends without duplicating objects or Events', async () => {
    await kube.create(BACKENDS, NS, manifest('b9'));
    await waitFor(() => phase(kube, 'b9') === 'Constructed');
    await runPod(kube, 'b9');
    await waitFor(() => phase(kube, 'b9') === 'Ready');
    await waitFor(() => kube.all(EVENTS).length === 4);
    await op.shutdown();
    const again = startOperator(kube);
    op = again.op;
    await again.ready;
    await op.queue.whenIdle();
    expect(kube.all(PODS)).toHaveLength(1);
    expect(kube.all(SERVICES)).toHaveLength(1);
    expect(kube.all(EVENTS)).toHaveLength(4);
    expect(kube.writes('events').filter((w) => w.verb === 'create')).toHaveLength(4);
  });
});
