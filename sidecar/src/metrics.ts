/**
 * The sidecar's Prometheus metrics, on a registry of its own so that many sidecars can live in one
 * process (local mode). Gauges read the Activity state when scraped, so the hot path only pays
 * for a counter increment and a histogram observation per request.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
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
  const index = Math.floor(status / 100) - 1;
  return CODE_CLASSES[index < 0 ? 0 : index > 4 ? 4 : index];
}

export function createSidecarMetrics(registry: Registry, activity: Activity): SidecarMetrics {
  const registers = [registry];
  const requests = new Counter({
    name: `${PREFIX}requests_total`,
    help: 'Requests on the proxied port, by status class (401s and gateway errors included).',
    labelNames: ['code_class'],
    registers,
  });
  for (const cls of CODE_CLASSES) requests.inc({ code_class: cls }, 0);
  const duration = new Histogram({
    name: `${PREFIX}request_duration_seconds`,
    help: 'Time from request to end of response on the proxied port.',
    buckets: DURATION_BUCKETS,
    registers,
  });
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
      requests.inc({ code_class: codeClass(status) });
      duration.observe(seconds);
    },
    unauthorized(isRequest) {
      unauthorized.inc();
      if (isRequest) requests.inc({ code_class: '4xx' });
    },
    webSocketOpened: () => webSockets.inc(),
  };
}
