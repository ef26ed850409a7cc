/**
 * The lifecycle a user can trust with live sessions, on the real control plane: a readiness blip
 * never ends a Ready backend, a slow starter is never swept before it was Ready, conditions state
 * the current state (so `kubectl wait` tells the truth), an app that exits 0 completes its session,
 * and racing writers (the sweeper, the client, the app failing) record exactly one ending.
 */
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node';
import { type SessionLivedBackend } from '../common/src/backend';
import { isTerminal, phaseOf, phaseRank, phaseTime, Reasons, writeTransition } from '../common/src/lifecycle';
import { BACKENDS, EVENTS, PODS } from '../common/src/kube/resources';
import { backendManifest, phaseIs, waitBackend } from './support/backends';
import {
  adminClient,
  agentInfo,
  containerPid,
  describeWithAgent,
  httpGet,
  kubectl,
  useNamespace,
  waitFor,
} from './support/cluster';
import { startComponent, type Component } from './support/components';
import { sleep, writeFigures } from './support/faults';

jest.setTimeout(240_000);

/** Every version of one backend as the watch delivered it, and when it disappeared. */
function record(namespace: string, name: string): { versions: SessionLivedBackend[]; deletedAt?: number; stop(): void } {
  const out: { versions: SessionLivedBackend[]; deletedAt?: number; stop(): void } = { versions: [], stop: () => undefined };
  const handle = adminClient().watch<SessionLivedBackend>(
    BACKENDS,
    namespace,
    { resourceVersion: '0', fieldSelector: `metadata.name=${name}` },
    (e) => {
      if (e.type === 'DELETED') out.deletedAt ??= Date.now();
      else if (e.type !== 'BOOKMARK') out.versions.push(e.object);
    },
  );
  handle.done.catch(() => undefined);
  out.stop = () => handle.abort();
  return out;
}

const conditionStatus = (b: SessionLivedBackend, type: string): string | undefined =>
  b.status?.conditions?.find((c) => c.type === type)?.status;

async function podReady(namespace: string, name: string): Promise<boolean | undefined> {
  const pod = await adminClient().get<V1Pod>(PODS, namespace, name);
  if (!pod) return undefined;
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

describeWithAgent('lifecycle', () => {
  const ns = useNamespace('lifecycle');
  const kube = adminClient();
  let operator: Component | undefined;
  let sweeper: Component | undefined;

  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`, '--failed-retention-seconds=60']);
    sweeper = await startComponent('sweeper', [
      `--namespaces=${ns.name}`,
      `--node-name=${agentInfo()!.nodeName}`,
      '--heartbeat-seconds=5',
      '--unreachable-seconds=10',
    ]);
  });
  afterAll(async () => {
    await sweeper?.stop();
    await operator?.stop();
  });

  test('lifecycle: readiness blip keeps a Ready backend — past its startup timeout, a paused sidecar turns the Pod NotReady; the backend stays Ready and serves afterwards', async () => {
    const startup = 5;
    await kube.create(
      BACKENDS,
      ns.name,
      backendManifest('blip', ns.name, { spec: { startupTimeoutSeconds: startup, gracePeriodSeconds: 600 } }),
    );
    const ready = await waitBackend(ns.name, 'blip', 'Ready', phaseIs('Ready'));
    const created = Date.parse(ready.metadata.creationTimestamp as unknown as string);
    await sleep(Math.max(0, created + (startup + 1) * 1000 - Date.now()));

    const pid = await containerPid(ns.name, 'blip', 'spawner-sidecar');
    process.kill(pid, 'SIGSTOP');
    const pausedAt = Date.now();
    let notReadyAfterMs: number | undefined;
    try {
      // Paused until the probe has failed its threshold and the Pod is reported NotReady.
      await waitFor(async () => (await podReady(ns.name, 'blip')) === false, {
        description: 'the Pod to turn NotReady while its sidecar is paused',
        timeoutMs: 40_000,
        intervalMs: 200,
      });
      notReadyAfterMs = Date.now() - pausedAt;
      // Give the operator time to act on the NotReady Pod (it reconciles on every Pod change).
      await sleep(3_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor(async () => (await podReady(ns.name, 'blip')) === true, {
      description: 'the Pod Ready again',
      timeoutMs: 30_000,
    });
    const after = (await kube.get<SessionLivedBackend>(BACKENDS, ns.name, 'blip'))!;
    expect(phaseOf(after)).toBe('Ready');
    expect(after.status?.failed).toBeUndefined();
    expect(conditionStatus(after, 'Ready')).toBe('True');
    const res = await httpGet(`http://${after.status!.podIP}:9090/`);
    expect(res.status).toBe(200);
    writeFigures('lifecycle-readiness-blip', { notReadyAfterMs, pausedForMs: Date.now() - pausedAt });
  });

  test('lifecycle: slow starter is not swept before Ready — grace 2 s, app listening after 7 s: Ready first, swept about a grace later', async () => {
    const grace = 2;
    const rec = record(ns.name, 'slow');
    try {
      await kube.create(
        BACKENDS,
        ns.name,
        backendManifest('slow', ns.name, { env: { LISTEN_DELAY_MS: '7000' }, spec: { gracePeriodSeconds: grace } }),
      );
      await waitFor(() => rec.deletedAt !== undefined, { description: 'the slow starter swept and deleted', timeoutMs: 90_000 });
      const phases = rec.versions.map(phaseOf);
      const readyAt = phases.indexOf('Ready');
      const sweptAt = phases.indexOf('Swept');
      expect(readyAt).toBeGreaterThanOrEqual(0);
      expect(sweptAt).toBeGreaterThan(readyAt);
      const swept = rec.versions[sweptAt];
      expect(swept.status?.reason).toBe(Reasons.IdleTimeout);
      const createdMs = Date.parse(swept.metadata.creationTimestamp as unknown as string);
      const readyMs = phaseTime(swept, 'Ready')!;
      const sweptMs = phaseTime(swept, 'Swept')!;
      // Not Ready before the app listened (7 s), and idle counted from Ready, not from start.
      expect(readyMs - createdMs).toBeGreaterThanOrEqual(6_000);
      expect(sweptMs - readyMs).toBeGreaterThanOrEqual(grace * 1000 - 500);
      writeFigures('lifecycle-slow-starter', { createdToReadyMs: readyMs - createdMs, readyToSweptMs: sweptMs - readyMs });
    } finally {
      rec.stop();
    }
  });

  test('lifecycle: kubectl wait for Ready — succeeds on a Ready backend, times out on a Failed one and on a Swept one; conditions current', async () => {
    await kube.create(BACKENDS, ns.name, backendManifest('wait-ready', ns.name, { spec: { gracePeriodSeconds: 600 } }));
    const ok = await kubectl(['wait', '--for=condition=Ready', 'slab/wait-ready', '-n', ns.name, '--timeout=90s']);
    expect(ok.code).toBe(0);

    await kube.create(
      BACKENDS,
      ns.name,
      backendManifest('wait-failed', ns.name, { env: { EXIT_AFTER_MS: '1500', EXIT_CODE: '3' } }),
    );
    const failed = await waitBackend(ns.name, 'wait-failed', 'Failed', phaseIs('Failed'), 90_000);
    expect(conditionStatus(failed, 'Ready')).toBe('False');
    expect(conditionStatus(failed, 'Terminated')).toBe('True');
    expect(failed.status?.ready).toBe(true); // it was Ready once: history stays in the flags
    const waitFailed = await kubectl(['wait', '--for=condition=Ready', 'slab/wait-failed', '-n', ns.name, '--timeout=4s'], {
      allowFail: true,
    });
    expect(waitFailed.code).not.toBe(0);
    const terminated = await kubectl(['wait', '--for=condition=Terminated', 'slab/wait-failed', '-n', ns.name, '--timeout=10s']);
    expect(terminated.code).toBe(0);

    // A Swept backend is deleted at once; the last version the watch saw says it is not Ready.
    const rec = record(ns.name, 'wait-swept');
    try {
      await kube.create(BACKENDS, ns.name, backendManifest('wait-swept', ns.name, { spec: { gracePeriodSeconds: 600 } }));
      const ready = await waitBackend(ns.name, 'wait-swept', 'Ready', phaseIs('Ready'));
      const out = await writeTransition(kube, 'api', ready, { phase: 'Swept', reason: Reasons.DeletedByClient, message: 'test' });
      expect(out.kind).toBe('written');
      const swept = (out as { backend: SessionLivedBackend }).backend;
      expect(conditionStatus(swept, 'Ready')).toBe('False');
      expect(conditionStatus(swept, 'Terminated')).toBe('True');
      const waitSwept = await kubectl(['wait', '--for=condition=Ready', 'slab/wait-swept', '-n', ns.name, '--timeout=4s'], {
        allowFail: true,
      });
      expect(waitSwept.code).not.toBe(0);
      await waitFor(() => rec.deletedAt !== undefined, { description: 'the Swept backend deleted' });
      expect(rec.versions.filter((v) => phaseOf(v) === 'Swept').every((v) => conditionStatus(v, 'Ready') === 'False')).toBe(true);
    } finally {
      rec.stop();
    }
  });

  test('lifecycle: app exit 0 completes the session — Swept with reason Completed, then deleted', async () => {
    const rec = record(ns.name, 'done');
    try {
      await kube.create(
        BACKENDS,
        ns.name,
        backendManifest('done', ns.name, { env: { EXIT_AFTER_MS: '2000', EXIT_CODE: '0' }, spec: { gracePeriodSeconds: 600 } }),
      );
      await waitFor(() => rec.deletedAt !== undefined, { description: 'the completed backend deleted', timeoutMs: 90_000 });
      const last = rec.versions.at(-1)!;
      expect(last.status).toMatchObject({ phase: 'Swept', reason: Reasons.Completed, exitCode: 0, swept: true });
      expect(last.status?.failed).toBeUndefined();
      expect(rec.versions.some((v) => phaseOf(v) === 'Failed')).toBe(false);
    } finally {
      rec.stop();
    }
  });

  test('lifecycle: racing writers never move a phase back — sweeper, client and a failing app end one backend at once: one ending, one reason, one terminal Event', async () => {
    // When the app exits (after its start, about 1 s before Ready) and when the client deletes
    // (after Ready), per round; the sweeper's idle verdict comes 2 s after Ready. The first three
    // rounds let each writer win once, the last two put all three within ~100 ms.
    const exitAfterMs = [1_600, 4_000, 4_000, 2_900, 3_000];
    const clientAfterReadyMs = [1_500, 1_200, 2_600, 1_950, 2_000];
    const rounds = exitAfterMs.length;
    const endings: string[] = [];
    for (let i = 0; i < rounds; i++) {
      const name = `race-${i}`;
      const rec = record(ns.name, name);
      try {
        await kube.create(
          BACKENDS,
          ns.name,
          backendManifest(name, ns.name, {
            env: { EXIT_AFTER_MS: String(exitAfterMs[i]), EXIT_CODE: '7' },
            spec: { gracePeriodSeconds: 2 },
          }),
        );
        const ready = await waitBackend(ns.name, name, 'Ready', phaseIs('Ready', 'Swept', 'Failed'), 90_000);
        const wait = Math.max(0, (phaseTime(ready, 'Ready') ?? Date.now()) + clientAfterReadyMs[i] - Date.now());
        await sleep(wait);
        const current = await kube.get<SessionLivedBackend>(BACKENDS, ns.name, name);
        const client = current
          ? await writeTransition(kube, 'api', current, { phase: 'Swept', reason: Reasons.DeletedByClient, message: 'race' })
          : { kind: 'gone' as const };

        // A writer outside its role is refused by the module, whatever the backend's phase.
        const fresh = await kube.get<SessionLivedBackend>(BACKENDS, ns.name, name);
        if (fresh) {
          const rogue = await writeTransition(kube, 'sweeper', fresh, { phase: 'Failed', reason: Reasons.OOMKilled });
          expect(rogue.kind).toBe('refused');
        }
        await waitFor(() => rec.deletedAt !== undefined || rec.versions.some((v) => phaseOf(v) === 'Failed'), {
          description: `${name} ended`,
          timeoutMs: 60_000,
        });
        // Every version the watch saw: the phase never went back, and one ending with one reason.
        let rank = 0;
        const terminal = new Set<string>();
        for (const v of rec.versions) {
          const p = phaseOf(v);
          expect(phaseRank(p)).toBeGreaterThanOrEqual(rank);
          rank = phaseRank(p);
          if (isTerminal(p)) terminal.add(`${p}/${v.status?.reason}`);
          expect(!!v.status?.swept && !!v.status?.failed).toBe(false);
        }
        expect(terminal.size).toBe(1);
        endings.push([...terminal][0] + (client.kind === 'written' ? ' (client won)' : ''));
        const uid = ready.metadata.uid;
        const terminalEvents = await waitFor(
          async () => {
            const list = await kube.list<CoreV1Event>(EVENTS, ns.name, {
              fieldSelector: `involvedObject.kind=SessionLivedBackend,involvedObject.name=${name}`,
            });
            const ended = list.items.filter(
              (e) => e.involvedObject.uid === uid && (e.action === 'Swept' || e.action === 'Failed'),
            );
            return ended.length > 0 ? ended : undefined;
          },
          { description: `the terminal Event of ${name}`, timeoutMs: 30_000 },
        );
        await sleep(1_000);
        const again = await kube.list<CoreV1Event>(EVENTS, ns.name, {
          fieldSelector: `involvedObject.kind=SessionLivedBackend,involvedObject.name=${name}`,
        });
        const ended = again.items.filter((e) => e.involvedObject.uid === uid && (e.action === 'Swept' || e.action === 'Failed'));
        expect(ended).toHaveLength(1);
        expect(`${ended[0].action}/${ended[0].reason}`).toBe([...terminal][0]);
        void terminalEvents;
      } finally {
        rec.stop();
      }
    }
    writeFigures('lifecycle-racing-writers', { rounds, endings });
  });
});
