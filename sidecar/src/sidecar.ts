/**
 * The sidecar: a reverse proxy in front of one backend's app that knows whether the backend is in
 * use. `createSidecar` is the whole component minus process concerns (flags, signals), so local
 * mode can run many in one process: ports may be 0 (the bound ones are exposed after start) and
 * each instance has its own metrics registry.
 *
 * Request path: token check (401, no activity) → activity + accounting → forward, or hold while
 * the app is not accepting connections yet (504 after holdTimeoutMs, 503 when holdMaxQueued wait).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import { startAdminServer } from '../../common/src/admin-server';
import { createLogger, type Logger } from '../../common/src/logger';
import { createRegistry } from '../../common/src/metrics';
import { Activity, type Clock, type SidecarState, type StateMessage } from './activity';
import { adminRoutes, EventStream } from './admin';
import type { SidecarConfig } from './config';
import { Forwarder, kSetCookie, type ForwardedRequest } from './forwarder';
import { HoldQueue, type HeldEntry } from './hold-queue';
import { createSidecarMetrics } from './metrics';
import { probeUntilReady, type ReadinessProbe } from './readiness';
import { answers, respond, respondRaw } from './responses';
import { TokenGate } from './token';
import { watchWaitingClient } from './waiting-client';
import { WebSocketTracker } from './ws-tracker';

export type { SidecarState, StateMessage } from './activity';

/**
 * Slow clients: headers must arrive within 15 s (slowloris), a whole request body within 5 min
 * (uploads), and an idle keep-alive connection is closed after 65 s (longer than the usual 60 s
 * of proxies in front, so they close first and never reuse a connection we are closing).
 * Upgraded connections and responses have no time limit: long polls and WebSockets are the point.
 */
const HEADERS_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 300_000;
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** Status recorded for a request whose client left before any answer (nginx's convention). */
const CLIENT_CLOSED_REQUEST = 499;
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

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
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
  const gate = config.tokenSha256 ? new TokenGate(config.tokenSha256) : undefined;
  const queue = new HoldQueue(config.holdTimeoutMs, config.holdMaxQueued, (delta) => activity.heldChanged(delta));
  const tracker = new WebSocketTracker(
    () => {
      activity.webSocketOpened();
      metrics.webSocketOpened();
    },
    () => activity.webSocketClosed(),
  );
  const forwarder = new Forwarder({
    host: config.upstreamHost,
    port: config.upstreamPort,
    logger,
    onUpgraded: (client, upstream) => tracker.track(client, upstream),
  });
  const events = new EventStream(activity, config.heartbeatSeconds * 1000);

  let stopping = false;
  let probe: ReadinessProbe | undefined;
  let adminServer: http.Server | undefined;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (gate !== undefined) {
      const admission = gate.admit(req, false);
      if (!admission.ok) {
        metrics.unauthorized(true);
        respond(res, answers.unauthorized());
        return;
      }
      if (admission.setCookie !== undefined) (req as ForwardedRequest)[kSetCookie] = admission.setCookie;
    }
    const started = performance.now();
    activity.requestStarted();
    res.once('close', () => {
      activity.requestEnded();
      metrics.request(res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST, (performance.now() - started) / 1000);
      if (!res.writableFinished) Forwarder.release(res);
    });
    if (activity.ready) forwarder.web(req, res);
    else holdRequest(req, res);
  };

  const holdRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (stopping) return respond(res, answers.stopping());
    const held: HeldEntry = {
      forward: () => forwarder.web(req, res),
      expire: () => respond(res, answers.holdTimeout()),
      reject: () => respond(res, answers.stopping()),
    };
    if (!queue.add(held)) return respond(res, answers.holdFull());
    res.once('close', () => queue.remove(held));
  };

  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    // The server drops its own error handling when it hands the socket over; without ours a
    // client reset before the upgrade completes would be an uncaught exception.
    socket.on('error', () => socket.destroy());
    const protocol = req.headers.upgrade;
    if (req.method !== 'GET' || typeof protocol !== 'string' || protocol.toLowerCase() !== 'websocket') {
      respondRaw(socket, answers.badUpgrade());
      return;
    }
    if (gate !== undefined && !gate.admit(req, true).ok) {
      metrics.unauthorized(false);
      respondRaw(socket, answers.unauthorized());
      return;
    }
    if (activity.ready) {
      forwarder.ws(req, socket, head);
      return;
    }
    if (stopping) return respondRaw(socket, answers.stopping());
    const held: HeldEntry = {
      forward: () => {
        endWatch();
        forwarder.ws(req, socket, head);
      },
      expire: () => {
        endWatch();
        respondRaw(socket, answers.holdTimeout());
      },
      reject: () => {
        endWatch();
        respondRaw(socket, answers.stopping());
      },
    };
    if (!queue.add(held)) return respondRaw(socket, answers.holdFull());
    const endWatch = watchWaitingClient(socket, () => queue.remove(held));
  };

  const server = http.createServer({ noDelay: true }, onRequest);
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.on('upgrade', onUpgrade);

  const waitForInflight = async (deadline: number): Promise<void> => {
    while (activity.snapshot().inflightRequests > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    }
  };

  return {
    get servePort() {
      return portOf(server.listening ? server : undefined, config.servePort);
    },
    get adminPort() {
      return portOf(adminServer?.listening ? adminServer : undefined, config.adminPort);
    },
    registry,

    async start() {
      const startedAt = Date.now();
      [, adminServer] = await Promise.all([
        listen(server, config.servePort, config.listenHost),
        startAdminServer({
          port: config.adminPort,
          host: config.listenHost,
          registry,
          logger,
          ready: () => activity.ready,
          routes: adminRoutes(activity, events),
        }),
      ]);
      logger.info('sidecar listening', {
        servePort: portOf(server, config.servePort),
        adminPort: portOf(adminServer, config.adminPort),
        upstream: `${config.upstreamHost}:${config.upstreamPort}`,
        token: gate !== undefined,
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
      const closed = closeServerGracefully(server);
      await waitForInflight(Date.now() + config.shutdownGraceMs);
      server.closeAllConnections();
      tracker.destroyAll();
      forwarder.close();
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

function closeServerGracefully(server: http.Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
