import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { LATENCY_BUCKETS } from '../../common/src/metrics';
import { type SessionLivedBackend } from '../../common/src/backend';
import { PHASES, phaseOf } from '../../common/src/lifecycle';

export interface OperatorMetrics {
  reconcileDuration: Histogram<'result'>;
  reconcileErrors: Counter<'kind'>;
  spawnStage: Histogram<'stage'>;
  startSeconds: Histogram<'launch'>;
  terminations: Counter<'phase' | 'reason'>;
  transitions: Counter<'phase'>;
  queueDepth: Gauge;
  queueWait: Histogram;
  leader: Gauge;
  watchErrors: Counter<'resource'>;
  kubeRequests: Counter<'verb' | 'code'>;
  poolClaims: Counter<'pool' | 'result'>;
  poolClaimConflicts: Counter<'pool'>;
  poolReadyPods: Gauge<'pool'>;
}

export function createOperatorMetrics(
  registry: Registry,
  backends: () => Iterable<SessionLivedBackend>,
  depth: () => number,
): OperatorMetrics {
  new Gauge({
    name: 'spawner_backends',
    help: 'Backends by phase, as the operator sees them.',
    labelNames: ['phase'],
    registers: [registry],
    collect() {
      const counts = new Map<string, number>(PHASES.map((p) => [p, 0]));
      for (const b of backends()) counts.set(phaseOf(b), (counts.get(phaseOf(b)) ?? 0) + 1);
      for (const [phase, n] of counts) this.set({ phase }, n);
    },
  });
  return {
    reconcileDuration: new Histogram({
      name: 'spawner_reconcile_duration_seconds',
      help: 'Time of one reconcile of one backend.',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    reconcileErrors: new Counter({
      name: 'spawner_reconcile_errors_total',
      help: 'Reconciles that failed, by kind of error (transient errors are retried with backoff).',
      labelNames: ['kind'],
      registers: [registry],
    }),
    spawnStage: new Histogram({
      name: 'spawner_spawn_stage_seconds',
      help: "Time from a backend's creation until it reached each stage.",
      labelNames: ['stage'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    startSeconds: new Histogram({
      name: 'spawner_backend_start_seconds',
      help: "Time from a backend's creation until Ready, by launch: warm (a pool Pod claimed) or cold (a Pod started for it).",
      labelNames: ['launch'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    terminations: new Counter({
      name: 'spawner_backend_terminations_total',
      help: 'Backends that ended, by terminal phase (Swept or Failed) and reason.',
      labelNames: ['phase', 'reason'],
      registers: [registry],
    }),
    transitions: new Counter({
      name: 'spawner_phase_transitions_total',
      help: 'Phase transitions written by the operator, by phase reached.',
      labelNames: ['phase'],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'spawner_operator_queue_depth',
      help: 'Backends waiting to be reconciled.',
      registers: [registry],
      collect() {
        this.set(depth());
      },
    }),
    queueWait: new Histogram({
      name: 'spawner_operator_queue_wait_seconds',
      help: 'Time a backend waited in the work queue before its reconcile started (the operator, not the API server).',
      buckets: [0.001, 0.0025, ...LATENCY_BUCKETS],
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'spawner_operator_leader',
      help: '1 when this replica is the leader (or leader election is off).',
      registers: [registry],
    }),
    watchErrors: new Counter({
      name: 'spawner_operator_watch_errors_total',
      help: 'Watches that failed and were restarted, by resource.',
      labelNames: ['resource'],
      registers: [registry],
    }),
    kubeRequests: new Counter({
      name: 'spawner_kube_requests_total',
      help: 'Requests to the Kubernetes API server, by verb and status code.',
      labelNames: ['verb', 'code'],
      registers: [registry],
    }),
    poolClaims: new Counter({
      name: 'spawner_pool_claims_total',
      help: 'Backends created from a warm pool, by how they started: warm (a Pod claimed), cold (PoolEmpty, PoolNotFound), rejected (PoolEmpty with whenEmpty Reject).',
      labelNames: ['pool', 'result'],
      registers: [registry],
    }),
    poolClaimConflicts: new Counter({
      name: 'spawner_pool_claim_conflicts_total',
      help: 'Claims that lost a pool Pod to a concurrent change (resourceVersion Conflict) and took the next.',
      labelNames: ['pool'],
      registers: [registry],
    }),
    poolReadyPods: new Gauge({
      name: 'spawner_pool_ready_pods',
      help: 'Unclaimed, Ready Pods per warm pool, as of its last reconcile.',
      labelNames: ['pool'],
      registers: [registry],
    }),
  };
}
