/**
 * The admin listener every long-running component has: `/metrics` (Prometheus text format),
 * `/healthz` (the process is alive) and `/readyz` (it is doing its job: caches synced, leader or
 * standby, and so on). It is a plain http server so scrapes and probes never depend on express.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logger';

export interface AdminServerOptions {
  port: number;
  host?: string;
  registry: Registry;
  logger: Logger;
  ready?: () => boolean;
  /** Extra routes (path → handler), for component-specific admin endpoints. */
  routes?: Record<string, http.RequestListener>;
}

export async function startAdminServer(opts: AdminServerOptions): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      opts.registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': opts.registry.contentType });
          res.end(text);
        })
        .catch((err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(err));
        });
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const ok = opts.ready ? opts.ready() : true;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ready\n' : 'not ready\n');
      return;
    }
    const route = opts.routes?.[path];
    if (route) return route(req, res);
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  opts.logger.info('admin server listening', { port: addr.port });
  return server;
}
