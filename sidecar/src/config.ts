/**
 * The sidecar's settings: flags (`--serve-port=9090`, as the operator passes them), then
 * `SPAWNER_SIDECAR_*` variables, then defaults. Two other variables are honoured because the
 * operator sets them on the container: `SPAWNER_TOKEN_SHA256` (the connection token's hash) and
 * `LOG_LEVEL`.
 */
import { ENV_SIDECAR_TOKEN_HASH, SIDECAR_ADMIN_PORT, SIDECAR_SERVE_PORT, DEFAULT_HTTP_PORT } from '../../common/src/constants';
import { envName, loadConfig, type ConfigSpec } from '../../common/src/config';
import { LOG_LEVELS, type LogLevel } from '../../common/src/logger';

export interface SidecarConfig {
  servePort: number;
  upstreamPort: number;
  upstreamHost: string;
  adminPort: number;
  listenHost: string;
  tokenSha256?: string;
  assignSha256?: string;
  appAssignPath?: string;
  holdTimeoutMs: number;
  holdMaxQueued: number;
  heartbeatSeconds: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
}

const port = (description: string, def: number) => ({
  type: 'integer' as const,
  minimum: 0,
  maximum: 65535,
  default: def,
  description: `${description} (0 picks a free port).`,
});

export const SIDECAR_CONFIG: ConfigSpec = {
  component: 'sidecar',
  envPrefix: 'SPAWNER_SIDECAR',
  schema: {
    type: 'object',
    properties: {
      servePort: port('Port that proxies HTTP and WebSocket traffic to the app', SIDECAR_SERVE_PORT),
      upstreamPort: { ...port("The app's port", DEFAULT_HTTP_PORT), minimum: 1 },
      upstreamHost: { type: 'string', minLength: 1, default: '127.0.0.1', description: "The app's address." },
      adminPort: port('Port of /metrics, /ready, /healthz, /state and /events; never proxied', SIDECAR_ADMIN_PORT),
      listenHost: { type: 'string', minLength: 1, default: '0.0.0.0', description: 'Address both ports bind to.' },
      tokenSha256: {
        type: 'string',
        pattern: '^[0-9a-fA-F]{64}$',
        description: `Hex SHA-256 of the connection token; when set, requests must carry the token. Also read from ${ENV_SIDECAR_TOKEN_HASH}.`,
      },
      assignSha256: {
        type: 'string',
        pattern: '^[0-9a-fA-F]{64}$',
        description:
          "Hex SHA-256 of a warm pool Pod's assign secret: the sidecar starts unassigned, refuses all traffic until the operator POSTs its backend to /assign on the admin port with that secret (common/src/pool-assign.ts).",
      },
      appAssignPath: {
        type: 'string',
        pattern: '^/[!-~]*$',
        maxLength: 256,
        description:
          "With assignSha256: a path on the app's port where the sidecar POSTs its backend ({name, uid, key}) when assigned, before any request reaches the app; a non-2xx answer fails the assignment (the operator retries). A pool's spec.assignPath.",
      },
      holdTimeoutMs: {
        type: 'integer',
        minimum: 1,
        default: 30_000,
        description: 'How long a request or upgrade waits for the app to accept connections before a 504.',
      },
      holdMaxQueued: {
        type: 'integer',
        minimum: 0,
        default: 1000,
        description: 'How many requests and upgrades may wait for the app at once; more get a 503.',
      },
      heartbeatSeconds: {
        type: 'number',
        exclusiveMinimum: 0,
        default: 5,
        description: 'Interval of the state messages on /events when nothing changes.',
      },
      shutdownGraceMs: {
        type: 'integer',
        minimum: 0,
        default: 5000,
        description: 'On shutdown, how long in-flight requests may finish before connections are cut.',
      },
      logLevel: { type: 'string', enum: LOG_LEVELS, default: 'info', description: 'Log level (also LOG_LEVEL).' },
    },
  },
};

/** Loads and validates the configuration; throws ConfigError naming the bad flag or variable. */
export function loadSidecarConfig(argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  const withAliases: NodeJS.ProcessEnv = { ...env };
  const alias = (from: string, to: string): void => {
    if (withAliases[to] === undefined && env[from] !== undefined && env[from] !== '') withAliases[to] = env[from];
  };
  alias(ENV_SIDECAR_TOKEN_HASH, envName(SIDECAR_CONFIG.envPrefix, 'tokenSha256'));
  alias('LOG_LEVEL', envName(SIDECAR_CONFIG.envPrefix, 'logLevel'));
  const config = loadConfig<SidecarConfig>(SIDECAR_CONFIG, argv, withAliases);
  if (config.tokenSha256) config.tokenSha256 = config.tokenSha256.toLowerCase();
  if (config.assignSha256) config.assignSha256 = config.assignSha256.toLowerCase();
  return config;
}

/** Defaults for embedding (local mode, tests): every field filled, overridable. */
export function sidecarConfig(overrides: Partial<SidecarConfig> = {}): SidecarConfig {
  return { ...loadSidecarConfig([], {}), ...overrides };
}
