import type { Pod } from './pod-types';
import { buildStatus, mergeConditions, podPhase, type ContainerView } from './status';

const running: ContainerView = {
  name: 'a',
  image: 'i',
  state: { running: { startedAt: 't' } },
  lastState: {},
  restartCount: 0,
  ready: true,
  started: true,
};
const exited = (exitCode: number): ContainerView => ({
  ...running,
  ready: false,
  started: false,
  state: { terminated: { exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', finishedAt: 't' } },
});
const waiting: ContainerView = { ...running, ready: false, started: false, state: { waiting: { reason: 'ContainerCreating' } } };
const restarting: ContainerView = { ...waiting, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: exited(1).state };

describe('pod phase (the kubelet getPhase rules)', () => {
  test.each([
    ['Never', [running, exited(0)], 'Running'],
    ['Never', [exited(0), exited(0)], 'Succeeded'],
    ['Never', [exited(0), exited(3)], 'Failed'],
    ['OnFailure', [exited(0), exited(3)], 'Running'],
    ['OnFailure', [exited(0)], 'Succeeded'],
    ['Always', [exited(0)], 'Running'],
    ['Always', [restarting], 'Running'],
    ['Never', [waiting, running], 'Pending'],
  ] as const)('restartPolicy %s with %j → %s', (policy, containers, phase) => {
    expect(podPhase(policy, [], [...containers])).toBe(phase);
  });

  test('init containers hold the pod Pending, and fail it under restartPolicy Never', () => {
    expect(podPhase('Never', [running], [waiting])).toBe('Pending');
    expect(podPhase('Never', [exited(1)], [waiting])).toBe('Failed');
    expect(podPhase('Always', [exited(1)], [waiting])).toBe('Pending');
    expect(podPhase('Never', [exited(0)], [running])).toBe('Running');
  });
});

describe('pod status', () => {
  const pod = { metadata: { name: 'p', namespace: 'n', uid: 'u' }, spec: { containers: [{ name: 'a' }] } } as unknown as Pod;
  const view = {
    sandboxReady: true,
    podIP: '10.88.0.9',
    hostIP: '10.88.0.1',
    startTime: 's',
    initContainers: [],
    containers: [running],
  };

  test('a ready pod', () => {
    const s = buildStatus(pod, view, undefined, 'now');
    expect(s.phase).toBe('Running');
    expect(s.podIPs).toEqual([{ ip: '10.88.0.9' }]);
    expect(Object.fromEntries((s.conditions ?? []).map((c) => [c.type, c.status]))).toEqual({
      PodReadyToStartContainers: 'True',
      Initialized: 'True',
      Ready: 'True',
      ContainersReady: 'True',
      PodScheduled: 'True',
    });
  });

  test('an unready container names itself; a finished pod says PodCompleted', () => {
    const unready = buildStatus(pod, { ...view, containers: [{ ...running, ready: false }] }, undefined, 'now');
    expect(unready.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'ContainersNotReady',
      message: 'containers with unready status: [a]',
    });
    const done = buildStatus(pod, { ...view, containers: [exited(0)], terminalPhase: 'Succeeded' }, undefined, 'now');
    expect(done.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'PodCompleted' });
  });

  test('lastTransitionTime moves only when a status changes; foreign conditions pass through', () => {
    const before = [
      { type: 'Ready', status: 'False' as const, lastProbeTime: null, lastTransitionTime: 't1' },
      { type: 'PodScheduled', status: 'True' as const, lastProbeTime: null, lastTransitionTime: 't0' },
      { type: 'example.com/gate', status: 'True' as const, lastProbeTime: null, lastTransitionTime: 't0' },
    ];
    const after = mergeConditions(
      before,
      [
        { type: 'Ready', status: 'True' },
        { type: 'PodScheduled', status: 'True' },
      ],
      't2',
    );
    expect(after).toEqual([
      { type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: 't2' },
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: 't0' },
      before[2],
    ]);
  });

  test('a readiness gate keeps the pod unready until its condition is True', () => {
    const gated = { ...pod, spec: { ...pod.spec, readinessGates: [{ conditionType: 'example.com/gate' }] } } as Pod;
    expect(buildStatus(gated, view, undefined, 'now').conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'ReadinessGatesNotReady',
    });
    const previous = [{ type: 'example.com/gate', status: 'True' as const, lastProbeTime: null, lastTransitionTime: 't' }];
    expect(buildStatus(gated, view, previous, 'now').conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  });
});
