import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig, type ConfigSpec } from '../../common/src/config';
import { LOG_LEVELS, type LogLevel } from '../../common/src/logger';
import { DEFAULT_FAILED_RETENTION_SECONDS } from '../../common/src/constants';

/**
 * How a backend is reached in the cluster: `ClusterIP` (the original's: a Service with a cluster
 * IP), `Headless` (a Service whose DNS name resolves to the Pod: no cluster IP to allocate) or
 * `None` (no Service at all: the entry point and the sweeper dial the Pod by IP).
 */
export type ServiceMode = 'ClusterIP' | 'Headless' | 'None';
export const SERVICE_MODES: readonly ServiceMode[] = ['ClusterIP', 'Headless', 'None'];

export interface OperatorConfig {
  namespaces: string[];
  sidecarImage: string;
  sidecarImagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  sidecarResources: Record<string, unknown>;
  sidecarSecurityContext: Record<string, unknown>;
  sidecarEnv: Record<string, string>;
  imagePullSecret?: string;
  failedRetentionSeconds: number;
  serviceMode: ServiceMode;
  resyncSeconds: number;
  concurrency: number;
  adminPort: number;
  leaderElection: boolean;
  leaseName: string;
  leaseNamespace: string;
  identity: string;
  kubeconfig?: string;
  logLevel: LogLevel;
  /** File holding the key that warm pool Pods' assign secrets derive from (common/src/pool-assign.ts). */
  assignKeyFile?: string;
  /** That key, read at boot; without a file, random per process (unclaimed pool Pods are then replaced after a restart). */
  assignKey: Buffer;
}

export const operatorConfigSpec: ConfigSpec = {
  component: 'spawner-operator',
  envPrefix: 'SPAWNER_OPERATOR',
  schema: {
    type: 'object',
    properties: {
      namespaces: {
        type: 'array',
        description: 'Namespaces whose backends this operator manages (comma-separated).',
        items: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 },
        minItems: 1,
        default: ['default'],
      },
      sidecarImage: {
        type: 'string',
        description: 'Image of the sidecar injected into every backend Pod.',
        minLength: 1,
        default: 'ghcr.io/spawner-dev/spawner-sidecar:0.1.0',
      },
      sidecarImagePullPolicy: {
        type: 'string',
        description: 'Pull policy of the sidecar image.',
        enum: ['Always', 'IfNotPresent', 'Never'],
        default: 'IfNotPresent',
      },
      sidecarResources: {
        type: 'object',
        description: 'Resources of the sidecar container (JSON, as in a Pod).',
        default: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
      },
      sidecarSecurityContext: {
        type: 'object',
        description: 'securityContext of the sidecar container (JSON, as in a Pod).',
        default: {
          runAsNonRoot: true,
          runAsUser: 65532,
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
          seccompProfile: { type: 'RuntimeDefault' },
        },
      },
      sidecarEnv: {
        type: 'object',
        description: 'Extra environment variables for the sidecar (JSON object of strings).',
        additionalProperties: { type: 'string' },
        default: {},
      },
      imagePullSecret: {
        type: 'string',
        description: 'Image pull secret added to every backend Pod (for the sidecar image).',
        minLength: 1,
      },
      failedRetentionSeconds: {
        type: 'integer',
        description: 'How long a Failed backend is kept (for inspection) before it is deleted.',
        minimum: 0,
        default: DEFAULT_FAILED_RETENTION_SECONDS,
      },
      serviceMode: {
        type: 'string',
        description:
          "How backends are reached: ClusterIP (a Service with a cluster IP, as the original), Headless (a Service without cluster IP; spares the API server's cluster-IP allocation, one at a time cluster-wide, and kube-proxy's rules) or None (no Service: the entry point routes to the Pod; one write and one lock less per backend). With Headless and None, status.ip is the Pod's IP; with None, status.url is http://<podIP>:9090/.",
        enum: [...SERVICE_MODES],
        default: 'ClusterIP',
      },
      resyncSeconds: {
        type: 'integer',
        description: 'Every backend is reconciled at least this often, events or not.',
        minimum: 5,
        default: 300,
      },
      concurrency: {
        type: 'integer',
        description: 'Backends reconciled at once.',
        minimum: 1,
        maximum: 256,
        // Above the 20 concurrent spawns a busy app sees: a reconcile mostly waits on the API server.
        default: 32,
      },
      adminPort: {
        type: 'integer',
        description: 'Port of /metrics, /healthz and /readyz.',
        minimum: 0,
        maximum: 65535,
        default: 8082,
      },
      leaderElection: {
        type: 'boolean',
        description: 'Elect a leader through a Lease, so that several replicas can run safely.',
        default: false,
      },
      leaseName: { type: 'string', description: 'Name of the leader-election Lease.', default: 'spawner-operator' },
      leaseNamespace: {
        type: 'string',
        description: 'Namespace of the leader-election Lease (defaults to the first managed namespace).',
        default: '',
      },
      identity: {
        type: 'string',
        description: "This replica's identity in the Lease (the Pod name).",
        default: '',
      },
      kubeconfig: { type: 'string', description: 'Path of a kubeconfig; default: KUBECONFIG or in-cluster.' },
      logLevel: { type: 'string', description: 'Log level.', enum: LOG_LEVELS, default: 'info' },
      assignKeyFile: {
        type: 'string',
        minLength: 1,
        description:
          "File with the key (at least 16 bytes) warm pool Pods' assign secrets derive from; the chart mounts it from a Secret. Without it a random key per process: a restarted operator replaces the unclaimed pool Pods.",
      },
    },
  },
};

const MIN_ASSIGN_KEY_BYTES = 16;

function readAssignKey(file: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`assignKeyFile: cannot read ${file}: ${(err as Error).message}`);
  }
  if (Buffer.byteLength(text) < MIN_ASSIGN_KEY_BYTES) {
    throw new ConfigError(`assignKeyFile: ${file} holds fewer than ${MIN_ASSIGN_KEY_BYTES} bytes`);
  }
  return Buffer.from(text, 'utf8');
}

export function loadOperatorConfig(argv?: string[], env?: NodeJS.ProcessEnv): OperatorConfig {
  const config = loadConfig<OperatorConfig>(operatorConfigSpec, argv, env);
  if (!config.leaseNamespace) config.leaseNamespace = config.namespaces[0];
  if (!config.identity) config.identity = `${process.env.HOSTNAME ?? 'operator'}-${process.pid}`;
  config.assignKey = config.assignKeyFile ? readAssignKey(config.assignKeyFile) : randomBytes(32);
  return config;
}
