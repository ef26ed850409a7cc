/**
 * Local mode end to end over HTTP: the API's routes, the entry point and the real sidecar and
 * idle rule, with the demo backend as a real child process.
 */
import * as http from 'node:http';
import { WebSocket } from 'ws';
import { ConfigError } from '../../common/src/config';
import { createLogger } from '../../common/src/logger';
import { waitFor } from '../../common/src/testing/wait-for';
import { localConfig } from '../src/config';
import { isLocalHostHeader } from '../src/host-guard';
import { startLocalMode, type LocalMode } from '../src/local-mode';
import { DEMO_BACKEND_BUILD, isAlive, readEvents, requireBuild, sleep, type StatusEvent } from './support';

jest.setTimeout(90_000);

let local: LocalMode;

beforeAll(async () => {
  requireBuild(DEMO_BACKEND_BUILD);
  const quiet = createLogger('local-test', 'error', () => undefined);
  local = await startLocalMode(localConfig({ port: 0, entryPointPort: 0, sidecarHeartbeatSeconds: 1 }), {
    logger: quiet,
    sidecarLogger: quiet,
  });
});

afterAll(() => local?.close());

/** Resolves with the next message that satisfies `match`. */
function nextMessage(ws: WebSocket, match: (m: any) => boolean, timeoutMs = 15_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no matching WebSocket message in time')), timeoutMs);
    const onMessage = (data: unknown): void => {
      const m = JSON.parse(String(data));
      if (!match(m)) return;
      clearTimeout(timer);
      ws.off('message', onMessage);
      resolve(m);
    };
    ws.on('message', onMessage);
  });
}

test('local: spawn, connect, sweep', async () => {
  const api = local.apiUrl;
  const openapi = (await (await fetch(`${api}/openapi.json`)).json()) as { paths: Record<string, unknown> };
  expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/v1/backends', '/spawn', '/v1/backends/{name}/wait']));

  const grace = 2;
  const res = await fetch(`${api}/v1/backends`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image: 'ghcr.io/example/spawner-demo-backend:0.1.0', gracePeriodSeconds: grace }),
  });
  expect(res.status).toBe(201);
  const created = (await res.json()) as { name: string; url: string; phase: string };
  expect(created.url).toMatch(new RegExp(`^${local.entryPointUrl}/p/${created.name}/\\?spawner_token=`));

  const wait = await fetch(`${api}/v1/backends/${created.name}/wait?timeoutSeconds=60`);
  expect(wait.status).toBe(200);
  expect(await wait.json()).toMatchObject({ phase: 'Ready', nodeName: 'local', podIP: '127.0.0.1' });
  const pid = local.store.runInfo(created.name)?.pid;
  expect(pid).toBeGreaterThan(0);
  expect(isAlive(pid!)).toBe(true);

  // Follow the status stream to its end (it ends at the terminal phase).
  const seen: StatusEvent[] = [];
  const stream = readEvents(`${api}/v1/backends/${created.name}/events`, (e) => seen.push(e));

  const ws = new WebSocket(created.url.replace(/^http/, 'ws'));
  const first = nextMessage(ws, (m) => m.type === 'state');
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  expect(await first).toMatchObject({ counter: 0, clients: 1 });
  const incremented = nextMessage(ws, (m) => m.type === 'state' && m.counter === 1);
  ws.send(JSON.stringify({ type: 'increment' }));
  await incremented;
  const echoed = nextMessage(ws, (m) => m.type === 'echo');
  ws.send(JSON.stringify({ type: 'echo', text: 'hello through the entry point' }));
  expect(await echoed).toMatchObject({ text: 'hello through the entry point' });

  // An open WebSocket pauses the countdown: longer than the grace, still Ready.
  await sleep((grace + 1.5) * 1000);
  expect(seen.map((e) => e.phase)).not.toContain('Swept');
  const during = (await (await fetch(`${api}/v1/backends/${created.name}`)).json()) as { phase: string };
  expect(during.phase).toBe('Ready');

  const closedAt = Date.now();
  ws.close();
  const events = await stream;
  const sweptAfterMs = Date.now() - closedAt;
  expect(events.map((e) => e.phase)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept']);
  expect(events[events.length - 1]).toMatchObject({ reason: 'IdleTimeout', message: `idle for gracePeriodSeconds (${grace})` });
  expect(sweptAfterMs).toBeLessThan((grace + 15) * 1000);

  // Removed, and its process is gone; the API still answers how it ended (for the ended retention).
  await waitFor(async () => (await local.store.get(created.name)) === undefined, {
    timeoutMs: 10_000,
    intervalMs: 100,
    description: 'the backend to be removed',
  });
  const ended = await fetch(`${api}/v1/backends/${created.name}`);
  expect(ended.status).toBe(200);
  expect(await ended.json()).toMatchObject({ phase: 'Swept', reason: 'IdleTimeout' });
  await waitFor(() => !isAlive(pid!), { timeoutMs: 15_000, intervalMs: 100, description: 'the app process to end' });
  // The run is forgotten once its sidecar has stopped too.
  await waitFor(() => local.store.appPids().length === 0, { timeoutMs: 10_000, description: 'the run to be cleaned up' });
});

describe('local: API protections', () => {
  const get = (port: number, path: string, host: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });

  it('without tokens, answers only requests addressed to localhost or an IP address (no DNS rebinding)', async () => {
    expect((await get(local.apiPort, '/v1/backends', `127.0.0.1:${local.apiPort}`)).status).toBe(200);
    expect((await get(local.apiPort, '/demo/', `localhost:${local.apiPort}`)).status).toBe(200);
    const rebound = await get(local.apiPort, '/v1/backends', `attacker.example:${local.apiPort}`);
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body).error.code).toBe('forbidden_host');
    expect(isLocalHostHeader('[::1]:8080')).toBe(true);
    expect(isLocalHostHeader('app.localhost')).toBe(true);
    expect(isLocalHostHeader('127.0.0.1.nip.io')).toBe(false);
    expect(isLocalHostHeader(undefined)).toBe(false);
  });

  it('refuses to listen beyond loopback without tokens', async () => {
    const quiet = createLogger('local-test', 'error', () => undefined);
    await expect(startLocalMode(localConfig({ host: '0.0.0.0', port: 0, entryPointPort: 0 }), { logger: quiet })).rejects.toThrow(
      ConfigError,
    );
  });

  it('with tokens, the API wants a bearer token (and any Host is fine)', async () => {
    const quiet = createLogger('local-test', 'error', () => undefined);
    const token = 'local-test-api-token-0123456789';
    const guarded = await startLocalMode(localConfig({ port: 0, entryPointPort: 0, tokens: [token] }), {
      logger: quiet,
      sidecarLogger: quiet,
    });
    try {
      expect((await fetch(`${guarded.apiUrl}/v1/backends`)).status).toBe(401);
      const ok = await fetch(`${guarded.apiUrl}/v1/backends`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect((await get(guarded.apiPort, '/demo/', 'devbox.example')).status).toBe(200);
    } finally {
      await guarded.close();
    }
  });
});
