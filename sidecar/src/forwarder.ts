/**
 * Forwards requests and WebSocket upgrades to the app, on the proxy engine of
 * http-proxy-middleware.
 *
 * Hot-path choices (measured: sidecar/README.md, Performance):
 * - The engine is taken from the middleware through a plugin and called directly. The middleware
 *   wrapper itself is an async function that copies the options, matches a path filter and runs
 *   a router on every request; none of that is needed for a single fixed upstream.
 * - Upstream connections are kept alive and reused (one `http.Agent` with keepAlive). Without
 *   it http-proxy opens and closes one connection per request.
 * - The response head is written in one call from the app's raw header list
 *   (`selfHandleResponse`), dropping only hop-by-hop headers; this is cheaper than http-proxy's
 *   header-by-header copy and keeps the client connection's keep-alive our own business.
 * - After a 101 the two sockets are piped by the engine; the tracker counts the pair exactly.
 */
import * as http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import type { Logger } from '../../common/src/logger';
import { answers, respond, respondRaw } from './responses';
import { watchWaitingClient } from './waiting-client';

type ProxyEngine = Parameters<Plugin>[0];

/** Set on a request whose response must carry this Set-Cookie (the token came by query). */
export const kSetCookie = Symbol('spawner.setCookie');
/** The app's response, kept on ours so a client that leaves mid-body releases the app's socket. */
const kUpstream = Symbol('spawner.upstream');

export type ForwardedRequest = http.IncomingMessage & { [kSetCookie]?: string };
type TrackedResponse = http.ServerResponse & { [kUpstream]?: http.IncomingMessage };

export interface ForwarderOptions {
  host: string;
  port: number;
  logger: Logger;
  /** Both sides of an upgrade are up; the app's 101 is being relayed. */
  onUpgraded(client: Duplex, upstream: Socket): void;
}

/** Upstream errors come in storms (the app died); one line per interval is enough. */
const ERROR_LOG_INTERVAL_MS = 5000;

/** Hop-by-hop headers of the app's response: they describe its connection to us, not ours to the client. */
function isHopByHop(name: string): boolean {
  switch (name.length) {
    case 10: {
      const lower = name.toLowerCase();
      return lower === 'connection' || lower === 'keep-alive';
    }
    case 16:
      return name.toLowerCase() === 'proxy-connection';
    case 17:
      return name.toLowerCase() === 'transfer-encoding';
    default:
      return false;
  }
}

/** X-Forwarded-For is appended to; Proto and Host keep what a proxy in front already set. */
function addForwardedHeaders(req: http.IncomingMessage): void {
  const headers = req.headers;
  const remote = req.socket.remoteAddress;
  if (remote !== undefined) {
    const prior = headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${prior}, ${remote}` : remote;
  }
  if (headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = 'http';
  if (headers['x-forwarded-host'] === undefined && headers.host !== undefined) headers['x-forwarded-host'] = headers.host;
}

export class Forwarder {
  private readonly engine: ProxyEngine;
  private readonly agent: http.Agent;
  private readonly webOptions: object;
  private readonly wsOptions: object;
  /** Upgrade sockets that already got an answer from the app (101 or not). */
  private readonly answered = new WeakSet<Duplex>();
  private lastErrorLog = 0;
  private suppressedErrors = 0;

  constructor(private readonly opts: ForwarderOptions) {
    this.agent = new http.Agent({
      keepAlive: true,
      // Lets the Keep-Alive hint of the app's server (e.g. Node's 5 s) shorten our idle time, so
      // we do not reuse a connection the app is closing; 60 s caps idle sockets otherwise.
      timeout: 60_000,
      maxSockets: Infinity,
      maxFreeSockets: 256,
      scheduling: 'lifo',
    });
    const target = { protocol: 'http:', host: opts.host, port: opts.port };
    this.webOptions = { target, agent: this.agent, selfHandleResponse: true };
    // Upgrades get a connection of their own: it leaves any pool at the 101 anyway.
    this.wsOptions = { target, agent: false };

    let engine: ProxyEngine | undefined;
    createProxyMiddleware({
      target: `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`,
      ejectPlugins: true,
      plugins: [
        (proxyServer) => {
          engine = proxyServer;
        },
      ],
    });
    if (!engine) throw new Error('http-proxy-middleware did not hand out its proxy engine');
    this.engine = engine;
    engine.on('proxyRes', (proxyRes, req, res) => this.relayResponse(proxyRes, req, res));
    engine.on('proxyReqWs', (proxyReq, _req, socket) => this.watchUpgrade(proxyReq, socket));
    engine.on('error', (err, req, target) => this.onError(err, req, target));
  }

  web(req: http.IncomingMessage, res: http.ServerResponse): void {
    const headers = req.headers;
    // Our client's connection preferences are not the app's: a client's `close` must not close
    // the pooled upstream connection. (`keep-alive`, the common case, is what the agent sends
    // anyway; leaving it avoids a delete that slows every later access to the headers object.)
    const connection = headers.connection;
    if (connection !== undefined && connection !== 'keep-alive' && connection.toLowerCase() !== 'keep-alive') {
      delete headers.connection;
    }
    if (headers['keep-alive'] !== undefined) delete headers['keep-alive'];
    if (headers['proxy-connection'] !== undefined) delete headers['proxy-connection'];
    addForwardedHeaders(req);
    this.engine.web(req, res, this.webOptions);
  }

  ws(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    addForwardedHeaders(req);
    this.engine.ws(req, socket, head, this.wsOptions);
  }

  /** Called when the client's response closed; frees the app's side of an unfinished one. */
  static release(res: http.ServerResponse): void {
    const upstream = (res as TrackedResponse)[kUpstream];
    if (upstream !== undefined && !upstream.complete) upstream.destroy();
  }

  close(): void {
    this.agent.destroy();
  }

  private relayResponse(proxyRes: http.IncomingMessage, req: ForwardedRequest, res: TrackedResponse): void {
    if (res.destroyed) {
      proxyRes.destroy();
      return;
    }
    const raw = proxyRes.rawHeaders;
    const head: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      if (!isHopByHop(raw[i])) head.push(raw[i], raw[i + 1]);
    }
    const cookie = req[kSetCookie];
    if (cookie !== undefined) head.push('Set-Cookie', cookie);
    res[kUpstream] = proxyRes;
    res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, head);
    // With a listener, an app that cuts the body short surfaces here instead of leaving the
    // client waiting for bytes that never come.
    proxyRes.on('error', () => res.destroy());
    proxyRes.pipe(res);
  }

  private watchUpgrade(proxyReq: http.ClientRequest, socket: Duplex): void {
    // A client that leaves before the app answers must not leave the app's request hanging.
    const endWatch = watchWaitingClient(socket, () => proxyReq.destroy());
    proxyReq.once('response', () => {
      this.answered.add(socket);
      endWatch();
    });
    // Registered before the engine's own 'upgrade' listener, which relays the 101 and pipes the
    // sockets synchronously right after this one.
    proxyReq.once('upgrade', (_res: http.IncomingMessage, upstream: Socket) => {
      this.answered.add(socket);
      endWatch();
      this.opts.onUpgraded(socket, upstream);
    });
  }

  private onError(err: Error, req: http.IncomingMessage, target: http.ServerResponse | Socket | undefined): void {
    const code = (err as NodeJS.ErrnoException).code;
    if (target instanceof http.ServerResponse) {
      if (!target.headersSent && !target.destroyed && !req.socket.destroyed) {
        respond(target, code === 'ECONNREFUSED' ? answers.refused() : answers.upstreamFailed());
      } else {
        target.destroy();
      }
    } else if (target !== undefined) {
      if (this.answered.has(target)) target.destroy();
      else respondRaw(target, code === 'ECONNREFUSED' ? answers.refused() : answers.upstreamFailed());
    }
    this.logError(err, code);
  }

  private logError(err: Error, code: string | undefined): void {
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.suppressedErrors++;
      return;
    }
    this.opts.logger.warn('upstream error', { code: code ?? err.message, suppressed: this.suppressedErrors });
    this.lastErrorLog = now;
    this.suppressedErrors = 0;
  }
}
