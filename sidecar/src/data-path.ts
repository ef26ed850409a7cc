/**
 * What carries the proxied traffic: the relay (src/relay.ts, the default) or the request-level
 * proxy on http-proxy-middleware's engine (src/proxy-path.ts, `--data-path=http-proxy`). Both
 * enforce the same rules (token, holding, accounting) against the same state.
 */
import type { Logger } from '../../common/src/logger';
import type { Activity } from './activity';
import type { HoldQueue } from './hold-queue';
import type { SidecarMetrics } from './metrics';
import type { TokenGate } from './token';
import type { WebSocketTracker } from './ws-tracker';

export const DATA_PATHS = ['relay', 'http-proxy'] as const;
export type DataPathName = (typeof DATA_PATHS)[number];

export interface DataPathDeps {
  upstreamHost: string;
  upstreamPort: number;
  activity: Activity;
  metrics: SidecarMetrics;
  gate: TokenGate | undefined;
  queue: HoldQueue;
  tracker: WebSocketTracker;
  logger: Logger;
  stopping(): boolean;
}

export interface DataPath {
  listen(port: number, host: string): Promise<void>;
  /** The bound port while listening. */
  readonly port: number | undefined;
  /** Stops accepting; idle connections close now, busy ones after their answer. Resolves once all are gone. */
  drain(): Promise<void>;
  /** Cuts every remaining HTTP connection (the tracker cuts WebSockets). */
  destroyAll(): void;
}
