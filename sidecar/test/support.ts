/**
 * Test helpers: a tiny app (HTTP + WebSocket) to put behind the sidecar, a sidecar on ephemeral
 * ports, and condition-based waiting (no sleeps, no timing assertions).
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocketServer } from 'ws';
import { silentLogger } from '../../common/src/logger';
import { SseParser } from '../../common/src/sse';
import type { Clock } from '../src/activity';
import { sidecarConfig, type SidecarConfig } from '../src/config';
import { createSidecar, type Sidecar } from '../src/sidecar';

export interface TestApp {
  port: number;
  /** Sockets that carried at least one HTTP request (the readiness probe's connects carry none). */
  requestSockets: Set<net.Socket>;
  requests: { method?: string; url?: string; headers: http.IncomingHttpHeaders }[];
  /** Server-side sockets of accepted WebSockets. */
  wsSockets: Set<net.Socket>;
  /** `/slow` responses whose connection closed before they were finished. */
  abandonedSlow: { n: number };
  /** Upgrade requests to `/ws-hang`, unanswered. */
  hangingUpgrades: Set<net.Socket>;
  close(): Promise<void>;
}

/**
 * Routes: any path answers 200 with JSON {url, headers}; `/slow` starts its answer and finishes it
 * on `releaseSlow()`; `/echo-body` answers the request body's size; `/die-mid-body` dies halfway. Upgrades: `/ws` echoes, `/ws-reset` accepts then resets the TCP
 * connection, `/refuse-400` and `/refuse-404` refuse, `/ws-hang` never answers.
 */
export async function startApp(port = 0): Promise<TestApp & { releaseSlow(): void }> {
  const requestSockets = new Set<net.Socket>();
  const requests: TestApp['requests'] = [];
  const wsSockets = new Set<net.Socket>();
  const hanging = new Set<net.Socket>();
  let slow: http.ServerResponse[] = [];
  const abandonedSlow = { n: 0 };
  const server = http.createServer((req, res) => {
    requestSockets.add(req.socket);
    requests.push({ method: req.method, url: req.url, headers: req.headers });
    if (req.url === '/echo-body') {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.on('end', () => res.end(JSON.stringify({ bytes, transferEncoding: req.headers['transfer-encoding'] ?? null })));
      return;
    }
    if (req.url === '/die-mid-body') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial');
      setImmediate(() => req.socket.destroy());
      return;
    }
    if (req.url === '/slow') {
      slow.push(res);
      res.on('close', () => {
        if (!res.writableFinished) abandonedSlow.n++;
      });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started\n');
      return;
    }
    const body = JSON.stringify({ url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'app=1; Path=/' });
    res.end(body);
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const s = socket as net.Socket;
    if (req.url === '/refuse-400' || req.url === '/refuse-404') {
      const status = req.url === '/refuse-400' ? '400 Bad Request' : '404 Not Found';
      s.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n`);
      return;
    }
    if (req.url === '/ws-hang') {
      hanging.add(s);
      // Read, or the close of a socket handed over by 'upgrade' would go unnoticed.
      s.resume();
      s.on('end', () => s.destroy());
      s.on('close', () => hanging.delete(s));
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      wsSockets.add(s);
      s.on('close', () => wsSockets.delete(s));
      if (req.url === '/ws-reset') {
        s.resetAndDestroy();
        return;
      }
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    requestSockets,
    requests,
    wsSockets,
    hangingUpgrades: hanging,
    abandonedSlow,
    releaseSlow() {
      for (const res of slow) res.end('done\n');
      slow = [];
    },
    async close() {
      for (const res of slow) res.destroy();
      for (const s of hanging) s.destroy();
      for (const client of wss.clients) client.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on (right now). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startSidecar(
  overrides: Partial<SidecarConfig>,
  now?: Clock,
): Promise<Sidecar & { url: (path?: string) => string; admin: (path?: string) => string }> {
  const sidecar = createSidecar(sidecarConfig({ servePort: 0, adminPort: 0, listenHost: '127.0.0.1', ...overrides }), {
    logger: silentLogger,
    defaultMetrics: false,
    now,
  });
  await sidecar.start();
  return Object.assign(sidecar, {
    url: (path = '/') => `http://127.0.0.1:${sidecar.servePort}${path}`,
    admin: (path = '/') => `http://127.0.0.1:${sidecar.adminPort}${path}`,
  });
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a connection of its own (no pooled sockets left behind). */
export function request(url: string, options: http.RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `condition` until it holds; fails with `what` after a generous deadline. */
export async function waitFor(condition: () => boolean, what = 'condition', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Collects the messages of an SSE stream. */
export function listenEvents(url: string): { messages: unknown[]; headers: Promise<http.IncomingHttpHeaders>; close(): void } {
  const messages: unknown[] = [];
  const parser = new SseParser();
  let req: http.ClientRequest | undefined;
  const headers = new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
    req = http.get(url, { agent: false }, (res) => {
      resolve(res.headers);
      res.on('data', (chunk: Buffer) => {
        for (const { data } of parser.push(chunk)) messages.push(JSON.parse(data));
      });
      res.on('error', () => undefined);
    });
    req.on('error', reject);
  });
  return { messages, headers, close: () => req?.destroy() };
}
