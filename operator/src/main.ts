/**
 * Entry point of the operator: configuration, the Kubernetes client, the composition (app.ts) and
 * graceful shutdown. A replica that loses the leader Lease exits (app.ts).
 */
import { ConfigError } from '../../common/src/config';
import { HttpKubeClient } from '../../common/src/kube/http-client';
import { loadKubeConfig } from '../../common/src/kube/kube-config';
import { createLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { onShutdown } from '../../common/src/shutdown';
import { startOperatorApp } from './app';
import { loadOperatorConfig, type OperatorConfig } from './config';

async function main(): Promise<void> {
  let config: OperatorConfig;
  try {
    config = loadOperatorConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger('operator', config.logLevel);
  const kubeConfig = loadKubeConfig(config.kubeconfig);
  const app = await startOperatorApp({
    config,
    kubeConfig,
    kube: (metrics) =>
      new HttpKubeClient(kubeConfig, {
        onRequest: (verb, code) => metrics.kubeRequests.inc({ verb, code: String(code) }),
      }),
    logger,
    registry: createRegistry('operator'),
  });
  logger.info('operator started', {
    namespaces: config.namespaces,
    leaderElection: config.leaderElection,
    sidecarImage: config.sidecarImage,
  });

  onShutdown(logger, () => app.stop());
}

main().catch((err: unknown) => {
  process.stderr.write(`operator failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
