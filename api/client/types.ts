/**
 * The wire types of Spawner's REST API, as /openapi.json documents them
 * (crd-schemas/api/spawner-api.schema.json). Shared by the server and the client.
 */
import type {
  BackendPodTemplate,
  EnvVar,
  Phase,
  ResourceRequirements,
  SessionLivedBackendSpec,
} from '../../crd-schemas/generated/types';

export type { BackendPodTemplate, EnvVar, Phase, ResourceRequirements, SessionLivedBackendSpec };

export interface CreateBackendCommon {
  labels?: Record<string, string>;
  /** Get-or-create: at most one live backend per key. */
  key?: string;
  httpPort?: number;
  gracePeriodSeconds?: number;
  maxLifetimeSeconds?: number;
  startupTimeoutSeconds?: number;
}

export interface CreateFromImage extends CreateBackendCommon {
  image: string;
  env?: Record<string, string> | EnvVar[];
  command?: string[];
  args?: string[];
  resources?: ResourceRequirements;
  template?: never;
  pool?: never;
}

export interface CreateFromTemplate extends CreateBackendCommon {
  template: BackendPodTemplate;
  image?: never;
  pool?: never;
}

/** From a warm pool (SessionBackendPool): the pool's template and httpPort are the backend's. */
export interface CreateFromPool extends Omit<CreateBackendCommon, 'httpPort'> {
  pool: string;
  image?: never;
  template?: never;
  httpPort?: never;
}

export type CreateBackendRequest = CreateFromImage | CreateFromTemplate | CreateFromPool;

export interface Backend {
  name: string;
  namespace: string;
  key?: string;
  phase: Phase;
  reason?: string;
  message?: string;
  /** Where a browser reaches the backend, connection token included. */
  url: string;
  readyUrl: string;
  statusUrl: string;
  labels: Record<string, string>;
  createdAt: string;
  nodeName?: string;
  podIP?: string;
  /** The backend's Pod (a warm pool's Pod after a claim). */
  podName?: string;
  /** From a pool: Warm (a started Pod claimed) or Cold (a Pod started for it; launchReason says why). */
  launch?: 'Warm' | 'Cold';
  launchReason?: string;
  spec: SessionLivedBackendSpec;
}

export interface BackendList {
  items: Backend[];
}

export interface SpawnRequest {
  image: string;
  port?: number;
  env?: Record<string, string> | EnvVar[];
  gracePeriodSeconds?: number;
}

export interface SpawnResponse {
  url: string;
  name: string;
  readyUrl: string;
  statusUrl: string;
}

/** The original status shape: `state` is the phase name. */
export interface LegacyStatus {
  state: Phase;
  time: string;
}

export interface StatusEvent {
  phase: Phase;
  time: string;
  reason?: string;
  message?: string;
}

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}
