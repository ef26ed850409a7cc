/**
 * The SessionLivedBackend as the rest of the code sees it, and the rules of its life that every
 * component shares: the phase order (forward only), terminal phases and reasons, and how a status
 * moves to a new phase. Pure functions only; no I/O.
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { Phase, SessionLivedBackendSpec, SessionLivedBackendStatus, Condition } from '../../crd-schemas/generated/types';
import { API_VERSION, KIND } from './constants';

export type { Phase, SessionLivedBackendSpec, SessionLivedBackendStatus, Condition };

export interface SessionLivedBackend {
  apiVersion: string;
  kind: string;
  metadata: V1ObjectMeta;
  spec: SessionLivedBackendSpec;
  status?: SessionLivedBackendStatus;
  [key: string]: unknown;
}

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
} as const;
export type Reason = (typeof Reasons)[keyof typeof Reasons];

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

export const isTerminal = (phase: Phase | undefined): boolean => phase === 'Swept' || phase === 'Failed';

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

/** Whether moving from `from` to `to` is allowed: forward only, nothing after a terminal phase. */
export function canTransition(from: Phase, to: Phase): boolean {
  if (isTerminal(from)) return false;
  return RANK[to] > RANK[from];
}

export interface Transition {
  phase: Phase;
  reason?: string;
  message?: string;
  /** Extra status fields to set with the transition (nodeName, podIP, exitCode, ...). */
  fields?: Partial<SessionLivedBackendStatus>;
}

/**
 * The status after moving to `t.phase` at `now`: the original's flags for every phase passed
 * through (a jump from Constructed to Ready also sets scheduled and running), `phase`, one
 * condition per phase reached, `observedGeneration`. Returns undefined if the move is not allowed.
 */
export function transitionStatus(
  backend: Pick<SessionLivedBackend, 'status' | 'metadata'>,
  t: Transition,
  now: Date,
): SessionLivedBackendStatus | undefined {
  const from = phaseOf(backend);
  if (!canTransition(from, t.phase)) return undefined;
  const generation = backend.metadata.generation ?? undefined;
  const status: SessionLivedBackendStatus = { ...(backend.status ?? {}), ...(t.fields ?? {}) };
  status.submitted = true;
  const time = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const conditions = [...(status.conditions ?? [])];
  // A terminal phase is reached directly; a forward jump (Constructed to Ready) passed through
  // the phases between.
  const reached = isTerminal(t.phase)
    ? [t.phase]
    : PHASES.filter((p) => !isTerminal(p) && RANK[p] > RANK[from] && RANK[p] <= RANK[t.phase]);
  for (const p of reached) {
    status[FLAG[p as Exclude<Phase, 'Submitted'>]] = true as never;
    if (!conditions.some((c) => c.type === p)) {
      const cond: Condition = { type: p, status: 'True', lastTransitionTime: time, reason: p };
      if (p === t.phase && t.reason) cond.reason = t.reason;
      if (p === t.phase && t.message) cond.message = t.message;
      if (generation !== undefined) cond.observedGeneration = generation;
      conditions.push(cond);
    }
  }
  status.conditions = conditions;
  status.phase = t.phase;
  if (t.reason) status.reason = t.reason;
  if (t.message) status.message = t.message;
  if (generation !== undefined) status.observedGeneration = generation;
  return status;
}

/** Past phases with the time each was reached, oldest first (for status streams). */
export function phaseHistory(backend: Pick<SessionLivedBackend, 'status' | 'metadata'>): Array<{ phase: Phase; time: string }> {
  const created = backend.metadata.creationTimestamp;
  const createdAt = created ? new Date(created as unknown as string).toISOString() : undefined;
  const out: Array<{ phase: Phase; time: string }> = [];
  if (createdAt) out.push({ phase: 'Submitted', time: createdAt });
  const conditions = backend.status?.conditions ?? [];
  for (const p of PHASES) {
    const c = conditions.find((x) => x.type === p && x.status === 'True');
    if (c) out.push({ phase: p, time: c.lastTransitionTime });
  }
  return out;
}

export function newBackend(
  name: string,
  namespace: string,
  spec: SessionLivedBackendSpec,
  extra: Partial<V1ObjectMeta> = {},
): SessionLivedBackend {
  return { apiVersion: API_VERSION, kind: KIND, metadata: { ...extra, name, namespace }, spec };
}
