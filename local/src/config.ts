/**
 * Local mode's settings: flags (`--kebab-case`) or environment (`SPAWNER_LOCAL_*`), validated at
 * start by common's loader. Local mode is a developer tool: it binds to 127.0.0.1 and runs without
 * API tokens unless some are given. The backends' own defaults (gracePeriodSeconds 300,
 * startupTimeoutSeconds 300) come from the CRD schema, and the Failed retention from the
 * operator's default, as on a cluster.
 */
import { ConfigError, loadConfig, type ConfigSpec } from '../../common/src/config';
import { DEFAULT_FAILED_RETENTION_SECONDS } from '../../common/src/constants';
import { LOG_LEVELS, type LogLevel } from '../../common/src/logger';
import type { LocalPoolConfig } from './local-pools';

export interface LocalConfig {
  host: string;
  port: number;
  entryPointPort: number;
  imagesFile?: string;
  tokens?: string[];
  failedRetentionSeconds: number;
  stopGraceSeconds: number;
  appPortMin: number;
  appPortMax: number;
  sidecarHeartbeatSeconds: number;
  maxLiveBackends: number;
  pools: LocalPoolConfig[];
  logLevel: LogLevel;
  logFormat: 'text' | 'json';
}

/** The demo page spawns from this pool: a warm start out of the box. */
export const DEMO_POOL: LocalPoolConfig = { name: 'demo', image: 'spawner-demo-backend', replicas: 2 };

const port = (description: string, def: number) => ({
  type: 'integer' as const,
  minimum: 0,
  maximum: 65535,
  default: def,
  description: `${description} (0 picks a free port).`,
});

export const LOCAL_CONFIG: ConfigSpec = {
  component: 'spawner local mode',
  envPrefix: 'SPAWNER_LOCAL',
  schema: {
    type: 'object',
    properties: {
      host: {
        type: 'string',
        minLength: 1,
        default: '127.0.0.1',
        description:
          'Address the API, the demo page and the entry point listen on (anything but loopback exposes them to your network and needs --tokens).',
      },
      port: port('Port of the REST API and the demo page', 8080),
      entryPointPort: port('Port of the entry point (/p/<name>/ to each backend)', 8081),
      imagesFile: {
        type: 'string',
        minLength: 1,
        description: 'JSON file mapping image names to local commands (default: ./spawner.local.json if present).',
      },
      tokens: {
        type: 'array',
        items: { type: 'string', minLength: 1 },
        description: 'API bearer tokens (comma-separated); without any, the API is open (it listens on 127.0.0.1).',
      },
      failedRetentionSeconds: {
        type: 'integer',
        minimum: 0,
        default: DEFAULT_FAILED_RETENTION_SECONDS,
        description: "How long a Failed backend stays visible before it is removed (the operator's default).",
      },
      stopGraceSeconds: {
        type: 'number',
        minimum: 0,
        default: 5,
        description: 'When an app is stopped: SIGTERM, then SIGKILL after this long.',
      },
      appPortMin: {
        type: 'integer',
        minimum: 1024,
        maximum: 65535,
        default: 20000,
        description: 'Lowest port handed to apps (as PORT).',
      },
      appPortMax: {
        type: 'integer',
        minimum: 1024,
        maximum: 65535,
        default: 29999,
        description: 'Highest port handed to apps.',
      },
      sidecarHeartbeatSeconds: {
        type: 'number',
        exclusiveMinimum: 0,
        default: 5,
        description: "Interval of the sidecars' state messages when nothing changes (three missed make a report stale).",
      },
      maxLiveBackends: {
        type: 'integer',
        minimum: 0,
        default: 50,
        description: 'Most backends (processes) at once; more get 429 (0: no limit).',
      },
      pools: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name'],
          properties: { name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$' } },
        },
        default: [DEMO_POOL],
        description:
          'Warm pools, as JSON: [{"name", "image" or "template", "httpPort", "replicas", "maxIdleAgeSeconds", "whenEmpty", "assignPath"}] (a SessionBackendPool spec with its name; [] for none).',
      },
      logLevel: { type: 'string', enum: LOG_LEVELS, default: 'info', description: 'Log level.' },
      logFormat: {
        type: 'string',
        enum: ['text', 'json'],
        default: 'text',
        description: 'Log lines for people (text) or for tools (json, one object per line).',
      },
    },
  },
};

export function loadLocalConfig(argv?: string[], env?: NodeJS.ProcessEnv): LocalConfig {
  const config = loadConfig<LocalConfig>(LOCAL_CONFIG, argv, env);
  if (config.appPortMin > config.appPortMax) {
    throw new ConfigError(
      'invalid spawner local mode configuration:\n  --app-port-min (SPAWNER_LOCAL_APP_PORT_MIN) must not be above --app-port-max',
    );
  }
  return config;
}

/** The defaults with `overrides` on top (tests, embedding). */
export function localConfig(overrides: Partial<LocalConfig> = {}): LocalConfig {
  return { ...loadLocalConfig([], {}), ...overrides };
}
