import type { V1Pod } from '@kubernetes/client-node';
import { decide, type Action, type DecideInput } from './decide';
import { buildService } from './desired-state';
import { backendFixture, podFor, runningReady, secondsAfter, serviceFor } from './test-fixtures';

const RETENTION = 60_000;
const run = (i: Partial<DecideInput> & Pick<DecideInput, 'backend'>) =>
  decide({ now: secondsAfter(1), failedRetentionMs: RETENTION, ...i });
const transition = (actions: Action[]) =>
  actions.find((a) => a.kind === 'transition') as Extract<Action, { kind: 'transition' }> | undefined;
const kinds = (actions: Action[]) => actions.map((a) => a.kind);

describe('decide', () => {
  describe('a new backend', () => {
    it('gets a Pod and a Service, and is Constructed once both exist', () => {
      const plan = run({ backend: backendFixture() });
      expect(kinds(plan.actions)).toEqual(['createPod', 'createService', 'transition']);
      expect(transition(plan.actions)?.transition.phase).toBe('Constructed');
      expect(plan.requeueAfterMs).toBe(119_000); // the startup deadline
    });

    it('after a half-finished pass (Pod made, Service not) creates only the Service', () => {
      const b = backendFixture();
      const plan = run({ backend: b, pod: podFor(b) });
      expect(kinds(plan.actions)).toEqual(['createService', 'transition']);
    });

    it('removes a same-named Pod left by an earlier backend before anything else', () => {
      const b = backendFixture();
      const stale = podFor(b);
      stale.metadata!.ownerReferences![0].uid = 'old-uid';
      const plan = run({ backend: b, pod: stale });
      expect(plan.actions).toEqual([{ kind: 'deleteStale', what: 'pod', uid: 'pod-uid' }]);
    });
  });

  describe('follows the Pod forward', () => {
    const b = backendFixture({}, { phase: 'Constructed', constructed: true });
    it.each<[string, V1Pod, string]>([
      ['bound to a node → Scheduled', podFor(b, { phase: 'Pending' }, 'node-a'), 'Scheduled'],
      ['running → Running', podFor(b, runningReady(false), 'node-a'), 'Running'],
      ['ready → Ready', podFor(b, runningReady(true), 'node-a'), 'Ready'],
    ])('%s', (_name, pod, phase) => {
      const plan = run({ backend: b, pod, service: serviceFor(b) });
      const t = transition(plan.actions)!.transition;
      expect(t.phase).toBe(phase);
      expect(t.fields).toMatchObject({ nodeName: 'node-a', port: 9090, ip: '10.0.0.9' });
      expect(plan.actions).toContainEqual({ kind: 'labelNode', node: 'node-a' });
      // The status write first: a client waits for it, not for the sweeper's shard label.
      expect(kinds(plan.actions)).toEqual(['transition', 'labelNode']);
    });

    it("records the Pod's IP as the backend's ip behind a headless Service", () => {
      const headless = buildService(b, { serviceMode: 'Headless' });
      const plan = run({ backend: b, pod: podFor(b, runningReady(true), 'node-a'), service: headless });
      expect(transition(plan.actions)!.transition.fields).toMatchObject({ ip: '10.88.0.5', podIP: '10.88.0.5' });
    });

    it('service-less: with serviceMode None creates no Service, and the Pod is the address', () => {
      const fresh = backendFixture();
      const first = decide({ backend: fresh, now: secondsAfter(1), failedRetentionMs: RETENTION, serviceMode: 'None' });
      expect(kinds(first.actions)).toEqual(['createPod', 'transition']);
      expect(transition(first.actions)!.transition).toMatchObject({ phase: 'Constructed' });
      expect(transition(first.actions)!.transition.fields?.url).toBeUndefined();
      const plan = decide({
        backend: b,
        pod: podFor(b, runningReady(true), 'node-a'),
        now: secondsAfter(1),
        failedRetentionMs: RETENTION,
        serviceMode: 'None',
      });
      expect(kinds(plan.actions)).not.toContain('createService');
      expect(transition(plan.actions)!.transition).toMatchObject({
        phase: 'Ready',
        fields: { ip: '10.88.0.5', podIP: '10.88.0.5', podUID: 'pod-uid', url: 'http://10.88.0.5:9090/', port: 9090 },
      });
    });

    it('does nothing more once the phase and facts are recorded', () => {
      const ready = backendFixture(
        {},
        {
          phase: 'Ready',
          nodeName: 'node-a',
          podIP: '10.88.0.5',
          podUID: 'pod-uid',
          podName: 'b1',
          ip: '10.0.0.9',
          port: 9090,
          url: 'http://b1.ns.svc:9090/',
        },
      );
      ready.metadata.labels = { ...ready.metadata.labels, spawnerGroup: 'node-a' };
      const plan = run({ backend: ready, pod: podFor(ready, runningReady(true), 'node-a'), service: serviceFor(ready) });
      expect(plan.actions).toEqual([]);
      expect(plan.requeueAfterMs).toBeUndefined();
    });
  });

  describe('fails the backend with a reason', () => {
    const b = backendFixture({}, { phase: 'Running', constructed: true, scheduled: true, running: true });
    const terminated = (name: string, exitCode: number, reason: string): V1Pod['status'] => ({
      phase: 'Running',
      containerStatuses: [
        {
          name,
          image: 'x',
          imageID: '',
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode, reason, message: 'last log line' } },
        },
      ],
    });

    it('when the app exits: ContainerExited with the exit code', () => {
      const t = transition(
        run({ backend: b, pod: podFor(b, terminated('app', 3, 'Error'), 'n'), service: serviceFor(b) }).actions,
      )!.transition;
      expect(t).toMatchObject({ phase: 'Failed', reason: 'ContainerExited', fields: { exitCode: 3 } });
      expect(t.message).toContain('exited with code 3: last log line');
    });

    it('lifecycle: app exit 0 completes the session (Swept, Completed), a sidecar exit 0 does not', () => {
      const t = transition(
        run({ backend: b, pod: podFor(b, terminated('app', 0, 'Completed'), 'n'), service: serviceFor(b) }).actions,
      )!.transition;
      expect(t).toMatchObject({ phase: 'Swept', reason: 'Completed', fields: { exitCode: 0 } });
      const succeeded = transition(
        run({ backend: b, pod: podFor(b, { phase: 'Succeeded' }, 'n'), service: serviceFor(b) }).actions,
      )!.transition;
      expect(succeeded).toMatchObject({ phase: 'Swept', reason: 'Completed' });
      const sidecar = transition(
        run({ backend: b, pod: podFor(b, terminated('spawner-sidecar', 0, 'Completed'), 'n'), service: serviceFor(b) }).actions,
      )!.transition;
      expect(sidecar).toMatchObject({ phase: 'Failed', reason: 'ContainerExited' });
    });

    it('when the app is OOM-killed: OOMKilled', () => {
      const t = transition(
        run({ backend: b, pod: podFor(b, terminated('app', 137, 'OOMKilled'), 'n'), service: serviceFor(b) }).actions,
      )!.transition;
      expect(t).toMatchObject({ phase: 'Failed', reason: 'OOMKilled' });
    });

    it('when the sidecar exits: ContainerExited naming it', () => {
      const t = transition(
        run({ backend: b, pod: podFor(b, terminated('spawner-sidecar', 1, 'Error'), 'n'), service: serviceFor(b) }).actions,
      )!.transition;
      expect(t.message).toContain('container spawner-sidecar exited with code 1');
    });

    it('when the image cannot be pulled: ImagePullError', () => {
      const status: V1Pod['status'] = {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'app',
            image: 'x',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ImagePullBackOff', message: 'not found' } },
          },
        ],
      };
      const c = backendFixture({}, { phase: 'Scheduled', constructed: true, scheduled: true });
      const t = transition(run({ backend: c, pod: podFor(c, status, 'n'), service: serviceFor(c) }).actions)!.transition;
      expect(t).toMatchObject({ phase: 'Failed', reason: 'ImagePullError' });
    });

    it('when not Ready within startupTimeoutSeconds: StartupTimeout, or Unschedulable if it never got a node', () => {
      const c = backendFixture({ startupTimeoutSeconds: 30 }, { phase: 'Constructed', constructed: true });
      const running = podFor(c, runningReady(false), 'n');
      expect(run({ backend: c, pod: running, service: serviceFor(c), now: secondsAfter(29) }).requeueAfterMs).toBe(1000);
      expect(
        transition(run({ backend: c, pod: running, service: serviceFor(c), now: secondsAfter(30) }).actions)!.transition.reason,
      ).toBe('StartupTimeout');
      const pending = podFor(c, {
        phase: 'Pending',
        conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes' }],
      });
      expect(
        transition(run({ backend: c, pod: pending, service: serviceFor(c), now: secondsAfter(31) }).actions)!.transition,
      ).toMatchObject({
        reason: 'Unschedulable',
        message: '0/1 nodes',
      });
    });

    it('lifecycle: readiness blip keeps a Ready backend — no StartupTimeout once it was Ready, and no startup deadline', () => {
      const c = backendFixture(
        { startupTimeoutSeconds: 30 },
        { phase: 'Ready', constructed: true, scheduled: true, running: true, ready: true, nodeName: 'n', podIP: '10.88.0.5' },
      );
      const notReady = podFor(c, runningReady(false), 'n');
      const plan = run({ backend: c, pod: notReady, service: serviceFor(c), now: secondsAfter(300) });
      expect(transition(plan.actions)?.transition.phase).not.toBe('Failed');
      expect(plan.requeueAfterMs).toBeUndefined();
      // A backend whose Ready write is only in the flags (the original's) is treated alike.
      const legacy = backendFixture({ startupTimeoutSeconds: 30 }, { constructed: true, running: true, ready: true });
      expect(
        transition(run({ backend: legacy, pod: notReady, service: serviceFor(legacy), now: secondsAfter(300) }).actions)
          ?.transition.phase,
      ).not.toBe('Failed');
    });

    it('when its Pod is deleted by hand, after checking the API server, never recreating it', () => {
      const first = run({ backend: b, service: serviceFor(b) });
      expect(first.actions).toEqual([{ kind: 'confirmPodGone' }]);
      const confirmed = run({ backend: b, service: serviceFor(b), podConfirmedMissing: true });
      expect(confirmed.actions).toHaveLength(1);
      expect(transition(confirmed.actions)!.transition).toMatchObject({ phase: 'Failed', reason: 'PodDeleted' });
      const deleting = podFor(b, runningReady(true), 'n');
      deleting.metadata!.deletionTimestamp = new Date();
      expect(transition(run({ backend: b, pod: deleting, service: serviceFor(b) }).actions)!.transition.reason).toBe(
        'PodDeleted',
      );
    });

    it('when the spec asks for a port the sidecar uses: InvalidSpec', () => {
      expect(transition(run({ backend: backendFixture({ httpPort: 9091 }) }).actions)!.transition).toMatchObject({
        phase: 'Failed',
        reason: 'InvalidSpec',
      });
    });
  });

  describe('ends', () => {
    it('sweeps a backend past maxLifetimeSeconds (LifetimeExceeded) and otherwise wakes at that deadline', () => {
      const b = backendFixture({ maxLifetimeSeconds: 100 }, { phase: 'Ready', constructed: true });
      expect(
        run({ backend: b, pod: podFor(b, runningReady(), 'n'), service: serviceFor(b), now: secondsAfter(40) }).requeueAfterMs,
      ).toBe(60_000);
      const t = transition(
        run({ backend: b, pod: podFor(b, runningReady(), 'n'), service: serviceFor(b), now: secondsAfter(100) }).actions,
      )!.transition;
      expect(t).toMatchObject({ phase: 'Swept', reason: 'LifetimeExceeded' });
    });

    it('deletes a Swept backend', () => {
      const b = backendFixture({}, { phase: 'Swept', swept: true, reason: 'IdleTimeout' });
      expect(run({ backend: b, pod: podFor(b, runningReady(), 'n'), service: serviceFor(b) }).actions).toEqual([
        { kind: 'deleteBackend' },
      ]);
    });

    it('stops a Failed backend at once, and deletes it after the retention', () => {
      const b = backendFixture(
        {},
        {
          phase: 'Failed',
          failed: true,
          reason: 'ContainerExited',
          transitions: [{ phase: 'Failed', time: secondsAfter(10).toISOString(), reason: 'ContainerExited' }],
        },
      );
      const early = run({ backend: b, pod: podFor(b, runningReady(), 'n'), service: serviceFor(b), now: secondsAfter(20) });
      expect(early.actions).toEqual([{ kind: 'deleteChildren' }]);
      expect(early.requeueAfterMs).toBe(50_000);
      expect(run({ backend: b, now: secondsAfter(70) }).actions).toEqual([{ kind: 'deleteBackend' }]);
    });

    it('leaves a backend being deleted to the garbage collector', () => {
      const b = backendFixture();
      b.metadata.deletionTimestamp = new Date();
      expect(run({ backend: b }).actions).toEqual([]);
    });
  });
});
