import type { V1Lease } from '@kubernetes/client-node';
import { KubeUnavailableError } from '../errors';
import { silentLogger } from '../logger';
import { waitFor } from '../testing/wait-for';
import { FakeKubeClient } from './fake-client';
import { LeaderElector, type LeaderElectionOptions } from './leader-election';
import { LEASES } from './resources';
import type { KubeClient } from './types';

/** One candidate whose start and stop times are recorded; `kube` may be a wrapper. */
function candidate(kube: KubeClient, opts: Partial<LeaderElectionOptions> = {}) {
  const events: Array<{ leading: boolean; at: number }> = [];
  const elector = new LeaderElector(
    kube,
    {
      namespace: 'ns',
      name: 'lease',
      identity: 'a',
      leaseDurationSeconds: 1,
      renewDeadlineMs: 600,
      renewMs: 100,
      retryMs: 50,
      ...opts,
      onStartedLeading: () => events.push({ leading: true, at: Date.now() }),
      onStoppedLeading: () => events.push({ leading: false, at: Date.now() }),
    },
    silentLogger,
  );
  return { elector, events };
}

/** The Lease's last renewal, as the API server has it. */
const renewedAt = (kube: FakeKubeClient): number =>
  new Date(String(kube.peek<V1Lease>(LEASES, 'ns', 'lease')?.spec?.renewTime)).getTime();

describe('LeaderElector', () => {
  it('elects exactly one of two candidates, and hands over when the leader stops', async () => {
    const kube = new FakeKubeClient();
    const leading = new Set<string>();
    const make = (id: string) =>
      new LeaderElector(
        kube,
        {
          namespace: 'ns',
          name: 'lease',
          identity: id,
          leaseDurationSeconds: 1,
          renewMs: 100,
          retryMs: 50,
          onStartedLeading: () => leading.add(id),
          onStoppedLeading: () => leading.delete(id),
        },
        silentLogger,
      );
    const a = make('a');
    const b = make('b');
    a.start();
    b.start();
    await waitFor(() => leading.size === 1, { description: 'one leader' });
    await new Promise((r) => setTimeout(r, 300));
    expect(leading.size).toBe(1);
    const [first] = [...leading];
    const [winner, loser] = first === 'a' ? [a, b] : [b, a];
    await winner.stop();
    await waitFor(() => loser.isLeader, { timeoutMs: 3000, description: 'the other takes over' });
    expect([...leading]).toEqual([first === 'a' ? 'b' : 'a']);
    await loser.stop();
  });

  it('steps down as soon as a renewal finds another holder', async () => {
    const kube = new FakeKubeClient();
    const { elector, events } = candidate(kube, { leaseDurationSeconds: 15, renewDeadlineMs: 10_000 });
    elector.start();
    await waitFor(() => elector.isLeader, { description: 'elected' });
    const now = new Date().toISOString();
    await kube.patch(LEASES, 'ns', 'lease', { spec: { holderIdentity: 'b', renewTime: now, acquireTime: now } }, 'merge');
    const takenAt = Date.now();
    await waitFor(() => !elector.isLeader, { timeoutMs: 1000, description: 'stepped down' });
    expect(events.map((e) => e.leading)).toEqual([true, false]);
    expect(events[1].at - takenAt).toBeLessThanOrEqual(300); // one renewal period (100 ms), and some slack
    await elector.stop();
    expect(kube.peek<V1Lease>(LEASES, 'ns', 'lease')?.spec?.holderIdentity).toBe('b');
  });

  it('steps down by the renew deadline, before the lease expires, when its renewals hang', async () => {
    const kube = new FakeKubeClient();
    let hang = false;
    const hanging = new Proxy(kube, {
      get: (target, prop: keyof FakeKubeClient) =>
        hang && typeof target[prop] === 'function' ? () => new Promise(() => undefined) : target[prop],
    });
    const { elector, events } = candidate(hanging);
    elector.start();
    await waitFor(() => elector.isLeader, { description: 'elected' });
    hang = true;
    await waitFor(() => !elector.isLeader, { timeoutMs: 2000, description: 'stepped down' });
    const sinceRenewal = events[1].at - renewedAt(kube);
    expect(sinceRenewal).toBeGreaterThanOrEqual(590);
    expect(sinceRenewal).toBeLessThan(1000); // the lease: nobody else could have taken over yet
  });

  it('steps down by the renew deadline when its renewals fail', async () => {
    const kube = new FakeKubeClient();
    const { elector, events } = candidate(kube);
    elector.start();
    await waitFor(() => elector.isLeader, { description: 'elected' });
    for (let i = 0; i < 30; i++) kube.failNext('get', new KubeUnavailableError('connection refused'), { plural: 'leases' });
    await waitFor(() => !elector.isLeader, { timeoutMs: 2000, description: 'stepped down' });
    const sinceRenewal = events[1].at - renewedAt(kube);
    expect(sinceRenewal).toBeGreaterThanOrEqual(590);
    expect(sinceRenewal).toBeLessThan(1000);
    await elector.stop();
  });

  it('refuses timings in which the deadline does not come before the lease runs out', () => {
    expect(() => candidate(new FakeKubeClient(), { leaseDurationSeconds: 1, renewDeadlineMs: 1000 })).toThrow(/renewDeadlineMs/);
    expect(() => candidate(new FakeKubeClient(), { renewMs: 600, renewDeadlineMs: 600 })).toThrow(/renewMs/);
  });
});
