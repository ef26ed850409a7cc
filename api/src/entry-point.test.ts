/** The entry point against a real upstream (standing in for the sidecar): HTTP and WebSocket. */
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { jsonOf, json, startHarness, waitUntil, type Harness } from './test-harness';

interface Seen {
  url: string;
  headers: http.IncomingHttpHeaders;
}

let upstream: http.Server;
let upstreamPort: number;
/** A second sidecar stand-in (podIP 'second'): which server answered shows where a request went. */
let second: http.Server;
let secondPort: number;
const secondSockets = new Set<unknown>();
/** What the store says of its routing view's freshness. */
let stale = false;
/** A port nothing listens on until a test says so (podIP 'late'). */
let latePort = 0;
const firstSockets = new Set<unknown>();
let wss: WebSocketServer;
const seen: Seen[] = [];
let h: Harness;

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    if (req.url?.startsWith('/set-cookie')) res.setHeader('set-cookie', 'app=1; Path=/');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, token: req.headers['x-spawner-token'] ?? null }));
  });
  upstream.on('connection', (socket) => firstSockets.add(socket));
  second = http.createServer((req, res) => {
    seen.push({ url: `second:${req.url}`, headers: req.headers });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ second: req.url }));
  });
  second.on('connection', (socket) => secondSockets.add(socket));
  await new Promise<void>((r) => second.listen(0, '127.0.0.1', () => r()));
  secondPort = (second.address() as AddressInfo).port;
  wss = new WebSocketServer({ server: upstream });
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.url} ${req.headers['x-spawner-token'] ? 'with-token' : 'no-token'}`);
    ws.on('message', (m) => ws.send(`echo ${m.toString()}`));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  upstreamPort = (upstream.address() as AddressInfo).port;
});

afterAll(async () => {
  wss.close();
  second.closeAllConnections();
  await new Promise((r) => second.close(r));
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
});

beforeEach(async () => {
  seen.length = 0;
  stale = false;
  firstSockets.clear();
  secondSockets.clear();
  h = await startHarness(
    { holdTimeoutMs: 1500, holdMaxRequests: 5, entryPointDomain: 'backends.test' },
    {
      routesStale: () => stale,
      endpointOf: (b) =>
        b.status?.podIP
          ? {
              host: '127.0.0.1',
              port:
                b.status.podIP === 'down'
                  ? 1
                  : b.status.podIP === 'second'
                    ? secondPort
                    : b.status.podIP === 'late'
                      ? latePort
                      : upstreamPort,
            }
          : undefined,
    },
  );
});
afterEach(() => h.close());

async function readyBackend(podIP = '10.0.0.1'): Promise<{ name: string; url: string; token: string; uid: string }> {
  const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
  h.store.advance(b.name, 'Ready', { podIP });
  const stored = await h.store.get(b.name);
  return { name: b.name, url: b.url, token: new URL(b.url).searchParams.get('spawner_token')!, uid: stored!.metadata.uid! };
}

/** One raw client connection: writes bytes, collects what comes back. */
async function rawConnection(): Promise<{ socket: net.Socket; until(test: (text: string) => boolean): Promise<string> }> {
  const url = new URL(h.entry);
  const socket = net.connect(Number(url.port), url.hostname);
  await new Promise((r) => socket.once('connect', r));
  let text = '';
  const waiters: (() => void)[] = [];
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    text += chunk;
    for (const w of [...waiters]) w();
  });
  return {
    socket,
    until: (test) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (test(text)) resolve(text);
        };
        waiters.push(check);
        socket.once('close', () => reject(new Error(`closed; got ${JSON.stringify(text)}`)));
        check();
      }),
  };
}

const entryUrl = (name: string, rest = '/'): string => `${h.entry}/p/${name}${rest}`;

describe('HTTP through the entry point', () => {
  it('proxies to the sidecar with the prefix and query token stripped, the token as X-Spawner-Token, and sets a scoped cookie', async () => {
    const { name, url, token } = await readyBackend();
    expect(url.startsWith(`${h.entry}/p/${name}/?spawner_token=`)).toBe(true);
    const res = await fetch(`${entryUrl(name, '/api/items')}?a=1&spawner_token=${token}&b=2`);
    expect(res.status).toBe(200);
    expect(await jsonOf(res)).toEqual({ url: '/api/items?a=1&b=2', token });
    expect(res.headers.get('set-cookie')).toBe(`spawner_token=${token}; Path=/p/${name}/; HttpOnly; SameSite=Lax`);
    expect(seen[0].headers['x-forwarded-prefix']).toBe(`/p/${name}`);

    // The cookie alone is enough afterwards, and is not passed on to the app.
    const again = await fetch(entryUrl(name, '/page'), { headers: { cookie: `theme=dark; spawner_token=${token}` } });
    expect(again.status).toBe(200);
    expect(again.headers.get('set-cookie')).toBeNull();
    expect(seen[1].headers.cookie).toBe('theme=dark');
    expect(seen[1].headers['x-spawner-token']).toBe(token);

    // As does the header.
    expect((await fetch(entryUrl(name, '/x'), { headers: { 'x-spawner-token': token } })).status).toBe(200);
  });

  it("appends its cookie to the app's own Set-Cookie", async () => {
    const { name, token } = await readyBackend();
    const res = await fetch(`${entryUrl(name, '/set-cookie')}?spawner_token=${token}`);
    expect(res.headers.getSetCookie()).toEqual([
      'app=1; Path=/',
      `spawner_token=${token}; Path=/p/${name}/; HttpOnly; SameSite=Lax`,
    ]);
  });

  it('401 without a token or with a wrong one; a token of backend A does not open backend B', async () => {
    const a = await readyBackend();
    const b = await readyBackend();
    for (const init of [
      {},
      { headers: { 'x-spawner-token': 'wrong' } },
      { headers: { cookie: `spawner_token=${a.token}` } },
    ] as RequestInit[]) {
      const res = await fetch(entryUrl(b.name), init);
      expect(res.status).toBe(401);
      expect((await jsonOf(res)).error.code).toBe('unauthorized');
    }
    expect((await fetch(`${entryUrl(b.name)}?spawner_token=${a.token}`)).status).toBe(401);
    expect(seen).toHaveLength(0);
  });

  it('404 for an unknown backend or path, 308 to the trailing slash', async () => {
    const res = await fetch(entryUrl('spawner-nothing'));
    expect(res.status).toBe(404);
    expect((await jsonOf(res)).error.code).toBe('not_found');
    expect((await fetch(`${h.entry}/elsewhere`)).status).toBe(404);
    expect((await fetch(`${h.entry}/p/NOT_A_NAME/`)).status).toBe(404);
    const { name, token } = await readyBackend();
    const redirect = await fetch(`${h.entry}/p/${name}?spawner_token=${token}`, { redirect: 'manual' });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.get('location')).toBe(`/p/${name}/?spawner_token=${token}`);
  });

  it('holds a request until the backend is Ready', async () => {
    const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const token = new URL(b.url).searchParams.get('spawner_token');
    const started = Date.now();
    const pending = fetch(`${entryUrl(b.name, '/early')}?spawner_token=${token}`);
    await waitUntil(() => h.servers.entryPoint.heldRequests === 1);
    setTimeout(() => h.store.advance(b.name, 'Ready', { podIP: '10.0.0.1' }), 100);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(h.servers.entryPoint.heldRequests).toBe(0);
  });

  it('504 when the backend is not Ready in time; 503 past the hold limit; 410 once terminal', async () => {
    const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const token = new URL(b.url).searchParams.get('spawner_token');
    const waits = Array.from({ length: 5 }, () => fetch(`${entryUrl(b.name)}?spawner_token=${token}`));
    await waitUntil(() => h.servers.entryPoint.heldRequests === 5);
    const over = await fetch(`${entryUrl(b.name)}?spawner_token=${token}`);
    expect(over.status).toBe(503);
    expect(over.headers.get('retry-after')).toBe('1');
    const timedOut = await Promise.all(waits);
    expect(timedOut.map((r) => r.status)).toEqual([504, 504, 504, 504, 504]);
    expect((await jsonOf(timedOut[0])).error).toMatchObject({ code: 'backend_not_ready', details: { phase: 'Submitted' } });

    h.store.transition(b.name, { phase: 'Failed', reason: 'StartupTimeout' });
    const gone = await fetch(`${entryUrl(b.name)}?spawner_token=${token}`);
    expect(gone.status).toBe(410);
  });

  it('502 when the sidecar cannot be reached', async () => {
    const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.advance(b.name, 'Ready', { podIP: 'down' });
    const res = await fetch(b.url);
    expect(res.status).toBe(502);
    expect((await jsonOf(res)).error.code).toBe('backend_unreachable');
  });

  it('routes a request again while its sidecar refuses connections, within the hold budget', async () => {
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', () => r()));
    latePort = (free.address() as AddressInfo).port;
    await new Promise((r) => free.close(r));
    const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.advance(b.name, 'Ready', { podIP: 'late' });
    const late = http.createServer((_req, res) => res.end('late sidecar'));
    const pending = fetch(b.url);
    await new Promise((r) => setTimeout(r, 400)); // refused twice at least
    await new Promise<void>((r) => late.listen(latePort, '127.0.0.1', () => r()));
    try {
      const res = await pending;
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('late sidecar');
      expect(await (await fetch(`${h.base}/metrics`)).text()).toMatch(
        /spawner_entrypoint_upstream_errors_total\{kind="http"[^}]*\} [1-9]/,
      );
    } finally {
      late.closeAllConnections();
      await new Promise((r) => late.close(r));
    }
  });

  it('503 routes_stale for new requests while the routing view is past its freshness bound', async () => {
    const { name, token } = await readyBackend();
    stale = true;
    const refused = await fetch(`${entryUrl(name)}?spawner_token=${token}`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect((await jsonOf(refused)).error.code).toBe('routes_stale');
    expect(seen).toHaveLength(0);
    stale = false;
    expect((await fetch(`${entryUrl(name)}?spawner_token=${token}`)).status).toBe(200);
  });

  it('503 when the store cannot be reached', async () => {
    const { KubeUnavailableError } = await import('../../common/src/errors');
    const { name, token } = await readyBackend();
    h.store.failNext = new KubeUnavailableError('connect ECONNREFUSED');
    const res = await fetch(`${entryUrl(name)}?spawner_token=${token}`);
    expect(res.status).toBe(503);
    expect((await jsonOf(res)).error.code).toBe('unavailable');
  });

  it('routes Host <name>.<domain> with a cookie for the whole host', async () => {
    const { name, token } = await readyBackend();
    const res = await new Promise<http.IncomingMessage & { body: string }>((resolve, reject) => {
      const req = http.get(
        `${h.entry}/deep/path?spawner_token=${token}`,
        { headers: { host: `${name}.backends.test:8081` } },
        (r) => {
          let body = '';
          r.on('data', (c) => (body += c));
          r.on('end', () => resolve(Object.assign(r, { body })));
        },
      );
      req.on('error', reject);
    });
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body).url).toBe('/deep/path');
    expect(res.headers['set-cookie']).toEqual([`spawner_token=${token}; Path=/; HttpOnly; SameSite=Lax`]);
  });

  it("keeps path routing on the entry point's own host, even under the backend domain", async () => {
    const own = await startHarness(
      { entryPointDomain: 'backends.test', entryPointBaseUrl: 'http://spawner.backends.test:8081' },
      { endpointOf: () => ({ host: '127.0.0.1', port: upstreamPort }) },
    );
    try {
      const b = await jsonOf(await own.api('/v1/backends', json({ image: 'x' })));
      own.store.advance(b.name, 'Ready', { podIP: '10.0.0.1' });
      const token = new URL(b.url).searchParams.get('spawner_token');
      const status = await new Promise<number | undefined>((resolve, reject) => {
        http
          .get(`${own.entry}/p/${b.name}/x?spawner_token=${token}`, { headers: { host: 'spawner.backends.test:8081' } }, (r) => {
            r.resume();
            resolve(r.statusCode);
          })
          .on('error', reject);
      });
      expect(status).toBe(200);
    } finally {
      await own.close();
    }
  });

  it('entry point: relay routes each request of one connection to its own backend, over kept-alive sidecar connections', async () => {
    const a = await readyBackend();
    const b = await readyBackend('second');
    const get = (name: string, path: string, token: string, extra = ''): string =>
      `GET /p/${name}${path} HTTP/1.1\r\nHost: entry\r\nX-Spawner-Token: ${token}\r\n${extra}\r\n`;
    const c = await rawConnection();
    // Pipelined, alternating backends: answers come back in order, each from its own sidecar.
    c.socket.write(
      get(a.name, '/1', a.token, 'X-Spawner-Backend: evil\r\nX-Spawner-Backend-Uid: forged\r\n') +
        get(b.name, '/2', b.token) +
        get(a.name, '/3', a.token),
    );
    const text = await c.until((t) => t.includes('"url":"/3"'));
    const order = [...text.matchAll(/"(url|second)":"(\/\d)"/g)].map((m) => `${m[1]}${m[2]}`);
    expect(order).toEqual(['url/1', 'second/2', 'url/3']);
    expect(seen.map((r) => r.url)).toEqual(['/1', 'second:/2', '/3']);
    // The app learns which backend it serves; what the client claimed is gone.
    expect(seen[0].headers['x-spawner-backend']).toBe(a.name);
    expect(seen[0].headers['x-spawner-backend-uid']).toBe(a.uid);
    expect(seen[1].headers['x-spawner-backend']).toBe(b.name);
    c.socket.destroy();

    // Another client connection reuses the kept-alive connection to the first sidecar.
    const d = await rawConnection();
    d.socket.write(get(a.name, '/4', a.token));
    await d.until((t) => t.includes('"url":"/4"'));
    d.socket.destroy();
    expect(firstSockets.size).toBe(1);
    expect(secondSockets.size).toBe(1);
  });

  it('counts requests by status class', async () => {
    const { name, token } = await readyBackend();
    await fetch(`${entryUrl(name)}?spawner_token=${token}`);
    await fetch(entryUrl(name));
    const text = await (await fetch(`${h.base}/metrics`)).text();
    expect(text).toMatch(/spawner_entrypoint_requests_total\{code_class="2xx"[^}]*\} 1/);
    expect(text).toMatch(/spawner_entrypoint_requests_total\{code_class="4xx"[^}]*\} 1/);
  });
});

function openWs(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; first: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('message', (m) => resolve({ ws, first: m.toString() }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

describe('WebSocket through the entry point', () => {
  it('proxies with the prefix stripped, counts it while open and uncounts it on close', async () => {
    const { name, token } = await readyBackend();
    const wsUrl = `${entryUrl(name, '/socket')}?spawner_token=${token}`.replace(/^http/, 'ws');
    const { ws, first } = await openWs(wsUrl);
    expect(first).toBe('hello /socket with-token');
    expect(h.servers.entryPoint.openWebsockets).toBe(1);
    const echoed = new Promise<string>((r) => ws.once('message', (m) => r(m.toString())));
    ws.send('ping');
    expect(await echoed).toBe('echo ping');
    expect(await (await fetch(`${h.base}/metrics`)).text()).toMatch(/spawner_entrypoint_live_websockets\{[^}]*\} 1/);
    ws.close();
    await waitUntil(() => h.servers.entryPoint.openWebsockets === 0);
  });

  it('uncounts a connection the client drops without a close frame, and one the server ends', async () => {
    const { name, token } = await readyBackend();
    const url = `${entryUrl(name, '/')}?spawner_token=${token}`.replace(/^http/, 'ws');
    const a = await openWs(url);
    const b = await openWs(url, {});
    expect(h.servers.entryPoint.openWebsockets).toBe(2);
    a.ws.terminate();
    for (const client of wss.clients) client.terminate();
    await waitUntil(() => h.servers.entryPoint.openWebsockets === 0);
    b.ws.terminate();
  });

  it('401 for an upgrade without the token, 404 for an unknown backend, holds until Ready', async () => {
    const { name } = await readyBackend();
    await expect(openWs(entryUrl(name, '/').replace(/^http/, 'ws'))).rejects.toThrow('HTTP 401');
    await expect(openWs(entryUrl('spawner-nothing', '/').replace(/^http/, 'ws'))).rejects.toThrow('HTTP 404');

    const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const token = new URL(b.url).searchParams.get('spawner_token')!;
    const pending = openWs(entryUrl(b.name, '').replace(/^http/, 'ws'), { 'x-spawner-token': token });
    await waitUntil(() => h.servers.entryPoint.heldRequests === 1);
    h.store.advance(b.name, 'Ready', { podIP: '10.0.0.1' });
    const { ws, first } = await pending;
    expect(first).toBe('hello / with-token');
    ws.close();
    await waitUntil(() => h.servers.entryPoint.openWebsockets === 0);
  });

  it('502 for an upgrade when the sidecar is down', async () => {
    const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.advance(b.name, 'Ready', { podIP: 'down' });
    await expect(openWs(b.url.replace(/^http/, 'ws'))).rejects.toThrow('HTTP 502');
    expect(h.servers.entryPoint.openWebsockets).toBe(0);
  });
});
