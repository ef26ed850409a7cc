/**
 * The heart of the reconcile, as a pure function: given a backend and what exists for it now,
 * what should be done. No I/O here, so every branch is unit-tested with plain objects.
 */
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import type { Phase, SessionLivedBackend, SessionLivedBackendStatus } from '../../common/src/backend';
import { isTerminal, phaseOf, phaseRank, phaseTime, Reasons, wasReady, type Transition } from '../../common/src/lifecycle';
import { DEFAULT_STARTUP_TIMEOUT_SECONDS, LABEL_SPAWNER_GROUP, SIDECAR_SERVE_PORT } from '../../common/src/constants';
import type { ServiceMode } from './config';
import { podUrl, serviceUrl, specProblems } from './desired-state';
import { observePod } from './observe-pod';

export type Action =
  | { kind: 'createPod' }
  /** Claim one of these started Pods of the backend's pool (in this order; a Conflict takes the next). */
  | { kind: 'claim'; pods: V1Pod[] }
  | { kind: 'createService' }
  /** A same-named Pod/Service left by an earlier backend of this name: remove it first. */
  | { kind: 'deleteStale'; what: 'pod' | 'service'; uid: string }
  /** The cache says the Pod is gone but the backend had one: check the API server before failing it. */
  | { kind: 'confirmPodGone' }
  | { kind: 'transition'; transition: Transition }
  | { kind: 'labelNode'; node: string }
  | { kind: 'deleteChildren' }
  | { kind: 'deleteBackend' };

export interface Plan {
  actions: Action[];
  requeueAfterMs?: number;
}

export interface DecideInput {
  backend: SessionLivedBackend;
  pod?: V1Pod;
  service?: V1Service;
  /** True when a live read (not the cache) found no Pod. */
  podConfirmedMissing?: boolean;
  now: Date;
  failedRetentionMs: number;
  /** How the backend is reached (operator config); default ClusterIP. */
  serviceMode?: ServiceMode;
  /**
   * For a backend with spec.poolRef that has no Pod yet: its pool as the cache shows it (found,
   * what it does when empty, the Pods that may be claimed now).
   */
  pool?: { found: boolean; whenEmpty: 'ColdStart' | 'Reject'; claimable: V1Pod[] };
}

const time = (v: unknown): number => new Date(v as string).getTime();
const ownedBy = (obj: { metadata?: { ownerReferences?: Array<{ uid: string }> } } | undefined, uid?: string): boolean =>
  !!obj?.metadata?.ownerReferences?.some((r) => r.uid === uid);

function fail(reason: string, message: string, fields?: Partial<SessionLivedBackendStatus>): Action {
  return { kind: 'transition', transition: { phase: 'Failed', reason, message, fields } };
}

function sweep(reason: string, message: string, fields?: Partial<SessionLivedBackendStatus>): Action {
  return { kind: 'transition', transition: { phase: 'Swept', reason, message, fields } };
}

function decideTerminal(input: DecideInput, phase: Phase): Plan {
  const { backend, pod, service, now, failedRetentionMs } = input;
  if (phase === 'Swept') return { actions: [{ kind: 'deleteBackend' }] };
  // Failed: nothing of it keeps running, but the resource stays a while so users can look.
  const actions: Action[] = [];
  if (ownedBy(pod, backend.metadata.uid) || ownedBy(service, backend.metadata.uid)) actions.push({ kind: 'deleteChildren' });
  const failedAt = phaseTime(backend, 'Failed') ?? now.getTime();
  const remaining = failedAt + failedRetentionMs - now.getTime();
  if (remaining <= 0) return { actions: [...actions, { kind: 'deleteBackend' }] };
  return { actions, requeueAfterMs: remaining };
}

export function decide(input: DecideInput): Plan {
  const { backend, pod, service, now } = input;
  if (backend.metadata.deletionTimestamp) return { actions: [] };
  const phase = phaseOf(backend);
  if (isTerminal(phase)) return decideTerminal(input, phase);

  const problems = specProblems(backend);
  if (problems.length > 0) return { actions: [fail(Reasons.InvalidSpec, problems.join('; '))] };

  const created = time(backend.metadata.creationTimestamp);
  const nowMs = now.getTime();
  const deadlines: number[] = [];

  const maxLifetime = backend.spec.maxLifetimeSeconds;
  if (maxLifetime !== undefined) {
    const deadline = created + maxLifetime * 1000;
    if (nowMs >= deadline) {
      return { actions: [sweep(Reasons.LifetimeExceeded, `maxLifetimeSeconds (${maxLifetime}) reached`)] };
    }
    deadlines.push(deadline);
  }

  const uid = backend.metadata.uid;
  if (pod && !ownedBy(pod, uid))
    return { actions: [{ kind: 'deleteStale', what: 'pod', uid: pod.metadata?.uid ?? '' }], requeueAfterMs: 1000 };
  if (service && !ownedBy(service, uid)) {
    return { actions: [{ kind: 'deleteStale', what: 'service', uid: service.metadata?.uid ?? '' }], requeueAfterMs: 1000 };
  }

  const hadPod = phaseRank(phase) >= phaseRank('Constructed') || backend.status?.constructed === true;
  if (!pod && hadPod) {
    if (!input.podConfirmedMissing) return { actions: [{ kind: 'confirmPodGone' }] };
    return { actions: [fail(Reasons.PodDeleted, "the backend's Pod was deleted")] };
  }
  if (pod?.metadata?.deletionTimestamp) return { actions: [fail(Reasons.PodDeleted, "the backend's Pod is being deleted")] };

  // A backend from a warm pool, not launched yet: claim a started Pod, or, with none ready, start
  // cold or fail, as the pool says. A claimed Pod goes straight to Ready below, on the next plan.
  const poolRef = backend.spec.poolRef;
  const launching = !!poolRef && !backend.status?.launch;
  if (!pod && launching && phase === 'Submitted' && input.pool) {
    if (input.pool.claimable.length > 0) return { actions: [{ kind: 'claim', pods: input.pool.claimable }] };
    if (input.pool.found && input.pool.whenEmpty === 'Reject') {
      return {
        actions: [fail(Reasons.PoolEmpty, `pool ${poolRef.name} had no ready Pod and its whenEmpty is Reject`)],
      };
    }
  }

  const serviceMode = input.serviceMode ?? 'ClusterIP';
  const actions: Action[] = [];
  let labelNode: string | undefined;
  if (!pod) actions.push({ kind: 'createPod' });
  if (!service && serviceMode !== 'None') actions.push({ kind: 'createService' });

  // Both exist once this pass's creates succeed; a failed create throws and stops the pass.
  let target: Phase = 'Constructed';
  const fields: Partial<SessionLivedBackendStatus> = { port: SIDECAR_SERVE_PORT };
  // The address clients reach the backend at: the Service's cluster IP; for a headless Service
  // (which DNS resolves to the Pod) or no Service at all, the Pod's IP, set below.
  const byPodIP = serviceMode === 'None' || service?.spec?.clusterIP === 'None';
  if (serviceMode !== 'None') fields.url = serviceUrl(backend);
  if (service?.spec?.clusterIP && !byPodIP) fields.ip = service.spec.clusterIP;

  if (pod) {
    const appName = backend.spec.template.containers[0].name;
    const obs = observePod(pod, appName);
    if (obs.terminated) {
      const t = obs.terminated;
      // The app ending with code 0 ended its session itself (a game over, a document closed).
      if (t.isApp && t.exitCode === 0 && t.reason !== 'OOMKilled') {
        return { actions: [sweep(Reasons.Completed, 'the application exited with code 0', { exitCode: 0 })] };
      }
      const oom = t.reason === 'OOMKilled';
      const what = t.isApp ? 'the application' : `container ${t.container}`;
      const message = oom
        ? `${what} was killed for running out of memory`
        : `${what} exited with code ${t.exitCode}${t.message ? `: ${t.message}` : ''}`;
      return { actions: [fail(oom ? Reasons.OOMKilled : Reasons.ContainerExited, message, { exitCode: t.exitCode })] };
    }
    if (obs.imagePullError) return { actions: [fail(Reasons.ImagePullError, obs.imagePullError)] };

    if (obs.nodeName) {
      target = 'Scheduled';
      fields.nodeName = obs.nodeName;
      if (backend.metadata.labels?.[LABEL_SPAWNER_GROUP] !== obs.nodeName) labelNode = obs.nodeName;
    }
    if (pod.metadata?.uid) fields.podUID = pod.metadata.uid;
    if (pod.metadata?.name) fields.podName = pod.metadata.name;
    if (obs.podIP) fields.podIP = obs.podIP;
    if (obs.podIP && byPodIP) fields.ip = obs.podIP;
    if (obs.podIP && serviceMode === 'None') fields.url = podUrl(obs.podIP);
    if (obs.running && obs.nodeName) target = 'Running';
    if (obs.ready && obs.running && obs.nodeName) target = 'Ready';

    // startupTimeoutSeconds bounds the start only: once Ready, a readiness blip is not a failed start.
    if (phaseRank(target) < phaseRank('Ready') && !wasReady(backend)) {
      const timeout = (backend.spec.startupTimeoutSeconds ?? DEFAULT_STARTUP_TIMEOUT_SECONDS) * 1000;
      const deadline = created + timeout;
      if (nowMs >= deadline) {
        if (obs.unschedulable) return { actions: [fail(Reasons.Unschedulable, obs.unschedulable)] };
        const detail = obs.waitingProblem ? `: ${obs.waitingProblem}` : '';
        return { actions: [fail(Reasons.StartupTimeout, `not Ready within startupTimeoutSeconds (${timeout / 1000})${detail}`)] };
      }
      deadlines.push(deadline);
    }
  } else if (!wasReady(backend)) {
    const timeout = (backend.spec.startupTimeoutSeconds ?? DEFAULT_STARTUP_TIMEOUT_SECONDS) * 1000;
    deadlines.push(created + timeout);
  }

  if (launching) {
    // A Pod named otherwise than the backend was claimed from the pool; its own Pod is a cold start.
    if (pod && pod.metadata?.name !== backend.metadata.name) fields.launch = 'Warm';
    else {
      fields.launch = 'Cold';
      fields.launchReason = input.pool?.found === false ? 'PoolNotFound' : 'PoolEmpty';
    }
  }

  if (phaseRank(target) > phaseRank(phase)) actions.push({ kind: 'transition', transition: { phase: target, fields } });
  else if (changedFields(backend.status, fields)) {
    // Same phase, new facts (a podIP after a restart of the watch, say): record them.
    actions.push({ kind: 'transition', transition: { phase, fields } });
  }
  // After the status write: the sweeper's shard label is not what a client waits for (a warm
  // claim goes Ready one write sooner), and a pass that fails in between labels on the next.
  if (labelNode) actions.push({ kind: 'labelNode', node: labelNode });

  const next = deadlines.length > 0 ? Math.min(...deadlines) - nowMs : undefined;
  return { actions, requeueAfterMs: next !== undefined ? Math.max(next, 0) : undefined };
}

function changedFields(status: SessionLivedBackendStatus | undefined, fields: Partial<SessionLivedBackendStatus>): boolean {
  const s = (status ?? {}) as Record<string, unknown>;
  return Object.entries(fields).some(([k, v]) => v !== undefined && s[k] !== v);
}
