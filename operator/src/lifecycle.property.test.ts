/**
 * The lifecycle as a state machine, driven by generated histories: Pod observations (scheduled,
 * running, readiness blips, exits with any code, OOM, image pull errors, deletion by hand), sidecar
 * activity and WebSockets, clock jumps, the three writers' intents (the operator's plans, the
 * sweeper's idle and unreachable verdicts, the client's delete), stale reads and operator restarts.
 * Every step goes through the real planner (`decide`), the real idle rule (`judge`) and the real
 * transition module (`planTransition`); the invariants of lifecycle.ts are checked after each one.
 */
import type { V1Pod } from '@kubernetes/client-node';
import fc from 'fast-check';
import type { SessionLivedBackend } from '../../common/src/backend';
import {
  CONDITION_READY,
  CONDITION_TERMINATED,
  isTerminal,
  phaseOf,
  phaseRank,
  phaseTime,
  planTransition,
  Reasons,
  STARTUP_REASONS,
  wasReady,
  type Transition,
  type Writer,
} from '../../common/src/lifecycle';
import { judge } from '../../sweeper/src/idle-rule';
import { decide } from './decide';
import { backendFixture, CREATED, podFor, serviceFor } from './test-fixtures';

const GRACE_S = 10;
const STARTUP_S = 20;
const HEARTBEAT_S = 5;
const RETENTION_MS = 20_000;

type Step =
  | { kind: 'tick'; ms: number }
  | { kind: 'schedule' }
  | { kind: 'run' }
  | { kind: 'probe'; ready: boolean }
  | { kind: 'exit'; container: 'app' | 'spawner-sidecar'; code: number; oom: boolean }
  | { kind: 'pullError' }
  | { kind: 'podDeleted' }
  | { kind: 'activity' }
  | { kind: 'webSocket'; open: boolean }
  | { kind: 'reconcile'; stale: boolean }
  | { kind: 'restart' }
  | { kind: 'sweeper' }
  | { kind: 'unreachable' }
  | { kind: 'clientDelete' }
  | { kind: 'rogue'; writer: Writer; t: Transition };

const anyReason = fc.constantFrom(...Object.values(Reasons), 'Because');
const anyPhase = fc.constantFrom('Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept', 'Failed' as const);

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('tick' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 0, max: 40_000 })),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ kind: 'schedule' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'run' as const }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('probe' as const), ready: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('exit' as const),
      container: fc.constantFrom('app' as const, 'spawner-sidecar' as const),
      code: fc.constantFrom(0, 1, 2, 137),
      oom: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'pullError' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'podDeleted' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'activity' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('webSocket' as const), open: fc.boolean() }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('reconcile' as const), stale: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'restart' as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'sweeper' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'unreachable' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clientDelete' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('rogue' as const),
      writer: fc.constantFrom<Writer>('sweeper', 'api'),
      t: fc.record({ phase: anyPhase, reason: fc.option(anyReason, { nil: undefined }) }),
    }),
  },
);

/** The world of one backend: what the API server stores, the Pod, the sidecar, the clock. */
interface World {
  now: number;
  backend?: SessionLivedBackend;
  /** What a lagging cache would still show the operator. */
  stale?: SessionLivedBackend;
  pod?: V1Pod;
  podDeleted: boolean;
  node?: string;
  running: boolean;
  ready: boolean;
  terminated?: { container: string; code: number; oom: boolean };
  pullError: boolean;
  lastActiveMs: number;
  sidecarReadySince?: number;
  sockets: number;
  rv: number;
}

function podOf(w: World): V1Pod | undefined {
  if (!w.pod || !w.backend) return undefined;
  const b = w.backend;
  const statuses: NonNullable<V1Pod['status']>['containerStatuses'] = [];
  const base = { image: 'x', imageID: '', restartCount: 0 };
  for (const name of ['app', 'spawner-sidecar']) {
    const t = w.terminated?.container === name ? w.terminated : undefined;
    statuses.push({
      name,
      ...base,
      ready: w.ready && !t,
      state: t
        ? { terminated: { exitCode: t.code, reason: t.oom ? 'OOMKilled' : t.code === 0 ? 'Completed' : 'Error' } }
        : w.pullError && name === 'app'
          ? { waiting: { reason: 'ImagePullBackOff', message: 'not found' } }
          : w.running
            ? { running: {} }
            : { waiting: { reason: 'ContainerCreating' } },
    });
  }
  const pod = podFor(
    b,
    {
      phase: w.running ? 'Running' : 'Pending',
      podIP: w.node ? '10.88.0.5' : undefined,
      conditions: [{ type: 'Ready', status: w.ready && w.running ? 'True' : 'False' }],
      containerStatuses: statuses,
    },
    w.node,
  );
  return pod;
}

/** Stores a status as the API server would: a new resourceVersion. */
function store(w: World, status: SessionLivedBackend['status']): void {
  w.backend = { ...w.backend!, status, metadata: { ...w.backend!.metadata, resourceVersion: String(++w.rv) } };
}

interface Record {
  maxRank: number;
  terminal?: { phase: string; reason?: string };
  flags: Set<string>;
  everReady: boolean;
}

function write(w: World, writer: Writer, t: Transition): boolean {
  const verdict = planTransition(w.backend!, t, writer, new Date(w.now));
  if (!verdict.ok) return false;
  store(w, verdict.status);
  return true;
}

function reconcile(w: World, stale: boolean): void {
  // A lagging cache: a stale pass plans from what the operator last read; a fresh one reads anew.
  if (!stale || !w.stale) w.stale = w.backend;
  const seen = w.stale!;
  const input = {
    backend: seen,
    pod: w.podDeleted ? undefined : podOf(w),
    service: w.pod ? serviceFor(seen) : undefined,
    podConfirmedMissing: true,
    now: new Date(w.now),
    failedRetentionMs: RETENTION_MS,
  };
  const plan = decide(input);
  // The same input gives the same plan.
  expect(decide(input)).toEqual(plan);
  for (const action of plan.actions) {
    switch (action.kind) {
      case 'createPod':
        if (!w.podDeleted) w.pod ??= {};
        break;
      case 'transition':
        // The write is judged against what the API server holds (a conflict re-reads it).
        write(w, 'operator', action.transition);
        break;
      case 'deleteChildren':
        w.pod = undefined;
        w.running = false;
        w.ready = false;
        break;
      case 'deleteBackend':
        expect(isTerminal(phaseOf(w.backend!))).toBe(true);
        if (phaseOf(w.backend!) === 'Failed')
          expect(w.now).toBeGreaterThanOrEqual(phaseTime(w.backend!, 'Failed')! + RETENTION_MS);
        w.backend = undefined;
        return;
      default:
        break;
    }
  }
}

function check(w: World, rec: Record): void {
  const b = w.backend;
  if (!b) return;
  const s = b.status ?? {};
  const phase = phaseOf(b);
  // The phase never moves back, and an ending is final.
  expect(phaseRank(phase)).toBeGreaterThanOrEqual(rec.maxRank);
  rec.maxRank = phaseRank(phase);
  if (rec.terminal) expect({ phase, reason: s.reason }).toEqual(rec.terminal);
  if (isTerminal(phase)) {
    // Every ending has a reason.
    expect(typeof s.reason).toBe('string');
    expect(s.reason!.length).toBeGreaterThan(0);
    rec.terminal ??= { phase, reason: s.reason };
    // One ending recorded, not two.
    expect(!!s.swept && !!s.failed).toBe(false);
  } else {
    expect(s.reason).toBeUndefined();
  }
  // A backend that was Ready never fails for a startup reason.
  if (rec.everReady && phase === 'Failed') expect(STARTUP_REASONS.has(s.reason!)).toBe(false);
  if (phase === 'Ready') rec.everReady = true;
  // The original's flags are history: once set, they stay.
  for (const f of ['constructed', 'scheduled', 'running', 'ready', 'swept', 'failed'] as const) {
    if (rec.flags.has(f)) expect(s[f]).toBe(true);
    if (s[f]) rec.flags.add(f);
  }
  // Conditions state the current state.
  if (phase !== 'Submitted') {
    const ready = s.conditions?.find((c) => c.type === CONDITION_READY);
    const terminated = s.conditions?.find((c) => c.type === CONDITION_TERMINATED);
    expect(ready?.status).toBe(phase === 'Ready' ? 'True' : 'False');
    expect(terminated?.status).toBe(isTerminal(phase) ? 'True' : 'False');
    if (isTerminal(phase)) expect(terminated?.reason).toBe(s.reason);
  }
  // The transitions list: one entry per phase, in phase order, times never going back.
  const list = s.transitions ?? [];
  for (let i = 1; i < list.length; i++) {
    expect(phaseRank(list[i].phase)).toBeGreaterThan(phaseRank(list[i - 1].phase));
    expect(Date.parse(list[i].time)).toBeGreaterThanOrEqual(Date.parse(list[i - 1].time));
  }
}

/** Plays one history; returns how the backend ended, if it did. */
function play(steps: Step[]): string | undefined {
  const w: World = {
    now: CREATED.getTime(),
    backend: backendFixture({ gracePeriodSeconds: GRACE_S, startupTimeoutSeconds: STARTUP_S }),
    podDeleted: false,
    running: false,
    ready: false,
    pullError: false,
    lastActiveMs: CREATED.getTime(),
    sockets: 0,
    rv: 10,
  };
  w.stale = w.backend;
  const rec: Record = { maxRank: 0, flags: new Set(), everReady: false };
  for (const s of steps) {
    if (!w.backend) break;
    const before = w.backend;
    switch (s.kind) {
      case 'tick':
        w.now += s.ms;
        break;
      case 'schedule':
        if (w.pod) w.node ??= 'node-a';
        break;
      case 'run':
        if (w.pod && w.node && !w.pullError && !w.terminated) w.running = true;
        break;
      case 'probe':
        if (w.running && !w.terminated) {
          w.ready = s.ready;
          if (s.ready && w.sidecarReadySince === undefined) {
            // The sidecar restarts its activity clock when the app first accepts connections.
            w.sidecarReadySince = w.now;
            w.lastActiveMs = Math.max(w.lastActiveMs, w.now);
          }
        }
        break;
      case 'exit':
        if (w.running && !w.terminated) {
          w.terminated = { container: s.container, code: s.code, oom: s.oom };
          w.ready = false;
        }
        break;
      case 'pullError':
        if (w.pod && !w.running) w.pullError = true;
        break;
      case 'podDeleted':
        if (w.pod) w.podDeleted = true;
        break;
      case 'activity':
        if (w.running) w.lastActiveMs = w.now;
        break;
      case 'webSocket':
        if (w.running) {
          w.sockets = Math.max(0, w.sockets + (s.open ? 1 : -1));
          w.lastActiveMs = w.now;
        }
        break;
      case 'reconcile':
        reconcile(w, s.stale);
        break;
      case 'restart':
        // A new operator reads everything afresh: nothing stale survives.
        w.stale = w.backend;
        reconcile(w, false);
        break;
      case 'sweeper': {
        const b = w.backend;
        const phase = phaseOf(b);
        if (phase !== 'Running' && phase !== 'Ready') break;
        const report = {
          ready: w.ready,
          liveConnections: w.sockets,
          secondsSinceActive: (w.now - w.lastActiveMs) / 1000,
          receivedAtMs: w.now,
        };
        const from = wasReady(b) ? phaseTime(b, 'Ready') : undefined;
        const verdict = judge(report, GRACE_S, w.now, HEARTBEAT_S, from);
        if (verdict.kind === 'sweep') {
          // No idle sweep before first Ready, nor before a whole grace after it.
          expect(wasReady(b)).toBe(true);
          expect(w.now).toBeGreaterThanOrEqual(phaseTime(b, 'Ready')! + GRACE_S * 1000);
          write(w, 'sweeper', { phase: 'Swept', reason: Reasons.IdleTimeout, message: 'idle' });
        }
        break;
      }
      case 'unreachable':
        if (!w.running || w.podDeleted) write(w, 'sweeper', { phase: 'Swept', reason: Reasons.Unreachable, message: 'gone' });
        break;
      case 'clientDelete':
        write(w, 'api', { phase: 'Swept', reason: Reasons.DeletedByClient, message: 'deleted' });
        break;
      case 'rogue': {
        const ok = write(w, s.writer, s.t);
        // A writer outside its role is refused by the module.
        if (ok) {
          expect(s.t.phase).toBe('Swept');
          const allowed = s.writer === 'api' ? [Reasons.DeletedByClient] : [Reasons.IdleTimeout, Reasons.Unreachable];
          expect(allowed).toContain(s.t.reason);
        }
        break;
      }
    }
    void before;
    check(w, rec);
  }
  return rec.terminal?.reason;
}

describe('lifecycle: invariants hold over random histories', () => {
  it('lifecycle: invariants hold over random histories (10,000 generated histories of up to 60 steps)', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60, size: 'max' }), (steps) => {
        play(steps);
      }),
      { numRuns: 10_000 },
    );
  });

  it('reaches the endings in its histories (the model is not vacuous)', () => {
    const endings = new Set<string>();
    fc.assert(
      fc.property(fc.array(step, { minLength: 20, maxLength: 80, size: 'max' }), (steps) => {
        const ending = play(steps);
        if (ending) endings.add(ending);
      }),
      { numRuns: 1_500, seed: 42 },
    );
    for (const reason of [
      'IdleTimeout',
      'Completed',
      'ContainerExited',
      'OOMKilled',
      'StartupTimeout',
      'ImagePullError',
      'PodDeleted',
      'DeletedByClient',
      'Unreachable',
    ]) {
      expect([...endings]).toContain(reason);
    }
  });
});
