import { canTransition, newBackend, phaseHistory, phaseOf, PHASES, transitionStatus, type Phase } from './backend';

const backend = (status?: any) => ({
  ...newBackend(
    'b',
    'ns',
    { template: { containers: [{ name: 'app', image: 'x' }] } },
    { generation: 3, creationTimestamp: '2026-01-01T00:00:00Z' as any },
  ),
  status,
});
const at = new Date('2026-01-01T00:00:10Z');

describe('phase machine', () => {
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

  it('sets the original flags, phase, a condition per phase passed and observedGeneration', () => {
    const s = transitionStatus(
      backend({ phase: 'Constructed', constructed: true }),
      { phase: 'Ready', fields: { podIP: '10.0.0.2' } },
      at,
    )!;
    expect(s).toMatchObject({
      phase: 'Ready',
      constructed: true,
      scheduled: true,
      running: true,
      ready: true,
      podIP: '10.0.0.2',
      observedGeneration: 3,
    });
    expect(s.conditions!.map((c) => c.type)).toEqual(['Scheduled', 'Running', 'Ready']);
    expect(s.conditions!.every((c) => c.lastTransitionTime === '2026-01-01T00:00:10Z' && c.observedGeneration === 3)).toBe(true);
  });

  it('records a terminal reason without claiming the phases it skipped', () => {
    const s = transitionStatus(
      backend({ phase: 'Constructed', constructed: true }),
      { phase: 'Failed', reason: 'ImagePullError', message: 'nope' },
      at,
    )!;
    expect(s).toMatchObject({ phase: 'Failed', failed: true, reason: 'ImagePullError', message: 'nope' });
    expect(s.ready).toBeUndefined();
    expect(s.conditions!.map((c) => [c.type, c.reason])).toEqual([['Failed', 'ImagePullError']]);
  });

  it('refuses a backward move', () => {
    expect(transitionStatus(backend({ phase: 'Ready' }), { phase: 'Running' }, at)).toBeUndefined();
    expect(transitionStatus(backend({ phase: 'Swept' }), { phase: 'Failed' }, at)).toBeUndefined();
  });

  it('replays the history in phase order with the time each was reached', () => {
    let b: any = backend();
    b = { ...b, status: transitionStatus(b, { phase: 'Constructed' }, new Date('2026-01-01T00:00:01Z')) };
    b = { ...b, status: transitionStatus(b, { phase: 'Ready' }, new Date('2026-01-01T00:00:05Z')) };
    b = { ...b, status: transitionStatus(b, { phase: 'Swept', reason: 'IdleTimeout' }, new Date('2026-01-01T00:05:05Z')) };
    expect(phaseHistory(b)).toEqual([
      { phase: 'Submitted', time: '2026-01-01T00:00:00.000Z' },
      { phase: 'Constructed', time: '2026-01-01T00:00:01Z' },
      { phase: 'Scheduled', time: '2026-01-01T00:00:05Z' },
      { phase: 'Running', time: '2026-01-01T00:00:05Z' },
      { phase: 'Ready', time: '2026-01-01T00:00:05Z' },
      { phase: 'Swept', time: '2026-01-01T00:05:05Z' },
    ]);
  });
});
