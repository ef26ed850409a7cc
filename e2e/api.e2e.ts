/**
 * The REST API and the entry point against the real control plane: operator, sweeper and API run
 * as host processes; backends run through the node agent. Clients talk HTTP only.
 */
import WebSocket from 'ws';
import type { SessionLivedBackend } from '../common/src/backend';
import { BACKENDS } from '../common/src/kube/resources';
import { readEvents } from '../common/src/sse';
import { TEST_IMAGE } from './support/backends';
import { adminClient, agentInfo, describeWithAgent, useNamespace, waitFor } from './support/cluster';
import { E2E_API_TOKEN, startApi, startComponent, stopAll, type Component } from './support/components';

jest.setTimeout(180_000);

const TOKEN = E2E_API_TOKEN;

interface Sse {
  events: Array<{ event: string; data: unknown }>;
  done: Promise<void>;
}

/** Reads a Server-Sent Events stream to its end (or `timeoutMs`). */
async function readSse(url: string, headers: Record<string, string>, timeoutMs = 120_000): Promise<Sse> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  const events: Sse['events'] = [];
  const done = (async () => {
    for await (const { event, data } of readEvents(res.body!)) events.push({ event, data: JSON.parse(data) });
  })();
  return { events, done };
}

describeWithAgent('api', () => {
  const ns = useNamespace('api');
  let operator: Component;
  let sweeper: Component;
  let api: Component;
  let base: string;
  const auth = { authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`]);
    sweeper = await startComponent('sweeper', [`--namespaces=${ns.name}`, `--node-name=${agentInfo()!.nodeName}`]);
    api = await startApi(ns.name);
    base = `http://127.0.0.1:${api.port}`;
  });
  afterAll(() => stopAll([api, sweeper, operator]));

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth, ...headers },
      body: JSON.stringify(body),
    });

  test('api: spawn returns urls and the backend becomes ready', async () => {
    const res = await post('/spawn', { image: TEST_IMAGE, gracePeriodSeconds: 60, env: { GREETING: 'hi' } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { url: string; name: string; readyUrl: string; statusUrl: string };
    expect(Object.keys(body).sort()).toEqual(['name', 'readyUrl', 'statusUrl', 'url']);
    expect(body.url).toContain(`/p/${body.name}/`);

    const streamUrl = new URL(body.statusUrl);
    streamUrl.pathname += '/stream';
    const stream = await readSse(streamUrl.toString(), auth);
    // Not Ready yet: 409; then a redirect to the backend URL.
    const early = await fetch(body.readyUrl, { headers: auth, redirect: 'manual' });
    expect(early.status).toBe(409);
    const ready = await waitFor(
      async () => {
        const r = await fetch(body.readyUrl, { headers: auth, redirect: 'manual' });
        return r.status === 302 ? r : undefined;
      },
      { description: 'readyUrl to redirect', timeoutMs: 60_000 },
    );
    expect(ready.headers.get('location')).toBe(body.url);

    // The status stream shows the phases in order.
    await waitFor(() => stream.events.some((e) => (e.data as { state: string }).state === 'Ready'), {
      description: 'Ready on the status stream',
    });
    const states = stream.events.map((e) => (e.data as { state: string }).state);
    expect(states.slice(0, 5)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready']);
    const status = (await (await fetch(body.statusUrl, { headers: auth })).json()) as { state: string; time: string };
    expect(status.state).toBe('Ready');
    expect(Number.isNaN(Date.parse(status.time))).toBe(false);
    await fetch(`${base}/v1/backends/${body.name}`, { method: 'DELETE', headers: auth });
  });

  test('api: same key gives one backend under concurrency', async () => {
    const key = `doc-${Date.now()}`;
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        post('/v1/backends', { key, image: TEST_IMAGE, gracePeriodSeconds: 60 }).then(async (r) => ({
          status: r.status,
          body: (await r.json()) as { name: string },
        })),
      ),
    );
    const names = new Set(results.map((r) => r.body.name));
    expect(names.size).toBe(1);
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(49);
    const all = await adminClient().list<SessionLivedBackend>(BACKENDS, ns.name, {});
    expect(all.items.filter((b) => b.metadata.annotations?.['spawner.dev/key'] === key)).toHaveLength(1);
  });

  test('api: websocket through the entry point', async () => {
    const res = await post('/v1/backends', { image: TEST_IMAGE, gracePeriodSeconds: 60 });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { name: string; url: string };
    const waited = await fetch(`${base}/v1/backends/${created.name}/wait?timeoutSeconds=60`, { headers: auth });
    expect(((await waited.json()) as { phase: string }).phase).toBe('Ready');

    const wsUrl = created.url.replace(/^http/, 'ws');
    const ws = new WebSocket(wsUrl);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const echoed = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    ws.send('hello through the entry point');
    expect(await echoed).toContain('hello through the entry point');
    ws.close();

    // Without the token: refused.
    const bare = new URL(wsUrl);
    bare.search = '';
    const refused = await new Promise<number>((resolve) => {
      const w = new WebSocket(bare.toString());
      w.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
      w.once('open', () => resolve(101));
      w.once('error', () => resolve(-1));
    });
    expect(refused).toBe(401);
    // A token for another backend does not open this one.
    const other = (await (await post('/v1/backends', { image: TEST_IMAGE, gracePeriodSeconds: 60 })).json()) as { url: string };
    const foreign = new URL(wsUrl);
    foreign.searchParams.set('spawner_token', new URL(other.url).searchParams.get('spawner_token') ?? '');
    const foreignStatus = await new Promise<number>((resolve) => {
      const w = new WebSocket(foreign.toString());
      w.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
      w.once('open', () => resolve(101));
      w.once('error', () => resolve(-1));
    });
    expect(foreignStatus).toBe(401);
  });

  test.each([
    ['malformed JSON', '/v1/backends', '{"image": ', 'application/json', 400, /JSON/i],
    [
      'a wrong type',
      '/v1/backends',
      JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 'soon' }),
      'application/json',
      400,
      /gracePeriodSeconds/,
    ],
    [
      'an unknown field',
      '/v1/backends',
      JSON.stringify({ image: TEST_IMAGE, gracePeriod: 3 }),
      'application/json',
      400,
      /gracePeriod/,
    ],
    ['no image or template', '/v1/backends', JSON.stringify({ labels: {} }), 'application/json', 400, /image|template/],
    ['a port out of range', '/spawn', JSON.stringify({ image: TEST_IMAGE, port: 70000 }), 'application/json', 400, /port/],
    [
      'an oversized body',
      '/v1/backends',
      JSON.stringify({ image: TEST_IMAGE, labels: { a: 'x'.repeat(200_000) } }),
      'application/json',
      413,
      /large|limit/i,
    ],
    [
      'a wrong content type',
      '/v1/backends',
      `image=${TEST_IMAGE}`,
      'application/x-www-form-urlencoded',
      415,
      /content.type|json/i,
    ],
  ])('api: bad input gets clear errors — %s', async (_name, path, body, type, status, message) => {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': type, ...auth }, body });
    expect(res.status).toBe(status);
    const err = (await res.json()) as { error: { code: string; message: string; details?: unknown } };
    expect(typeof err.error.code).toBe('string');
    expect(`${err.error.message} ${JSON.stringify(err.error.details ?? '')}`).toMatch(message);
  });

  test('api: requires auth', async () => {
    const credentials: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer wrong-token-wrong-token' },
      { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
    ];
    for (const headers of credentials) {
      for (const [method, path] of [
        ['GET', '/v1/backends'],
        ['POST', '/v1/backends'],
        ['POST', '/spawn'],
        ['GET', '/v1/backends/some-name'],
        ['DELETE', '/v1/backends/some-name'],
      ]) {
        const res = await fetch(`${base}${path}`, {
          method,
          headers: { 'content-type': 'application/json', ...headers },
          body: method === 'POST' ? '{}' : undefined,
        });
        expect({ method, path, status: res.status }).toEqual({ method, path, status: 401 });
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
      }
    }
    // Health and metrics stay open.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });
});

/**
 * Ended backends stay answerable (issue 13): once a backend has ended and its resource is gone
 * from the API server, the status routes still report its terminal phase and reason for
 * --ended-retention-seconds, then 404. Two APIs watch the same namespace: one with the default
 * retention (600 s), one with 3 s.
 */
describeWithAgent('lifecycle: ended backends', () => {
  const ns = useNamespace('ended');
  const SHORT_RETENTION_S = 3;
  let operator: Component;
  let api: Component;
  let shortApi: Component;
  const auth = { authorization: `Bearer ${TOKEN}` };
  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`]);
    api = await startApi(ns.name);
    shortApi = await startApi(ns.name, [`--ended-retention-seconds=${SHORT_RETENTION_S}`]);
  });
  afterAll(() => stopAll([shortApi, api, operator]));

  const get = (base: string, path: string) => fetch(`${base}${path}`, { headers: auth, redirect: 'manual' });
  const body = async (res: Response): Promise<any> => res.json();

  /** What the status routes of `base` answer for `name`: the original's and v1's. */
  async function statusOf(base: string, name: string) {
    const legacy = await get(base, `/backend/${name}/status`);
    const v1 = await get(base, `/v1/backends/${name}`);
    return { legacy: { status: legacy.status, body: await body(legacy) }, v1: { status: v1.status, body: await body(v1) } };
  }

  test('lifecycle: ended backend still reports its end', async () => {
    const base = `http://127.0.0.1:${api.port}`;
    const shortBase = `http://127.0.0.1:${shortApi.port}`;
    // One through the original API (its client follows statusUrl), one through v1.
    const spawned = await fetch(`${base}/spawn`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 300 }),
    });
    expect(spawned.status).toBe(200);
    const viaApi = (await spawned.json()) as { name: string; statusUrl: string; readyUrl: string };
    const created = await fetch(`${base}/v1/backends`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 300 }),
    });
    expect(created.status).toBe(201);
    const viaKube = (await created.json()) as { name: string };
    for (const name of [viaApi.name, viaKube.name]) {
      const waited = await get(base, `/v1/backends/${name}/wait?timeoutSeconds=60`);
      expect({ name, phase: (await body(waited)).phase }).toEqual({ name, phase: 'Ready' });
    }
    // Streams open while they end.
    const v1Stream = await readSse(`${base}/v1/backends/${viaApi.name}/events`, auth);
    const legacyStream = await readSse(`${base}/backend/${viaKube.name}/status/stream`, auth);

    // Ended through the API, and deleted outright (kubectl delete: no ending written).
    const deletedAt = Date.now();
    const del = await fetch(`${base}/v1/backends/${viaApi.name}`, { method: 'DELETE', headers: auth });
    expect(del.status).toBe(202);
    expect(await adminClient().delete(BACKENDS, ns.name, viaKube.name)).toBeTruthy();
    for (const name of [viaApi.name, viaKube.name]) {
      await waitFor(async () => (await adminClient().get<SessionLivedBackend>(BACKENDS, ns.name, name)) === undefined, {
        description: `${name} to be gone from the API server`,
        intervalMs: 50,
      });
    }
    const goneAfterMs = Date.now() - deletedAt;

    // Both APIs answer the terminal phase and reason.
    const expected = {
      [viaApi.name]: { reason: 'DeletedByClient', message: 'deleted through the API' },
      [viaKube.name]: { reason: 'DeletedByClient', message: expect.stringContaining('deleted while live') },
    };
    for (const b of [base, shortBase]) {
      for (const name of [viaApi.name, viaKube.name]) {
        const s = await waitFor(
          async () => {
            const got = await statusOf(b, name);
            return got.v1.status === 200 && got.v1.body.phase === 'Swept' && got.legacy.body.state === 'Swept' ? got : undefined;
          },
          { description: `${b} to report ${name} Swept`, timeoutMs: 2_000, intervalMs: 50 },
        );
        expect(s.legacy.status).toBe(200);
        expect(Number.isNaN(Date.parse(s.legacy.body.time))).toBe(false);
        expect(s.v1.body).toMatchObject({ name, phase: 'Swept', ...expected[name] });
        const ready = await get(b, `/backend/${name}/ready`);
        expect(ready.status).toBe(410);
        expect((await body(ready)).error.details).toEqual({ phase: 'Swept', reason: 'DeletedByClient' });
      }
    }
    const shortAnsweredUntil = Date.now() - deletedAt;
    // The backend's own statusUrl (its connection token, no bearer) still works.
    const own = await fetch(viaApi.statusUrl);
    expect(own.status).toBe(200);
    expect(((await own.json()) as { state: string }).state).toBe('Swept');

    // The streams that were open ended with it; a new one replays its history, then ends.
    await Promise.all([v1Stream.done, legacyStream.done]);
    expect(v1Stream.events.map((e) => (e.data as { phase: string }).phase).slice(-2)).toEqual(['Ready', 'Swept']);
    expect(v1Stream.events.at(-1)?.data).toMatchObject({ reason: 'DeletedByClient' });
    expect(legacyStream.events.map((e) => (e.data as { state: string }).state).slice(-2)).toEqual(['Ready', 'Swept']);
    const replay = await readSse(`${base}/v1/backends/${viaKube.name}/events`, auth, 10_000);
    await replay.done;
    expect(replay.events.map((e) => (e.data as { phase: string }).phase)).toEqual([
      'Submitted',
      'Constructed',
      'Scheduled',
      'Running',
      'Ready',
      'Swept',
    ]);
    expect(replay.events.at(-1)?.data).toMatchObject({ reason: 'DeletedByClient' });

    // After its retention the short one answers 404, as for any unknown name; the default one still answers.
    for (const name of [viaApi.name, viaKube.name]) {
      await waitFor(
        async () => {
          const got = await statusOf(shortBase, name);
          return got.legacy.status === 404 && got.v1.status === 404;
        },
        { description: `${shortBase} to answer 404 for ${name}`, timeoutMs: (SHORT_RETENTION_S + 5) * 1000, intervalMs: 100 },
      );
    }
    const notFoundAfterMs = Date.now() - deletedAt;
    expect(notFoundAfterMs).toBeGreaterThanOrEqual(SHORT_RETENTION_S * 1000);
    expect((await get(shortBase, `/backend/${viaApi.name}/ready`)).status).toBe(404);
    expect((await get(shortBase, `/v1/backends/${viaKube.name}/events`)).status).toBe(404);
    for (const name of [viaApi.name, viaKube.name]) {
      const s = await statusOf(base, name);
      expect({ name, legacy: s.legacy.body.state, v1: s.v1.body.phase }).toEqual({ name, legacy: 'Swept', v1: 'Swept' });
    }
    process.stdout.write(
      `ended backends: gone from the API server ${goneAfterMs} ms after the deletes; ` +
        `the ${SHORT_RETENTION_S} s API answered Swept until at least ${shortAnsweredUntil} ms and 404 by ${notFoundAfterMs} ms\n`,
    );
  });
});
