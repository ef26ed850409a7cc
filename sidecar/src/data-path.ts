/**
 * What the sidecar hands its data path (the relay core with the sidecar's policy, src/sidecar-policy.ts) and what it expects back: the
 * shared state the relay enforces its rules against (token, holding, accounting), and the
 * listen/drain/destroy lifecycle the sidecar drives.
 */
import type { Logger } from '../../common/src/logger';
import type { TunnelTracker } from '../../common/src/relay/tunnel-tracker';
import type { Activity } from './activity';
import type { SidecarAccess } from './assignment';
import type { HoldQueue } from './hold-queue';
import type { SidecarMetrics } from './metrics';

export interface DataPathDeps {
  upstreamHost: string;
  upstreamPort: number;
  activity: Activity;
  metrics: SidecarMetrics;
  /** The token gate, the identity to tell the app, and whether a pool Pod is still unassigned. */
  access: Pick<SidecarAccess, 'gate' | 'identity' | 'pending'>;
  queue: HoldQueue;
  tracker: TunnelTracker;
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
