/**
 * Composition root of the sweeper (one per node, as a DaemonSet).
 */
import { startAdminServer } from '../../common/src/admin-server';
import { ConfigError } from '../../common/src/config';
import { loadCredentials } from '../../common/src/kube/credentials';
import { HttpKubeClient } from '../../common/src/kube/http-client';
import { createLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { onShutdown } from '../../common/src/shutdown';
import { loadSweeperConfig, type SweeperConfig } from './config';
import { createSweeperMetrics } from './metrics';
import { Sweeper } from './sweeper';

async function main(): Promise<void> {
  let config: SweeperConfig;
  try {
    config = loadSweeperConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger('sweeper', config.logLevel, undefined, { node: config.nodeName });
  const registry = createRegistry('sweeper');
  const ref: { sweeper?: Sweeper } = {};
  const metrics = createSweeperMetrics(
    registry,
    () => ref.sweeper?.watched ?? 0,
    () => ref.sweeper?.connected ?? 0,
  );
  const kube = new HttpKubeClient(await loadCredentials(config.kubeconfig));
  const sweeper = new Sweeper(kube, config, metrics, logger);
  ref.sweeper = sweeper;
  sweeper.start();
  const admin = await startAdminServer({ port: config.adminPort, registry, logger, ready: () => sweeper.synced });
  logger.info('sweeper started', { namespaces: config.namespaces });
  onShutdown(logger, async () => {
    await sweeper.stop();
    await new Promise<void>((resolve) => admin.close(() => resolve()));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`sweeper failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
