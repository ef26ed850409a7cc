import { newBackend, type Phase, type SessionLivedBackend } from './backend';
import { FakeKubeClient } from './kube/fake-client';
import { BACKENDS } from './kube/resources';
import {
  canTransition,
  phaseHistory,
  phaseOf,
  PHASES,
  planTransition,
  writeTransition,
  type Transition,
  type Writer,
} from './lifecycle';

const backend = (status?: any): SessionLivedBackend => ({
  ...newBackend(
    'b',
    'ns',
    { template: { containers: [{ name: 'app', image: 'x' }] } },
    { generation: 3, creationTimestamp: '2026-01-01T00:00:00Z' as any },
  ),
  status,
});
const at = new Date('2026-01-01T00:00:10Z');
const plan = (b: SessionLivedBackend, t: Transition, writer: Writer = 'operator', now = at) => planTransition(b, t, writer, now);
const status = (b: SessionLivedBackend, t: Transition, writer: Writer = 'operator', now = at) => {
  const v = plan(b, t, writer, now);
  if (!v.ok) throw new Error(v.refused);
  return v.status;
};
const cond = (s: any, type: string) => s.conditions.find((c: any) => c.type === type);

describe('lifecycle: phase order', () => {
  it('reads the phase from `phase`, or from the original flags when there is none', () => {
    expect(phaseOf(backend())).toBe('Submitted');
    expect(phaseOf(backend({ constructed: true, scheduled: true }))).toBe('Scheduled');
    expect(phaseOf(backend({ constructed: true, ready: true, swept: true }))).toBe('Swept');
    expect(phaseOf(backend({ failed: true, ready: true }))).toBe('Failed');
    expect(phaseOf(backend({ phase: 'Running', ready: true }))).toBe('Running');
  });

  it('only moves forward, and never leaves a terminal phase', () => {
    const order: Phase[] = ['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready'];
    for (const [i, from] of order.entries()) {
      for (const [j, to] of order.entries()) expect(canTransition(from, to)).toBe(j > i);
      expect(canTransition(from, 'Swept')).toBe(true);
      expect(canTransition(from, 'Failed')).toBe(true);
    }
    for (const from of ['Swept', 'Failed'] as Phase[]) for (const to of PHASES) expect(canTransition(from, to)).toBe(false);
  });

  it('refuses a backward move, a second ending, an ending without a reason and a live phase with one', () => {
    expect(plan(backend({ phase: 'Ready' }), { phase: 'Running' }).ok).toBe(false);
    expect(plan(backend({ phase: 'Swept', reason: 'IdleTimeout' }), { phase: 'Failed', reason: 'OOMKilled' }).ok).toBe(false);
    expect(plan(backend({ phase: 'Ready' }), { phase: 'Swept' }).ok).toBe(false);
    expect(plan(backend({ phase: 'Running' }), { phase: 'Ready', reason: 'Because' }).ok).toBe(false);
  });
});

describe('lifecycle: status', () => {
  it('sets the original flags for every phase passed, the transitions list and observedGeneration', () => {
    const s = status(backend({ phase: 'Constructed', constructed: true }), { phase: 'Ready', fields: { podIP: '10.0.0.2' } });
    expect(s).toMatchObject({
      phase: 'Ready',
      constructed: true,
      scheduled: true,
      running: true,
      ready: true,
      podIP: '10.0.0.2',
      observedGeneration: 3,
    });
    expect(s.transitions!.map((x) => x.phase)).toEqual(['Scheduled', 'Running', 'Ready']);
    expect(s.transitions!.every((x) => x.time === at.toISOString())).toBe(true);
  });

  it('conditions state the current state: Ready True only while Ready, Terminated with the reason', () => {
    const ready = backend(status(backend({ phase: 'Running', running: true }), { phase: 'Ready' }));
    expect(cond(ready.status, 'Ready')).toMatchObject({ status: 'True', lastTransitionTime: '2026-01-01T00:00:10Z' });
    expect(cond(ready.status, 'Terminated')).toMatchObject({ status: 'False' });
    const later = new Date('2026-01-01T00:01:00Z');
    const failed = status(ready, { phase: 'Failed', reason: 'OOMKilled', message: 'out of memory' }, 'operator', later);
    expect(cond(failed, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'OOMKilled',
      lastTransitionTime: '2026-01-01T00:01:00Z',
    });
    expect(cond(failed, 'Terminated')).toMatchObject({ status: 'True', reason: 'OOMKilled', message: 'out of memory' });
    // History stays in the flags and the transitions list.
    expect(failed).toMatchObject({ ready: true, failed: true, reason: 'OOMKilled' });
    expect(failed.conditions).toHaveLength(2);
  });

  it('keeps lastTransitionTime of a condition whose status did not change', () => {
    const constructed = backend(status(backend(), { phase: 'Constructed' }));
    const running = status(constructed, { phase: 'Running' }, 'operator', new Date('2026-01-01T00:00:20Z'));
    expect(cond(running, 'Ready').lastTransitionTime).toBe('2026-01-01T00:00:10Z');
    expect(cond(running, 'Ready').reason).toBe('Running');
  });

  it('records a terminal reason without claiming the phases it skipped', () => {
    const s = status(backend({ phase: 'Constructed', constructed: true }), {
      phase: 'Failed',
      reason: 'ImagePullError',
      message: 'nope',
    });
    expect(s).toMatchObject({ phase: 'Failed', failed: true, reason: 'ImagePullError', message: 'nope' });
    expect(s.ready).toBeUndefined();
    expect(s.transitions).toEqual([{ phase: 'Failed', time: at.toISOString(), reason: 'ImagePullError', message: 'nope' }]);
  });

  it('replays the history in phase order with the time each was reached', () => {
    let b = backend();
    b = { ...b, status: status(b, { phase: 'Constructed' }, 'operator', new Date('2026-01-01T00:00:01Z')) };
    b = { ...b, status: status(b, { phase: 'Ready' }, 'operator', new Date('2026-01-01T00:00:05Z')) };
    b = { ...b, status: status(b, { phase: 'Swept', reason: 'IdleTimeout' }, 'sweeper', new Date('2026-01-01T00:05:05Z')) };
    expect(phaseHistory(b)).toEqual([
      { phase: 'Submitted', time: '2026-01-01T00:00:00.000Z' },
      { phase: 'Constructed', time: '2026-01-01T00:00:01.000Z' },
      { phase: 'Scheduled', time: '2026-01-01T00:00:05.000Z' },
      { phase: 'Running', time: '2026-01-01T00:00:05.000Z' },
      { phase: 'Ready', time: '2026-01-01T00:00:05.000Z' },
      { phase: 'Swept', time: '2026-01-01T00:05:05.000Z' },
    ]);
  });

  it('reads the history of a status written before the transitions list (one condition per phase)', () => {
    const old = backend({
      phase: 'Ready',
      conditions: [
        { type: 'Constructed', status: 'True', lastTransitionTime: '2026-01-01T00:00:01Z' },
        { type: 'Ready', status: 'True', lastTransitionTime: '2026-01-01T00:00:03Z' },
      ],
    });
    expect(phaseHistory(old).map((x) => x.phase)).toEqual(['Submitted', 'Constructed', 'Ready']);
  });
});

describe('lifecycle: roles', () => {
  const ready = backend({ phase: 'Ready', ready: true });
  const running = backend({ phase: 'Running', running: true });
  it('the sweeper ends a Ready backend as idle, a Running or Ready one as unreachable, and nothing else', () => {
    expect(plan(ready, { phase: 'Swept', reason: 'IdleTimeout' }, 'sweeper').ok).toBe(true);
    expect(plan(running, { phase: 'Swept', reason: 'IdleTimeout' }, 'sweeper').ok).toBe(false);
    expect(plan(running, { phase: 'Swept', reason: 'Unreachable' }, 'sweeper').ok).toBe(true);
    expect(plan(ready, { phase: 'Failed', reason: 'OOMKilled' }, 'sweeper').ok).toBe(false);
    expect(plan(ready, { phase: 'Swept', reason: 'DeletedByClient' }, 'sweeper').ok).toBe(false);
    expect(plan(running, { phase: 'Ready' }, 'sweeper').ok).toBe(false);
    expect(plan(running, { phase: 'Running', fields: { podIP: '1.2.3.4' } }, 'sweeper').ok).toBe(false);
  });

  it('the API ends a live backend for its client, and nothing else', () => {
    expect(plan(running, { phase: 'Swept', reason: 'DeletedByClient' }, 'api').ok).toBe(true);
    expect(plan(backend(), { phase: 'Swept', reason: 'DeletedByClient' }, 'api').ok).toBe(true);
    expect(plan(ready, { phase: 'Swept', reason: 'IdleTimeout' }, 'api').ok).toBe(false);
    expect(plan(running, { phase: 'Ready' }, 'api').ok).toBe(false);
  });

  it('nobody fails a backend for a startup reason once it was Ready', () => {
    const blipped = backend({ phase: 'Ready', ready: true, running: true });
    for (const reason of ['StartupTimeout', 'ImagePullError', 'Unschedulable']) {
      expect(plan(blipped, { phase: 'Failed', reason }).ok).toBe(false);
    }
    expect(plan(blipped, { phase: 'Failed', reason: 'ContainerExited' }).ok).toBe(true);
    expect(plan(running, { phase: 'Failed', reason: 'StartupTimeout' }).ok).toBe(true);
  });
});

describe('lifecycle: the status write', () => {
  const NS = 'ns';
  async function created(kube: FakeKubeClient): Promise<SessionLivedBackend> {
    return kube.create(BACKENDS, NS, backend());
  }

  it('writes with a resourceVersion precondition and re-judges from a fresh read on a conflict', async () => {
    const kube = new FakeKubeClient();
    const b = await created(kube);
    // Another writer ends it first; our stale read still says Submitted.
    const first = await writeTransition(kube, 'api', b, { phase: 'Swept', reason: 'DeletedByClient' });
    expect(first.kind).toBe('written');
    const second = await writeTransition(kube, 'operator', b, { phase: 'Failed', reason: 'ContainerExited' });
    expect(second.kind).toBe('refused');
    const stored = kube.peek<SessionLivedBackend>(BACKENDS, NS, 'b')!;
    expect(stored.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient' });
    expect(stored.status?.failed).toBeUndefined();
  });

  it('retries a conflict that is not a phase race, and says when the backend is gone', async () => {
    const kube = new FakeKubeClient();
    const b = await created(kube);
    await kube.patch(BACKENDS, NS, 'b', { metadata: { labels: { x: 'y' } } }, 'merge');
    const out = await writeTransition(kube, 'operator', b, { phase: 'Constructed' });
    expect(out.kind).toBe('written');
    await kube.delete(BACKENDS, NS, 'b');
    expect((await writeTransition(kube, 'operator', b, { phase: 'Scheduled' })).kind).toBe('gone');
  });
});
