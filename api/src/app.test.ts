import { ANNOTATION_TOKEN_HASH, ANNOTATION_KEY, LABEL_KEY_HASH } from '../../common/src/constants';
import { API_TOKEN, jsonOf, json, startHarness, type Harness } from './test-harness';
import { responseValidator } from './schemas';
import { ANNOTATION_TOKEN_NONCE, sha256Hex } from './connection-tokens';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

const conforms = (definition: string, body: unknown): void => {
  expect(responseValidator(definition)(body)).toEqual([]);
};

describe('original endpoints', () => {
  it('POST /spawn answers 200 {url, name, readyUrl, statusUrl} and creates the resource', async () => {
    const res = await h.api(
      '/spawn',
      json({ image: 'spawner-demo-backend', port: 8000, env: { A: 'b' }, gracePeriodSeconds: 30 }),
    );
    expect(res.status).toBe(200);
    const body = await jsonOf(res);
    conforms('SpawnResponse', body);
    expect(body.name).toMatch(/^spawner-[a-z0-9]{12}$/);
    expect(body.url).toMatch(new RegExp(`^${h.entry}/p/${body.name}/\\?spawner_token=`));
    expect(body.readyUrl).toMatch(new RegExp(`^${h.base}/backend/${body.name}/ready\\?spawner_token=`));
    const stored = h.store.peek(body.name)!;
    expect(stored.spec).toEqual({
      template: { containers: [{ name: 'app', image: 'spawner-demo-backend', env: [{ name: 'A', value: 'b' }] }] },
      httpPort: 8000,
      gracePeriodSeconds: 30,
      startupTimeoutSeconds: 300,
    });
    const token = new URL(body.url).searchParams.get('spawner_token')!;
    expect(stored.metadata.annotations?.[ANNOTATION_TOKEN_HASH]).toBe(sha256Hex(token));
    expect(stored.metadata.annotations?.[ANNOTATION_TOKEN_NONCE]).toBeTruthy();
  });

  it('GET /backend/:id/ready: 409 until Ready, then 302 to the URL; 410 once terminal; 404 unknown', async () => {
    const { name, url } = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    let res = await h.api(`/backend/${name}/ready`, { redirect: 'manual' });
    expect(res.status).toBe(409);
    expect((await jsonOf(res)).error.code).toBe('not_ready');
    h.store.advance(name, 'Ready', { podIP: '10.0.0.1' });
    res = await h.api(`/backend/${name}/ready`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(url);
    h.store.transition(name, { phase: 'Swept', reason: 'IdleTimeout' });
    res = await h.api(`/backend/${name}/ready`, { redirect: 'manual' });
    expect(res.status).toBe(410);
    expect((await h.api('/backend/spawner-nope/ready')).status).toBe(404);
  });

  it('GET /backend/:id/status gives {state, time} of the latest phase', async () => {
    const { name } = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    let body = await jsonOf(await h.api(`/backend/${name}/status`));
    conforms('LegacyStatus', body);
    expect(body.state).toBe('Submitted');
    h.store.advance(name, 'Running', { podIP: '10.0.0.1' });
    body = await jsonOf(await h.api(`/backend/${name}/status`));
    expect(body.state).toBe('Running');
  });

  it('accepts the readyUrl/statusUrl token instead of the bearer, for that backend only', async () => {
    const a = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    const b = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    expect((await fetch(a.statusUrl)).status).toBe(200);
    const tokenA = new URL(a.statusUrl).searchParams.get('spawner_token');
    expect((await fetch(`${h.base}/backend/${b.name}/status?spawner_token=${tokenA}`)).status).toBe(401);
    expect((await fetch(`${h.base}/backend/${a.name}/status`, { headers: { 'x-spawner-token': tokenA! } })).status).toBe(200);
    // ...but not for anything that needs the API token.
    expect((await fetch(`${h.base}/v1/backends/${a.name}`, { headers: { authorization: `Bearer ${tokenA}` } })).status).toBe(401);
  });

  it('takes an empty spawner_token as no token, not as a bad parameter', async () => {
    const a = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    const tokenA = new URL(a.statusUrl).searchParams.get('spawner_token')!;
    // The API token still serves (the query is a credential, not a parameter to validate)...
    expect((await h.api(`/backend/${a.name}/status?spawner_token=`)).status).toBe(200);
    // ...as does the token in the header beside an empty one in the query.
    const res = await fetch(`${h.base}/backend/${a.name}/status?spawner_token=`, { headers: { 'x-spawner-token': tokenA } });
    expect(res.status).toBe(200);
    expect((await fetch(`${h.base}/backend/${a.name}/status?spawner_token=`)).status).toBe(401);
  });
});

describe('v1 backends', () => {
  it('creates from an image shortcut: 201, Location, the documented shape', async () => {
    const res = await h.api(
      '/v1/backends',
      json({
        image: 'demo:1',
        env: [{ name: 'X', value: '1' }],
        command: ['node'],
        args: ['server.js'],
        labels: { team: 'a' },
        maxLifetimeSeconds: 60,
      }),
    );
    expect(res.status).toBe(201);
    const body = await jsonOf(res);
    conforms('Backend', body);
    expect(res.headers.get('location')).toBe(`/v1/backends/${body.name}`);
    expect(body).toMatchObject({ namespace: 'spawner', phase: 'Submitted', labels: { team: 'a' } });
    expect(body.spec.template.containers[0]).toEqual({
      name: 'app',
      image: 'demo:1',
      env: [{ name: 'X', value: '1' }],
      command: ['node'],
      args: ['server.js'],
    });
    expect(body.spec.gracePeriodSeconds).toBe(300);
    expect(JSON.stringify(body)).not.toContain(ANNOTATION_TOKEN_HASH);
  });

  it('creates from a full template', async () => {
    const template = {
      containers: [{ name: 'web', image: 'nginx', resources: { limits: { memory: '128Mi', cpu: 1 } } }],
      nodeSelector: { disk: 'ssd' },
      imagePullSecrets: [{ name: 'reg' }],
    };
    const res = await h.api('/v1/backends', json({ template, httpPort: 80 }));
    expect(res.status).toBe(201);
    const body = await jsonOf(res);
    conforms('Backend', body);
    expect(body.spec.template).toEqual(template);
    expect(body.spec.httpPort).toBe(80);
  });

  it('gets, lists with filters, deletes (202, recorded as DeletedByClient), then answers its last state', async () => {
    const a = await jsonOf(await h.api('/v1/backends', json({ image: 'x', labels: { team: 'a', tier: 'x' } })));
    const b = await jsonOf(await h.api('/v1/backends', json({ image: 'x', labels: { team: 'b' } })));
    const c = await jsonOf(await h.api('/v1/backends', json({ image: 'x', key: 'doc-1' })));
    h.store.advance(b.name, 'Ready', { podIP: '10.0.0.2' });

    const got = await jsonOf(await h.api(`/v1/backends/${a.name}`));
    conforms('Backend', got);
    expect(got.url).toBe(a.url);

    const names = async (q: string): Promise<string[]> => {
      const res = await h.api(`/v1/backends${q}`);
      expect(res.status).toBe(200);
      const body = await jsonOf(res);
      conforms('BackendList', body);
      return body.items.map((i: { name: string }) => i.name).sort();
    };
    expect(await names('')).toEqual([a.name, b.name, c.name].sort());
    expect(await names('?labelSelector=team%3Da')).toEqual([a.name]);
    expect(await names('?labelSelector=team%20in%20(a,b),!tier')).toEqual([b.name]);
    expect(await names('?phase=Ready')).toEqual([b.name]);
    expect(await names('?key=doc-1')).toEqual([c.name]);
    expect(await names('?key=doc-2')).toEqual([]);

    const watched: string[] = [];
    h.store.watch(a.name, (x) => watched.push(x ? `${x.status?.phase ?? 'Submitted'}/${x.status?.reason ?? ''}` : 'gone'));
    const del = await h.api(`/v1/backends/${a.name}`, { method: 'DELETE' });
    expect(del.status).toBe(202);
    const last = await jsonOf(del);
    conforms('Backend', last);
    expect(last).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient' });
    expect(watched).toContain('Swept/DeletedByClient');
    // Gone from the lists, but still answerable for --ended-retention-seconds (ended-routes.test.ts).
    expect(await names('')).toEqual([b.name, c.name].sort());
    const after = await h.api(`/v1/backends/${a.name}`);
    expect(after.status).toBe(200);
    expect(await jsonOf(after)).toMatchObject({ name: a.name, phase: 'Swept', reason: 'DeletedByClient' });
    expect((await h.api(`/v1/backends/${a.name}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('keys: deterministic DNS-valid name, key annotation and hash label, 200 for the existing one', async () => {
    const first = await h.api('/v1/backends', json({ image: 'x', key: 'Document #42 ✓' }));
    expect(first.status).toBe(201);
    const a = await jsonOf(first);
    expect(a.name).toMatch(/^spawner-k-[0-9a-f]{32}$/);
    expect(a.key).toBe('Document #42 ✓');
    const stored = h.store.peek(a.name)!;
    expect(stored.metadata.annotations?.[ANNOTATION_KEY]).toBe('Document #42 ✓');
    expect(stored.metadata.labels?.[LABEL_KEY_HASH]).toBe(a.name.slice('spawner-k-'.length));
    const again = await h.api('/v1/backends', json({ image: 'other', key: 'Document #42 ✓' }));
    expect(again.status).toBe(200);
    const b = await jsonOf(again);
    expect(b.name).toBe(a.name);
    expect(b.url).toBe(a.url);
  });

  it('wait: 200 when Ready, 200 with the phase at the timeout, 409 once terminal', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const t0 = Date.now();
    let res = await h.api(`/v1/backends/${name}/wait?timeoutSeconds=1`);
    expect(res.status).toBe(200);
    expect((await jsonOf(res)).phase).toBe('Submitted');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);

    const pending = h.api(`/v1/backends/${name}/wait?timeoutSeconds=10`);
    setTimeout(() => h.store.advance(name, 'Ready', { podIP: '10.0.0.1' }), 50);
    res = await pending;
    expect(res.status).toBe(200);
    const body = await jsonOf(res);
    conforms('Backend', body);
    expect(body.phase).toBe('Ready');

    const { name: other } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const waiting = h.api(`/v1/backends/${other}/wait`);
    setTimeout(() => h.store.transition(other, { phase: 'Failed', reason: 'ImagePullError', message: 'no such image' }), 50);
    res = await waiting;
    expect(res.status).toBe(409);
    const err = await jsonOf(res);
    expect(err.error).toMatchObject({ code: 'backend_terminal', details: { phase: 'Failed', reason: 'ImagePullError' } });
    expect((await h.api('/v1/backends/spawner-unknown/wait?timeoutSeconds=1')).status).toBe(404);
  });

  it('wait: timeoutSeconds above the configured cap is a 400, and the document says so', async () => {
    const capped = await startHarness({ waitMaxSeconds: 2 });
    try {
      const { name } = await jsonOf(await capped.api('/v1/backends', json({ image: 'x' })));
      const res = await capped.api(`/v1/backends/${name}/wait?timeoutSeconds=3`);
      expect(res.status).toBe(400);
      expect((await jsonOf(res)).error.details).toEqual([{ in: 'query', path: '/timeoutSeconds', message: 'must be <= 2' }]);
      const t0 = Date.now();
      expect((await capped.api(`/v1/backends/${name}/wait`)).status).toBe(200);
      expect(Date.now() - t0).toBeLessThan(3000);
      const doc = await jsonOf(await fetch(`${capped.base}/openapi.json`));
      const param = doc.paths['/v1/backends/{name}/wait'].get.parameters.find(
        (p: { name: string }) => p.name === 'timeoutSeconds',
      );
      expect(param.schema).toMatchObject({ maximum: 2, default: 2 });
    } finally {
      await capped.close();
    }
  });

  it('system routes are open; readyz follows the store', async () => {
    expect((await fetch(`${h.base}/healthz`)).status).toBe(200);
    expect((await fetch(`${h.base}/readyz`)).status).toBe(200);
    h.store.setReady(false);
    const res = await fetch(`${h.base}/readyz`);
    expect(res.status).toBe(503);
    expect(await jsonOf(res)).toEqual({ status: 'not ready' });
    const metrics = await (await fetch(`${h.base}/metrics`)).text();
    expect(metrics).toContain('spawner_api_requests_total{route="/readyz",method="GET",code="503"');
    const doc = await jsonOf(await fetch(`${h.base}/openapi.json`));
    expect(doc.openapi).toBe('3.1.0');
  });

  it('counts requests by route pattern, never by raw path', async () => {
    await h.api('/v1/backends/spawner-abc');
    await h.api('/v1/backends/spawner-def');
    await h.api('/no/such/route');
    const text = await (await fetch(`${h.base}/metrics`)).text();
    expect(text).toMatch(/route="\/v1\/backends\/:name",method="GET",code="404"[^}]*\} 2/);
    expect(text).toContain('route="unmatched"');
    expect(text).not.toContain('spawner-abc');
  });

  it('503 with Retry-After when the store is unreachable', async () => {
    const { KubeUnavailableError } = await import('../../common/src/errors');
    h.store.failNext = new KubeUnavailableError('connect ECONNREFUSED');
    const res = await h.api('/v1/backends', json({ image: 'x' }));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect((await jsonOf(res)).error.code).toBe('unavailable');
  });
});

describe('auth', () => {
  it('401 with WWW-Authenticate on every non-open operation of the OpenAPI document, without or with a wrong token', async () => {
    const doc = await jsonOf(await fetch(`${h.base}/openapi.json`));
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    let checked = 0;
    for (const [path, ops] of Object.entries<Record<string, { security: unknown[] }>>(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const url = h.base + path.replace(/\{[^}]+\}/g, name);
        const init: RequestInit = { method: method.toUpperCase() };
        if (method === 'post') Object.assign(init, json({ image: 'x' }));
        if (op.security.length === 0) {
          expect((await fetch(url, init)).status).toBe(200);
          continue;
        }
        for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: 'Basic abc' }] as Record<
          string,
          string
        >[]) {
          const res = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), ...headers } });
          expect([path, method, res.status]).toEqual([path, method, 401]);
          expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
          const body = await jsonOf(res);
          expect(body.error.code).toBe('unauthorized');
          conforms('Error', body);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(9);
  });

  it('accepts the bearer scheme case-insensitively', async () => {
    expect((await fetch(`${h.base}/v1/backends`, { headers: { authorization: `bearer ${API_TOKEN}` } })).status).toBe(200);
  });
});
