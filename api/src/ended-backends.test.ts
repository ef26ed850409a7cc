import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import { planTransition, type Transition } from '../../common/src/lifecycle';
import { DELETED_WHILE_LIVE_MESSAGE, EndedBackends } from './ended-backends';
import { phaseEvents } from './use-cases/follow-backend';

const T0 = Date.parse('2026-03-01T12:00:00Z');

function backend(name: string, uid: string, phase?: 'Ready' | 'Failed', reason?: string): SessionLivedBackend {
  const b = newBackend(
    name,
    'spawner',
    { template: { containers: [{ name: 'app', image: 'x' }] } },
    {
      uid,
      creationTimestamp: new Date(T0 - 60_000).toISOString() as unknown as Date,
      annotations: { 'spawner.dev/token-sha256': 'abc' },
      managedFields: [{ manager: 'spawner', operation: 'Update' }],
    },
  );
  if (phase) {
    const t: Transition = { phase, reason, fields: { podIP: '10.0.0.1' } };
    const verdict = planTransition(b, t, 'operator', new Date(T0 - 30_000));
    if (!verdict.ok) throw new Error(verdict.refused);
    b.status = verdict.status;
  }
  return b;
}

describe('EndedBackends', () => {
  let now: number;
  let ended: EndedBackends;
  beforeEach(() => {
    now = T0;
    ended = new EndedBackends({ retentionMs: 60_000, maxEntries: 3, now: () => now });
  });

  it('keeps a terminal last state as it was, without what the API never reads', () => {
    ended.record(backend('a', 'u1', 'Failed', 'ImagePullError'));
    const got = ended.get('a');
    expect(got?.status).toMatchObject({ phase: 'Failed', reason: 'ImagePullError', podIP: '10.0.0.1' });
    expect(got?.metadata).toMatchObject({ name: 'a', uid: 'u1', annotations: { 'spawner.dev/token-sha256': 'abc' } });
    expect(got?.metadata.managedFields).toBeUndefined();
    expect(got?.spec.template.containers[0].image).toBe('x');
    expect(ended.get('b')).toBeUndefined();
  });

  it('records a backend deleted while live as Swept, DeletedByClient, ended when it was recorded', () => {
    ended.record(backend('a', 'u1', 'Ready'));
    const got = ended.get('a')!;
    expect(got.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient', message: DELETED_WHILE_LIVE_MESSAGE });
    const events = phaseEvents(got);
    expect(events.map((e) => e.phase)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept']);
    expect(events.pop()).toMatchObject({ time: new Date(T0).toISOString(), reason: 'DeletedByClient' });
  });

  it('forgets an entry once the retention has passed (injected clock)', () => {
    ended.record(backend('a', 'u1', 'Failed', 'OOMKilled'));
    now = T0 + 59_999;
    expect(ended.get('a')?.status?.reason).toBe('OOMKilled');
    now = T0 + 60_000;
    expect(ended.get('a')).toBeUndefined();
    expect(ended.size).toBe(0);
  });

  it('expired entries are dropped when the next one is recorded, even if never read', () => {
    ended.record(backend('a', 'u1', 'Failed', 'OOMKilled'));
    now = T0 + 30_000;
    ended.record(backend('b', 'u2', 'Failed', 'OOMKilled'));
    now = T0 + 61_000;
    ended.record(backend('c', 'u3', 'Failed', 'OOMKilled'));
    expect(ended.size).toBe(2);
    expect(ended.get('b')).toBeDefined();
  });

  it('holds at most maxEntries, forgetting the oldest ending first (reads do not refresh)', () => {
    for (const [i, name] of ['a', 'b', 'c'].entries()) {
      now = T0 + i;
      ended.record(backend(name, `u-${name}`, 'Ready'));
    }
    expect(ended.get('a')).toBeDefined();
    now = T0 + 10;
    ended.record(backend('d', 'u-d', 'Ready'));
    expect(ended.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((n) => ended.get(n) !== undefined)).toEqual([false, true, true, true]);
  });

  it('the same incarnation heard twice keeps its ending and its expiry', () => {
    const failed = backend('a', 'u1', 'Failed', 'ContainerExited');
    ended.record(failed);
    now = T0 + 50_000;
    // A stale, still-live copy of it (a late watch event) does not replace the recorded ending.
    ended.record(backend('a', 'u1', 'Ready'));
    expect(ended.get('a')?.status).toMatchObject({ phase: 'Failed', reason: 'ContainerExited' });
    ended.record(failed);
    now = T0 + 60_000;
    expect(ended.get('a')).toBeUndefined();
  });

  it('a new backend under the name replaces the record; a later deletion records the new one', () => {
    ended.record(backend('a', 'u1', 'Failed', 'OOMKilled'));
    ended.revived(backend('a', 'u1'));
    expect(ended.get('a')).toBeDefined();
    ended.revived(backend('a', 'u2'));
    expect(ended.get('a')).toBeUndefined();
    ended.record(backend('a', 'u2', 'Ready'));
    expect(ended.get('a')?.metadata.uid).toBe('u2');
    // Recording another incarnation starts its own retention.
    now = T0 + 30_000;
    ended.record(backend('a', 'u3', 'Failed', 'Unschedulable'));
    now = T0 + 89_999;
    expect(ended.get('a')?.status?.reason).toBe('Unschedulable');
  });

  it('a retention of 0 remembers nothing', () => {
    const off = new EndedBackends({ retentionMs: 0 });
    off.record(backend('a', 'u1', 'Failed', 'OOMKilled'));
    expect(off.get('a')).toBeUndefined();
    expect(off.size).toBe(0);
  });
});
