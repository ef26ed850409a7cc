/**
 * The operator's composition, apart from where its configuration and API client come from (see
 * main.ts): metrics, the operator itself, leader election and the admin server.
 *
 * Fenced leadership (docs/adr/0007-fenced-leadership.md): a replica that loses the Lease exits at
 * once, as controller-runtime's manager does, so that nothing it had queued, scheduled or started
 * goes on writing next to the new leader. Kubernetes restarts it as a standby.
 */
import type { Server } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { startAdminServer } from '../../common/src/admin-server';
import { LeaderElector, type LeaderElectionOptions } from '../../common/src/kube/leader-election';
import type { KubeClient } from '../../common/src/kube/types';
import type { Logger } from '../../common/src/logger';
import type { OperatorConfig } from './config';
import { createOperatorMetrics, type OperatorMetrics } from './metrics';
import { SpawnerOperator } from './operator';

/** The exit code of a replica that lost the Lease. */
export const EXIT_LEASE_LOST = 1;

export interface OperatorAppDeps {
  config: OperatorConfig;
  kubeConfig: KubeConfig;
  /** The API client; it is given the metrics so it can count its requests. */
  kube: (metrics: OperatorMetrics) => KubeClient;
  logger: Logger;
  registry: Registry;
  /** Ends the process (`process.exit`); tests pass their own. */
  exit?: (code: number) => void;
  /** Lease timings (client-go's defaults otherwise). */
  leaseTimings?: Pick<LeaderElectionOptions, 'leaseDurationSeconds' | 'renewDeadlineMs' | 'renewMs' | 'retryMs'>;
}

export interface OperatorApp {
  operator: SpawnerOperator;
  elector?: LeaderElector;
  admin: Server;
  /** Graceful shutdown: finish the work in hand, then hand the Lease over. */
  stop(): Promise<void>;
}

export async function startOperatorApp(deps: OperatorAppDeps): Promise<OperatorApp> {
  const { config, logger, registry } = deps;
  const exit = deps.exit ?? ((code: number) => process.exit(code));
  // The metrics read the operator's caches, and the operator reports through the metrics.
  const ref: { operator?: SpawnerOperator } = {};
  const metrics = createOperatorMetrics(
    registry,
    () => ref.operator?.backends() ?? [],
    () => ref.operator?.queue.depth ?? 0,
  );
  const kube = deps.kube(metrics);
  const op = new SpawnerOperator(deps.kubeConfig, kube, config, metrics, logger);
  ref.operator = op;
  await op.start();

  let stopping = false;
  let elector: LeaderElector | undefined;
  if (config.leaderElection) {
    elector = new LeaderElector(
      kube,
      {
        namespace: config.leaseNamespace,
        name: config.leaseName,
        identity: config.identity,
        ...deps.leaseTimings,
        onStartedLeading: () => {
          metrics.leader.set(1);
          void op.activate();
        },
        onStoppedLeading: () => {
          metrics.leader.set(0);
          if (stopping) return; // our own hand-over at shutdown
          // Queued keys, requeue timers, backoffs and reconciles in flight would all go on writing
          // next to the new leader: end them all at once, as controller-runtime does.
          logger.error('lost the leader lease; exiting so that this replica writes nothing more', {
            lease: config.leaseName,
            identity: config.identity,
            exitCode: EXIT_LEASE_LOST,
          });
          exit(EXIT_LEASE_LOST);
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

  return {
    operator: op,
    elector,
    admin,
    async stop() {
      // The Lease is released only once nothing guarded by it runs any more.
      await op.shutdown();
      stopping = true;
      await elector?.stop();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
    },
  };
}
