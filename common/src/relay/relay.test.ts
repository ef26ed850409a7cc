/**
 * The relay core's behaviour suite, run against both of its users: the sidecar (one app, the
 * token gate, holding until the app accepts) and the entry point (`entry point: relay`: routing
 * per request to a backend's sidecar, here the test app, through the same core). Driven over raw
 * sockets, so the bytes on the wire are exactly the test's: pipelining, chunked bodies both ways,
 * 100-continue, HTTP/1.0, close-delimited responses, refused requests with bodies on a kept-alive
 * connection, upgrade answers, an upstream that closes mid-response, malformed and oversized
 * heads, slow heads, stale kept-alive connections, held requests, half-close.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { Registry } from 'prom-client';
import { newBackend } from '../backend';
import { ANNOTATION_TOKEN_HASH } from '../constants';
import { sha256Hex, TokenGate } from '../connection-token';
import { silentLogger } from '../logger';
import type { Relay } from './relay';
import { TunnelTracker } from './tunnel-tracker';
import { Activity } from '../../../sidecar/src/activity';
import { HoldQueue } from '../../../sidecar/src/hold-queue';
import { createSidecarMetrics } from '../../../sidecar/src/metrics';
import { createSidecarRelay } from '../../../sidecar/src/sidecar-policy';
import { startApp, waitFor } from '../../../sidecar/test/support';
import { apiConfig } from '../../../api/src/config';
import { EntryPoint } from '../../../api/src/entry-point';
import { MemoryBackendStore } from '../../../api/src/memory-backend-store';
import { ApiMetrics } from '../../../api/src/metrics';
import { trackInflight } from '../../../api/src/test-harness';

const TOKEN = 'tok-3Xa9_secret';
const TOKEN_SHA256 = sha256Hex(TOKEN);

interface StartOptions {
  token?: boolean;
  ready?: boolean;
  tickMs?: number;
}

/** A relay under test, in front of one app. */
interface Started {
  relay: Relay;
  port: number;
  /** Requests admitted and not over yet. */
  inflight(): number;
  /** WebSockets counted open. */
  websockets(): number;
  /** Requests waiting for the upstream to be ready. */
  held(): number;
  /** Requests counted as over, by status class. */
  requests(cls: string): Promise<number>;
  /** The upstream becomes ready: held requests go. */
  makeReady(): void;
  close(): Promise<void>;
}

interface Target {
  name: string;
  start(upstreamPort: number, opts: StartOptions): Promise<Started>;
  /** How a client's bytes reach this relay's upstream (the entry point needs the backend's path). */
  rewrite(bytes: string): string;
  /** The same for a path given to an HTTP client. */
  path(p: string): string;
  /** The token goes on to the upstream (the entry point hands it to the sidecar, which checks it again). */
  forwardsToken: boolean;
  /** Upgrades and their refusals are counted as requests. */
  countsUpgrades: boolean;
  cookiePath: string;
}

async function counted(registry: Registry, name: string, cls: string): Promise<number> {
  const metric = registry.getSingleMetric(name)!;
  const { values } = await metric.get();
  return values.find((v) => v.labels.code_class === cls)?.value ?? 0;
}

const sidecar: Target = {
  name: 'relay behaviour: sidecar',
  rewrite: (bytes) => bytes,
  path: (p) => p,
  forwardsToken: false,
  countsUpgrades: false,
  cookiePath: '/',
  async start(upstreamPort, opts) {
    const activity = new Activity();
    const registry = new Registry();
    const metrics = createSidecarMetrics(registry, activity);
    const queue = new HoldQueue(5000, 10, (delta) => activity.heldChanged(delta));
    const tracker = new TunnelTracker(
      () => activity.webSocketOpened(),
      () => activity.webSocketClosed(),
    );
    const relay = createSidecarRelay({
      upstreamHost: '127.0.0.1',
      upstreamPort,
      activity,
      metrics,
      access: { gate: opts.token ? new TokenGate(TOKEN_SHA256) : undefined, identity: '', pending: false },
      queue,
      tracker,
      logger: silentLogger,
      stopping: () => false,
      tickMs: opts.tickMs,
    });
    await relay.listen(0, '127.0.0.1');
    if (opts.ready !== false) activity.setReady(true);
    return {
      relay,
      port: relay.port!,
      inflight: () => activity.snapshot().inflightRequests,
      websockets: () => activity.liveConnections,
      held: () => activity.heldRequests,
      requests: (cls) => counted(registry, 'spawner_sidecar_requests_total', cls),
      makeReady() {
        activity.setReady(true);
        queue.releaseAll();
      },
      async close() {
        queue.rejectAll();
        const closed = relay.drain();
        relay.destroyAll();
        tracker.destroyAll();
        await closed;
      },
    };
  },
};

const BACKEND = 'b1';
const entryPoint: Target = {
  name: 'entry point: relay',
  // Every request line names the backend's path; the app sees what follows it.
  rewrite: (bytes) => bytes.replace(/([A-Z]+) (\/[^ ]*) HTTP\/1\./g, `$1 /p/${BACKEND}$2 HTTP/1.`),
  path: (p) => `/p/${BACKEND}${p}`,
  forwardsToken: true,
  countsUpgrades: true,
  cookiePath: `/p/${BACKEND}/`,
  async start(upstreamPort, opts) {
    const store = new MemoryBackendStore({
      namespace: 'spawner',
      endpointOf: (b) => (b.status?.podIP ? { host: '127.0.0.1', port: upstreamPort } : undefined),
    });
    const backend = newBackend(
      BACKEND,
      'spawner',
      { template: { containers: [{ name: 'app', image: 'x' }] } } as never,
      opts.token ? { annotations: { [ANNOTATION_TOKEN_HASH]: TOKEN_SHA256 } } : {},
    );
    await store.create(backend);
    const ready = (): void => void store.advance(BACKEND, 'Ready', { podIP: '10.0.0.1' });
    if (opts.ready !== false) ready();
    const registry = new Registry();
    const entry = new EntryPoint({
      store,
      config: apiConfig({ holdTimeoutMs: 5000, holdMaxRequests: 10 }),
      metrics: new ApiMetrics(registry),
      logger: silentLogger,
      tickMs: opts.tickMs,
    });
    const inflight = trackInflight(entry);
    const port = await entry.listen(0, '127.0.0.1');
    return {
      relay: entry.relay,
      port,
      inflight,
      websockets: () => entry.openWebsockets,
      held: () => entry.heldRequests,
      requests: (cls) => counted(registry, 'spawner_entrypoint_requests_total', cls),
      makeReady: ready,
      close: () => entry.close(),
    };
  },
};

/** A raw app: `onConnection` gets every accepted socket. */
async function startRawApp(
  onConnection: (socket: net.Socket) => void,
): Promise<{ port: number; sockets: Set<net.Socket>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A raw client connection that collects everything it receives. */
function rawClient(port: number): Promise<{
  socket: net.Socket;
  received: () => string;
  closed: Promise<void>;
  /** Resolves once the received text matches. */
  until(pattern: RegExp | ((text: string) => boolean)): Promise<string>;
}> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let text = '';
    const waiters: { test: (t: string) => boolean; resolve: (t: string) => void }[] = [];
    const check = (): void => {
      for (const w of [...waiters]) {
        if (w.test(text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(text);
        }
      }
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      check();
    });
    socket.on('error', () => undefined);
    const closed = new Promise<void>((done) => socket.on('close', () => done()));
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => text,
        closed,
        until(pattern) {
          const test = typeof pattern === 'function' ? pattern : (t: string) => pattern.test(t);
          return new Promise((res, rej) => {
            waiters.push({ test, resolve: res });
            check();
            closed.then(() => {
              if (waiters.some((w) => w.resolve === res)) rej(new Error(`closed before a match; got: ${JSON.stringify(text)}`));
            });
          });
        },
      }),
    );
    socket.once('error', reject);
  });
}

const count = (text: string, needle: string): number => text.split(needle).length - 1;

describe.each([sidecar, entryPoint])('$name', (target) => {
  const startRelay = (port: number, opts: StartOptions = {}): Promise<Started> => target.start(port, opts);

  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });
  const keep = <T extends { close(): Promise<unknown> | void }>(thing: T): T => {
    cleanups.push(() => thing.close());
    return thing;
  };

  async function withApp(opts: StartOptions = {}) {
    const app = keep(await startApp());
    const relay = keep(await startRelay(app.port, opts));
    return { app, relay };
  }

  async function client(port: number) {
    const c = await rawClient(port);
    cleanups.push(() => {
      c.socket.destroy();
    });
    // What the client writes, as this relay needs it addressed (binary frames pass unchanged).
    const write = c.socket.write.bind(c.socket) as (chunk: string | Buffer) => boolean;
    c.socket.write = ((chunk: string | Buffer) =>
      write(
        typeof chunk === 'string' ? target.rewrite(chunk) : Buffer.from(target.rewrite(chunk.toString('latin1')), 'latin1'),
      )) as typeof c.socket.write;
    return c;
  }

  it('relays pipelined requests in order on one app connection', async () => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write(
      'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nHEAD /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    const text = await c.until((t) => count(t, 'HTTP/1.1 200') === 4 && t.includes('"url":"/d"'));
    expect(text.indexOf('"url":"/a"')).toBeLessThan(text.indexOf('"url":"/b"'));
    expect(text.indexOf('"url":"/b"')).toBeLessThan(text.indexOf('"url":"/d"'));
    expect(text).not.toContain('"url":"/c"'); // HEAD: no body
    expect(app.requests.map((r) => r.url)).toEqual(['/a', '/b', '/c', '/d']);
    expect(app.requestSockets.size).toBe(1);
    await waitFor(() => relay.inflight() === 0, 'all answered');
    expect(await relay.requests('2xx')).toBe(4);
  });

  it('answers many pipelined requests in order, pausing reading while too many are in flight', async () => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    const n = 60;
    c.socket.write(Array.from({ length: n }, (_, i) => `GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''));
    const text = await c.until((t) => t.includes(`"url":"/${n - 1}"`));
    const order = [...text.matchAll(/"url":"\/(\d+)"/g)].map((m) => Number(m[1]));
    expect(order).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(app.requestSockets.size).toBe(1);
  });

  it('streams a chunked request body (extensions, trailers) and keeps the connection for the next request', async () => {
    const { relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write('POST /echo-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n');
    c.socket.write('6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n');
    const text = await c.until(/"url":"\/next"/);
    expect(text).toContain('{"bytes":11,"transferEncoding":"chunked"}');
  });

  it('relays a chunked response split at every byte boundary the app chooses', async () => {
    const app = keep(
      await startRawApp((s) => {
        s.once('data', () => {
          const response =
            'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n';
          // One byte per write: every state of the chunked parser sees a boundary.
          let i = 0;
          const next = (): void => {
            if (i < response.length) s.write(response[i++], () => setImmediate(next));
          };
          next();
          s.on('data', () => s.write('HTTP/1.1 204 No Content\r\n\r\n'));
        });
      }),
    );
    const relay = keep(await startRelay(app.port));
    const c = await client(relay.port);
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.until(/T: 1\r\n\r\n$/);
    c.socket.write('GET /again HTTP/1.1\r\nHost: x\r\n\r\n');
    const text = await c.until(/204 No Content/);
    expect(text).toContain('3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 204');
    expect(await relay.requests('2xx')).toBe(2);
  });

  it('passes 100-continue on: the client sends its body after the app says so', async () => {
    const { relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write('POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
    await c.until(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    c.socket.write('abcd');
    const text = await c.until(/"bytes":4/);
    expect(text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
  });

  it('serves HTTP/1.0 and closes after the answer, unless both sides keep the connection alive', async () => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write('GET /old HTTP/1.0\r\n\r\n');
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 200 OK[^]*"url":"\/old"/);
    expect(app.requests.map((r) => r.url)).toEqual(['/old']);

    const keepAlive = keep(
      await startRawApp((s) => {
        s.on('data', (d) => {
          const url = d.toString().split(' ')[1];
          s.write(`HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: ${url.length}\r\n\r\n${url}`);
        });
      }),
    );
    const relay10 = keep(await startRelay(keepAlive.port));
    const k = await client(relay10.port);
    k.socket.write('GET /k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await k.until(/\/k1$/);
    k.socket.write('GET /k2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await k.until(/\/k2$/);
    expect(k.socket.destroyed).toBe(false);
    expect(keepAlive.sockets.size).toBe(1);
  });

  it('closes after a request with Connection: close, ignoring what follows it', async () => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write('GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.closed;
    expect(count(c.received(), 'HTTP/1.1 200')).toBe(1);
    expect(app.requests.map((r) => r.url)).toEqual(['/last']);
  });

  it('relays a close-delimited response to its end and then closes the client', async () => {
    const app = keep(
      await startRawApp((s) => {
        s.once('data', () => {
          s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ');
          setTimeout(() => s.end('part two'), 20);
        });
      }),
    );
    const relay = keep(await startRelay(app.port));
    const c = await client(relay.port);
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.closed;
    expect(c.received()).toMatch(/\r\n\r\npart one, part two$/);
    await waitFor(() => relay.inflight() === 0, 'request over');
    expect(await relay.requests('2xx')).toBe(1);
  });

  it('refuses a request without the token with 401, drops its body, and serves the next request', async () => {
    const { app, relay } = await withApp({ token: true });
    const c = await client(relay.port);
    const body = 'x'.repeat(3000);
    c.socket.write(`POST /secret HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 1000)}`);
    await c.until(/^HTTP\/1\.1 401 /);
    c.socket.write(`${body.slice(1000)}GET /ok HTTP/1.1\r\nHost: x\r\nX-Spawner-Token: ${TOKEN}\r\n\r\n`);
    const text = await c.until(/"url":"\/ok"/);
    expect(count(text, 'HTTP/1.1 ')).toBe(2);
    expect(app.requests.map((r) => r.url)).toEqual(['/ok']);
    expect(app.requests[0].headers['x-spawner-token']).toBe(target.forwardsToken ? TOKEN : undefined);
    expect(relay.inflight()).toBe(0);
    expect(await relay.requests('4xx')).toBe(1);

    // Chunked too, in order behind an answer still due from the app.
    c.socket.write('GET /slow HTTP/1.1\r\nHost: x\r\nX-Spawner-Token: ' + TOKEN + '\r\n\r\n');
    c.socket.write('POST /no HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    c.socket.write(`GET /after HTTP/1.1\r\nHost: x\r\nCookie: spawner_token=${TOKEN}\r\n\r\n`);
    await waitFor(() => app.requests.length === 3, 'the app saw /slow and /after');
    app.releaseSlow();
    const all = await c.until(/"url":"\/after"/);
    const tail = all.slice(text.length);
    expect(tail.indexOf('started')).toBeLessThan(tail.indexOf('401 Unauthorized'));
    expect(tail.indexOf('401 Unauthorized')).toBeLessThan(tail.indexOf('"url":"/after"'));
    expect(app.requests.map((r) => r.url)).toEqual(['/ok', '/slow', '/after']);
  });

  it('closes after a 401 to a request waiting for 100-continue', async () => {
    const { app, relay } = await withApp({ token: true });
    const c = await client(relay.port);
    c.socket.write('PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n');
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 401 [^]*Connection: close\r\n/);
    expect(app.requests).toHaveLength(0);
  });

  it('sets the token cookie on the answer when the token came in the query', async () => {
    const { app, relay } = await withApp({ token: true });
    const c = await client(relay.port);
    c.socket.write(`GET /q?a=1&spawner_token=${TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const text = await c.until(/"url":"\/q\?a=1"/);
    expect(text).toContain(`Set-Cookie: spawner_token=${TOKEN}; Path=${target.cookiePath}; HttpOnly; SameSite=Lax\r\n`);
    expect(text).toContain('set-cookie: app=1; Path=/\r\n');
    expect(app.requests[0].url).toBe('/q?a=1');
  });

  it('counts a WebSocket only on a 101, and relays frames sent right behind the upgrade', async () => {
    const { app, relay } = await withApp();
    const handshake = (path: string): string =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
    // A masked text frame "hi", in the same write as the upgrade request.
    const mask = [1, 2, 3, 4];
    const frame = Buffer.from([0x81, 0x82, ...mask, 'h'.charCodeAt(0) ^ mask[0], 'i'.charCodeAt(0) ^ mask[1]]);
    const c = await client(relay.port);
    c.socket.write(Buffer.concat([Buffer.from(handshake('/ws'), 'latin1'), frame]));
    await c.until((t) => t.startsWith('HTTP/1.1 101') && t.endsWith('\x81\x02hi'));
    expect(relay.websockets()).toBe(1);

    const refused = await client(relay.port);
    refused.socket.write(handshake('/refuse-404'));
    await refused.closed;
    expect(refused.received()).toMatch(/^HTTP\/1\.1 404 Not Found/);
    expect(relay.websockets()).toBe(1);

    c.socket.destroy();
    await waitFor(() => relay.websockets() === 0, 'uncounted');
    await waitFor(() => app.wsSockets.size === 0, 'the app side closed');
    // The sidecar does not count upgrades as requests; the entry point counts every answer.
    expect(await relay.requests('4xx')).toBe(target.countsUpgrades ? 1 : 0);
  });

  it('answers 502 when the app closes before answering, and cuts the client when it closes mid-response', async () => {
    const app = keep(
      await startRawApp((s) => {
        s.once('data', (d) => {
          if (d.toString().startsWith('GET /mid')) s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this');
          else s.end();
        });
      }),
    );
    const relay = keep(await startRelay(app.port));
    const a = await client(relay.port);
    a.socket.write('GET /none HTTP/1.1\r\nHost: x\r\n\r\n');
    await a.closed;
    expect(a.received()).toMatch(
      /^HTTP\/1\.1 502 Bad Gateway\r\n[^]*Connection: close\r\n\r\n[^]+$/, // each relay phrases it its own way
    );

    const b = await client(relay.port);
    b.socket.write('GET /mid HTTP/1.1\r\nHost: x\r\n\r\n');
    await b.closed;
    expect(b.received()).toMatch(/\r\n\r\nonly this$/);
    await waitFor(() => relay.inflight() === 0, 'requests over');
    expect(await relay.requests('5xx')).toBe(1);
    expect(await relay.requests('2xx')).toBe(1);
  });

  it('sends bodiless requests again on a new connection when a kept-alive one turns out closed', async () => {
    let connections = 0;
    const app = keep(
      await startRawApp((s) => {
        const n = ++connections;
        let requests = 0;
        s.on('data', () => {
          requests++;
          // The first connection answers once, then "times out" just as the next request arrives.
          if (n === 1 && requests === 2) s.destroy();
          else s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n${n}${requests}`);
        });
      }),
    );
    const relay = keep(await startRelay(app.port));
    const c = await client(relay.port);
    c.socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.until(/\r\n\r\n11$/);
    c.socket.write('GET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
    const text = await c.until(/\r\n\r\n21$/);
    expect(count(text, 'HTTP/1.1 200')).toBe(2);
    expect(connections).toBe(2);
  });

  it('opens a new app connection when the app closed the idle one', async () => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.until(/"url":"\/1"/);
    for (const s of app.requestSockets) s.end(); // as the app's keep-alive timeout would
    await new Promise((resolve) => setTimeout(resolve, 50));
    c.socket.write('GET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.until(/"url":"\/2"/);
    expect(app.requestSockets.size).toBe(2);
  });

  it('drops an app connection that speaks unasked (an idle 408) without touching the client', async () => {
    let connections = 0;
    const app = keep(
      await startRawApp((s) => {
        connections++;
        s.on('data', () => {
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          setTimeout(() => s.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n'), 10);
        });
      }),
    );
    const relay = keep(await startRelay(app.port));
    const c = await client(relay.port);
    c.socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.until(/ok$/);
    await waitFor(() => app.sockets.size === 0, 'the app connection gone');
    c.socket.write('GET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
    const text = await c.until(/ok[^]*ok$/);
    expect(text).not.toContain('408');
    expect(connections).toBe(2);
  });

  it('closes after the answers due when a refused body is too large to drop', async () => {
    const { app, relay } = await withApp({ token: true });
    const c = await client(relay.port);
    c.socket.write(`GET /slow HTTP/1.1\r\nHost: x\r\nX-Spawner-Token: ${TOKEN}\r\n\r\n`);
    c.socket.write('POST /no HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    await waitFor(() => app.requests.length === 1, 'the app saw /slow');
    const chunk = `100000\r\n${'z'.repeat(0x100000)}\r\n`;
    c.socket.write(chunk + chunk);
    app.releaseSlow();
    await c.closed;
    const text = c.received();
    expect(text.indexOf('done')).toBeLessThan(text.indexOf('401 Unauthorized'));
    expect(app.requests.map((r) => r.url)).toEqual(['/slow']);
  });

  it.each([
    [
      'both Content-Length and Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
    ['a coding other than a final chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'],
    ['two Content-Lengths', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc'],
    ['whitespace before a colon', 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\n'],
    ['a folded line', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n'],
    ['a bare LF', 'GET / HTTP/1.1\nHost: x\r\n\r\n'],
    ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\nX: y\r\n\r\n'],
    ['a control character', 'GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n'],
    ['a malformed request line', 'GET  / HTTP/1.1\r\nHost: x\r\n\r\n'],
  ])('answers 400 and closes on %s, forwarding nothing', async (_what, bytes) => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write(bytes);
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[^]*Connection: close\r\n/);
    expect(app.requests).toHaveLength(0);
  });

  it('answers 505 to another HTTP version and 405 to CONNECT', async () => {
    const { app, relay } = await withApp();
    const a = await client(relay.port);
    a.socket.write('GET / HTTP/2.0\r\nHost: x\r\n\r\n');
    await a.closed;
    expect(a.received()).toMatch(/^HTTP\/1\.1 505 /);
    const b = await client(relay.port);
    b.socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    await b.closed;
    expect(b.received()).toMatch(/^HTTP\/1\.1 405 /);
    expect(app.requests).toHaveLength(0);
  });

  it('answers 431 to an oversized head', async () => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 431 /);
    expect(app.requests).toHaveLength(0);
  });

  it('closes a connection whose head does not arrive in time (slowloris), and idle ones later', async () => {
    const { relay } = await withApp({ tickMs: 10 });
    const slow = await client(relay.port);
    slow.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    const started = Date.now();
    await slow.closed;
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100); // 15 ticks

    const idle = await client(relay.port);
    idle.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await idle.until(/"url":"\/"/);
    await idle.closed; // after 65 ticks of keep-alive idleness
    expect(relay.relay.connections.size).toBe(0);
  });

  it('holds a request with a body until the app is ready, then forwards both', async () => {
    const app = keep(await startApp());
    const relay = keep(await startRelay(app.port, { ready: false }));
    const c = await client(relay.port);
    c.socket.write('POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel');
    await waitFor(() => relay.held() === 1, 'held');
    c.socket.write('lo');
    relay.makeReady();
    await c.until(/"bytes":5/);
  });

  it('passes a half-close on: an app that aborts on it leaves nothing in flight', async () => {
    const { app, relay } = await withApp();
    const c = await client(relay.port);
    c.socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.until(/started/);
    c.socket.end();
    await waitFor(() => app.abandonedSlow.n === 1, 'the app gave up');
    await waitFor(() => relay.inflight() === 0, 'nothing in flight');
  });

  it('relays a large response to a slow reader byte for byte', async () => {
    const size = 4 * 1024 * 1024;
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i++) payload[i] = (i * 31 + (i >> 12)) & 0xff;
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': size });
      for (let at = 0; at < size; at += 100_000) res.write(payload.subarray(at, at + 100_000));
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const relay = keep(await startRelay((server.address() as net.AddressInfo).port));
    for (let round = 0; round < 2; round++) {
      const got = await new Promise<Buffer>((resolve, reject) => {
        http
          .get(`http://127.0.0.1:${relay.port}${target.path('/big')}`, { agent: false }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => {
              chunks.push(c);
              // Read slowly now and then so the relay's writes back up.
              if (chunks.length % 20 === 0) {
                res.pause();
                setTimeout(() => res.resume(), 5);
              }
            });
            res.on('end', () => resolve(Buffer.concat(chunks)));
          })
          .on('error', reject);
      });
      expect(got.length).toBe(size);
      expect(got.equals(payload)).toBe(true);
    }
  });
});

describe('token: one parser', () => {
  // The same request, carrying the token one way or another, to the sidecar and to the entry
  // point: each is accepted by both or refused by both, and the app never sees a copy the
  // client sent (the entry point hands the sidecar the one that opened the gate, as a header).
  const encoded = TOKEN.replace('-', '%2D');
  const cases: [string, string, Record<string, string>, number][] = [
    ['query', `/q?a=1&spawner_token=${TOKEN}`, {}, 200],
    ['query, percent-encoded', `/q?spawner_token=${encoded}`, {}, 200],
    ['query, encoded parameter name', `/q?spawner%5Ftoken=${TOKEN}`, {}, 200],
    ['cookie', '/q', { Cookie: `theme=dark; spawner_token=${TOKEN}` }, 200],
    ['cookie, quoted', '/q', { Cookie: `spawner_token="${TOKEN}"` }, 200],
    ['cookie, percent-encoded', '/q', { Cookie: `spawner_token=${encoded}` }, 200],
    ['header', '/q', { 'X-Spawner-Token': TOKEN }, 200],
    ['bearer', '/q', { Authorization: `Bearer ${TOKEN}` }, 200],
    ['bearer, lowercase scheme', '/q', { Authorization: `bearer ${TOKEN}` }, 200],
    ['a wrong header beside a right cookie', '/q', { 'X-Spawner-Token': 'nope', Cookie: `spawner_token=${TOKEN}` }, 200],
    ['nothing', '/q', {}, 401],
    ['a wrong query token', '/q?spawner_token=nope', {}, 401],
    ['an empty query token', '/q?spawner_token=', {}, 401],
    ['a wrong cookie', '/q', { Cookie: 'spawner_token=nope' }, 401],
    ['a cookie of another name', '/q', { Cookie: `my_spawner_token=${TOKEN}` }, 401],
    ['a wrong header', '/q', { 'X-Spawner-Token': 'nope' }, 401],
    ['another bearer', '/q', { Authorization: 'Bearer app-credential' }, 401],
    ['another scheme', '/q', { Authorization: `Basic ${TOKEN}` }, 401],
    ['the token with a suffix', '/q', { 'X-Spawner-Token': `${TOKEN}x` }, 401],
  ];
  let app: Awaited<ReturnType<typeof startApp>>;
  const relays: [Target, Started][] = [];
  beforeAll(async () => {
    app = await startApp();
    for (const target of [sidecar, entryPoint]) relays.push([target, await target.start(app.port, { token: true })]);
  });
  afterAll(async () => {
    for (const [, relay] of relays) await relay.close();
    await app.close();
  });

  it.each(cases)('%s: the same answer from the sidecar and the entry point', async (_what, path, headers, expected) => {
    const statuses: number[] = [];
    for (const [target, relay] of relays) {
      const before = app.requests.length;
      const res = await fetch(`http://127.0.0.1:${relay.port}${target.path(path)}`, { headers });
      await res.arrayBuffer();
      statuses.push(res.status);
      if (res.status !== 200) {
        expect(app.requests.length).toBe(before); // never forwarded
        continue;
      }
      const seen = app.requests[app.requests.length - 1];
      expect(seen.url).toBe(path.replace(/[?&]spawner(_|%5F)token=[^&]*/, '').replace(/^\/q&/, '/q?'));
      expect(JSON.stringify(seen.headers.cookie ?? '')).not.toContain('spawner_token');
      expect(seen.headers.authorization).toBeUndefined();
      expect(seen.headers['x-spawner-token']).toBe(target.forwardsToken ? TOKEN : undefined);
    }
    expect(statuses).toEqual([expected, expected]);
  });
});
