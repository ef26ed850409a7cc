import { createHash } from 'node:crypto';
import * as http from 'node:http';
import WebSocket from 'ws';
import type { Sidecar } from './sidecar';
import { freePort, listenEvents, request, startApp, startSidecar, waitFor } from '../test/support';

type Started = Awaited<ReturnType<typeof startSidecar>>;
type App = Awaited<ReturnType<typeof startApp>>;

const TOKEN = 'tok-3Xa9_secret';
const TOKEN_SHA256 = createHash('sha256').update(TOKEN).digest('hex');

const wsUrl = (sidecar: Started, path: string): string => sidecar.url(path).replace(/^http/, 'ws');

function openWs(url: string, headers?: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** The status of an upgrade the server does not accept. */
function refusedStatus(url: string, headers?: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('error', () => undefined);
    ws.once('open', () => reject(new Error('upgrade unexpectedly accepted')));
    ws.once('unexpected-response', (req, res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
  });
}

function closed(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve();
    else ws.once('close', () => resolve());
  });
}

async function metricValue(sidecar: Sidecar, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = sidecar.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const found = values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return found?.value ?? 0;
}

const live = (sidecar: Sidecar): number => sidecar.state().liveConnections;

describe('sidecar', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  const track = <T extends { close(): unknown } | Sidecar>(thing: T): T => {
    cleanups.push(async () => {
      if ('stop' in thing) await thing.stop();
      else await thing.close();
    });
    return thing;
  };
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });

  async function readyPair(
    overrides: Parameters<typeof startSidecar>[0] = {},
    now?: () => number,
  ): Promise<{ app: App; sidecar: Started }> {
    const app = track(await startApp());
    const sidecar = track(await startSidecar({ upstreamPort: app.port, ...overrides }, now));
    await waitFor(() => sidecar.state().ready, 'ready');
    return { app, sidecar };
  }

  describe('WebSocket counting', () => {
    /** Every scenario keeps one other connection open, so a double uncount shows as 0 instead of 1. */
    async function withWitness(): Promise<{ app: App; sidecar: Started; witness: WebSocket; seen: number[] }> {
      const { app, sidecar } = await readyPair();
      const seen: number[] = [];
      cleanups.push(sidecar.subscribe((m) => seen.push(m.liveConnections)));
      const witness = await openWs(wsUrl(sidecar, '/ws'));
      cleanups.push(() => witness.terminate());
      await waitFor(() => live(sidecar) === 1, 'the witness counted');
      return { app, sidecar, witness, seen };
    }

    it('counts a connection while open and uncounts it on a clean close', async () => {
      const { app, sidecar, seen } = await withWitness();
      const ws = await openWs(wsUrl(sidecar, '/ws'));
      await waitFor(() => live(sidecar) === 2, 'two live');
      const echoed = new Promise((resolve) => ws.once('message', (d) => resolve(d.toString())));
      ws.send('ping');
      await expect(echoed).resolves.toBe('ping');
      ws.close();
      await closed(ws);
      await waitFor(() => live(sidecar) === 1, 'back to the witness');
      await waitFor(() => app.wsSockets.size === 1, 'app side closed');
      expect(live(sidecar)).toBe(1);
      expect(await metricValue(sidecar, 'spawner_sidecar_websockets_total')).toBe(2);
      expect(Math.min(...seen)).toBeGreaterThanOrEqual(0);
    });

    it('uncounts when the client aborts (socket destroyed)', async () => {
      const { app, sidecar } = await withWitness();
      const ws = await openWs(wsUrl(sidecar, '/ws'));
      await waitFor(() => live(sidecar) === 2, 'two live');
      ws.terminate();
      await waitFor(() => live(sidecar) === 1, 'back to the witness');
      await waitFor(() => app.wsSockets.size === 1, 'the app side torn down too');
      expect(live(sidecar)).toBe(1);
    });

    it('uncounts when the app resets the connection', async () => {
      const { app, sidecar } = await withWitness();
      const ws = new WebSocket(wsUrl(sidecar, '/ws-reset'));
      ws.on('error', () => undefined);
      await closed(ws);
      await waitFor(() => live(sidecar) === 1, 'back to the witness');
      await waitFor(() => app.wsSockets.size === 1, 'only the witness on the app');
      expect(live(sidecar)).toBe(1);
    });

    it.each([400, 404])('never counts an upgrade the app refuses with %i', async (status) => {
      const { sidecar, seen } = await withWitness();
      await expect(refusedStatus(wsUrl(sidecar, `/refuse-${status}`))).resolves.toBe(status);
      expect(live(sidecar)).toBe(1);
      expect(await metricValue(sidecar, 'spawner_sidecar_websockets_total')).toBe(1);
      expect(Math.max(...seen)).toBe(1);
    });

    it('never counts an upgrade whose client leaves before the app answers', async () => {
      const { app, sidecar } = await withWitness();
      const ws = new WebSocket(wsUrl(sidecar, '/ws-hang'));
      ws.on('error', () => undefined);
      await waitFor(() => app.hangingUpgrades.size === 1, 'the upgrade reached the app');
      ws.terminate();
      await closed(ws);
      await waitFor(() => app.hangingUpgrades.size === 0, 'the request to the app abandoned');
      expect(live(sidecar)).toBe(1);
      expect(await metricValue(sidecar, 'spawner_sidecar_websockets_total')).toBe(1);
    });

    it('stays exact over many connections ending in different ways', async () => {
      const { app, sidecar } = await withWitness();
      const sockets = await Promise.all(Array.from({ length: 20 }, () => openWs(wsUrl(sidecar, '/ws'))));
      await waitFor(() => live(sidecar) === 21, '21 live');
      sockets.forEach((ws, i) => (i % 2 === 0 ? ws.close() : ws.terminate()));
      await waitFor(() => live(sidecar) === 1, 'back to the witness');
      await waitFor(() => app.wsSockets.size === 1, 'the app sides gone');
      expect(live(sidecar)).toBe(1);
      expect(await metricValue(sidecar, 'spawner_sidecar_live_websockets')).toBe(1);
    });
  });

  describe('activity', () => {
    it('moves on requests and upgrades, and not on admin, probe or scrape traffic', async () => {
      let t = 1_000_000;
      const { sidecar } = await readyPair({}, () => t);
      t += 5000;
      const events = listenEvents(sidecar.admin('/events'));
      cleanups.push(() => events.close());
      for (const path of ['/metrics', '/ready', '/readyz', '/healthz', '/state']) {
        expect((await request(sidecar.admin(path))).status).toBe(200);
      }
      await waitFor(() => events.messages.length >= 1, 'an event');
      expect(sidecar.state().lastActivityAt).toBeNull();
      expect(sidecar.state().secondsSinceActive).toBe(5);

      t += 1000;
      expect((await request(sidecar.url('/x'))).status).toBe(200);
      expect(sidecar.state().lastActivityAt).toBe(t);
      expect(sidecar.state().secondsSinceActive).toBe(0);

      t += 1000;
      const ws = await openWs(wsUrl(sidecar, '/ws'));
      await waitFor(() => live(sidecar) === 1, 'open');
      expect(sidecar.state().lastActivityAt).toBe(t);

      t += 1000;
      ws.close();
      await waitFor(() => live(sidecar) === 0, 'closed');
      expect(sidecar.state().lastActivityAt).toBe(t);

      t += 2000;
      await request(sidecar.admin('/metrics'));
      expect(sidecar.state().secondsSinceActive).toBe(2);
    });

    it('reports no idle time while a request is in flight', async () => {
      let t = 1_000_000;
      const { app, sidecar } = await readyPair({}, () => t);
      const pending = new Promise<number>((resolve) => {
        http.get(sidecar.url('/slow'), { agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
      });
      await waitFor(() => sidecar.state().inflightRequests === 1 && app.requests.length === 1, 'in flight');
      t += 60_000;
      expect(sidecar.state().secondsSinceActive).toBe(0);
      app.releaseSlow();
      await expect(pending).resolves.toBe(200);
      await waitFor(() => sidecar.state().inflightRequests === 0, 'done');
      expect(sidecar.state().lastActivityAt).toBe(t);
    });
  });

  describe('before the app listens', () => {
    it('holds requests and upgrades, then serves them once the app accepts connections', async () => {
      const port = await freePort();
      const sidecar = track(await startSidecar({ upstreamPort: port }));
      const held = request(sidecar.url('/early?a=1'));
      const heldWs = openWs(wsUrl(sidecar, '/ws'));
      await waitFor(() => sidecar.state().heldRequests === 2, 'two held');
      expect((await request(sidecar.admin('/ready'))).status).toBe(503);
      expect(await metricValue(sidecar, 'spawner_sidecar_ready')).toBe(0);

      const app = track(await startApp(port));
      const reply = await held;
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.body).url).toBe('/early?a=1');
      const ws = await heldWs;
      cleanups.push(() => ws.terminate());
      await waitFor(() => live(sidecar) === 1, 'the held upgrade counted');
      expect(sidecar.state().heldRequests).toBe(0);
      expect((await request(sidecar.admin('/ready'))).status).toBe(200);
      expect(app.requests).toHaveLength(1);
      expect(app.wsSockets.size).toBe(1);
    });

    it('forgets held requests and upgrades whose clients leave', async () => {
      const sidecar = track(await startSidecar({ upstreamPort: await freePort() }));
      const req = http.get(sidecar.url('/gone'), { agent: false });
      req.on('error', () => undefined);
      const ws = new WebSocket(wsUrl(sidecar, '/ws'));
      ws.on('error', () => undefined);
      await waitFor(() => sidecar.state().heldRequests === 2, 'two held');
      req.destroy();
      ws.terminate();
      await waitFor(() => sidecar.state().heldRequests === 0, 'both forgotten');
      expect(sidecar.state().inflightRequests).toBe(0);
    });

    it('answers 504 when the app does not listen within holdTimeoutMs', async () => {
      const sidecar = track(await startSidecar({ upstreamPort: await freePort(), holdTimeoutMs: 200 }));
      const reply = await request(sidecar.url('/'));
      expect(reply.status).toBe(504);
      expect(reply.body).toMatch(/did not start/);
      await expect(refusedStatus(wsUrl(sidecar, '/ws'))).resolves.toBe(504);
      expect(sidecar.state().heldRequests).toBe(0);
      expect(await metricValue(sidecar, 'spawner_sidecar_requests_total', { code_class: '5xx' })).toBe(1);
    });

    it('answers 503 when holdMaxQueued requests already wait, and 503 to those waiting at shutdown', async () => {
      const sidecar = await startSidecar({ upstreamPort: await freePort(), holdMaxQueued: 1 });
      const first = request(sidecar.url('/1'));
      await waitFor(() => sidecar.state().heldRequests === 1, 'one held');
      expect((await request(sidecar.url('/2'))).status).toBe(503);
      await sidecar.stop();
      expect((await first).status).toBe(503);
    });

    it('answers 502 when the app stops accepting connections after it was ready', async () => {
      const { app, sidecar } = await readyPair();
      await app.close();
      const reply = await request(sidecar.url('/'));
      expect(reply.status).toBe(502);
      expect(reply.body).toMatch(/not accepting connections/);
    });
  });

  describe('connection token', () => {
    const withToken = () => readyPair({ tokenSha256: TOKEN_SHA256 });

    it('refuses requests without the token with 401, counting no activity', async () => {
      let t = 1_000_000;
      const { app, sidecar } = await readyPair({ tokenSha256: TOKEN_SHA256 }, () => t);
      t += 3000;
      for (const headers of [
        {},
        { 'x-spawner-token': 'wrong' },
        { cookie: 'spawner_token=wrong' },
        { authorization: 'Bearer wrong' },
      ]) {
        const reply = await request(sidecar.url('/'), { headers });
        expect(reply.status).toBe(401);
        expect(JSON.parse(reply.body)).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
      }
      expect((await request(sidecar.url(`/?spawner_token=nope`))).status).toBe(401);
      await expect(refusedStatus(wsUrl(sidecar, '/ws'))).resolves.toBe(401);
      expect(sidecar.state().lastActivityAt).toBeNull();
      expect(app.requests).toHaveLength(0);
      expect(await metricValue(sidecar, 'spawner_sidecar_unauthorized_total')).toBe(6);
      expect(await metricValue(sidecar, 'spawner_sidecar_requests_total', { code_class: '4xx' })).toBe(5);
    });

    it('accepts the X-Spawner-Token header and strips it', async () => {
      const { app, sidecar } = await withToken();
      const reply = await request(sidecar.url('/h'), { headers: { 'x-spawner-token': TOKEN } });
      expect(reply.status).toBe(200);
      expect(app.requests[0].headers['x-spawner-token']).toBeUndefined();
      expect(reply.headers['set-cookie']).toEqual(['app=1; Path=/']);
    });

    it('accepts the cookie and passes the other cookies on', async () => {
      const { app, sidecar } = await withToken();
      const reply = await request(sidecar.url('/c'), { headers: { cookie: `a=1; spawner_token=${TOKEN}; b=2` } });
      expect(reply.status).toBe(200);
      expect(app.requests[0].headers.cookie).toBe('a=1; b=2');
    });

    it('accepts the query parameter, strips it, and sets the cookie', async () => {
      const { app, sidecar } = await withToken();
      const reply = await request(sidecar.url(`/q?x=1&spawner_token=${encodeURIComponent(TOKEN)}&y=%20`));
      expect(reply.status).toBe(200);
      expect(app.requests[0].url).toBe('/q?x=1&y=%20');
      const cookies = reply.headers['set-cookie'] ?? [];
      expect(cookies).toContain('app=1; Path=/');
      const ours = cookies.find((c) => c.startsWith('spawner_token='));
      expect(ours).toBe(`spawner_token=${encodeURIComponent(TOKEN)}; Path=/; HttpOnly; SameSite=Lax`);
    });

    it('accepts a matching bearer token and strips it', async () => {
      const { app, sidecar } = await withToken();
      const reply = await request(sidecar.url('/b'), { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(reply.status).toBe(200);
      expect(app.requests[0].headers.authorization).toBeUndefined();
    });

    it('lets WebSocket upgrades in with the cookie', async () => {
      const { sidecar } = await withToken();
      const ws = await openWs(wsUrl(sidecar, '/ws'), { cookie: `spawner_token=${TOKEN}` });
      cleanups.push(() => ws.terminate());
      await waitFor(() => live(sidecar) === 1, 'counted');
    });
  });

  describe('events stream', () => {
    it('sends the state at once, then on every change', async () => {
      let t = 1_000_000;
      const { sidecar } = await readyPair({ heartbeatSeconds: 3600 }, () => t);
      const events = listenEvents(sidecar.admin('/events'));
      cleanups.push(() => events.close());
      const headers = await events.headers;
      expect(headers['content-type']).toMatch(/^text\/event-stream/);
      expect(headers['cache-control']).toMatch(/no-cache/);
      expect(headers['x-accel-buffering']).toBe('no');
      await waitFor(() => events.messages.length === 1, 'the first message');
      expect(events.messages[0]).toEqual({ ready: true, liveConnections: 0, secondsSinceActive: 0 });

      const ws = await openWs(wsUrl(sidecar, '/ws'));
      await waitFor(() => events.messages.some((m) => (m as { liveConnections: number }).liveConnections === 1), 'count 1');
      ws.close();
      await waitFor(
        () =>
          events.messages.at(-1) !== undefined && (events.messages.at(-1) as { liveConnections: number }).liveConnections === 0,
        'count 0',
      );

      t += 30_000;
      const before = events.messages.length;
      await request(sidecar.url('/after-idle'));
      await waitFor(() => events.messages.length > before, 'activity after idleness announced');
      expect(events.messages.at(-1)).toEqual({ ready: true, liveConnections: 0, secondsSinceActive: 0 });
    });

    it('sends a heartbeat, to every listener', async () => {
      const { sidecar } = await readyPair({ heartbeatSeconds: 0.05 });
      const a = listenEvents(sidecar.admin('/events'));
      const b = listenEvents(sidecar.admin('/events'));
      cleanups.push(
        () => a.close(),
        () => b.close(),
      );
      await waitFor(() => a.messages.length >= 3 && b.messages.length >= 3, 'heartbeats');
    });
  });

  describe('proxying', () => {
    it('passes headers through and adds X-Forwarded-For, -Proto and -Host', async () => {
      const { app, sidecar } = await readyPair();
      const reply = await request(sidecar.url('/p?q=1'), { headers: { 'x-custom': 'v', 'x-forwarded-for': '10.1.2.3' } });
      expect(reply.status).toBe(200);
      const seen = app.requests[0].headers;
      expect(seen['x-custom']).toBe('v');
      expect(seen['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1');
      expect(seen['x-forwarded-proto']).toBe('http');
      expect(seen['x-forwarded-host']).toBe(`127.0.0.1:${sidecar.servePort}`);
      expect(seen.host).toBe(`127.0.0.1:${sidecar.servePort}`);
      expect(reply.headers['content-type']).toBe('application/json');
    });

    it('streams request bodies of any framing to the app', async () => {
      const { sidecar } = await readyPair();
      const body = Buffer.alloc(1024 * 1024, 7);
      const send = (headers: http.OutgoingHttpHeaders, chunks: Buffer[]): Promise<unknown> =>
        new Promise((resolve, reject) => {
          const req = http.request(sidecar.url('/echo-body'), { method: 'POST', agent: false, headers }, (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => resolve(JSON.parse(text)));
          });
          req.on('error', reject);
          for (const c of chunks) req.write(c);
          req.end();
        });
      await expect(send({ 'content-length': body.length }, [body])).resolves.toEqual({
        bytes: body.length,
        transferEncoding: null,
      });
      await expect(send({}, [body.subarray(0, 1000), body.subarray(1000)])).resolves.toEqual({
        bytes: body.length,
        transferEncoding: 'chunked',
      });
    });

    it('cuts the response short when the app dies mid-body instead of leaving the client waiting', async () => {
      const { sidecar } = await readyPair();
      const outcome = await new Promise<string>((resolve) => {
        const req = http.get(sidecar.url('/die-mid-body'), { agent: false }, (res) => {
          res.on('error', () => resolve('error'));
          res.on('end', () => resolve(res.complete ? 'complete' : 'incomplete'));
          res.resume();
        });
        req.on('error', () => resolve('error'));
      });
      expect(outcome).not.toBe('complete');
      await waitFor(() => sidecar.state().inflightRequests === 0, 'request over');
    });

    it("releases the app's connection when the client leaves mid-response", async () => {
      const { app, sidecar } = await readyPair();
      const req = http.get(sidecar.url('/slow'), { agent: false }, (res) => {
        res.once('data', () => req.destroy());
      });
      req.on('error', () => undefined);
      await waitFor(() => app.abandonedSlow.n === 1, 'the app side closed');
      await waitFor(() => sidecar.state().inflightRequests === 0, 'request over');
      expect(await metricValue(sidecar, 'spawner_sidecar_requests_total', { code_class: '2xx' })).toBe(1);
    });

    it('keeps the upstream connection alive across requests', async () => {
      const { app, sidecar } = await readyPair();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      cleanups.push(() => agent.destroy());
      for (let i = 0; i < 10; i++) expect((await request(sidecar.url(`/${i}`), { agent })).status).toBe(200);
      expect(app.requests).toHaveLength(10);
      expect(app.requestSockets.size).toBe(1);
      expect(await metricValue(sidecar, 'spawner_sidecar_requests_total', { code_class: '2xx' })).toBe(10);
    });

    it('exposes its metrics on the admin port', async () => {
      const { sidecar } = await readyPair();
      await request(sidecar.url('/'));
      const text = (await request(sidecar.admin('/metrics'))).body;
      for (const name of [
        'spawner_sidecar_live_websockets',
        'spawner_sidecar_websockets_total',
        'spawner_sidecar_requests_total{code_class="2xx"',
        'spawner_sidecar_request_duration_seconds_bucket',
        'spawner_sidecar_last_activity_timestamp_seconds',
        'spawner_sidecar_ready',
        'spawner_sidecar_held_requests',
        'spawner_sidecar_unauthorized_total',
      ]) {
        expect(text).toContain(name);
      }
    });
  });
});
