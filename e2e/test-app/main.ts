/**
 * A tiny backend for e2e tests (image `spawner-test-app`): HTTP and WebSocket echo, with start-up
 * and exit behaviours chosen by environment so tests can provoke each path of the operator.
 *
 *   PORT             listen port (default 8080), on 0.0.0.0
 *   LISTEN_DELAY_MS  wait this long before listening (a slow-starting app)
 *   EXIT_ON_START    exit at once with this code
 *   EXIT_AFTER_MS    exit after this long, with EXIT_CODE (default 0)
 *   ALLOCATE_MB      allocate and touch this much memory after start (to meet a memory limit)
 *   IGNORE_SIGTERM   "1": ignore SIGTERM (tests the grace-period SIGKILL)
 *   REFUSE_ASSIGNMENTS  answer the first N POSTs to /assigned with 503 (a warm pool's assignPath)
 *
 * Routes: GET / (200 text), /echo?… (the request as JSON), /env, /file?path=…, /healthz,
 * /exit?code=N, POST /assigned (a pool's assignPath: records the body) and GET /assigned (what
 * was posted, and how many were refused); a WebSocket on any path echoes every message.
 *
 * What it received, by the client's tag: a request with `?for=<tag>`, a WebSocket message that is
 * JSON with a `for` field; GET /counts answers `{http: {tag: n}, ws: {tag: n}}` (tests of misrouted
 * traffic: a backend's app must never count another's tag). The exit log line carries them too.
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { hostname } from 'node:os';
import { WebSocketServer } from 'ws';

const env = process.env;
const port = Number(env.PORT ?? 8080);
const started = Date.now();

function log(msg: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), component: 'test-app', msg, ...fields })}\n`);
}

/** Requests and WebSocket messages received, by the tag the client put on them. */
const counts = { http: {} as Record<string, number>, ws: {} as Record<string, number> };
const count = (kind: 'http' | 'ws', tag: string | undefined): void => {
  if (tag) counts[kind][tag] = (counts[kind][tag] ?? 0) + 1;
};

function tagOf(message: string): string | undefined {
  try {
    const tag = (JSON.parse(message) as { for?: unknown }).for;
    return typeof tag === 'string' ? tag : undefined;
  } catch {
    return undefined;
  }
}

function exit(code: number, why: string): void {
  log('exiting', { code, why, counts });
  // Let stdout drain: it is a file here, and the log line is what tests read.
  setImmediate(() => process.exit(code));
}

const ballast: Buffer[] = [];

/** The assignments a warm pool's sidecar posted (assignPath), with when, and how many were refused. */
const assignments = { received: [] as Array<{ at: number; body: unknown }>, refused: 0 };
let toRefuse = Number(env.REFUSE_ASSIGNMENTS ?? 0);

function serve(): void {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://test-app');
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (url.pathname !== '/counts') count('http', url.searchParams.get('for') ?? undefined);
    switch (url.pathname) {
      case '/counts':
        json(200, counts);
        return;
      case '/':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`spawner-test-app on ${hostname()}\n`);
        return;
      case '/healthz':
        res.end('ok\n');
        return;
      case '/echo': {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () =>
          json(200, {
            method: req.method,
            path: url.pathname,
            query: Object.fromEntries(url.searchParams),
            headers: req.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        return;
      }
      case '/env':
        json(200, env);
        return;
      case '/assigned': {
        if (req.method !== 'POST') {
          json(200, assignments);
          return;
        }
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          if (toRefuse > 0) {
            toRefuse--;
            assignments.refused++;
            json(503, { error: 'not yet' });
            return;
          }
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            json(400, { error: 'not JSON' });
            return;
          }
          assignments.received.push({ at: Date.now(), body });
          log('assigned', { body });
          json(200, { ok: true });
        });
        return;
      }
      case '/file': {
        let content: Buffer;
        try {
          content = readFileSync(url.searchParams.get('path') ?? '');
        } catch (err) {
          json(404, { error: (err as Error).message });
          return;
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(content);
        return;
      }
      case '/exit': {
        const code = Number(url.searchParams.get('code') ?? 0);
        json(200, { exiting: code });
        exit(code, 'requested over HTTP');
        return;
      }
      default:
        json(404, { error: `no route ${url.pathname}` });
    }
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket, req) => {
    log('websocket opened', { path: req.url });
    socket.on('message', (data, isBinary) => {
      if (!isBinary) count('ws', tagOf(String(data)));
      socket.send(data, { binary: isBinary });
    });
    socket.on('close', () => log('websocket closed', { path: req.url }));
  });
  server.listen(port, '0.0.0.0', () => log('listening', { port, startupMs: Date.now() - started }));
}

log('starting', { pid: process.pid, port, hostname: hostname() });
if (env.EXIT_ON_START !== undefined && env.EXIT_ON_START !== '') {
  exit(Number(env.EXIT_ON_START), 'EXIT_ON_START');
} else {
  if (env.IGNORE_SIGTERM === '1') process.on('SIGTERM', () => log('SIGTERM ignored'));
  else process.on('SIGTERM', () => exit(0, 'SIGTERM'));
  if (env.EXIT_AFTER_MS) setTimeout(() => exit(Number(env.EXIT_CODE ?? 0), 'EXIT_AFTER_MS'), Number(env.EXIT_AFTER_MS));
  if (env.ALLOCATE_MB) {
    // Touch every page, so the memory is really charged to the process.
    for (let i = 0; i < Number(env.ALLOCATE_MB); i++) ballast.push(Buffer.alloc(1024 * 1024, 1));
    log('allocated', { mb: Number(env.ALLOCATE_MB) });
  }
  setTimeout(serve, Number(env.LISTEN_DELAY_MS ?? 0));
}
