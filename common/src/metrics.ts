import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * A registry per component, with the process and Node.js runtime metrics prom-client collects.
 * Spawner's own metrics are prefixed `spawner_` by the components that define them.
 */
export function createRegistry(component: string, withDefaults = true): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  if (withDefaults) collectDefaultMetrics({ register: registry });
  return registry;
}

/** Histogram buckets for latencies from milliseconds to minutes. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
