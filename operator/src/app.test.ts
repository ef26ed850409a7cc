/**
 * The operator's composition (app.ts, as main.ts runs it) over the in-memory API: leader election,
 * and what a replica does once it has lost the Lease.
 *
 * The replica reaches the API through a connection that its `exit` cuts, as the death of its
 * process would: whatever the replica still had queued or scheduled can no longer reach the API
 * server. So the test proves what it needs to: `exit` is called within the bound, and until then
 * the API server sees writes only from before it.
 */
import { KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { SessionLivedBackend, SessionLivedBackendSpec } from '../../common/src/backend';
import { KubeUnavailableError } from '../../common/src/errors';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { BACKENDS, LEASES, PODS } from '../../common/src/kube/resources';
import type { KubeClient, KubeObject, WatchHandle } from '../../common/src/kube/types';
import { memoryLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { waitFor } from '../../common/src/testing/wait-for';
import { EXIT_LEASE_LOST, startOperatorApp, type OperatorApp } from './app';
import type { OperatorConfig } from './config';
import { backendFixture, testConfig } from './test-fixtures';

const NS = 'ns';
const WRITES = new Set(['create', 'patch', 'delete']);

/**
 * One process's connection to the API server. `cut()` is what process death does to it: open
 * watches end, and no call made afterwards reaches the server (it never answers, as nothing is
 * left to receive the answer). `release()` lets the calls fail instead, so the test can clean up.
 */
function connection(server: KubeClient) {
  const writes: Array<{ verb: string; plural: string; name?: string; at: number }> = [];
  const watches = new Set<WatchHandle>();
  const hung: Array<() => void> = [];
  let state: 'alive' | 'cut' | 'released' = 'alive';
  let blockedWrites = 0;
  const dead = () =>
    state === 'released'
      ? Promise.reject(new Error('process exited'))
      : new Promise<never>((_, reject) => hung.push(() => reject(new Error('process exited'))));
  const client = new Proxy(server, {
    get(target, prop: string) {
      const real = (target as unknown as Record<string, unknown>)[prop];
      if (typeof real !== 'function') return real;
      return (...args: unknown[]) => {
        const [type, , third] = args as [{ plural: string }, unknown, unknown];
        const name = prop === 'create' ? (third as KubeObject).metadata?.name : (third as string | undefined);
        if (state !== 'alive') {
          if (WRITES.has(prop)) blockedWrites++;
          if (prop === 'watch') return { done: dead(), abort: () => undefined };
          return dead();
        }
        if (WRITES.has(prop)) writes.push({ verb: prop, plural: type.plural, name, at: Date.now() });
        const result = (real as (...a: unknown[]) => unknown).apply(target, args);
        if (prop === 'watch') watches.add(result as WatchHandle);
        return result;
      };
    },
  }) as KubeClient;
  return {
    client,
    writes,
    blockedWrites: () => blockedWrites,
    cut(): void {
      state = 'cut';
      for (const w of watches) w.abort();
    },
    release(): void {
      state = 'released';
      for (const reject of hung.splice(0)) reject();
    },
  };
}

/** The fixture backend, as a client would submit it under `name`. */
const manifest = (name: string, spec: Partial<SessionLivedBackendSpec> = {}): SessionLivedBackend => ({
  ...backendFixture(spec),
  metadata: { name, namespace: NS },
});

const phase = (kube: FakeKubeClient, name: string) => {
  const b = kube.peek<SessionLivedBackend>(BACKENDS, NS, name);
  return b ? (b.status?.phase ?? 'Submitted') : 'gone';
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

describe('operator composition', () => {
  let app: OperatorApp | undefined;
  let conn: ReturnType<typeof connection> | undefined;
  afterEach(async () => {
    conn?.release();
    await app?.stop();
    app = undefined;
    conn = undefined;
  });

  it('lifecycle: lost lease stops the operator: exit within 2 s, and no write of its own from 2 s after the lease was taken', async () => {
    const kube = new FakeKubeClient();
    conn = connection(kube);
    const c = conn;
    const exits: Array<{ code: number; at: number }> = [];
    const logger = memoryLogger('operator');
    const config: OperatorConfig = {
      ...testConfig,
      leaderElection: true,
      identity: 'replica-a',
      leaseNamespace: NS,
      failedRetentionSeconds: 4,
    };
    // The production lease timings: nothing passed for them.
    app = await startOperatorApp({
      config,
      kubeConfig: new KubeConfig(),
      kube: () => c.client,
      logger,
      registry: createRegistry('operator', false),
      exit: (code) => {
        exits.push({ code, at: Date.now() });
        c.cut();
      },
    });
    const { operator, elector } = app;
    await waitFor(() => elector?.isLeader, { description: 'elected' });

    // Work that would write later: a lifetime to enforce, a Failed backend's retention, and a
    // backend whose Pod create keeps failing (backoff).
    await kube.create(BACKENDS, NS, manifest('lifetime', { maxLifetimeSeconds: 4 }));
    await kube.create(BACKENDS, NS, manifest('failed'));
    await waitFor(() => phase(kube, 'lifetime') === 'Constructed' && phase(kube, 'failed') === 'Constructed', {
      description: 'Constructed',
    });
    await kube.setStatus(PODS, NS, 'failed', {
      phase: 'Failed',
      containerStatuses: [
        { name: 'app', image: 'x', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 2 } } },
      ],
    });
    await waitFor(() => phase(kube, 'failed') === 'Failed' && !kube.peek(PODS, NS, 'failed'), {
      description: 'Failed, Pod stopped',
    });
    for (let i = 0; i < 20; i++) kube.failNext('create', new KubeUnavailableError('connection reset'), { plural: 'pods' });
    await kube.create(BACKENDS, NS, manifest('backoff'));
    await waitFor(() => operator.queue.scheduled >= 3, { description: 'lifetime, retention and backoff timers' });

    // The worst case: the Lease is taken just after the replica renewed it.
    const renewTime = () => String(kube.peek<V1Lease>(LEASES, NS, config.leaseName)?.spec?.renewTime);
    const before = renewTime();
    await waitFor(() => renewTime() !== before, { intervalMs: 1, description: 'a renewal' });
    const lease = kube.peek<V1Lease>(LEASES, NS, config.leaseName)!;
    const now = new Date().toISOString();
    await kube.patch(
      LEASES,
      NS,
      config.leaseName,
      {
        metadata: { resourceVersion: lease.metadata?.resourceVersion },
        spec: { holderIdentity: 'replica-b', acquireTime: now, renewTime: now, leaseTransitions: 1 },
      },
      'merge',
    );
    const takenAt = Date.now();

    await waitFor(() => exits.length > 0, { timeoutMs: 3000, intervalMs: 1, description: 'exit' });
    const exitMs = exits[0].at - takenAt;
    expect(exits).toEqual([{ code: EXIT_LEASE_LOST, at: exits[0].at }]);
    expect(exitMs).toBeLessThan(2000);
    expect(logger.lines).toContainEqual(
      expect.objectContaining({ level: 'error', msg: expect.stringContaining('lost the leader lease') }),
    );

    // From 2 s after the lease was taken, nothing more from this replica reaches the API server,
    // through the moments its timers were set for (lifetime and retention at ~4 s, backoff).
    await sleep(takenAt + 2000 - Date.now());
    const serverWrites = kube.writes().length;
    await sleep(3500);
    expect(c.writes.filter((w) => w.at >= takenAt + 2000)).toEqual([]);
    expect(kube.writes()).toHaveLength(serverWrites);
    // The timers did fire meanwhile, and what they tried went nowhere: a process that had merely
    // stopped taking events would have written it.
    expect(c.blockedWrites()).toBeGreaterThan(0);
    expect(phase(kube, 'lifetime')).toBe('Constructed');
    expect(phase(kube, 'failed')).toBe('Failed');
  }, 20_000);
});
