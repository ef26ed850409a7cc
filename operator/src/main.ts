/**
 * Composition root of the operator: configuration, Kubernetes client, metrics, the operator
 * itself, leader election, the admin server and graceful shutdown.
 */
import { startAdminServer } from '../../common/src/admin-server';
import { ConfigError } from '../../common/src/config';
import { HttpKubeClient } from '../../common/src/kube/http-client';
import { loadKubeConfig } from '../../common/src/kube/kube-config';
import { LeaderElector } from '../../common/src/kube/leader-election';
import { createLogger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { onShutdown } from '../../common/src/shutdown';
import { loadOperatorConfig, type OperatorConfig } from './config';
import { createOperatorMetrics } from './metrics';
import { SpawnerOperator } from './operator';

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
  const registry = createRegistry('operator');
  // The metrics read the operator's caches, and the operator reports through the metrics.
  const ref: { operator?: SpawnerOperator } = {};
  const metrics = createOperatorMetrics(
    registry,
    () => ref.operator?.backends() ?? [],
    () => ref.operator?.queue.depth ?? 0,
  );
  const kubeConfig = loadKubeConfig(config.kubeconfig);
  const kube = new HttpKubeClient(kubeConfig, {
    onRequest: (verb, code) => metrics.kubeRequests.inc({ verb, code: String(code) }),
  });
  const op = new SpawnerOperator(kubeConfig, kube, config, metrics, logger);
  ref.operator = op;
  await op.start();

  let elector: LeaderElector | undefined;
  if (config.leaderElection) {
    elector = new LeaderElector(
      kube,
      {
        namespace: config.leaseNamespace,
        name: config.leaseName,
        identity: config.identity,
        onStartedLeading: () => {
          metrics.leader.set(1);
          void op.activate();
        },
        onStoppedLeading: () => {
          metrics.leader.set(0);
          op.deactivate();
        },
      },
      logger,
    );
    elector.start();
  } else {
    metrics.leader.set(1);
    void op.activate();
  }

  const admin = await startAdminServer({
    port: config.adminPort,
    registry,
    logger,
    ready: () => op.synced,
  });
  logger.info('operator started', {
    namespaces: config.namespaces,
    leaderElection: config.leaderElection,
    sidecarImage: config.sidecarImage,
  });

  onShutdown(logger, async () => {
    await elector?.stop();
    await op.shutdown();
    await new Promise<void>((resolve) => admin.close(() => resolve()));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`operator failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
