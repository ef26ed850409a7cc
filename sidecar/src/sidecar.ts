/**
 * The sidecar: a reverse proxy in front of one backend's app that knows whether the backend is in
 * use. `createSidecar` is the whole component minus process concerns (flags, signals), so local
 * mode can run many in one process: ports may be 0 (the bound ones are exposed after start) and
 * each instance has its own metrics registry.
 *
 * Request path (src/sidecar-policy.ts over the relay core): refused while a warm pool Pod waits
 * for its claim (503; src/assignment.ts) → token check (401, no activity) → activity +
 * accounting → forward, or hold while the app is not accepting connections yet (504 after
 * holdTimeoutMs, 503 when holdMaxQueued wait).
 */
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { startAdminServer } from '../../common/src/admin-server';
import { tellApp } from '../../common/src/backend-identity';
import { ASSIGN_PATH } from '../../common/src/pool-assign';
import { createLogger, type Logger } from '../../common/src/logger';
import { TunnelTracker } from '../../common/src/relay/tunnel-tracker';
import { createRegistry } from '../../common/src/metrics';
import { Activity, type Clock, type SidecarState, type StateMessage } from './activity';
import { adminRoutes, EventStream } from './admin';
import { SidecarAccess } from './assignment';
import type { SidecarConfig } from './config';
import type { DataPath, DataPathDeps } from './data-path';
import { HoldQueue } from './hold-queue';
import { createSidecarMetrics } from './metrics';
import { probeUntilReady, type ReadinessProbe } from './readiness';
import { createSidecarRelay } from './sidecar-policy';

export type { SidecarState, StateMessage } from './activity';

const DRAIN_POLL_MS = 25;

export interface SidecarDeps {
  logger?: Logger;
  /** Defaults to a new registry of its own. */
  registry?: Registry;
  /** Process metrics on the new registry (default true); local mode turns them off per sidecar. */
  defaultMetrics?: boolean;
  now?: Clock;
}

export interface Sidecar {
  start(): Promise<void>;
  stop(): Promise<void>;
  state(): SidecarState;
  /** The /events messages, in process (local mode's sweeper). */
  subscribe(listener: (message: StateMessage) => void): () => void;
  /** The bound ports once started (the configured ones before). */
  readonly servePort: number;
  readonly adminPort: number;
  readonly registry: Registry;
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

const portOf = (server: http.Server | undefined, fallback: number): number =>
  (server?.address() as AddressInfo | null)?.port ?? fallback;

export function createSidecar(config: SidecarConfig, deps: SidecarDeps = {}): Sidecar {
  const logger = deps.logger ?? createLogger('sidecar', config.logLevel);
  const registry = deps.registry ?? createRegistry('sidecar', deps.defaultMetrics ?? true);
  const activity = new Activity(deps.now);
  const metrics = createSidecarMetrics(registry, activity);
  const appAssignPath = config.appAssignPath;
  const access = new SidecarAccess(
    config.tokenSha256,
    config.assignSha256,
    logger,
    appAssignPath === undefined
      ? undefined
      : (id) => tellApp({ host: config.upstreamHost, port: config.upstreamPort, path: appAssignPath }, id),
  );
  const queue = new HoldQueue(config.holdTimeoutMs, config.holdMaxQueued, (delta) => activity.heldChanged(delta));
  const tracker = new TunnelTracker(
    () => {
      activity.webSocketOpened();
      metrics.webSocketOpened();
    },
    () => activity.webSocketClosed(),
  );
  let stopping = false;
  const pathDeps: DataPathDeps = {
    upstreamHost: config.upstreamHost,
    upstreamPort: config.upstreamPort,
    activity,
    metrics,
    access,
    queue,
    tracker,
    logger,
    stopping: () => stopping,
  };
  let path: DataPath | undefined;
  const events = new EventStream(activity, config.heartbeatSeconds * 1000);

  let probe: ReadinessProbe | undefined;
  let adminServer: http.Server | undefined;

  const waitForInflight = async (deadline: number): Promise<void> => {
    while (activity.snapshot().inflightRequests > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    }
  };

  return {
    get servePort() {
      return path?.port ?? config.servePort;
    },
    get adminPort() {
      return portOf(adminServer?.listening ? adminServer : undefined, config.adminPort);
    },
    registry,

    async start() {
      const startedAt = Date.now();
      const relay = createSidecarRelay(pathDeps);
      path = relay;
      [, adminServer] = await Promise.all([
        relay.listen(config.servePort, config.listenHost),
        startAdminServer({
          port: config.adminPort,
          host: config.listenHost,
          registry,
          logger,
          ready: () => activity.ready,
          routes: { ...adminRoutes(activity, events), [ASSIGN_PATH]: access.handle },
        }),
      ]);
      logger.info('sidecar listening', {
        servePort: relay.port,
        adminPort: portOf(adminServer, config.adminPort),
        upstream: `${config.upstreamHost}:${config.upstreamPort}`,
        token: config.tokenSha256 !== undefined,
        pool: access.pending,
      });
      probe = probeUntilReady(config.upstreamHost, config.upstreamPort, () => {
        logger.info('app accepts connections', { afterMs: Date.now() - startedAt, released: queue.size });
        activity.setReady(true);
        queue.releaseAll();
      });
    },

    async stop() {
      if (stopping) return;
      stopping = true;
      probe?.stop();
      queue.rejectAll();
      // Stop accepting; let in-flight requests finish within the grace; then cut what is left,
      // WebSockets included (the backend is going away).
      const closed = path?.drain();
      await waitForInflight(Date.now() + config.shutdownGraceMs);
      path?.destroyAll();
      tracker.destroyAll();
      events.closeAll();
      await Promise.all([closed, adminServer ? closeServer(adminServer) : undefined]);
      logger.info('sidecar stopped');
    },

    state: () => activity.snapshot(),

    subscribe(listener) {
      return activity.subscribe(() => listener(activity.message()));
    },
  };
}
