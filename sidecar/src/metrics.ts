/**
 * The sidecar's Prometheus metrics, on a registry of its own so that many sidecars can live in one
 * process (local mode). Gauges read the Activity state when scraped.
 *
 * The per-request metrics (requests_total by status class, request_duration_seconds) are counted
 * in plain numbers on the hot path and handed to prom-client when scraped: a labelled `inc` and a
 * histogram `observe` cost about as much as the rest of the relay's own work per request.
 */
import { Counter, Gauge, type Metric, type MetricValueWithName, type Registry } from 'prom-client';
import type { Activity } from './activity';

const PREFIX = 'spawner_sidecar_';
const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Few buckets: cheap to observe and to store, still enough to see the app's latency shape. */
const DURATION_BUCKETS = [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 60];

export interface SidecarMetrics {
  /** A proxied-port request finished with `status` after `seconds`. */
  request(status: number, seconds: number): void;
  /** A request or upgrade refused for its token (`isRequest`: it also counts as a 401 request). */
  unauthorized(isRequest: boolean): void;
  webSocketOpened(): void;
}

export function codeClass(status: number): (typeof CODE_CLASSES)[number] {
  return CODE_CLASSES[classIndex(status)];
}

function classIndex(status: number): number {
  const index = Math.floor(status / 100) - 1;
  return index < 0 ? 0 : index > 4 ? 4 : index;
}

/**
 * A histogram without labels whose `observe` is a few array writes, registered on a prom-client
 * registry and exposed exactly as prom-client's own Histogram would be (`_bucket{le}`
 * cumulative, `+Inf`, `_sum`, `_count`).
 */
export class PlainHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    this.counts = new Float64Array(bounds.length);
    registry.registerMetric(this as unknown as Metric);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.counts[i]++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }

  /** What prom-client's registry reads (`getMetricsAsString`, `getMetricsAsJSON`, `getSingleMetric(..).get()`). */
  get(): Promise<{ name: string; help: string; type: string; values: MetricValueWithName<string>[]; aggregator: string }> {
    const bucket = `${this.name}_bucket`;
    const values: MetricValueWithName<string>[] = [];
    let cumulative = 0;
    this.bounds.forEach((le, i) => {
      cumulative += this.counts[i];
      values.push({ labels: { le }, value: cumulative, metricName: bucket });
    });
    values.push(
      { labels: { le: '+Inf' }, value: this.count, metricName: bucket },
      { labels: {}, value: this.sum, metricName: `${this.name}_sum` },
      { labels: {}, value: this.count, metricName: `${this.name}_count` },
    );
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

export function createSidecarMetrics(registry: Registry, activity: Activity): SidecarMetrics {
  const registers = [registry];
  /** Requests by class since the last scrape. */
  const unscraped = [0, 0, 0, 0, 0];
  const requests = new Counter({
    name: `${PREFIX}requests_total`,
    help: 'Requests on the proxied port, by status class (401s and gateway errors included).',
    labelNames: ['code_class'],
    registers,
    collect() {
      for (let i = 0; i < unscraped.length; i++) {
        if (unscraped[i] === 0) continue;
        this.inc({ code_class: CODE_CLASSES[i] }, unscraped[i]);
        unscraped[i] = 0;
      }
    },
  });
  for (const cls of CODE_CLASSES) requests.inc({ code_class: cls }, 0);
  const duration = new PlainHistogram(
    `${PREFIX}request_duration_seconds`,
    'Time from request to end of response on the proxied port.',
    DURATION_BUCKETS,
    registry,
  );
  const webSockets = new Counter({
    name: `${PREFIX}websockets_total`,
    help: 'WebSocket connections opened through the sidecar.',
    registers,
  });
  const unauthorized = new Counter({
    name: `${PREFIX}unauthorized_total`,
    help: 'Requests and upgrades refused for a missing or wrong connection token.',
    registers,
  });
  new Gauge({
    name: `${PREFIX}live_websockets`,
    help: 'WebSocket connections open now.',
    registers,
    collect() {
      this.set(activity.liveConnections);
    },
  });
  new Gauge({
    name: `${PREFIX}last_activity_timestamp_seconds`,
    help: 'Time of the last request or WebSocket open/close (the start time when there was none).',
    registers,
    collect() {
      this.set((activity.lastActivityAt ?? activity.startedAt) / 1000);
    },
  });
  new Gauge({
    name: `${PREFIX}ready`,
    help: '1 once the app accepts TCP connections.',
    registers,
    collect() {
      this.set(activity.ready ? 1 : 0);
    },
  });
  new Gauge({
    name: `${PREFIX}held_requests`,
    help: 'Requests and upgrades waiting for the app to accept connections.',
    registers,
    collect() {
      this.set(activity.heldRequests);
    },
  });

  return {
    request(status, seconds) {
      unscraped[classIndex(status)]++;
      duration.observe(seconds);
    },
    unauthorized(isRequest) {
      unauthorized.inc();
      if (isRequest) unscraped[3]++;
    },
    webSocketOpened: () => webSockets.inc(),
  };
}
