/** Whatever arrives, the API answers with a 4xx or a success, never a 5xx. */
import fc from 'fast-check';
import { API_TOKEN, jsonOf, startHarness, type Harness } from './test-harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

const post = (path: string, body: string): Promise<Response> =>
  fetch(h.base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_TOKEN}` },
    body,
  });

const field = fc.constantFrom(
  'image',
  'template',
  'env',
  'command',
  'args',
  'resources',
  'labels',
  'key',
  'httpPort',
  'port',
  'gracePeriodSeconds',
  'maxLifetimeSeconds',
  'startupTimeoutSeconds',
  'containers',
  'name',
  '__proto__',
  'constructor',
);
const body = fc.oneof(
  fc.jsonValue(),
  fc.dictionary(field, fc.jsonValue()),
  fc.record(
    {
      image: fc.oneof(fc.string(), fc.constant('demo:1')),
      env: fc.oneof(fc.dictionary(fc.string(), fc.string()), fc.array(fc.record({ name: fc.string(), value: fc.string() }))),
      labels: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer())),
      key: fc.string(),
      httpPort: fc.oneof(fc.integer(), fc.double()),
      template: fc.record(
        { containers: fc.array(fc.record({ name: fc.string(), image: fc.string() }, { requiredKeys: [] })) },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: [] },
  ),
);

describe('random bodies', () => {
  it.each(['/v1/backends', '/spawn'])('POST %s never answers 5xx', async (path) => {
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const res = await post(path, JSON.stringify(b));
        expect(res.status).toBeLessThan(500);
        if (res.status >= 400) expect((await jsonOf(res)).error.code).toEqual(expect.any(String));
        else await res.arrayBuffer();
      }),
      { numRuns: 300 },
    );
  });

  it('random bytes as a body never answer 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 200 }), async (text) => {
        const res = await post('/v1/backends', text);
        expect(res.status).toBeLessThan(500);
        await res.arrayBuffer();
      }),
      { numRuns: 200 },
    );
  });

  it('valid image requests are accepted', async () => {
    const valid = fc.record(
      {
        image: fc.stringMatching(/^[a-z0-9][a-z0-9._/:-]{0,30}$/),
        env: fc.dictionary(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,10}$/), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
        labels: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9]{0,10}$/), fc.stringMatching(/^[a-z0-9]{0,10}$/), { maxKeys: 3 }),
        key: fc.string({ minLength: 1, maxLength: 50 }),
        gracePeriodSeconds: fc.integer({ min: 1, max: 31536000 }),
      },
      { requiredKeys: ['image'] },
    );
    await fc.assert(
      fc.asyncProperty(valid, async (b) => {
        const res = await post('/v1/backends', JSON.stringify(b));
        expect([200, 201]).toContain(res.status);
        await res.arrayBuffer();
      }),
      { numRuns: 100 },
    );
  });
});

describe('random paths and queries', () => {
  const segment = fc.oneof(
    fc.stringMatching(/^[a-z0-9-]{1,70}$/),
    fc.string({ maxLength: 20 }).map(encodeURIComponent),
    fc.constantFrom('%', '%zz', '..', '%2F'),
  );
  it('GET/DELETE on backend paths never answer 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'DELETE', 'POST', 'PUT'),
        fc.constantFrom('/v1/backends/', '/backend/', '/v1/backends/x/'),
        segment,
        fc.constantFrom('', '/ready', '/status', '/wait', '/events', '/status/stream'),
        fc.string({ maxLength: 30 }).map((q) => (q ? `?${encodeURIComponent(q).replace(/%3D/g, '=')}` : '')),
        async (method, prefix, seg, suffix, query) => {
          const res = await fetch(`${h.base}${prefix}${seg}${suffix}${query}`, {
            method,
            headers: { authorization: `Bearer ${API_TOKEN}` },
            signal: AbortSignal.timeout(3000),
          }).catch((err: Error) => {
            // fetch itself refuses some URLs; that is not the server's answer.
            if (err.name === 'TypeError') return undefined;
            throw err;
          });
          if (!res) return;
          expect(res.status).toBeLessThan(500);
          await res.body?.cancel();
        },
      ),
      { numRuns: 300 },
    );
  });
});
