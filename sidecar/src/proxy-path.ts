/**
 * The request-level data path (`--data-path=http-proxy`): Node's HTTP server in front, the
 * request forwarded by http-proxy-middleware's engine over a keep-alive agent (src/forwarder.ts).
 * It was the sidecar's only data path before the relay; it is kept as a fallback for an app whose
 * traffic the relay's strict HTTP/1.1 parsing would refuse, and as a reference: the sidecar's
 * behaviour tests run against both paths. It costs about four times the relay's CPU per request
 * (docs/adr/0005-sidecar-data-path.md) and is loaded only when chosen.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { DataPath, DataPathDeps } from './data-path';
import { Forwarder, kSetCookie, type ForwardedRequest } from './forwarder';
import type { HeldEntry } from './hold-queue';
import { answers, respond, respondRaw } from './responses';
import { watchWaitingClient } from './waiting-client';

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

export function createProxyPath(deps: DataPathDeps): DataPath {
  const { activity, metrics, gate, queue, tracker } = deps;
  const forwarder = new Forwarder({
    host: deps.upstreamHost,
    port: deps.upstreamPort,
    logger: deps.logger,
    onUpgraded: (client, upstream) => tracker.track(client, upstream),
  });

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
    if (deps.stopping()) return respond(res, answers.stopping());
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
    if (deps.stopping()) return respondRaw(socket, answers.stopping());
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

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
    },
    get port() {
      return server.listening ? (server.address() as AddressInfo).port : undefined;
    },
    drain() {
      if (!server.listening) return Promise.resolve();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    },
    destroyAll() {
      server.closeAllConnections();
      forwarder.close();
    },
  };
}
