/**
 * The sweeper against the in-memory API and a fake sidecar on 127.0.0.1 (the backend's "podIP").
 */
import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf, writeTransition } from '../../common/src/lifecycle';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS, PODS } from '../../common/src/kube/resources';
import { silentLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { waitFor } from '../../common/src/testing/wait-for';
import { FakeSidecar } from './fake-sidecar';
import { createSweeperMetrics } from './metrics';
import { Sweeper } from './sweeper';

const NS = 'ns';

async function readyBackend(kube: FakeKubeClient, name: string, grace: number, node = 'node-a'): Promise<void> {
  const b = newBackend(
    name,
    NS,
    { template: { containers: [{ name: 'app', image: 'x' }] }, gracePeriodSeconds: grace },
    { labels: { spawnerGroup: node } },
  );
  const created = await kube.create(BACKENDS, NS, b);
  await writeTransition(kube, 'operator', created, { phase: 'Ready', fields: { podIP: '127.0.0.1', nodeName: node } });
  await kube.create(PODS, NS, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels: { 'app.kubernetes.io/managed-by': 'spawner' } },
    spec: { nodeName: node },
    status: { phase: 'Running' },
  } as never);
}

describe('Sweeper', () => {
  let kube: FakeKubeClient;
  let sidecar: FakeSidecar;
  let sweeper: Sweeper;
  let registry: ReturnType<typeof createRegistry>;

  beforeEach(async () => {
    kube = new FakeKubeClient();
    sidecar = new FakeSidecar();
    const port = await sidecar.start();
    registry = createRegistry('sweeper', false);
    const ref: { s?: Sweeper } = {};
    const metrics = createSweeperMetrics(
      registry,
      () => ref.s?.watched ?? 0,
      () => ref.s?.connected ?? 0,
    );
    sweeper = new Sweeper(
      kube,
      { nodeName: 'node-a', namespaces: [NS], sidecarAdminPort: port, heartbeatSeconds: 5, unreachableSeconds: 1 },
      metrics,
      silentLogger,
    );
    ref.s = sweeper;
    sweeper.start();
  });
  afterEach(async () => {
    await sweeper.stop();
    await sidecar.stop();
  });

  const phase = (name: string) => phaseOf(kube.peek<SessionLivedBackend>(BACKENDS, NS, name)!);

  it('sweeps an idle backend of its node with reason IdleTimeout, and lets go of its sidecar', async () => {
    sidecar.set({ secondsSinceActive: 0 });
    await readyBackend(kube, 'idle', 1);
    await waitFor(() => phase('idle') === 'Swept', { timeoutMs: 4000, description: 'swept' });
    const b = kube.peek<SessionLivedBackend>(BACKENDS, NS, 'idle')!;
    expect(b.status).toMatchObject({ phase: 'Swept', swept: true, reason: 'IdleTimeout', ready: true });
    await waitFor(() => sweeper.watched === 0 && sidecar.liveStreams === 0, { description: 'stream released' });
    expect(await registry.getSingleMetricAsString('spawner_sweeper_sweeps_total')).toMatch(
      /spawner_sweeper_sweeps_total{reason="IdleTimeout"[^}]*} 1/,
    );
  });

  it('leaves alone a backend with an open WebSocket, and backends of other nodes', async () => {
    sidecar.set({ liveConnections: 1, secondsSinceActive: 100 });
    await readyBackend(kube, 'busy', 1);
    await readyBackend(kube, 'elsewhere', 1, 'node-b');
    await waitFor(() => sweeper.connected === 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(phase('busy')).toBe('Ready');
    expect(phase('elsewhere')).toBe('Ready');
    expect(sweeper.watched).toBe(1);
  });

  it('forgets a backend that is deleted: no connection or timer left', async () => {
    sidecar.set({ liveConnections: 1 });
    await readyBackend(kube, 'gone', 100);
    await waitFor(() => sidecar.liveStreams === 1);
    await kube.delete(BACKENDS, NS, 'gone');
    await waitFor(() => sweeper.watched === 0 && sidecar.liveStreams === 0, { description: 'released' });
  });

  it('ends a backend whose sidecar is unreachable and whose Pod is gone (Unreachable), not one whose Pod runs', async () => {
    sidecar.set({ liveConnections: 1 });
    await readyBackend(kube, 'lost', 100);
    await waitFor(() => sweeper.connected === 1);
    await sidecar.stop();
    await new Promise((r) => setTimeout(r, 1800));
    expect(phase('lost')).toBe('Ready'); // its Pod still says Running
    await kube.delete(PODS, NS, 'lost');
    await waitFor(() => phase('lost') === 'Swept', { timeoutMs: 5000, description: 'Unreachable' });
    expect(kube.peek<SessionLivedBackend>(BACKENDS, NS, 'lost')!.status?.reason).toBe('Unreachable');
  });
});
