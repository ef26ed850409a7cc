/**
 * Local mode assembled: the API's own app factory and entry point (so routes, bodies, codes and
 * OpenAPI are the Kubernetes build's, byte for byte) around the local store, plus the demo page
 * on the API's port. Embeddable: tests start it in process on port 0.
 */
import { ConfigError } from '../../common/src/config';
import { ImageCatalog } from '../../common/src/image-catalog';
import { createLogger, type Logger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { BearerAuth } from '../../api/src/bearer-auth';
import { apiConfig, type ApiConfig } from '../../api/src/config';
import { ConnectionTokens } from '../../api/src/connection-tokens';
import { ApiMetrics } from '../../api/src/metrics';
import { startServers, type Servers } from '../../api/src/server';
import type { LocalConfig } from './config';
import { demoSite, DEMO_PATH } from './demo-site';
import { FORBIDDEN_HOST_BODY, isLocalHostHeader, isLoopbackAddress } from './host-guard';
import { LocalBackendStore, LOCAL_NAMESPACE } from './local-backend-store';
import { poolFromConfig } from './local-pools';
import { PortAllocator } from './ports';

export interface LocalModeOptions {
  logger: Logger;
  /** For the embedded sidecars (default: warnings and errors only, unless logLevel is debug). */
  sidecarLogger?: Logger;
  /** Where a relative --images-file and the default spawner.local.json are looked up. */
  cwd?: string;
  version?: string;
}

export interface LocalMode {
  store: LocalBackendStore;
  api: ApiConfig;
  apiPort: number;
  entryPointPort: number;
  /** Base URLs for people, on the configured host (127.0.0.1 when it listens on every address). */
  apiUrl: string;
  entryPointUrl: string;
  demoUrl: string;
  close(): Promise<void>;
}

export async function startLocalMode(config: LocalConfig, opts: LocalModeOptions): Promise<LocalMode> {
  const { logger } = opts;
  const tokens = config.tokens ?? [];
  if (tokens.length === 0 && !isLoopbackAddress(config.host)) {
    throw new ConfigError(
      `listening on ${config.host} without API tokens would let anyone who reaches it run commands on this machine: set --tokens (SPAWNER_LOCAL_TOKENS) or keep --host=127.0.0.1`,
    );
  }
  const images = ImageCatalog.load({ file: config.imagesFile, cwd: opts.cwd });
  if (images.file) logger.info('images file loaded', { file: images.file, images: images.names() });

  const store = new LocalBackendStore({
    images,
    logger,
    sidecarLogger: opts.sidecarLogger ?? createLogger('sidecar', config.logLevel === 'debug' ? 'debug' : 'warn'),
    ports: new PortAllocator({ host: '127.0.0.1', min: config.appPortMin, max: config.appPortMax }),
    failedRetentionSeconds: config.failedRetentionSeconds,
    stopGraceMs: config.stopGraceSeconds * 1000,
    sidecar: { heartbeatSeconds: config.sidecarHeartbeatSeconds },
    pools: config.pools.map((p) => poolFromConfig(p, LOCAL_NAMESPACE)),
  });
  if (config.pools.length > 0) logger.info('warm pools', { pools: config.pools.map((p) => p.name) });

  const api = apiConfig({
    host: config.host,
    port: config.port,
    entryPointHost: config.host,
    entryPointPort: config.entryPointPort,
    namespace: store.namespace,
    tokens,
    allowAnonymous: tokens.length === 0,
    maxLiveBackends: config.maxLiveBackends,
    logLevel: config.logLevel,
  });
  const auth = new BearerAuth({ tokens, allowAnonymous: tokens.length === 0, logger });
  // Backends do not outlive local mode, so neither must their connection tokens.
  const connectionTokens = ConnectionTokens.random();
  const metrics = new ApiMetrics(createRegistry('local'));

  const demo = demoSite();
  const open = tokens.length === 0;
  await store.start();
  let servers: Servers;
  try {
    servers = await startServers({
      store,
      pools: store.pools,
      config: api,
      auth,
      tokens: connectionTokens,
      metrics,
      logger,
      version: opts.version,
      wrap: (app) => (req, res) => {
        if (open && !isLocalHostHeader(req.headers.host)) {
          res.writeHead(403, { 'content-type': 'application/json; charset=utf-8' });
          res.end(FORBIDDEN_HOST_BODY(req.headers.host));
          return;
        }
        if (!demo(req, res)) app(req, res);
      },
    });
  } catch (err) {
    await store.stop();
    auth.close();
    throw err;
  }
  const { apiPort, entryPointPort } = servers;

  const shown = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const hostPart = shown.includes(':') ? `[${shown}]` : shown;
  const apiUrl = `http://${hostPart}:${apiPort}`;
  let closing: Promise<void> | undefined;
  return {
    store,
    api,
    apiPort,
    entryPointPort,
    apiUrl,
    entryPointUrl: `http://${hostPart}:${entryPointPort}`,
    demoUrl: `${apiUrl}${DEMO_PATH}`,
    close() {
      closing ??= (async () => {
        // No new backends while the old ones stop; then every app and sidecar goes.
        await servers.close();
        await store.stop();
        auth.close();
        logger.info('local mode stopped; no backend is left running');
      })();
      return closing;
    },
  };
}
