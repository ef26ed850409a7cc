/**
 * Bad input of every kind gets a 4xx in the documented error shape, never a 500.
 */
import * as net from 'node:net';
import { responseValidator } from './schemas';
import { API_TOKEN, jsonOf, json, startHarness, type Harness } from './test-harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ bodyLimitBytes: 2048 });
});
afterAll(async () => {
  await h.close();
});

/** Sends raw bytes and returns the status code and body of the answer. */
function raw(port: number, request: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (data += c));
    socket.on('error', reject);
    socket.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      resolve({ status: m ? Number(m[1]) : 0, text: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    socket.end(request);
  });
}

async function expectError(
  res: Response,
  status: number,
  code?: string,
): Promise<{ error: { code: string; message: string; details?: unknown } }> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = await jsonOf(res);
  expect(responseValidator('Error')(body)).toEqual([]);
  if (code) expect(body.error.code).toBe(code);
  return body;
}

const post = (path: string, body: string, contentType = 'application/json'): Promise<Response> =>
  h.api(path, { method: 'POST', headers: { 'content-type': contentType }, body });

describe('request bodies', () => {
  it.each([
    ['malformed JSON', '{"image": ', 400, 'malformed_json'],
    ['a JSON string', '"image"', 400, 'malformed_json'],
    ['null', 'null', 400, 'malformed_json'],
    ['an array', '[]', 400, 'validation_failed'],
    ['an empty object', '{}', 400, 'validation_failed'],
    ['a wrong type', '{"image": 5}', 400, 'validation_failed'],
    ['an unknown field', '{"image": "x", "imagePullPolicy": "Always"}', 400, 'validation_failed'],
    [
      'both image and template',
      '{"image": "x", "template": {"containers": [{"name": "a", "image": "b"}]}}',
      400,
      'validation_failed',
    ],
    [
      'env with a template',
      '{"env": {"A": "b"}, "template": {"containers": [{"name": "a", "image": "b"}]}}',
      400,
      'validation_failed',
    ],
    ['an empty container list', '{"template": {"containers": []}}', 400, 'validation_failed'],
    ['a bad container name', '{"template": {"containers": [{"name": "A_b", "image": "b"}]}}', 400, 'validation_failed'],
    ['a port out of range', '{"image": "x", "httpPort": 70000}', 400, 'validation_failed'],
    ['a string port', '{"image": "x", "httpPort": "8080"}', 400, 'validation_failed'],
    ['a reserved label', '{"image": "x", "labels": {"spawner.dev/key-hash": "abc"}}', 400, 'validation_failed'],
    ['an invalid label value', '{"image": "x", "labels": {"a": "not valid!"}}', 400, 'validation_failed'],
    ['an empty key', '{"image": "x", "key": ""}', 400, 'validation_failed'],
    ['a bad quantity', '{"image": "x", "resources": {"limits": {"memory": "12 MB"}}}', 400, 'validation_failed'],
    ['a bad env name', '{"image": "x", "env": {"A=B": "c"}}', 400, 'validation_failed'],
    ['a negative grace period', '{"image": "x", "gracePeriodSeconds": -1}', 400, 'validation_failed'],
    ['__proto__ pollution', '{"image": "x", "__proto__": {"admin": true}}', 400, 'validation_failed'],
  ])('POST /v1/backends with %s', async (_name, body, status, code) => {
    const res = await post('/v1/backends', body);
    await expectError(res, status, code);
  });

  it('reports each schema violation with its path and message', async () => {
    const res = await post('/v1/backends', JSON.stringify({ image: 5, labels: { ok: 'yes', 'spawner.dev/x': 'y' }, extra: 1 }));
    const body = await expectError(res, 400, 'validation_failed');
    const details = body.error.details as Array<{ in: string; path: string; message: string }>;
    expect(details).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ in: 'body', path: '/image', message: 'must be string' }),
        expect.objectContaining({ path: '/', message: 'has an unknown property "extra"' }),
        expect.objectContaining({ path: '/labels', message: expect.stringContaining('property name "spawner.dev/x"') }),
      ]),
    );
  });

  it.each([
    ['/spawn', '{}'],
    ['/spawn', '{"image": "x", "port": 0}'],
    ['/spawn', '{"image": "x", "unknown": true}'],
    ['/spawn', '{"image": "x", "env": "A=b"}'],
  ])('POST %s %s → 400', async (path, body) => {
    await expectError(await post(path, body), 400, 'validation_failed');
  });

  it('413 for a body over the limit', async () => {
    const body = JSON.stringify({ image: 'x', env: { A: 'y'.repeat(4000) } });
    await expectError(await post('/v1/backends', body), 413, 'payload_too_large');
  });

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', ''])(
    '415 for Content-Type "%s"',
    async (type) => {
      const res = await h.api('/v1/backends', {
        method: 'POST',
        headers: type ? { 'content-type': type } : {},
        body: '{"image":"x"}',
      });
      if (type === '') {
        // fetch labels a string body text/plain itself.
        expect(res.status).toBe(415);
        return;
      }
      await expectError(res, 415, 'unsupported_media_type');
    },
  );

  it('415 for an unsupported charset; accepts +json types', async () => {
    await expectError(await post('/v1/backends', '{"image":"x"}', 'application/json; charset=latin1'), 415);
    const ok = await post('/v1/backends', '{"image":"x"}', 'application/vnd.spawner+json; charset=utf-8');
    expect(ok.status).toBe(201);
  });

  it('400 for a POST without a body', async () => {
    await expectError(await h.api('/v1/backends', { method: 'POST' }), 400, 'validation_failed');
  });
});

describe('paths, queries, methods', () => {
  it.each([
    '/v1/backends/UPPER',
    '/v1/backends/-leading',
    `/v1/backends/${'a'.repeat(64)}`,
    '/v1/backends/a_b',
    '/v1/backends/%F0%9F%98%80',
    '/backend/Not.A.Name/status',
    '/v1/backends/spawner-unknown',
  ])('GET %s → 404', async (path) => {
    await expectError(await h.api(path), 404, 'not_found');
  });

  it.each(['/v1/backends/%E0%A4%A', '/v1/backends/%ZZ/wait', '/backend/%/ready'])(
    'malformed percent-encoding %s → 400',
    async (path) => {
      const res = await raw(
        h.servers.apiPort,
        `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_TOKEN}\r\nConnection: close\r\n\r\n`,
      );
      expect(res.status).toBe(400);
      expect(responseValidator('Error')(JSON.parse(res.text))).toEqual([]);
    },
  );

  it.each([
    ['/v1/backends?phase=Sleeping', 'validation_failed'],
    ['/v1/backends?labelSelector=a%3D%3D%3Db', 'validation_failed'],
    ['/v1/backends?labelSelector=%25%25', 'validation_failed'],
    ['/v1/backends?unknown=1', 'validation_failed'],
    ['/v1/backends?phase=Ready&phase=Failed', 'validation_failed'],
    ['/v1/backends/spawner-x/wait?timeoutSeconds=abc', 'validation_failed'],
    ['/v1/backends/spawner-x/wait?timeoutSeconds=301', 'validation_failed'],
    ['/healthz?x=1', 'validation_failed'],
  ])('GET %s → 400', async (path, code) => {
    const res = path.startsWith('/healthz') ? await fetch(h.base + path) : await h.api(path);
    await expectError(res, 400, code);
  });

  it.each([
    ['PUT', '/v1/backends', 'GET, HEAD, POST'],
    ['PATCH', '/v1/backends/spawner-x', 'GET, HEAD, DELETE'],
    ['DELETE', '/spawn', 'POST'],
    ['POST', '/healthz', 'GET, HEAD'],
    ['OPTIONS', '/v1/backends/spawner-x/events', 'GET, HEAD'],
  ])('%s %s → 405 with Allow', async (method, path, allow) => {
    const res = await h.api(path, { method });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe(allow);
    await expectError(res, 405, 'method_not_allowed');
  });

  it('405 for methods fetch will not send (TRACE, custom)', async () => {
    for (const method of ['TRACE', 'FROB']) {
      const res = await raw(h.servers.apiPort, `${method} /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect([method, res.status]).toEqual([method, method === 'FROB' ? 400 : 405]);
    }
  });

  it('404 JSON for unknown routes', async () => {
    await expectError(await h.api('/v2/anything'), 404, 'not_found');
  });

  it('431 JSON for huge headers; 400 for garbage', async () => {
    const big = await raw(h.servers.apiPort, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
    expect(big.status).toBe(431);
    expect(JSON.parse(big.text).error.code).toBe('bad_request');
    const garbage = await raw(h.servers.apiPort, 'NOT HTTP AT ALL\r\n\r\n');
    expect(garbage.status).toBe(400);
  });

  it('HEAD on a stream answers with headers and does not hang', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const res = await h.api(`/v1/backends/${name}/events`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  });
});
