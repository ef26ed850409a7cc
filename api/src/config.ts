/**
 * The API's configuration: flags (`--kebab-case`) or environment (`SPAWNER_API_*`), validated at
 * boot by common's loader, so a typo stops the process with a message instead of a surprise later.
 */
import { readFileSync } from 'node:fs';
import { SIDECAR_SERVE_PORT } from '../../common/src/constants';
import { loadConfig, ConfigError, type ConfigSpec } from '../../common/src/config';
import { LOG_LEVELS, type LogLevel } from '../../common/src/logger';
import { DEFAULT_ENDED_MAX_ENTRIES, DEFAULT_ENDED_RETENTION_SECONDS } from './ended-backends';
import { DEFAULT_ROUTES_FRESHNESS_SECONDS } from './pod-routes';

export interface ApiConfig {
  host: string;
  port: number;
  entryPointHost: string;
  entryPointPort: number;
  namespace: string;
  kubeconfig?: string;
  apiBaseUrl?: string;
  entryPointBaseUrl?: string;
  urlTemplate?: string;
  entryPointDomain?: string;
  upstreamPort: number;
  tokenFile?: string;
  tokens?: string[];
  allowAnonymous: boolean;
  signingSecretFile?: string;
  signingSecret?: string;
  bodyLimitBytes: number;
  maxLiveBackends: number;
  spawnRatePerSecond: number;
  spawnBurst: number;
  liveLimitRetryAfterSeconds: number;
  holdTimeoutMs: number;
  holdMaxRequests: number;
  sseHeartbeatSeconds: number;
  streamMaxSeconds: number;
  waitMaxSeconds: number;
  endedRetentionSeconds: number;
  routesFreshnessSeconds: number;
  trustProxy: boolean;
  drainDelaySeconds: number;
  drainSeconds: number;
  logLevel: LogLevel;
}

const URL_PATTERN = '^https?://[^\\s/?#]+(/[^\\s?#]*)?$';

export const API_CONFIG: ConfigSpec = {
  component: 'spawner-api',
  envPrefix: 'SPAWNER_API',
  schema: {
    type: 'object',
    properties: {
      host: { type: 'string', description: 'Address the REST API listens on.', default: '0.0.0.0' },
      port: { type: 'integer', description: 'Port of the REST API.', default: 8080, minimum: 0, maximum: 65535 },
      entryPointHost: {
        type: 'string',
        description: 'Address the entry point (proxy to backends) listens on.',
        default: '0.0.0.0',
      },
      entryPointPort: { type: 'integer', description: 'Port of the entry point.', default: 8081, minimum: 0, maximum: 65535 },
      namespace: {
        type: 'string',
        description: 'Namespace of the backends.',
        default: 'spawner',
        pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
        maxLength: 63,
      },
      kubeconfig: { type: 'string', description: 'Kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).' },
      apiBaseUrl: {
        type: 'string',
        description: 'Public base URL of this API, for readyUrl/statusUrl (default: from the request Host).',
        pattern: URL_PATTERN,
      },
      entryPointBaseUrl: {
        type: 'string',
        description: 'Public base URL of the entry point (default: the request host on the entry point port).',
        pattern: URL_PATTERN,
      },
      urlTemplate: {
        type: 'string',
        description: 'Backend URL template; {} is replaced by the name (default: <entryPointBaseUrl>/p/{}/).',
        pattern: '\\{\\}',
      },
      entryPointDomain: {
        type: 'string',
        description: 'Also route Host <name>.<domain> to backends (wildcard DNS and certificate needed).',
        pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$',
      },
      upstreamPort: {
        type: 'integer',
        description: "The sidecar's serve port on backend Pods.",
        default: SIDECAR_SERVE_PORT,
        minimum: 1,
        maximum: 65535,
      },
      tokenFile: { type: 'string', description: 'File of API bearer tokens, one per line; re-read on change.' },
      tokens: { type: 'array', items: { type: 'string' }, description: 'API bearer tokens (comma-separated; for local use).' },
      allowAnonymous: {
        type: 'boolean',
        description:
          'Run without API tokens when none are configured: anyone who reaches the API may use it (trusted networks only; warned at start).',
        default: false,
      },
      signingSecretFile: { type: 'string', description: 'File with the secret connection tokens are derived from.' },
      signingSecret: { type: 'string', minLength: 16, description: 'The signing secret itself (prefer the file).' },
      bodyLimitBytes: {
        type: 'integer',
        description: 'Largest accepted request body.',
        default: 65536,
        minimum: 1024,
        maximum: 10485760,
      },
      maxLiveBackends: {
        type: 'integer',
        description: 'Most non-terminal backends at once (0: no limit).',
        default: 0,
        minimum: 0,
      },
      spawnRatePerSecond: { type: 'number', description: 'Sustained creates per second (0: no limit).', default: 0, minimum: 0 },
      spawnBurst: { type: 'integer', description: 'Creates allowed at once above the rate.', default: 20, minimum: 1 },
      liveLimitRetryAfterSeconds: {
        type: 'integer',
        description: 'Retry-After sent when the live-backend limit is hit.',
        default: 10,
        minimum: 1,
      },
      holdTimeoutMs: {
        type: 'integer',
        description: 'How long the entry point holds a request for a backend that is not Ready yet.',
        default: 30000,
        minimum: 0,
      },
      holdMaxRequests: {
        type: 'integer',
        description: 'Most requests held at once by the entry point.',
        default: 1000,
        minimum: 0,
      },
      sseHeartbeatSeconds: {
        type: 'integer',
        description: 'Comment lines sent on idle status streams.',
        default: 15,
        minimum: 1,
      },
      streamMaxSeconds: {
        type: 'integer',
        description: 'Status streams are closed after this long (EventSource reconnects with Last-Event-ID; nothing is lost).',
        default: 3600,
        minimum: 1,
      },
      waitMaxSeconds: {
        type: 'integer',
        description: 'Longest long poll a client may ask for (timeoutSeconds); /openapi.json documents it.',
        default: 300,
        minimum: 0,
        maximum: 300,
      },
      endedRetentionSeconds: {
        type: 'integer',
        description: `How long a deleted backend's terminal phase and reason stay answerable on its status routes (then 404); 0: not at all. Remembered in memory by each replica, at most ${DEFAULT_ENDED_MAX_ENTRIES} backends.`,
        default: DEFAULT_ENDED_RETENTION_SECONDS,
        minimum: 0,
        maximum: 86400,
      },
      routesFreshnessSeconds: {
        type: 'integer',
        description:
          "Longest the routing view (the backends' Pods, watched) may be unproven before the entry point refuses new connections with 503 routes_stale; proven by a cheap resourceVersion read every fifth of it.",
        default: DEFAULT_ROUTES_FRESHNESS_SECONDS,
        minimum: 3,
        maximum: 300,
      },
      trustProxy: { type: 'boolean', description: 'Trust X-Forwarded-Proto/Host when building URLs.', default: false },
      drainDelaySeconds: {
        type: 'integer',
        description:
          'On SIGTERM, /readyz fails at once but the listeners keep accepting this long, so Services and Ingresses stop sending first.',
        default: 5,
        minimum: 0,
        maximum: 60,
      },
      drainSeconds: {
        type: 'integer',
        description:
          'Then the listeners close and open WebSockets and in-flight requests get this long to finish before they are closed.',
        default: 30,
        minimum: 0,
        maximum: 3600,
      },
      logLevel: { type: 'string', enum: LOG_LEVELS, description: 'Log level.', default: 'info' },
    },
  },
};

export function loadApiConfig(argv?: string[], env?: NodeJS.ProcessEnv): ApiConfig {
  return loadConfig<ApiConfig>(API_CONFIG, argv, env);
}

/** The defaults with `overrides` on top: for tests and for embedding (local mode). */
export function apiConfig(overrides: Partial<ApiConfig> = {}): ApiConfig {
  return { ...loadApiConfig([], {}), ...overrides };
}

/** The signing secret from the file or the value; undefined when neither is set. */
export function readSigningSecret(config: Pick<ApiConfig, 'signingSecret' | 'signingSecretFile'>): Buffer | undefined {
  if (config.signingSecretFile) {
    let text: string;
    try {
      text = readFileSync(config.signingSecretFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`cannot read --signing-secret-file ${config.signingSecretFile}: ${(err as Error).message}`);
    }
    if (text.length < 16) throw new ConfigError('--signing-secret-file must hold at least 16 characters');
    return Buffer.from(text, 'utf8');
  }
  return config.signingSecret ? Buffer.from(config.signingSecret, 'utf8') : undefined;
}
