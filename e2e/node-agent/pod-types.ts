/**
 * The Pod as the agent reads it. Spec parts reuse @kubernetes/client-node's models (they carry no
 * dates); status is written by the agent as plain JSON, so it has its own string-typed shape.
 */
import type { V1ObjectMeta, V1PodSpec } from '@kubernetes/client-node';
import type { KubeObject } from '../../common/src/kube/types';

export interface ContainerStateJson {
  waiting?: { reason: string; message?: string };
  running?: { startedAt: string };
  terminated?: {
    exitCode: number;
    signal?: number;
    reason: string;
    message?: string;
    startedAt?: string;
    finishedAt: string;
    containerID?: string;
  };
}

export interface ContainerStatusJson {
  name: string;
  image: string;
  imageID: string;
  containerID?: string;
  ready: boolean;
  started: boolean;
  restartCount: number;
  state: ContainerStateJson;
  lastState: ContainerStateJson;
}

export interface PodConditionJson {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  lastProbeTime: string | null;
  lastTransitionTime: string;
  reason?: string;
  message?: string;
}

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';

export interface PodStatusJson {
  phase: PodPhase;
  conditions?: PodConditionJson[];
  hostIP?: string;
  hostIPs?: Array<{ ip: string }>;
  podIP?: string;
  podIPs?: Array<{ ip: string }>;
  startTime?: string;
  initContainerStatuses?: ContainerStatusJson[];
  containerStatuses?: ContainerStatusJson[];
  reason?: string;
  message?: string;
  qosClass?: string;
}

export interface Pod extends KubeObject {
  metadata: V1ObjectMeta & { name: string; namespace: string; uid: string };
  spec: V1PodSpec;
  status?: PodStatusJson;
}

/** metav1.Time: RFC 3339 at whole seconds, as the API server would store it anyway. */
export const kubeTime = (ms: number = Date.now()): string =>
  new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

export const podKey = (pod: { metadata: { namespace: string; name: string } }): string =>
  `${pod.metadata.namespace}/${pod.metadata.name}`;
