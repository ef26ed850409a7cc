import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface SweeperMetrics {
  watched: Gauge;
  connected: Gauge;
  connectFailures: Counter;
  sweeps: Counter<'reason'>;
  sweepErrors: Counter;
  sweepLag: Histogram;
}

export function createSweeperMetrics(registry: Registry, watched: () => number, connected: () => number): SweeperMetrics {
  return {
    watched: new Gauge({
      name: 'spawner_sweeper_watched_backends',
      help: 'Backends whose sidecar this sweeper follows.',
      registers: [registry],
      collect() {
        this.set(watched());
      },
    }),
    connected: new Gauge({
      name: 'spawner_sweeper_connected_sidecars',
      help: 'Sidecar state streams currently connected.',
      registers: [registry],
      collect() {
        this.set(connected());
      },
    }),
    connectFailures: new Counter({
      name: 'spawner_sweeper_connect_failures_total',
      help: 'Failed or lost connections to sidecar state streams.',
      registers: [registry],
    }),
    sweeps: new Counter({
      name: 'spawner_sweeper_sweeps_total',
      help: 'Backends this sweeper swept, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    sweepErrors: new Counter({
      name: 'spawner_sweeper_sweep_errors_total',
      help: 'Sweeps that could not be written (retried).',
      registers: [registry],
    }),
    sweepLag: new Histogram({
      name: 'spawner_sweeper_sweep_lag_seconds',
      help: "Time from a backend's idle deadline to its sweep being written.",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
  };
}
