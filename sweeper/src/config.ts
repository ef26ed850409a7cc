import { loadConfig, type ConfigSpec } from '../../common/src/config';
import { SIDECAR_ADMIN_PORT } from '../../common/src/constants';
import { LOG_LEVELS, type LogLevel } from '../../common/src/logger';

export interface SweeperConfig {
  nodeName: string;
  namespaces: string[];
  sidecarAdminPort: number;
  heartbeatSeconds: number;
  unreachableSeconds: number;
  adminPort: number;
  kubeconfig?: string;
  logLevel: LogLevel;
}

export const sweeperConfigSpec: ConfigSpec = {
  component: 'spawner-sweeper',
  envPrefix: 'SPAWNER_SWEEPER',
  schema: {
    type: 'object',
    required: ['nodeName'],
    properties: {
      nodeName: {
        type: 'string',
        description: 'The node this sweeper serves (from the downward API: spec.nodeName).',
        minLength: 1,
      },
      namespaces: {
        type: 'array',
        description: 'Namespaces whose backends are swept (comma-separated).',
        items: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
        minItems: 1,
        default: ['default'],
      },
      sidecarAdminPort: {
        type: 'integer',
        description: 'Admin port of the sidecars (their state stream).',
        minimum: 1,
        maximum: 65535,
        default: SIDECAR_ADMIN_PORT,
      },
      heartbeatSeconds: {
        type: 'number',
        description: "The sidecars' heartbeat interval; three missed heartbeats make a report stale.",
        exclusiveMinimum: 0,
        default: 5,
      },
      unreachableSeconds: {
        type: 'integer',
        description: 'A sidecar unreachable this long, while its Pod is gone or not running, ends its backend (Unreachable).',
        minimum: 1,
        default: 30,
      },
      adminPort: {
        type: 'integer',
        description: 'Port of /metrics, /healthz and /readyz.',
        minimum: 0,
        maximum: 65535,
        default: 8083,
      },
      kubeconfig: { type: 'string', description: 'Path of a kubeconfig; default: KUBECONFIG or in-cluster.' },
      logLevel: { type: 'string', description: 'Log level.', enum: LOG_LEVELS, default: 'info' },
    },
  },
};

export function loadSweeperConfig(argv?: string[], env: NodeJS.ProcessEnv = process.env): SweeperConfig {
  // The downward API's conventional variable works too.
  const withNode = env.SPAWNER_SWEEPER_NODE_NAME || !env.NODE_NAME ? env : { ...env, SPAWNER_SWEEPER_NODE_NAME: env.NODE_NAME };
  return loadConfig<SweeperConfig>(sweeperConfigSpec, argv, withNode);
}
