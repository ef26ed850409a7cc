/**
 * The life of a SessionLivedBackend, in one place: the phase order, who may make which transition,
 * the reasons a backend ends, what its status says (the original's flags, the current-state
 * conditions, the transitions list), and the status write itself with its one retry policy.
 * The operator, the sweeper, the API and local mode all go through here; nothing else writes a
 * backend's phase.
 *
 * Invariants this module keeps, whoever calls it and in whatever order (lifecycle.test.ts drives
 * them with generated histories):
 * - the phase only moves forward (Submitted → Constructed → Scheduled → Running → Ready), and a
 *   terminal phase (Swept, Failed) is final: two racing writers can never record two endings;
 * - every terminal phase has a reason, and no other phase has one;
 * - a backend that was ever Ready never fails for a startup reason, and is never swept as idle
 *   before it was Ready;
 * - the `Ready` condition is True exactly while the phase is Ready; `Terminated` is True exactly
 *   when the phase is terminal;
 * - each writer makes only its role's transitions (`ROLES`).
 */
import type {
  Condition,
  Phase,
  PhaseTransition,
  SessionBackendPool,
  SessionBackendPoolStatus,
  SessionLivedBackend,
  SessionLivedBackendStatus,
} from './backend';
import { FIELD_MANAGER } from './constants';
import { isConflict, isNotFound } from './errors';
import { BACKENDS, POOLS } from './kube/resources';
import type { KubeClient } from './kube/types';

export const PHASES: readonly Phase[] = ['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept', 'Failed'];
export const TERMINAL_PHASES: readonly Phase[] = ['Swept', 'Failed'];

/** Why a backend ended. */
export const Reasons = {
  IdleTimeout: 'IdleTimeout',
  LifetimeExceeded: 'LifetimeExceeded',
  Unreachable: 'Unreachable',
  StartupTimeout: 'StartupTimeout',
  ImagePullError: 'ImagePullError',
  Unschedulable: 'Unschedulable',
  ContainerExited: 'ContainerExited',
  OOMKilled: 'OOMKilled',
  PodDeleted: 'PodDeleted',
  DeletedByClient: 'DeletedByClient',
  InvalidSpec: 'InvalidSpec',
  /** Created from a warm pool whose whenEmpty is Reject while it had no ready Pod. */
  PoolEmpty: 'PoolEmpty',
  /** The app exited with code 0: it ended its session itself. */
  Completed: 'Completed',
} as const;
export type Reason = (typeof Reasons)[keyof typeof Reasons];

/** Reasons that say "it never started": refused once the backend has been Ready. */
export const STARTUP_REASONS: ReadonlySet<string> = new Set([
  Reasons.StartupTimeout,
  Reasons.ImagePullError,
  Reasons.Unschedulable,
  Reasons.InvalidSpec,
  Reasons.PoolEmpty,
]);

const RANK: Record<Phase, number> = {
  Submitted: 0,
  Constructed: 1,
  Scheduled: 2,
  Running: 3,
  Ready: 4,
  Swept: 5,
  Failed: 5,
};

const FLAG: Record<Exclude<Phase, 'Submitted'>, keyof SessionLivedBackendStatus> = {
  Constructed: 'constructed',
  Scheduled: 'scheduled',
  Running: 'running',
  Ready: 'ready',
  Swept: 'swept',
  Failed: 'failed',
};

export const CONDITION_READY = 'Ready';
export const CONDITION_TERMINATED = 'Terminated';

export const isTerminal = (phase: Phase | undefined): boolean => phase === 'Swept' || phase === 'Failed';

/** The rank of a phase in the forward order (Swept and Failed share the last). */
export const phaseRank = (phase: Phase): number => RANK[phase];

/**
 * The backend's phase. Resources written by the original Spawner carry only the boolean flags;
 * they are read the way the original read them.
 */
export function phaseOf(backend: Pick<SessionLivedBackend, 'status'>): Phase {
  const s = backend.status;
  if (!s) return 'Submitted';
  if (s.phase) return s.phase;
  if (s.failed) return 'Failed';
  if (s.swept) return 'Swept';
  if (s.ready) return 'Ready';
  if (s.running) return 'Running';
  if (s.scheduled) return 'Scheduled';
  if (s.constructed) return 'Constructed';
  return 'Submitted';
}

/** Whether the backend was ever Ready (the original's `ready` flag is history, not state). */
export const wasReady = (backend: Pick<SessionLivedBackend, 'status'>): boolean =>
  backend.status?.ready === true || phaseOf(backend) === 'Ready';

/** Whether moving from `from` to `to` keeps the order: forward only, nothing after a terminal phase. */
export function canTransition(from: Phase, to: Phase): boolean {
  if (isTerminal(from)) return false;
  return RANK[to] > RANK[from];
}

export interface Transition {
  phase: Phase;
  /** Required for a terminal phase, refused for any other. */
  reason?: string;
  message?: string;
  /** Extra status fields to set with the transition (nodeName, podIP, exitCode, ...). */
  fields?: Partial<SessionLivedBackendStatus>;
}

/** Who writes a backend's status. */
export type Writer = 'operator' | 'sweeper' | 'api';

/**
 * Each writer's transitions (SPEC section 4): the operator makes all of them (and records new
 * facts within a phase); the sweeper ends a Running or Ready backend as Unreachable, and a Ready
 * one as IdleTimeout; the API ends a live backend on its client's request.
 */
export const ROLES: Record<Writer, { describe: string; allows(from: Phase, t: Transition): boolean }> = {
  operator: { describe: 'every transition', allows: () => true },
  sweeper: {
    describe: 'Ready → Swept (IdleTimeout), Running/Ready → Swept (Unreachable)',
    allows: (from, t) =>
      t.phase === 'Swept' &&
      ((t.reason === Reasons.IdleTimeout && from === 'Ready') ||
        (t.reason === Reasons.Unreachable && (from === 'Running' || from === 'Ready'))),
  },
  api: {
    describe: 'any live phase → Swept (DeletedByClient)',
    allows: (_from, t) => t.phase === 'Swept' && t.reason === Reasons.DeletedByClient,
  },
};

export type Verdict = { ok: true; status: SessionLivedBackendStatus } | { ok: false; refused: string };

const isoSeconds = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The current-state conditions for `phase`, keeping lastTransitionTime where a status did not change. */
function currentConditions(
  previous: Condition[] | undefined,
  phase: Phase,
  reason: string | undefined,
  message: string | undefined,
  time: string,
  generation: number | undefined,
): Condition[] {
  const terminal = isTerminal(phase);
  const desired: Condition[] = [
    {
      type: CONDITION_READY,
      status: phase === 'Ready' ? 'True' : 'False',
      // Why it is (not) Ready: its phase, or how it ended.
      reason: phase === 'Ready' ? 'Ready' : terminal ? (reason ?? phase) : phase,
      lastTransitionTime: time,
    },
    {
      type: CONDITION_TERMINATED,
      status: terminal ? 'True' : 'False',
      reason: terminal ? (reason ?? phase) : 'Live',
      lastTransitionTime: time,
    },
  ];
  return desired.map((c) => {
    if (terminal && message) c.message = message;
    if (generation !== undefined) c.observedGeneration = generation;
    const before = previous?.find((p) => p.type === c.type);
    if (before && before.status === c.status) c.lastTransitionTime = before.lastTransitionTime;
    return c;
  });
}

/**
 * The status after `writer` applies `t` at `now`, or why it may not. A transition to the current
 * phase records new facts (`fields`) without moving; only the operator does that.
 */
export function planTransition(
  backend: Pick<SessionLivedBackend, 'status' | 'metadata'>,
  t: Transition,
  writer: Writer,
  now: Date,
): Verdict {
  const from = phaseOf(backend);
  if (t.phase === from && !isTerminal(from)) {
    if (writer !== 'operator') return { ok: false, refused: `${writer} may not rewrite a ${from} backend's status` };
    if (t.reason) return { ok: false, refused: 'a live phase has no reason' };
    return { ok: true, status: { ...(backend.status ?? {}), ...(t.fields ?? {}) } };
  }
  if (!canTransition(from, t.phase)) return { ok: false, refused: `${from} → ${t.phase} goes backwards or past an ending` };
  if (!ROLES[writer].allows(from, t))
    return {
      ok: false,
      refused: `${writer} may make only ${ROLES[writer].describe}, not ${from} → ${t.phase} (${t.reason ?? 'no reason'})`,
    };
  if (isTerminal(t.phase) && !t.reason) return { ok: false, refused: `${t.phase} needs a reason` };
  if (!isTerminal(t.phase) && t.reason) return { ok: false, refused: `${t.phase} is not an ending and takes no reason` };
  if (t.phase === 'Failed' && t.reason && STARTUP_REASONS.has(t.reason) && wasReady(backend)) {
    return { ok: false, refused: `the backend was Ready once: ${t.reason} is a startup failure` };
  }

  const generation = backend.metadata.generation ?? undefined;
  const status: SessionLivedBackendStatus = { ...(backend.status ?? {}), ...(t.fields ?? {}) };
  status.submitted = true;
  // A terminal phase is reached directly; a forward jump (Constructed to Ready) passed through
  // the phases between, and the original's flags say so.
  const passed = isTerminal(t.phase)
    ? [t.phase]
    : PHASES.filter((p) => !isTerminal(p) && RANK[p] > RANK[from] && RANK[p] <= RANK[t.phase]);
  for (const p of passed) status[FLAG[p as Exclude<Phase, 'Submitted'>]] = true as never;

  const time = now.toISOString();
  const entries = passed.map((phase): PhaseTransition => {
    const entry: PhaseTransition = { phase, time };
    if (phase === t.phase && t.reason) entry.reason = t.reason;
    if (phase === t.phase && t.message) entry.message = t.message;
    return entry;
  });
  status.transitions = [...(backend.status?.transitions ?? []).filter((x) => !passed.includes(x.phase)), ...entries];
  status.phase = t.phase;
  if (t.reason) status.reason = t.reason;
  if (t.message) status.message = t.message;
  status.conditions = currentConditions(backend.status?.conditions, t.phase, t.reason, t.message, isoSeconds(now), generation);
  if (generation !== undefined) status.observedGeneration = generation;
  return { ok: true, status };
}

/** When the backend reached `phase` (ms since the epoch), if it did. */
export function phaseTime(backend: Pick<SessionLivedBackend, 'status'>, phase: Phase): number | undefined {
  const entry = backend.status?.transitions?.find((x) => x.phase === phase);
  if (entry) return Date.parse(entry.time);
  // Written before the transitions list existed: one condition per phase reached.
  const legacy = backend.status?.conditions?.find((c) => c.type === phase && c.status === 'True' && !!c.lastTransitionTime);
  return legacy ? Date.parse(legacy.lastTransitionTime) : undefined;
}

/** Past phases with the time each was reached, oldest first (for status streams). */
export function phaseHistory(backend: Pick<SessionLivedBackend, 'status' | 'metadata'>): Array<{ phase: Phase; time: string }> {
  const created = backend.metadata.creationTimestamp;
  const out: Array<{ phase: Phase; time: string }> = [];
  if (created) out.push({ phase: 'Submitted', time: new Date(created as unknown as string).toISOString() });
  for (const phase of PHASES) {
    const at = phase === 'Submitted' ? undefined : phaseTime(backend, phase);
    if (at !== undefined) out.push({ phase, time: new Date(at).toISOString() });
  }
  return out;
}

// ---- the status write ----

/** How often a write is tried again after a Conflict, each time from a fresh read. */
export const STATUS_WRITE_ATTEMPTS = 5;

export type WriteOutcome =
  /** Written; `from` is the phase it moved from. */
  | { kind: 'written'; backend: SessionLivedBackend; from: Phase }
  /** Not allowed against the backend as it now is (it moved on meanwhile, or outside the role). */
  | { kind: 'refused'; backend: SessionLivedBackend; refused: string }
  /** The backend (this incarnation of it) no longer exists. */
  | { kind: 'gone' };

export interface WriteOptions {
  now?: () => Date;
  fieldManager?: string;
}

/**
 * Applies `t` as `writer` to `current` (the caller's latest read): a merge patch of the status
 * subresource with `current`'s resourceVersion as precondition. On Conflict the backend is read
 * again and the transition re-judged against it, up to STATUS_WRITE_ATTEMPTS times: a racing
 * writer's ending wins cleanly (refused), a stale read never moves a phase back. Other errors
 * (the API server away) are thrown for the caller's own backoff.
 */
export async function writeTransition(
  kube: KubeClient,
  writer: Writer,
  current: SessionLivedBackend,
  t: Transition,
  opts: WriteOptions = {},
): Promise<WriteOutcome> {
  const now = opts.now ?? (() => new Date());
  const { namespace, name, uid } = current.metadata as { namespace: string; name: string; uid?: string };
  let backend = current;
  for (let attempt = 1; ; attempt++) {
    const verdict = planTransition(backend, t, writer, now());
    if (!verdict.ok) return { kind: 'refused', backend, refused: verdict.refused };
    try {
      const patched = await kube.patch<SessionLivedBackend>(
        BACKENDS,
        namespace,
        name,
        { metadata: { resourceVersion: backend.metadata.resourceVersion }, status: verdict.status },
        'merge',
        { subresource: 'status', fieldManager: opts.fieldManager ?? FIELD_MANAGER },
      );
      return { kind: 'written', backend: patched, from: phaseOf(backend) };
    } catch (err) {
      if (isNotFound(err)) return { kind: 'gone' };
      if (!isConflict(err) || attempt >= STATUS_WRITE_ATTEMPTS) throw err;
      const fresh = await kube.get<SessionLivedBackend>(BACKENDS, namespace, name);
      if (!fresh || (uid && fresh.metadata.uid !== uid)) return { kind: 'gone' };
      backend = fresh;
    }
  }
}

// ---- a warm pool's status ----

/**
 * Writes a pool's status (counts, observedGeneration, conditions) the way backends' are written:
 * a merge patch of the status subresource with the resourceVersion it was computed from. A pool
 * has no phases, so there is nothing to re-judge: on Conflict (or NotFound) it returns 'stale'
 * and the pool's next reconcile computes the status again from a fresh cache.
 */
export async function writePoolStatus(
  kube: KubeClient,
  pool: SessionBackendPool,
  status: SessionBackendPoolStatus,
  opts: Pick<WriteOptions, 'fieldManager'> = {},
): Promise<SessionBackendPool | 'stale'> {
  const { namespace, name } = pool.metadata as { namespace: string; name: string };
  try {
    return await kube.patch<SessionBackendPool>(
      POOLS,
      namespace,
      name,
      { metadata: { resourceVersion: pool.metadata.resourceVersion }, status },
      'merge',
      { subresource: 'status', fieldManager: opts.fieldManager ?? FIELD_MANAGER },
    );
  } catch (err) {
    if (isConflict(err) || isNotFound(err)) return 'stale';
    throw err;
  }
}

/** A pool condition, keeping lastTransitionTime while its status does not change. */
export function poolCondition(previous: Condition[] | undefined, c: Omit<Condition, 'lastTransitionTime'>, now: Date): Condition {
  const before = previous?.find((p) => p.type === c.type);
  const lastTransitionTime = before && before.status === c.status ? before.lastTransitionTime : isoSeconds(now);
  return { ...c, lastTransitionTime };
}
