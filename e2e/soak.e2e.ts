/**
 * Load held for minutes: 500 WebSocket clients on 50 backends, through the entry point (the API
 * host process) and each backend's sidecar to the echo app, every client sending
 * sequence-numbered messages and checking each echo. Nothing may be lost, reordered or altered,
 * no backend may leave Ready (its grace is short, so a false sweep would show), and the
 * components' memory may not grow beyond a stated bound between the first and the last minute.
 *
 * SPAWNER_SOAK_SECONDS sets the duration (default 180: "several minutes" within CI's budget).
 */
import type { SessionLivedBackend } from '../common/src/backend';
import { phaseOf } from '../common/src/lifecycle';
import { BACKENDS } from '../common/src/kube/resources';
import { TEST_IMAGE } from './support/backends';
import { adminClient, agentInfo, containerPid, describeWithAgent, useNamespace } from './support/cluster';
import { startComponent, stopAll, type Component } from './support/components';
import {
  EchoClient,
  mb,
  MB,
  NamespaceRecorder,
  openWebSocket,
  pool,
  Sampler,
  sleep,
  undoAfterEach,
  writeFigures,
} from './support/faults';

const SOAK_MS = Number(process.env.SPAWNER_SOAK_SECONDS ?? 180) * 1000;
const BACKENDS_N = 50;
const CLIENTS_PER_BACKEND = 10;
/** Each client sends one message a second: 500 messages a second each way. */
const SEND_INTERVAL_MS = 1000;
const GRACE_SECONDS = 10;
const TOKEN = 'e2e-soak-token-0123456789abcdef';
const SIGNING_SECRET = 'e2e-soak-signing-secret-0123456789';
/** Memory bound: last-minute max RSS ≤ first-minute max × 1.2 + 10 MB. */
const RSS_FACTOR = 1.2;
const RSS_SLACK = 10 * MB;

jest.setTimeout(SOAK_MS + 420_000);

const undo = undoAfterEach();

describeWithAgent('soak', () => {
  const ns = useNamespace('soak');
  let operator: Component;
  let sweeper: Component;
  let api: Component;

  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`], { logName: 'soak-operator' });
    sweeper = await startComponent('sweeper', [`--namespaces=${ns.name}`, `--node-name=${agentInfo()!.nodeName}`], {
      logName: 'soak-sweeper',
    });
    api = await startComponent(
      'api',
      [`--namespace=${ns.name}`, '--entry-point-port=0', '--host=127.0.0.1', '--entry-point-host=127.0.0.1'],
      { env: { SPAWNER_API_TOKENS: TOKEN, SPAWNER_API_SIGNING_SECRET: SIGNING_SECRET }, logName: 'soak-api' },
    );
  });
  afterAll(() => stopAll([api, sweeper, operator]));

  test(`soak: 500 WebSocket clients on 50 backends through the entry point for ${SOAK_MS / 1000} s — no message lost or reordered, no false sweep, bounded memory`, async () => {
    const base = `http://127.0.0.1:${api.port}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const recorder = new NamespaceRecorder(ns.name).start();
    undo(() => recorder.stop());
    const clients: EchoClient[] = [];
    undo(() => clients.forEach((c) => c.ws.terminate()));

    // Each backend gets its ten clients (through the entry point: /p/<name>/ with its token) as
    // soon as it is Ready: its grace is short, and a backend left idle while the others start
    // would be swept, rightly, before the load begins.
    const backends = await pool(
      Array.from({ length: BACKENDS_N }, (_, i) => i),
      10,
      async () => {
        const res = await fetch(`${base}/v1/backends`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: GRACE_SECONDS }),
        });
        expect(res.status).toBe(201);
        const created = (await res.json()) as { name: string; url: string };
        const waited = await fetch(`${base}/v1/backends/${created.name}/wait?timeoutSeconds=120`, { headers: auth });
        expect(((await waited.json()) as { phase: string }).phase).toBe('Ready');
        const sockets = await Promise.all(
          Array.from({ length: CLIENTS_PER_BACKEND }, () => openWebSocket(created.url.replace(/^http/, 'ws'))),
        );
        sockets.forEach((ws, i) => clients.push(new EchoClient(`${created.name}#${i}`, ws)));
        return created;
      },
    );
    expect(clients).toHaveLength(BACKENDS_N * CLIENTS_PER_BACKEND);

    // Memory of the components (the API process is the entry point) and of five sidecars.
    const pids: Record<string, number> = { operator: operator.pid, 'api (entry point)': api.pid, sweeper: sweeper.pid };
    for (const b of backends.slice(0, 5)) pids[`sidecar ${b.name}`] = await containerPid(ns.name, b.name, 'spawner-sidecar');
    const sampler = new Sampler(pids, 5_000).start();
    undo(() => sampler.stop());

    // The load: every client sends once per interval, spread evenly over it.
    const startedAt = Date.now();
    const tick = SEND_INTERVAL_MS / clients.length;
    let next = 0;
    const sender = setInterval(
      () => {
        const due = Math.floor((Date.now() - startedAt) / tick);
        while (next < due) clients[next++ % clients.length].send();
      },
      Math.max(10, tick),
    );
    undo(() => clearInterval(sender));
    let maxInFlight = 0;
    while (Date.now() - startedAt < SOAK_MS) {
      await sleep(5_000);
      maxInFlight = Math.max(maxInFlight, ...clients.map((c) => c.lost));
      // No backend may leave Ready while its clients are connected.
      const left = [...recorder.backends.entries()].filter(([, r]) =>
        r.phases.some((p) => p.phase === 'Swept' || p.phase === 'Failed'),
      );
      expect(left.map(([n, r]) => `${n}: ${r.phases.map((p) => p.phase).join('→')} ${r.reason ?? ''}`)).toEqual([]);
      const closed = clients.filter((c) => c.closedEarly).map((c) => c.id);
      expect(closed).toEqual([]);
    }
    clearInterval(sender);
    const endedAt = Date.now();
    sampler.sample();
    sampler.stop();
    // Everything sent comes back: wait for the last echoes.
    const deadline = Date.now() + 30_000;
    while (clients.some((c) => c.lost > 0) && Date.now() < deadline) await sleep(200);

    const sent = clients.reduce((n, c) => n + c.sent, 0);
    const received = clients.reduce((n, c) => n + c.received, 0);
    const totals = {
      lost: clients.reduce((n, c) => n + c.lost, 0),
      reordered: clients.reduce((n, c) => n + c.reordered, 0),
      corrupted: clients.reduce((n, c) => n + c.corrupted, 0),
      closedEarly: clients.filter((c) => c.closedEarly).length,
    };
    // Still Ready at the end, every one.
    const items = (await adminClient().list<SessionLivedBackend>(BACKENDS, ns.name)).items;
    const notReady = items.filter((b) => phaseOf(b) !== 'Ready').map((b) => b.metadata.name);

    const firstMinute: [number, number] = [startedAt, startedAt + 60_000];
    const lastMinute: [number, number] = [endedAt - 60_000, endedAt + 1];
    const memory = Object.keys(pids).map((name) => {
      const first = sampler.max(name, 'rss', ...firstMinute);
      const last = sampler.max(name, 'rss', ...lastMinute);
      return {
        process: name,
        firstMinuteMaxMB: mb(first),
        lastMinuteMaxMB: mb(last),
        boundMB: mb(first * RSS_FACTOR + RSS_SLACK),
        withinBound: last <= first * RSS_FACTOR + RSS_SLACK,
        firstMinuteMaxFds: sampler.max(name, 'fds', ...firstMinute),
        lastMinuteMaxFds: sampler.max(name, 'fds', ...lastMinute),
      };
    });
    writeFigures('soak', {
      seconds: (endedAt - startedAt) / 1000,
      backends: BACKENDS_N,
      clients: clients.length,
      messagesSent: sent,
      messagesEchoed: received,
      messagesPerSecond: Math.round(sent / ((endedAt - startedAt) / 1000)),
      maxInFlightPerClient: maxInFlight,
      ...totals,
      falseSweeps: notReady.length,
      memoryBound: `last-minute max RSS <= first-minute max x ${RSS_FACTOR} + ${RSS_SLACK / MB} MB`,
      memory,
    });
    for (const c of clients) c.close();
    recorder.stop();

    expect(totals).toEqual({ lost: 0, reordered: 0, corrupted: 0, closedEarly: 0 });
    expect(sent).toBeGreaterThan(clients.length * (SOAK_MS / SEND_INTERVAL_MS) * 0.8);
    expect(notReady).toEqual([]);
    expect(memory.filter((m) => !m.withinBound)).toEqual([]);
  });
});
