/**
 * The graceful drain of a rolling update (Servers.drain): readiness fails first while both
 * listeners still accept, then they stop accepting, and open WebSockets and requests keep working
 * until they end or the grace runs out.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { jsonOf, json, startHarness, type Harness } from './test-harness';

let upstream: http.Server;
let upstreamPort: number;
let wss: WebSocketServer;
let h: Harness;

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0);
    setTimeout(() => res.end('done'), delay);
  });
  wss = new WebSocketServer({ server: upstream });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo ${m.toString()}`)));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  upstreamPort = (upstream.address() as AddressInfo).port;
});

afterAll(async () => {
  wss.close();
  await new Promise((r) => upstream.close(r));
});

beforeEach(async () => {
  h = await startHarness({}, { endpointOf: (b) => (b.status?.podIP ? { host: '127.0.0.1', port: upstreamPort } : undefined) });
});
afterEach(() => h.close());

async function readyBackendUrl(): Promise<string> {
  const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
  h.store.advance(b.name, 'Ready', { podIP: '10.0.0.1' });
  return b.url as string;
}

function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve) => {
    ws.once('message', (m) => resolve(m.toString()));
    ws.send(text);
  });
}

const refused = (url: string): Promise<boolean> =>
  fetch(url).then(
    () => false,
    (err: { cause?: { code?: string } }) => err.cause?.code === 'ECONNREFUSED',
  );

describe('drain', () => {
  it('fails readiness first, keeps accepting for the delay, then refuses new connections while WebSockets keep echoing', async () => {
    const url = await readyBackendUrl();
    const ws = await openWs(url);
    expect((await fetch(`${h.base}/readyz`)).status).toBe(200);

    const drain = h.servers.drain({ delayMs: 400, graceMs: 5000 });
    const ready = await fetch(`${h.base}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: 'not ready' });
    // Still accepting during the delay: new requests and even new WebSockets are served.
    expect((await fetch(url)).status).toBe(200);
    const late = await openWs(url);
    expect(await echo(late, 'late')).toBe('echo late');

    await new Promise((r) => setTimeout(r, 600));
    expect(await refused(`${h.base}/healthz`)).toBe(true);
    expect(await refused(url)).toBe(true);
    // Open sessions carry on.
    expect(await echo(ws, 'a')).toBe('echo a');
    expect(await echo(late, 'b')).toBe('echo b');

    // The drain ends as soon as the last one closes, well before the grace.
    ws.close();
    late.close();
    const result = await drain;
    expect(result).toMatchObject({ drained: true, openWebsockets: 0 });
    expect(result.elapsedMs).toBeLessThan(3000);
  });

  it('lets an in-flight request finish, and gives up on WebSockets after the grace', async () => {
    const url = await readyBackendUrl();
    const ws = await openWs(url);
    const slow = fetch(`${url}&delay=300`);
    await new Promise((r) => setTimeout(r, 50));
    const result = await h.servers.drain({ delayMs: 0, graceMs: 800 });
    expect((await slow).status).toBe(200);
    expect(result).toMatchObject({ drained: false, openWebsockets: 1 });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(750);
    const closed = new Promise((r) => ws.once('close', r));
    await h.servers.close();
    await closed;
  });
});
