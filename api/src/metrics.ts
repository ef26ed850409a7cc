/**
 * The API's and the entry point's metrics. Labels stay low-cardinality: routes are express
 * patterns (never raw paths, which carry backend names), methods a fixed set, codes as numbers.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { LATENCY_BUCKETS } from '../../common/src/metrics';

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
export const methodLabel = (m: string | undefined): string => (m && KNOWN_METHODS.has(m) ? m : 'other');
export const codeClass = (code: number): string => `${Math.floor(code / 100)}xx`;

export class ApiMetrics {
  readonly requests: Counter<'route' | 'method' | 'code'>;
  readonly duration: Histogram<'route'>;
  readonly backendsCreated: Counter;
  readonly rateLimited: Counter<'limit'>;
  readonly entryRequests: Counter<'code_class'>;
  readonly liveWebsockets: Gauge;
  readonly heldRequests: Gauge;
  readonly upstreamErrors: Counter<'kind'>;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'spawner_api_requests_total',
      help: 'API requests by route pattern, method and status code.',
      labelNames: ['route', 'method', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'spawner_api_request_duration_seconds',
      help: 'API request duration by route pattern (streams and long polls included).',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.backendsCreated = new Counter({
      name: 'spawner_api_backends_created_total',
      help: 'Backends created through the API (get-or-create hits not counted).',
      registers,
    });
    this.rateLimited = new Counter({
      name: 'spawner_api_rate_limited_total',
      help: 'Creates refused with 429, by limit (rate, live).',
      labelNames: ['limit'],
      registers,
    });
    this.entryRequests = new Counter({
      name: 'spawner_entrypoint_requests_total',
      help: 'Requests through the entry point by status class (1xx: WebSocket upgrades).',
      labelNames: ['code_class'],
      registers,
    });
    this.liveWebsockets = new Gauge({
      name: 'spawner_entrypoint_live_websockets',
      help: 'WebSocket connections open through the entry point.',
      registers,
    });
    this.heldRequests = new Gauge({
      name: 'spawner_entrypoint_held_requests',
      help: 'Requests held by the entry point until their backend is Ready.',
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'spawner_entrypoint_upstream_errors_total',
      help: 'Failures to reach a sidecar, by kind (http, websocket).',
      labelNames: ['kind'],
      registers,
    });
  }
}
