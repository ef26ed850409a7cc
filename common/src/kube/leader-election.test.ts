import { silentLogger } from '../logger';
import { waitFor } from '../testing/wait-for';
import { FakeKubeClient } from './fake-client';
import { LeaderElector } from './leader-election';

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
});
