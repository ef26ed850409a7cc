/**
 * The REST API and the entry point against the real control plane: operator, sweeper and API run
 * as host processes; backends run through the node agent. Clients talk HTTP only.
 */
import WebSocket from 'ws';
import type { SessionLivedBackend } from '../common/src/backend';
import { BACKENDS } from '../common/src/kube/resources';
import { TEST_IMAGE } from './support/backends';
import { adminClient, agentInfo, describeWithAgent, useNamespace, waitFor } from './support/cluster';
import { startComponent, stopAll, type Component } from './support/components';

jest.setTimeout(180_000);

const TOKEN = 'e2e-api-token-0123456789abcdef';
const SIGNING_SECRET = 'e2e-signing-secret-0123456789abcdef';

interface Sse {
  events: Array<{ event?: string; data: unknown }>;
  done: Promise<void>;
}

/** Reads a Server-Sent Events stream to its end (or `timeoutMs`). */
async function readSse(url: string, headers: Record<string, string>, timeoutMs = 120_000): Promise<Sse> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  const events: Sse['events'] = [];
  const done = (async () => {
    let buffer = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trim())
          .join('\n');
        const event = block
          .split('\n')
          .find((l) => l.startsWith('event:'))
          ?.slice(6)
          .trim();
        if (data) events.push({ event, data: JSON.parse(data) });
      }
    }
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
    api = await startComponent(
      'api',
      [`--namespace=${ns.name}`, '--entry-point-port=0', '--host=127.0.0.1', '--entry-point-host=127.0.0.1'],
      {
        env: { SPAWNER_API_TOKENS: TOKEN, SPAWNER_API_SIGNING_SECRET: SIGNING_SECRET },
      },
    );
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
