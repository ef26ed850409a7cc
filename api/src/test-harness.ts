/**
 * A running API + entry point over an in-memory store, on ephemeral ports, for tests (and for
 * anyone who wants the API without a cluster in a script). Real sockets, real fetch.
 */
import { createLogger, type Logger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { staticTokens } from './bearer-auth';
import { apiConfig, type ApiConfig } from './config';
import { ConnectionTokens } from './connection-tokens';
import { MemoryBackendStore, type MemoryBackendStoreOptions } from './memory-backend-store';
import { ApiMetrics } from './metrics';
import type { EntryPoint } from './entry-point';
import { startServers, type Servers } from './server';

export const API_TOKEN = 'test-api-token-0123456789abcdef';
export const SIGNING_SECRET = Buffer.from('test-signing-secret-0123456789abcdef');

export interface Harness {
  store: MemoryBackendStore;
  servers: Servers;
  config: ApiConfig;
  metrics: ApiMetrics;
  tokens: ConnectionTokens;
  logger: Logger & { lines?: unknown[] };
  /** The API's base URL. */
  base: string;
  /** The entry point's base URL. */
  entry: string;
  /** fetch against the API with the bearer token (unless headers.authorization is given). */
  api(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export async function startHarness(
  overrides: Partial<ApiConfig> = {},
  storeOptions: MemoryBackendStoreOptions = {},
): Promise<Harness> {
  const config = apiConfig({ host: '127.0.0.1', port: 0, entryPointHost: '127.0.0.1', entryPointPort: 0, ...overrides });
  const store = new MemoryBackendStore({
    namespace: 'spawner',
    endedRetentionSeconds: config.endedRetentionSeconds,
    ...storeOptions,
  });
  const metrics = new ApiMetrics(createRegistry('api-test', false));
  const tokens = new ConnectionTokens(SIGNING_SECRET);
  const logger = createLogger('api-test', 'error', () => undefined);
  const servers = await startServers({ store, config, auth: staticTokens([API_TOKEN]), tokens, metrics, logger });
  const base = `http://127.0.0.1:${servers.apiPort}`;
  const entry = `http://127.0.0.1:${servers.entryPointPort}`;
  // The URLs handed out must point at the ports the OS picked.
  config.apiBaseUrl ??= base;
  config.entryPointBaseUrl ??= entry;
  return {
    store,
    servers,
    config,
    metrics,
    tokens,
    logger,
    base,
    entry,
    api(path, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${API_TOKEN}`);
      return fetch(base + path, { ...init, headers });
    },
    close: () => servers.close(),
  };
}

/** The JSON body, untyped (tests assert on it). */
export const jsonOf = (res: Response): Promise<any> => res.json();

export const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

export async function waitUntil(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Requests an entry point admitted and has not finished yet, seen at its policy's two ends (for
 * tests that wait until nothing is in flight).
 */
export function trackInflight(entry: EntryPoint): () => number {
  let inflight = 0;
  const admit = entry.admit.bind(entry);
  const finished = entry.finished.bind(entry);
  entry.admit = (request, ticket) => {
    inflight++;
    return admit(request, ticket);
  };
  entry.finished = (status) => {
    inflight--;
    finished(status);
  };
  return () => inflight;
}
