import { waitFor } from '../../common/src/testing/wait-for';
import { FakeSidecar } from './fake-sidecar';
import { Tracker } from './tracker';

describe('Tracker', () => {
  let sidecar: FakeSidecar;
  let url: string;
  beforeEach(async () => {
    sidecar = new FakeSidecar();
    url = `http://127.0.0.1:${await sidecar.start()}/events`;
  });
  afterEach(() => sidecar.stop());

  const track = (grace: number, extra: Partial<ConstructorParameters<typeof Tracker>[0]> = {}) => {
    const idle: number[] = [];
    const t = new Tracker({
      url,
      gracePeriodSeconds: grace,
      // Ready long ago: the countdown runs from the sidecar's reports.
      idleCountdownFromMs: 0,
      heartbeatSeconds: 5,
      unreachableAfterMs: 60_000,
      onIdle: (d) => idle.push(d),
      onUnreachable: () => false,
      ...extra,
    });
    t.start();
    return { t, idle };
  };

  it('fires at the deadline the sidecar implies: a restarted sweeper keeps the original deadline', async () => {
    // The sidecar has been idle 0.7 s of a 1 s grace when this (new) tracker connects.
    sidecar.set({ secondsSinceActive: 0.7 });
    const { t, idle } = track(1);
    await waitFor(() => idle.length === 1, { timeoutMs: 3000 });
    // 0.3 s after the report arrived, not a full grace after connecting.
    expect(idle[0]).toBe(t.lastReport!.receivedAtMs + 300);
    expect(idle[0]).toBeLessThanOrEqual(Date.now());
    t.close();
  });

  it('does not fire while a WebSocket is open, and counts the grace from its close', async () => {
    sidecar.set({ liveConnections: 1, secondsSinceActive: 100 });
    const { t, idle } = track(0.3);
    await new Promise((r) => setTimeout(r, 600));
    expect(idle).toEqual([]);
    sidecar.set({ liveConnections: 0, secondsSinceActive: 0 });
    await waitFor(() => idle.length === 1, { timeoutMs: 3000 });
    t.close();
  });

  it('never fires before the backend was first Ready, and counts the grace from that moment', async () => {
    sidecar.set({ secondsSinceActive: 100 });
    const { t, idle } = track(0.3, { idleCountdownFromMs: undefined });
    await new Promise((r) => setTimeout(r, 600));
    expect(idle).toEqual([]);
    const readyAt = Date.now();
    t.setIdleCountdownFrom(readyAt);
    await waitFor(() => idle.length === 1, { timeoutMs: 3000 });
    expect(idle[0]).toBe(readyAt + 300);
    t.close();
  });

  it('reconnects after the stream drops, and reports a sidecar that stays unreachable', async () => {
    const unreachable: number[] = [];
    sidecar.set({ liveConnections: 1 });
    const { t } = track(100, {
      unreachableAfterMs: 200,
      unreachableRecheckMs: 100,
      onUnreachable: (s) => (unreachable.push(s), true),
    });
    await waitFor(() => t.connected, { description: 'the tracker connected' });
    await sidecar.stop();
    await waitFor(() => unreachable.length === 1, { timeoutMs: 5000, description: 'unreachable reported' });
    t.close();
    // Above its two 5 s waits (jest's default was the same 5 s): a slow machine gets the wait that
    // failed, not a bare jest timeout (CI rehearsal of 8737f98; 1 in 6 runs of the file, 6 at once).
  }, 15_000);

  it('closing leaves no connection behind', async () => {
    const { t } = track(100);
    await waitFor(() => sidecar.liveStreams === 1);
    t.close();
    await waitFor(() => sidecar.liveStreams === 0, { description: 'stream closed' });
  });
});
