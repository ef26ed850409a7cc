/**
 * Idle detection end to end: the operator injects the sidecar, the node agent runs it beside the
 * app in the Pod's network namespace, the sweeper (a host process serving the agent's node)
 * follows it by Pod IP and sweeps. Times are checked against the sidecar's own clock of activity,
 * with a tolerance of a few seconds (the machine is shared).
 */
import WebSocket from 'ws';
import { type SessionLivedBackend } from '../common/src/backend';
import { phaseOf } from '../common/src/lifecycle';
import { BACKENDS } from '../common/src/kube/resources';
import { backendManifest, idleDeadline, phaseIs, waitBackend } from './support/backends';
import { adminClient, agentInfo, describeWithAgent, httpGet, useNamespace, waitFor } from './support/cluster';
import { startComponent, type Component } from './support/components';

jest.setTimeout(180_000);

/** Seconds of slack between the deadline and the observed sweep + delete. */
const SLACK_S = 4;

interface Timeline {
  sweptAt?: number;
  deletedAt?: number;
  reason?: string;
}

/** Records when the backend turned Swept and when it disappeared. */
function follow(namespace: string, name: string): { timeline: Timeline; stop(): void } {
  const timeline: Timeline = {};
  const handle = adminClient().watch<SessionLivedBackend>(
    BACKENDS,
    namespace,
    { resourceVersion: '0', fieldSelector: `metadata.name=${name}` },
    (e) => {
      if (e.type === 'DELETED') timeline.deletedAt ??= Date.now();
      else if (phaseOf(e.object) === 'Swept' && !timeline.sweptAt) {
        timeline.sweptAt = Date.now();
        timeline.reason = e.object.status?.reason;
      }
    },
  );
  handle.done.catch(() => undefined);
  return { timeline, stop: () => handle.abort() };
}

const openSocket = (url: string): Promise<WebSocket> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });

describeWithAgent('sweep', () => {
  const ns = useNamespace('sweep');
  let operator: Component;
  let sweeper: Component;
  const node = () => agentInfo()!.nodeName;
  const startSweeper = () =>
    startComponent('sweeper', [
      `--namespaces=${ns.name}`,
      `--node-name=${node()}`,
      '--heartbeat-seconds=5',
      '--unreachable-seconds=10',
    ]);

  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`]);
    sweeper = await startSweeper();
  });
  afterAll(async () => {
    await sweeper?.stop();
    await operator?.stop();
  });

  async function readyBackend(name: string, grace: number, env: Record<string, string> = {}): Promise<SessionLivedBackend> {
    await adminClient().create(BACKENDS, ns.name, backendManifest(name, ns.name, { env, spec: { gracePeriodSeconds: grace } }));
    return waitBackend(ns.name, name, 'Ready', phaseIs('Ready'));
  }

  test('sweep: idle backend is swept after its grace period', async () => {
    const grace = 6;
    const f = follow(ns.name, 'idle-1');
    const b = await readyBackend('idle-1', grace);
    const deadline = await idleDeadline(b, grace);
    await waitFor(() => f.timeline.deletedAt, { description: 'idle-1 swept and deleted', timeoutMs: (grace + 30) * 1000 });
    f.stop();
    expect(f.timeline.reason).toBe('IdleTimeout');
    expect((f.timeline.sweptAt! - deadline) / 1000).toBeGreaterThanOrEqual(-0.5);
    expect((f.timeline.deletedAt! - deadline) / 1000).toBeLessThanOrEqual(SLACK_S);
  });

  test('sweep: open websocket keeps backend alive', async () => {
    const grace = 3;
    const f = follow(ns.name, 'ws-1');
    const b = await readyBackend('ws-1', grace);
    const ws = await openSocket(`ws://${b.status!.podIP}:9090/echo`);
    await new Promise((r) => setTimeout(r, grace * 3 * 1000));
    const during = await adminClient().get<SessionLivedBackend>(BACKENDS, ns.name, 'ws-1');
    expect(phaseOf(during!)).toBe('Ready');
    ws.close();
    const closedAt = Date.now();
    await waitFor(() => f.timeline.deletedAt, {
      description: 'ws-1 swept after the socket closed',
      timeoutMs: (grace + 30) * 1000,
    });
    f.stop();
    expect(f.timeline.reason).toBe('IdleTimeout');
    expect((f.timeline.sweptAt! - closedAt) / 1000).toBeGreaterThanOrEqual(grace - 0.5);
    expect((f.timeline.deletedAt! - closedAt) / 1000).toBeLessThanOrEqual(grace + SLACK_S);
  });

  test('sweep: http activity resets the countdown', async () => {
    const grace = 4;
    const f = follow(ns.name, 'http-1');
    const b = await readyBackend('http-1', grace);
    const until = Date.now() + grace * 3 * 1000;
    while (Date.now() < until) {
      expect((await httpGet(`http://${b.status!.podIP}:9090/`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, (grace * 1000) / 2));
    }
    expect(f.timeline.sweptAt).toBeUndefined();
    const lastRequest = Date.now();
    await waitFor(() => f.timeline.deletedAt, {
      description: 'http-1 swept after requests stopped',
      timeoutMs: (grace + 30) * 1000,
    });
    f.stop();
    expect((f.timeline.sweptAt! - lastRequest) / 1000).toBeGreaterThanOrEqual(grace - 0.5 - (grace / 2 + 1));
    expect((f.timeline.deletedAt! - lastRequest) / 1000).toBeLessThanOrEqual(grace + SLACK_S);
  });

  test('sweep: sweeper restart keeps the deadline', async () => {
    const grace = 12;
    const f = follow(ns.name, 'restart-1');
    const b = await readyBackend('restart-1', grace);
    const deadline = await idleDeadline(b, grace);
    // Kill it in the middle of the countdown; bring up a fresh one a little later.
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now() - (grace * 1000) / 2)));
    await sweeper.kill();
    await new Promise((r) => setTimeout(r, 2000));
    sweeper = await startSweeper();
    const restartedAt = Date.now();
    await waitFor(() => f.timeline.sweptAt, { description: 'restart-1 swept', timeoutMs: (grace + 30) * 1000 });
    f.stop();
    expect(f.timeline.reason).toBe('IdleTimeout');
    // At the original deadline, not a full grace after the new sweeper started.
    expect(Math.abs(f.timeline.sweptAt! - deadline) / 1000).toBeLessThanOrEqual(SLACK_S);
    expect(f.timeline.sweptAt! - restartedAt).toBeLessThan(grace * 1000 - 2000);
  });
});

describeWithAgent('sidecar', () => {
  const ns = useNamespace('sidecar');
  let operator: Component;
  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`]);
  });
  afterAll(() => operator?.stop());

  test('sidecar: requests before the app listens are held, not failed', async () => {
    // The app starts listening 4 s after it starts; the sidecar is up (Running) long before.
    await adminClient().create(
      BACKENDS,
      ns.name,
      backendManifest('slow-1', ns.name, { env: { LISTEN_DELAY_MS: '4000' }, spec: { gracePeriodSeconds: 60 } }),
    );
    const running = await waitBackend(
      ns.name,
      'slow-1',
      'Running with a Pod IP',
      (b) => phaseIs('Running', 'Ready')(b) && !!b.status?.podIP,
    );
    // The sidecar answers on its admin port once its process listens (Running comes before that).
    const state = await waitFor(
      async () => JSON.parse((await httpGet(`http://${running.status!.podIP}:9091/state`, 2000)).body) as { ready: boolean },
      { description: 'the sidecar admin port to answer', timeoutMs: 30_000, intervalMs: 50 },
    );
    const sentWhileNotReady = !state.ready;
    const res = await httpGet(`http://${running.status!.podIP}:9090/echo?first=1`, 30_000);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ path: '/echo', query: { first: '1' } });
    // The point of the test is a request that arrived before the app listened.
    expect(sentWhileNotReady).toBe(true);
  });

  test('sidecar: metrics count websockets', async () => {
    await adminClient().create(BACKENDS, ns.name, backendManifest('metrics-1', ns.name, { spec: { gracePeriodSeconds: 60 } }));
    const b = await waitBackend(ns.name, 'metrics-1', 'Ready', phaseIs('Ready'));
    const ip = b.status!.podIP!;
    const gauge = async (): Promise<number> => {
      const text = (await httpGet(`http://${ip}:9091/metrics`)).body;
      const m = /^spawner_sidecar_live_websockets(?:\{[^}]*\})? (\d+)/m.exec(text);
      return m ? Number(m[1]) : NaN;
    };
    expect(await gauge()).toBe(0);
    const a = await openSocket(`ws://${ip}:9090/a`);
    const c = await openSocket(`ws://${ip}:9090/b`);
    await waitFor(async () => (await gauge()) === 2, { description: 'gauge at 2' });
    a.close();
    await waitFor(async () => (await gauge()) === 1, { description: 'gauge at 1' });
    c.terminate(); // an abrupt end is uncounted too
    await waitFor(async () => (await gauge()) === 0, { description: 'gauge at 0' });
  });
});
