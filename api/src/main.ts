/**
 * The API's composition root for Kubernetes: config → logger, metrics → kube client → store →
 * auth and tokens → API + entry point listeners; graceful drain and shutdown on SIGTERM.
 */
import { ConfigError } from '../../common/src/config';
import { errorMessage } from '../../common/src/errors';
import { loadCredentials } from '../../common/src/kube/credentials';
import type { SessionBackendPool } from '../../common/src/backend';
import { HttpKubeClient } from '../../common/src/kube/http-client';
import { POOLS } from '../../common/src/kube/resources';
import { createLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { onShutdown } from '../../common/src/shutdown';
import { BearerAuth } from './bearer-auth';
import { loadApiConfig, readSigningSecret } from './config';
import { ConnectionTokens } from './connection-tokens';
import { KubeBackendStore } from './kube-backend-store';
import { ApiMetrics } from './metrics';
import { startServers } from './server';

async function main(): Promise<void> {
  const config = loadApiConfig();
  const logger = createLogger('api', config.logLevel);
  const registry = createRegistry('api');
  const metrics = new ApiMetrics(registry);

  const secret = readSigningSecret(config);
  if (!secret) {
    logger.warn(
      'no signing secret configured: using a random one, so backend URLs handed out before a restart (or by another replica) stop working; set --signing-secret-file',
    );
  }
  const tokens = secret ? new ConnectionTokens(secret) : ConnectionTokens.random();
  const auth = new BearerAuth({
    tokens: config.tokens,
    tokenFile: config.tokenFile,
    allowAnonymous: config.allowAnonymous,
    logger,
  });

  const client = new HttpKubeClient(await loadCredentials(config.kubeconfig));
  const store = new KubeBackendStore({
    client,
    namespace: config.namespace,
    logger,
    endedRetentionSeconds: config.endedRetentionSeconds,
    routesFreshnessSeconds: config.routesFreshnessSeconds,
  });
  await store.start();

  // Warm pools: one GET per create from a pool (its template, whenEmpty and readiness), no cache.
  const pools = { get: (name: string) => client.get<SessionBackendPool>(POOLS, config.namespace, name) };
  const servers = await startServers({ store, pools, config, auth, tokens, metrics, logger });
  // Rolling updates: stop being Ready, let endpoints update, stop accepting, give open WebSockets
  // and requests the grace, then close (terminationGracePeriodSeconds must exceed both delays).
  const delayMs = config.drainDelaySeconds * 1000;
  const graceMs = config.drainSeconds * 1000;
  onShutdown(
    logger,
    async () => {
      await servers.drain({ delayMs, graceMs });
      await servers.close();
      auth.close();
      await store.stop();
    },
    delayMs + graceMs + 10_000,
  );
}

main().catch((err: unknown) => {
  const text = err instanceof ConfigError ? err.message : `spawner-api failed to start: ${errorMessage(err)}`;
  process.stderr.write(`${text}\n`);
  process.exit(1);
});
