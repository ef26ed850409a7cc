/**
 * What a backend's Pod says about the backend, read from the Pod's status alone.
 */
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { SIDECAR_CONTAINER } from '../../common/src/constants';

export interface PodObservation {
  nodeName?: string;
  podIP?: string;
  running: boolean;
  ready: boolean;
  deleting: boolean;
  /** Set when the scheduler has said it cannot place the Pod (it may still, later). */
  unschedulable?: string;
  imagePullError?: string;
  terminated?: { container: string; isApp: boolean; exitCode: number; reason: string; message?: string };
  /** Set when a container cannot start for a reason that may resolve (a missing Secret, say). */
  waitingProblem?: string;
}

const IMAGE_PULL_REASONS = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'RegistryUnavailable',
]);
const WAITING_PROBLEMS = new Set(['CreateContainerConfigError', 'CreateContainerError', 'CrashLoopBackOff', 'RunContainerError']);

function terminationOf(cs: V1ContainerStatus, appName: string): PodObservation['terminated'] {
  const t = cs.state?.terminated;
  if (!t) return undefined;
  return {
    container: cs.name,
    isApp: cs.name === appName,
    exitCode: t.exitCode,
    reason: t.reason ?? (t.exitCode === 0 ? 'Completed' : 'Error'),
    message: t.message?.slice(-1024),
  };
}

export function observePod(pod: V1Pod, appName: string): PodObservation {
  const status = pod.status ?? {};
  const conditions = status.conditions ?? [];
  const statuses = status.containerStatuses ?? [];
  const obs: PodObservation = {
    nodeName: pod.spec?.nodeName || undefined,
    podIP: status.podIP || undefined,
    running: status.phase === 'Running',
    ready: conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
    deleting: !!pod.metadata?.deletionTimestamp,
  };
  const scheduled = conditions.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
    obs.unschedulable = scheduled.message ?? 'Unschedulable';
  }
  // The app first: its exit is the backend's story; the sidecar's is secondary.
  const ordered = [...statuses].sort((a, b) => Number(b.name === appName) - Number(a.name === appName));
  for (const cs of ordered) {
    obs.terminated ??= terminationOf(cs, appName);
    const waiting = cs.state?.waiting;
    if (waiting?.reason && IMAGE_PULL_REASONS.has(waiting.reason)) {
      obs.imagePullError ??= `${cs.name}: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`;
    } else if (waiting?.reason && WAITING_PROBLEMS.has(waiting.reason)) {
      obs.waitingProblem ??= `${cs.name}: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`;
    }
  }
  if (!obs.terminated && (status.phase === 'Failed' || status.phase === 'Succeeded')) {
    obs.terminated = {
      container: appName,
      isApp: true,
      exitCode: status.phase === 'Succeeded' ? 0 : -1,
      reason: status.reason ?? status.phase,
      message: status.message,
    };
  }
  if (obs.terminated?.container === SIDECAR_CONTAINER) obs.terminated.isApp = false;
  return obs;
}
