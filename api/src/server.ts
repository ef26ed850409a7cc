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
import type { ApiMetrics } from './metrics';

export interface Servers {
  api: http.Server;
  apiPort: number;
  entryPoint: EntryPoint;
  entryPointPort: number;
  close(): Promise<void>;
}

export interface StartOptions {
  store: BackendStore;
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
  const app = createApp(opts);
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
    async close() {
      const closed = new Promise<void>((resolve) => api.close(() => resolve()));
      // Status streams and long polls would hold the close open: end them.
      api.closeAllConnections();
      await Promise.all([closed, entryPoint.close()]);
    },
  };
}
