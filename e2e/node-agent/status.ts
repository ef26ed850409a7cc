/**
 * Pod status from the state of its processes, with the kubelet's rules (pkg/kubelet/kubelet_pods.go
 * getPhase and the status manager's conditions), kept pure so unit tests pin the semantics.
 */
import type { ContainerStateJson, ContainerStatusJson, Pod, PodConditionJson, PodPhase, PodStatusJson } from './pod-types';

export interface ContainerView {
  name: string;
  image: string;
  state: ContainerStateJson;
  lastState: ContainerStateJson;
  restartCount: number;
  ready: boolean;
  started: boolean;
  containerID?: string;
  /** Init containers with restartPolicy Always (native sidecars) keep running beside the app. */
  sidecar?: boolean;
}

export interface PodView {
  sandboxReady: boolean;
  podIP?: string;
  hostIP: string;
  startTime: string;
  initContainers: ContainerView[];
  containers: ContainerView[];
  /** Set once the pod is terminal; phases never go back. */
  terminalPhase?: 'Succeeded' | 'Failed';
}

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

export function initPending(init: ContainerView[]): boolean {
  return init.some((c) => (c.sidecar ? !c.started : c.state.terminated?.exitCode !== 0));
}

export function initFailed(init: ContainerView[], policy: RestartPolicy): boolean {
  return (
    policy === 'Never' && init.some((c) => !c.sidecar && c.state.terminated !== undefined && c.state.terminated.exitCode !== 0)
  );
}

export function podPhase(policy: RestartPolicy, init: ContainerView[], containers: ContainerView[]): PodPhase {
  if (initFailed(init, policy)) return 'Failed';
  if (initPending(init)) return 'Pending';
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const c of containers) {
    if (c.state.running) running++;
    else if (c.state.terminated) {
      stopped++;
      if (c.state.terminated.exitCode === 0) succeeded++;
    } else if (c.lastState.terminated) stopped++;
    else waiting++;
  }
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (policy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    return policy === 'Never' ? 'Failed' : 'Running';
  }
  return 'Pending';
}

interface DesiredCondition {
  type: string;
  status: 'True' | 'False';
  reason?: string;
  message?: string;
}

/** Keeps lastTransitionTime unless the condition's status really changed. */
export function mergeConditions(
  previous: PodConditionJson[] | undefined,
  desired: DesiredCondition[],
  now: string,
): PodConditionJson[] {
  const owned = new Set(desired.map((d) => d.type));
  const byType = new Map((previous ?? []).map((c) => [c.type, c]));
  const out: PodConditionJson[] = [];
  for (const d of desired) {
    const prev = byType.get(d.type);
    const cond: PodConditionJson = {
      type: d.type,
      status: d.status,
      lastProbeTime: null,
      lastTransitionTime: prev && prev.status === d.status ? prev.lastTransitionTime : now,
    };
    if (d.reason) cond.reason = d.reason;
    if (d.message) cond.message = d.message;
    out.push(cond);
  }
  // Conditions others own (readiness gates, DisruptionTarget) pass through untouched.
  for (const c of previous ?? []) if (!owned.has(c.type)) out.push(c);
  return out;
}

function containerStatus(c: ContainerView): ContainerStatusJson {
  const s: ContainerStatusJson = {
    name: c.name,
    image: c.image,
    imageID: `e2e-local://${c.image}`,
    ready: c.ready,
    started: c.started,
    restartCount: c.restartCount,
    state: c.state,
    lastState: c.lastState,
  };
  if (c.containerID) s.containerID = c.containerID;
  return s;
}

/**
 * `previous` are the conditions last written (the agent's own memory, since its watch may lag
 * behind its writes) followed by any others the Pod carries.
 */
export function buildStatus(pod: Pod, view: PodView, previous: PodConditionJson[] | undefined, now: string): PodStatusJson {
  const policy = (pod.spec.restartPolicy ?? 'Always') as RestartPolicy;
  const phase = view.terminalPhase ?? podPhase(policy, view.initContainers, view.containers);
  const terminal = phase === 'Succeeded' || phase === 'Failed';

  const notInitialized = view.initContainers.filter((c) => (c.sidecar ? !c.started : c.state.terminated?.exitCode !== 0));
  const unready = view.containers.filter((c) => !c.ready).map((c) => c.name);
  const gates = (pod.spec.readinessGates ?? []).map((g) => g.conditionType);
  const missingGate = gates.find((g) => previous?.find((c) => c.type === g)?.status !== 'True');

  const desired: DesiredCondition[] = [
    { type: 'PodReadyToStartContainers', status: view.sandboxReady ? 'True' : 'False' },
    notInitialized.length === 0
      ? { type: 'Initialized', status: 'True' }
      : {
          type: 'Initialized',
          status: 'False',
          reason: 'ContainersNotInitialized',
          message: `containers with incomplete status: [${notInitialized.map((c) => c.name).join(' ')}]`,
        },
  ];
  if (terminal) {
    desired.push(
      { type: 'Ready', status: 'False', reason: 'PodCompleted' },
      { type: 'ContainersReady', status: 'False', reason: 'PodCompleted' },
    );
  } else if (unready.length > 0) {
    const message = `containers with unready status: [${unready.join(' ')}]`;
    desired.push(
      { type: 'Ready', status: 'False', reason: 'ContainersNotReady', message },
      { type: 'ContainersReady', status: 'False', reason: 'ContainersNotReady', message },
    );
  } else if (missingGate) {
    desired.push(
      {
        type: 'Ready',
        status: 'False',
        reason: 'ReadinessGatesNotReady',
        message: `corresponding condition of pod readiness gate "${missingGate}" does not exist.`,
      },
      { type: 'ContainersReady', status: 'True' },
    );
  } else {
    desired.push({ type: 'Ready', status: 'True' }, { type: 'ContainersReady', status: 'True' });
  }
  desired.push({ type: 'PodScheduled', status: 'True' });

  const status: PodStatusJson = {
    phase,
    conditions: mergeConditions(previous, desired, now),
    hostIP: view.hostIP,
    hostIPs: [{ ip: view.hostIP }],
    startTime: view.startTime,
    containerStatuses: view.containers.map(containerStatus),
  };
  if (view.initContainers.length > 0) status.initContainerStatuses = view.initContainers.map(containerStatus);
  if (view.podIP) {
    status.podIP = view.podIP;
    status.podIPs = [{ ip: view.podIP }];
  }
  return status;
}
