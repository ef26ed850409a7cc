import { createHash } from 'node:crypto';
import * as http from 'node:http';
import WebSocket from 'ws';
import { assignSecret } from '../../common/src/pool-assign';
import { request, startApp, startSidecar, waitFor } from '../test/support';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const SECRET = assignSecret(Buffer.from('operator key'), 'ns', 'warm-abcde');
const TOKEN = 'tok-for-b1';

function post(url: string, body: unknown, secret?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'Content-Type': 'application/json', ...(secret ? { Authorization: `Bearer ${secret}` } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

describe('sidecar: warm pool assignment', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });

  async function poolPair() {
    const app = await startApp();
    cleanups.push(() => app.close());
    const sidecar = await startSidecar({ upstreamPort: app.port, assignSha256: sha(SECRET) });
    cleanups.push(() => sidecar.stop());
    await waitFor(() => sidecar.state().ready, 'ready');
    return { app, sidecar };
  }

  const b1 = { name: 'b1', uid: 'uid-1', key: 'doc/42 é', tokenSha256: sha(TOKEN) };

  it('refuses all traffic before the claim, HTTP and upgrades, without reaching the app', async () => {
    const { app, sidecar } = await poolPair();
    const r = await request(sidecar.url('/x'));
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toEqual({ error: { code: 'unassigned', message: expect.any(String) } });
    const upgrade = await new Promise<number>((resolve) => {
      const ws = new WebSocket(sidecar.url('/ws').replace(/^http/, 'ws'));
      ws.on('error', () => undefined);
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
    });
    expect(upgrade).toBe(503);
    expect(app.requests).toHaveLength(0);
    // Readiness is the app's, so the pool can count the Pod as ready while it is unassigned.
    expect((await request(sidecar.admin('/ready'))).status).toBe(200);
  });

  it('takes its backend only from the operator: a wrong or missing secret is 401, a bad body 400', async () => {
    const { sidecar } = await poolPair();
    expect((await post(sidecar.admin('/assign'), b1)).status).toBe(401);
    expect((await post(sidecar.admin('/assign'), b1, 'not-the-secret')).status).toBe(401);
    const other = assignSecret(Buffer.from('operator key'), 'ns', 'warm-other');
    expect((await post(sidecar.admin('/assign'), b1, other)).status).toBe(401);
    expect((await post(sidecar.admin('/assign'), '{not json', SECRET)).status).toBe(400);
    const bad = await post(sidecar.admin('/assign'), { name: 'b1' }, SECRET);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.message).toContain('uid');
    expect((await post(sidecar.admin('/assign'), { ...b1, tokenSha256: 'zz' }, SECRET)).status).toBe(400);
    // Still nobody's.
    expect((await request(sidecar.url('/x'))).status).toBe(503);
  });

  it('once assigned: the token is checked, the app is told whom it serves (inbound copies dropped); a second backend is refused', async () => {
    const { app, sidecar } = await poolPair();
    const first = await post(sidecar.admin('/assign'), b1, SECRET);
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body)).toEqual({ assigned: { name: 'b1', uid: 'uid-1', key: 'doc/42 é' } });
    // A retried call (the operator restarted) is answered alike; another backend never gets the Pod.
    expect((await post(sidecar.admin('/assign'), b1, SECRET)).status).toBe(200);
    const second = await post(sidecar.admin('/assign'), { ...b1, name: 'b2', uid: 'uid-2' }, SECRET);
    expect(second.status).toBe(409);
    expect(JSON.parse(second.body).error.code).toBe('already_assigned');

    expect((await request(sidecar.url('/x'))).status).toBe(401);
    const ok = await request(sidecar.url('/x'), {
      headers: {
        'X-Spawner-Token': TOKEN,
        'X-Spawner-Backend': 'forged',
        'X-Spawner-Backend-Uid': 'forged',
        'X-Spawner-Key': 'forged',
      },
    });
    expect(ok.status).toBe(200);
    const seen = app.requests[app.requests.length - 1].headers;
    expect(seen['x-spawner-backend']).toBe('b1');
    expect(seen['x-spawner-backend-uid']).toBe('uid-1');
    expect(decodeURIComponent(seen['x-spawner-key'] as string)).toBe('doc/42 é');
    expect(seen['x-spawner-token']).toBeUndefined();
  });

  it('a backend without a token (anonymous API) is served without one once assigned', async () => {
    const { sidecar } = await poolPair();
    expect((await post(sidecar.admin('/assign'), { name: 'b3', uid: 'uid-3' }, SECRET)).status).toBe(200);
    expect((await request(sidecar.url('/x'))).status).toBe(200);
  });

  it('with an assignPath, the app is told its backend before any request gets through; a refusal is a 502 and leaves the Pod unassigned', async () => {
    // An app that refuses its first assignment and answers the others after 100 ms.
    const told: Array<{ body: unknown; beforeRequests: number }> = [];
    let requests = 0;
    let refuse = 1;
    const app = http.createServer((req, res) => {
      if (req.url !== '/spawner/assign') {
        requests++;
        res.end('ok');
        return;
      }
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString('utf8')));
      req.on('end', () => {
        if (refuse > 0) {
          refuse--;
          res.writeHead(503).end('loading');
          return;
        }
        setTimeout(() => {
          told.push({ body: JSON.parse(text), beforeRequests: requests });
          res.end('{}');
        }, 100);
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => app.close(r)));
    const port = (app.address() as { port: number }).port;
    const sidecar = await startSidecar({ upstreamPort: port, assignSha256: sha(SECRET), appAssignPath: '/spawner/assign' });
    cleanups.push(() => sidecar.stop());
    await waitFor(() => sidecar.state().ready, 'ready');

    const refused = await post(sidecar.admin('/assign'), b1, SECRET);
    expect(refused.status).toBe(502);
    expect(JSON.parse(refused.body).error).toEqual({ code: 'app_refused_assignment', message: expect.stringContaining('503') });
    expect((await request(sidecar.url('/x'), { headers: { 'X-Spawner-Token': TOKEN } })).status).toBe(503);

    // The operator's retry, twice at once (a restart between the two): the app is told once.
    const [a, b] = await Promise.all([post(sidecar.admin('/assign'), b1, SECRET), post(sidecar.admin('/assign'), b1, SECRET)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(told).toEqual([{ body: { name: 'b1', uid: 'uid-1', key: 'doc/42 é' }, beforeRequests: 0 }]);
    expect((await request(sidecar.url('/x'), { headers: { 'X-Spawner-Token': TOKEN } })).status).toBe(200);
    expect(requests).toBe(1);
    // Another backend is refused without asking the app.
    expect((await post(sidecar.admin('/assign'), { ...b1, name: 'b2', uid: 'uid-2' }, SECRET)).status).toBe(409);
    expect(told).toHaveLength(1);
  });

  it("a backend's own Pod (no assign hash) has nothing to assign", async () => {
    const app = await startApp();
    cleanups.push(() => app.close());
    const sidecar = await startSidecar({ upstreamPort: app.port });
    cleanups.push(() => sidecar.stop());
    expect((await post(sidecar.admin('/assign'), b1, SECRET)).status).toBe(409);
    await waitFor(() => sidecar.state().ready, 'ready');
    expect((await request(sidecar.url('/x'))).status).toBe(200);
  });
});
