import type { Registry } from 'prom-client';
import type { BackendStore } from '../backend-store';
import type { BackendUrls } from '../backend-view';
import type { ApiConfig } from '../config';
import type { UseCaseDeps } from '../use-cases/deps';

/** What route handlers may use: use cases' deps, URL building, config. */
export interface RouteContext {
  deps: UseCaseDeps;
  store: BackendStore;
  urls: BackendUrls;
  config: ApiConfig;
  registry: Registry;
  /** True once a graceful drain has begun (SIGTERM): /readyz fails so Services stop sending. */
  draining: () => boolean;
  /** The OpenAPI document (built once, lazily). */
  openapi: () => unknown;
}
