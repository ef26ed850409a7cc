/**
 * Starts the API and the entry point around a store: what main.ts does for Kubernetes, and what
 * local mode does around its own store. Everything is passed in; nothing is read from the
 * environment here.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/src/logger';
import { createApp } from './app';
import type { BackendStore } from './backend-store';
import type { TokenVerifier } from './bearer-auth';
import type { ApiConfig } from './config';
import type { ConnectionTokens } from './connection-tokens';
import { EntryPoint } from './entry-point';
import type { PoolReader } from './use-cases/deps';
import type { ApiMetrics } from './metrics';

export interface Servers {
  api: http.Server;
  apiPort: number;
  entryPoint: EntryPoint;
  entryPointPort: number;
  /**
   * The graceful part of a shutdown (SIGTERM on a rolling update): /readyz fails at once while
   * both listeners keep accepting for `delayMs` (Services, Ingresses and load balancers take a
   * moment to drop the endpoint); then the listeners close, idle keep-alive connections are
   * closed, and open WebSockets and in-flight requests (held entry-point requests, long polls,
   * status streams) get up to `graceMs` to end by themselves. Resolves with what was still open
   * when the grace ran out; `close()` then ends it.
   */
  drain(opts: { delayMs: number; graceMs: number }): Promise<DrainResult>;
  close(): Promise<void>;
}

export interface DrainResult {
  /** Whether everything ended within the grace. */
  drained: boolean;
  /** WebSockets still open through the entry point when the drain ended. */
  openWebsockets: number;
  elapsedMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface StartOptions {
  store: BackendStore;
  /** Warm pools (Kubernetes mode). */
  pools?: PoolReader;
  config: ApiConfig;
  auth: TokenVerifier;
  tokens: ConnectionTokens;
  metrics: ApiMetrics;
  logger: Logger;
  version?: string;
  /** Wraps the API's request handler (local mode serves its demo page and Host check this way). */
  wrap?: (app: http.RequestListener) => http.RequestListener;
}

/** Malformed requests Node rejects before any handler runs still get the JSON error shape. */
export function answerClientErrors(server: http.Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const body = JSON.stringify({ error: { code: 'bad_request', message: http.STATUS_CODES[status] ?? 'bad request' } });
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}

export async function listen(server: http.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

export async function startServers(opts: StartOptions): Promise<Servers> {
  const { config, logger } = opts;
  let draining = false;
  const app = createApp({ ...opts, draining: () => draining });
  const api = http.createServer(opts.wrap ? opts.wrap(app) : app);
  api.keepAliveTimeout = 65_000;
  answerClientErrors(api);
  const entryPoint = new EntryPoint({ store: opts.store, config, metrics: opts.metrics, logger });
  const apiPort = await listen(api, config.port, config.host);
  let entryPointPort: number;
  try {
    entryPointPort = await entryPoint.listen(config.entryPointPort, config.entryPointHost);
  } catch (err) {
    api.close();
    throw err;
  }
  // URLs handed out are built from the request's Host and this port: with port 0 (tests, local
  // mode) it must be the one actually bound.
  config.entryPointPort = entryPointPort;
  logger.info('listening', { apiPort, entryPointPort });
  return {
    api,
    apiPort,
    entryPoint,
    entryPointPort,
    async drain({ delayMs, graceMs }) {
      const started = Date.now();
      draining = true;
      logger.info('draining: readiness fails, still accepting', { delayMs, graceMs });
      await sleep(delayMs);
      const closed = Promise.all([new Promise<void>((resolve) => api.close(() => resolve())), entryPoint.drain()]).then(
        () => true,
      );
      logger.info('draining: listeners closed', { openWebsockets: entryPoint.openWebsockets });
      // A keep-alive connection becomes idle when its last response is sent: close those as they
      // appear, so only WebSockets and requests still running hold the drain open.
      // (The entry point's relay closes its own idle connections as they appear.)
      const idle = setInterval(() => api.closeIdleConnections(), 200);
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        closed,
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
      ]);
      clearInterval(idle);
      clearTimeout(timer);
      const result = { drained, openWebsockets: entryPoint.openWebsockets, elapsedMs: Date.now() - started };
      logger.info('draining: done', result);
      return result;
    },
    async close() {
      const closed = new Promise<void>((resolve) => api.close(() => resolve()));
      // Status streams and long polls would hold the close open: end them.
      api.closeAllConnections();
      await Promise.all([closed, entryPoint.close()]);
    },
  };
}
