/**
 * fuzz: every route of the REST API, property-based (fast-check), against the real API (express
 * app, validation, auth, error handler, SSE, long poll) over the in-memory store, on real sockets.
 * No cluster is needed, so this file runs in the unit project.
 *
 * Requests are generated from the OpenAPI document the API serves (/openapi.json): its paths,
 * methods, path/query/header parameters and request-body schemas, with values drawn from those
 * schemas and from beyond them (garbage names, wrong types, unknown fields and parameters,
 * missing or wrong credentials, other content types, random bytes, other methods and paths).
 * Every answer must be below 500, have a status the document lists for the operation, and carry
 * a body (JSON checked with ajv against the document's schema, or each Server-Sent Event's data)
 * and the headers the document promises for that status.
 */
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import { API_TOKEN, startHarness, type Harness } from '../api/src/test-harness';
import { SSE_MEDIA_TYPE, SseParser } from '../common/src/sse';
import { writeFigures } from './support/figures';

jest.setTimeout(600_000);

// The document's JSON is walked generically.
type Schema = { [key: string]: any };

interface Operation {
  method: string;
  path: string;
  op: Schema;
}

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

let h: Harness;
let doc: Schema;
let ajv: Ajv2020;
const validators = new Map<string, ValidateFunction>();
let operations: Operation[] = [];
/** Backends the requests can name, in each interesting phase (recreated if a DELETE removed one). */
const fixtures: Record<'ready' | 'swept' | 'failed' | 'pending', { name: string; token: string }> = {
  ready: { name: '', token: '' },
  swept: { name: '', token: '' },
  failed: { name: '', token: '' },
  pending: { name: '', token: '' },
};
const counts = { cases: 0, byStatus: new Map<number, number>() };

async function makeFixture(kind: keyof typeof fixtures): Promise<void> {
  const res = await h.api('/v1/backends', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image: 'ghcr.io/example/app:1', labels: { fixture: kind } }),
  });
  const body = (await res.json()) as { name: string; url: string };
  const name = body.name;
  if (kind === 'ready') h.store.advance(name, 'Ready', { podIP: '127.0.0.1' });
  if (kind === 'swept') h.store.transition(name, { phase: 'Swept', reason: 'IdleTimeout', message: 'idle' });
  if (kind === 'failed') h.store.transition(name, { phase: 'Failed', reason: 'ContainerExited', message: 'exit 1' });
  fixtures[kind] = { name, token: new URL(body.url).searchParams.get('spawner_token') ?? '' };
}

let sinceCleanup = 0;

async function ensureFixtures(): Promise<void> {
  // Creates pile up; a list of thousands would make every list answer slow: keep a few dozen.
  if (++sinceCleanup >= 25) {
    sinceCleanup = 0;
    const keep = new Set(Object.values(fixtures).map((f) => f.name));
    const all = await h.store.list();
    for (const b of all.slice(0, Math.max(0, all.length - 20))) if (!keep.has(b.metadata.name!)) h.store.remove(b.metadata.name!);
  }
  for (const kind of Object.keys(fixtures) as Array<keyof typeof fixtures>) {
    if (!fixtures[kind].name || !h.store.peek(fixtures[kind].name)) await makeFixture(kind);
  }
}

// ---- the document -------------------------------------------------------------------------------

/** Resolves a local `$ref` (any JSON pointer into the document). */
function resolve(schema: Schema): Schema {
  let s = schema;
  for (let i = 0; s && typeof s.$ref === 'string' && i < 20; i++) {
    const pointer = (s.$ref as string).replace(/^#\//, '').split('/');
    let node: Schema = doc;
    for (const part of pointer) node = node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    s = node;
  }
  return s;
}

function validator(schema: Schema): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    // Refs stay relative to the document, registered under the id `openapi`.
    const rebased = JSON.parse(key.replace(/"\$ref":"#\//g, '"$ref":"openapi#/')) as Schema;
    v = ajv.compile(rebased);
    validators.set(key, v);
  }
  return v;
}

// ---- values from schemas ------------------------------------------------------------------------

const printable = fc.string({ unit: fc.constantFrom(...' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~'.split('')), maxLength: 40 });
const garbageJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 30 }),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
);

/** Building an arbitrary from a large pattern is costly; they are immutable, so each is built once. */
const memo = new Map<string, fc.Arbitrary<unknown>>();
function memoized<T>(key: string, build: () => fc.Arbitrary<T>): fc.Arbitrary<T> {
  let arb = memo.get(key);
  if (!arb) memo.set(key, (arb = build()));
  return arb as fc.Arbitrary<T>;
}

function stringArb(s: Schema): fc.Arbitrary<string> {
  return memoized(`string:${JSON.stringify(s)}`, () => buildStringArb(s));
}

function buildStringArb(s: Schema): fc.Arbitrary<string> {
  const max = Math.min(s.maxLength ?? 40, 80);
  const min = s.minLength ?? 0;
  if (typeof s.pattern === 'string') {
    let arb: fc.Arbitrary<string>;
    try {
      arb = fc.stringMatching(new RegExp(s.pattern));
    } catch {
      arb = fc.string({ maxLength: max });
    }
    return arb.filter((v) => v.length >= min && v.length <= (s.maxLength ?? Infinity));
  }
  if (s.format === 'date-time') return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
  return fc.string({ minLength: min, maxLength: Math.max(min, max) });
}

/** Values the schema accepts (mostly: patterns and combinations are approximated). */
function fromSchema(schema: Schema, depth = 0): fc.Arbitrary<unknown> {
  return memoized(`schema:${depth}:${JSON.stringify(schema)}`, () => buildFromSchema(schema, depth));
}

function buildFromSchema(schema: Schema, depth: number): fc.Arbitrary<unknown> {
  const s = resolve(schema);
  if (!s || typeof s !== 'object' || depth > 6) return fc.constant(null);
  if (Array.isArray(s.enum)) return fc.constantFrom(...(s.enum as unknown[]));
  if ('const' in s) return fc.constant(s.const);
  if (Array.isArray(s.anyOf) && !s.type && !s.properties)
    return fc.oneof(...s.anyOf.map((x: Schema) => fromSchema(x, depth + 1)));
  if (Array.isArray(s.oneOf) && !s.type && !s.properties)
    return fc.oneof(...s.oneOf.map((x: Schema) => fromSchema(x, depth + 1)));
  if (Array.isArray(s.allOf) && !s.type && !s.properties) return fromSchema(s.allOf[0], depth + 1);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (type) {
    case 'string':
      return stringArb(s);
    case 'integer':
      return fc.integer({ min: s.minimum ?? -1000, max: s.maximum ?? 1_000_000 });
    case 'number':
      return fc.double({ min: s.minimum ?? -1000, max: s.maximum ?? 1e6, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(s.items ? fromSchema(s.items, depth + 1) : garbageJson, {
        minLength: s.minItems ?? 0,
        maxLength: Math.min(s.maxItems ?? 3, 3),
      });
    case 'object':
    default:
      return objectFromSchema(s, depth);
  }
}

/** The positive part of a propertyNames schema (its first allOf member carries the pattern). */
function namesSchema(schema: Schema): Schema {
  const s = resolve(schema);
  return Array.isArray(s.allOf) ? resolve(s.allOf[0]) : s;
}

function objectFromSchema(s: Schema, depth: number): fc.Arbitrary<unknown> {
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const required = new Set<string>((s.required as string[] | undefined) ?? []);
  const model = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, fromSchema(v, depth + 1)]));
  const base =
    Object.keys(model).length > 0
      ? fc.record(model, { requiredKeys: [...required].filter((k) => k in model) })
      : typeof s.additionalProperties === 'object'
        ? fc.dictionary(
            s.propertyNames ? stringArb(namesSchema(s.propertyNames)) : fc.string({ minLength: 1, maxLength: 10 }),
            fromSchema(s.additionalProperties, depth + 1),
            { maxKeys: 3 },
          )
        : fc.constant({});
  if (!Array.isArray(s.oneOf)) return base;
  // A oneOf of required/not constraints (CreateBackendRequest): pick a branch, make it hold.
  return fc.tuple(base, fc.nat(s.oneOf.length - 1)).chain(([value, i]) => {
    const branch = s.oneOf[i] as Schema;
    const obj = { ...(value as Record<string, unknown>) };
    const forbidden = [
      ...((branch.not?.required as string[]) ?? []),
      ...((branch.not?.anyOf as Schema[]) ?? []).flatMap((x) => (x.required as string[]) ?? []),
    ];
    for (const k of forbidden) delete obj[k];
    const missing = ((branch.required as string[]) ?? []).filter((k) => !(k in obj) && k in props);
    if (missing.length === 0) return fc.constant(obj);
    return fc.record(Object.fromEntries(missing.map((k) => [k, fromSchema(props[k], depth + 1)]))).map((extra) => ({
      ...obj,
      ...extra,
    }));
  });
}

/** A value the schema probably rejects: another type, an unknown field, a dropped requirement. */
function beyondSchema(schema: Schema): fc.Arbitrary<unknown> {
  return memoized(`beyond:${JSON.stringify(schema)}`, () => buildBeyondSchema(schema));
}

function buildBeyondSchema(schema: Schema): fc.Arbitrary<unknown> {
  return fc.oneof(
    garbageJson,
    fc
      .tuple(fromSchema(schema), fc.string({ minLength: 1, maxLength: 12 }), garbageJson)
      .map(([v, k, x]) => (v && typeof v === 'object' && !Array.isArray(v) ? { ...v, [k]: x } : x)),
    fc.tuple(fromSchema(schema), fc.nat(20), garbageJson).map(([v, i, x]) => {
      if (!v || typeof v !== 'object' || Array.isArray(v)) return x;
      const keys = Object.keys(v);
      if (keys.length === 0) return x;
      return { ...v, [keys[i % keys.length]]: x };
    }),
  );
}

// ---- requests -----------------------------------------------------------------------------------

const auth = fc.oneof(
  { weight: 8, arbitrary: fc.constant<Record<string, string>>({ authorization: `Bearer ${API_TOKEN}` }) },
  { weight: 1, arbitrary: fc.constant<Record<string, string>>({}) },
  { weight: 1, arbitrary: printable.map((t) => ({ authorization: `Bearer ${t}x` })) },
  { weight: 1, arbitrary: fc.constant({ authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }) },
  { weight: 1, arbitrary: fc.constant({ authorization: `bearer  ${API_TOKEN}  ` }) },
);

function nameArb(forWait: boolean): fc.Arbitrary<{ name: string; token?: string }> {
  const fixture = (kind: keyof typeof fixtures) => fc.constant(kind).map((k) => ({ ...fixtures[k] }));
  return fc.oneof(
    { weight: 15, arbitrary: fixture('ready') },
    { weight: 10, arbitrary: fixture('swept') },
    { weight: 10, arbitrary: fixture('failed') },
    // A pending backend makes a long poll wait its whole timeout (1 s here): rarely.
    { weight: forWait ? 1 : 10, arbitrary: fixture('pending') },
    { weight: 10, arbitrary: stringArb(resolve({ $ref: '#/components/schemas/BackendName' })).map((name) => ({ name })) },
    {
      weight: 15,
      arbitrary: fc
        .oneof(
          fc.string({ maxLength: 30 }),
          fc.constantFrom('%00', 'A', 'UPPER', '-x', 'x-', 'a'.repeat(64), 'a'.repeat(300), ' ', '%2F'),
        )
        .map((n) => ({ name: n.startsWith('%') ? n : encodeURIComponent(n) || 'x' })),
    },
  );
}

function queryArb(op: Schema, token: string | undefined, backendTokens: boolean): fc.Arbitrary<string> {
  const params = ((op.parameters ?? []) as Schema[]).filter((p) => p.in === 'query');
  const pairs = params.map((p) =>
    fc.option(
      fc.oneof(
        { weight: 3, arbitrary: fromSchema(p.schema).map((v) => [p.name, String(v)] as [string, string]) },
        { weight: 1, arbitrary: beyondSchema(p.schema).map((v) => [p.name, JSON.stringify(v) ?? ''] as [string, string]) },
      ),
      { freq: 2 },
    ),
  );
  const extra = fc.option(
    fc.oneof(
      fc.tuple(fc.string({ minLength: 1, maxLength: 10 }), fc.string({ maxLength: 10 })),
      // Credentials in the query: this backend's token, another's, garbage, empty.
      fc
        .constantFrom('own', 'other', 'garbage', 'empty')
        .map((k): [string, string] => [
          'spawner_token',
          k === 'own' ? (token ?? 'none') : k === 'other' ? fixtures.ready.token : k === 'garbage' ? 'x'.repeat(300) : '',
        ]),
    ),
    { freq: backendTokens ? 2 : 5 },
  );
  return fc.tuple(fc.tuple(...pairs), extra, fc.boolean()).map(([ps, x, dup]) => {
    const all = ps.filter((p): p is [string, string] => p !== null);
    if (x) all.push(x);
    if (dup && all.length > 0) all.push(all[0]);
    const q = new URLSearchParams(all).toString();
    return q ? `?${q}` : '';
  });
}

function headerArb(op: Schema, token: string | undefined): fc.Arbitrary<Record<string, string>> {
  const documented = ((op.parameters ?? []) as Schema[]).filter((p) => p.in === 'header');
  const values = documented.map((p) =>
    fc.option(
      fc.oneof(fc.nat(10).map(String), printable).map((v) => [p.name, v] as [string, string]),
      { freq: 2 },
    ),
  );
  return fc
    .tuple(
      auth,
      fc.tuple(...values),
      fc.option(fc.constantFrom(token ?? '', fixtures.ready.token, 'nope'), { freq: 4 }),
      fc.option(fc.tuple(fc.constantFrom('accept', 'x-fuzz', 'cookie', 'x-forwarded-proto', 'user-agent'), printable)),
    )
    .map(([a, hs, xtoken, extra]) => {
      const out: Record<string, string> = { ...a };
      for (const h2 of hs) if (h2) out[h2[0]] = h2[1];
      if (xtoken !== null) out['x-spawner-token'] = xtoken;
      if (extra) out[extra[0]] = extra[1];
      return out;
    });
}

function bodyArb(op: Schema): fc.Arbitrary<{ body?: string; type?: string }> {
  const schema = op.requestBody?.content?.['application/json']?.schema as Schema | undefined;
  if (!schema) return fc.constant({});
  const json = fc
    .oneof({ weight: 6, arbitrary: fromSchema(schema) }, { weight: 3, arbitrary: beyondSchema(schema) })
    .map((v) => JSON.stringify(v) ?? 'null');
  return fc.oneof(
    {
      weight: 9,
      arbitrary: fc.record({ body: json, type: fc.constantFrom('application/json', 'application/json; charset=utf-8') }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        body: json,
        type: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/merge-patch+json'),
      }),
    },
    // Raw bytes, unbalanced JSON, an empty body.
    {
      weight: 1,
      arbitrary: fc.record({ body: fc.string({ unit: 'binary', maxLength: 80 }), type: fc.constant('application/json') }),
    },
    { weight: 1, arbitrary: json.map((j) => ({ body: j.slice(0, Math.max(1, j.length - 1)), type: 'application/json' })) },
    { weight: 1, arbitrary: fc.constant({}) },
  );
}

function requestArb(o: Operation): fc.Arbitrary<FuzzRequest> {
  const backendTokens = (o.op.security as Schema[]).some((s) => 'backendToken' in s);
  return nameArb(o.path.endsWith('/wait')).chain((target) =>
    fc
      .tuple(queryArb(o.op, target.token, backendTokens), headerArb(o.op, target.token), bodyArb(o.op))
      .map(([query, headers, body]) => {
        const path = o.path.replace(/\{[^}]+\}/g, target.name) + query;
        const all = { ...headers };
        if (body.type) all['content-type'] = body.type;
        return { method: o.method.toUpperCase(), path, headers: all, body: body.body };
      }),
  );
}

// ---- answers ------------------------------------------------------------------------------------

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

async function send(r: FuzzRequest): Promise<Answer | undefined> {
  let res: Response;
  try {
    res = await fetch(h.base + r.path, {
      method: r.method,
      headers: r.headers,
      body: r.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    // fetch refuses some inputs itself (a header value it will not send, a URL it cannot parse).
    if ((err as Error).name === 'TypeError') return undefined;
    throw err;
  }
  let text = '';
  if ((res.headers.get('content-type') ?? '').startsWith(SSE_MEDIA_TYPE) && res.body) {
    // Past phases arrive at once; a live stream then goes quiet: read until it does.
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const next = await Promise.race([reader.read(), new Promise<'quiet'>((r) => setTimeout(() => r('quiet'), 60))]);
      if (next === 'quiet' || next.done) break;
      text += decoder.decode(next.value, { stream: true });
    }
    await reader.cancel().catch(() => undefined);
  } else {
    text = await res.text();
  }
  counts.cases++;
  counts.byStatus.set(res.status, (counts.byStatus.get(res.status) ?? 0) + 1);
  return { status: res.status, headers: res.headers, text };
}

/** The complete events of a stream's text, as the fields the document's event schema describes. */
function sseEvents(text: string): Array<Record<string, string>> {
  return new SseParser().push(text).map(({ event, data, id }) => ({ event, data, ...(id === '' ? {} : { id }) }));
}

/** Problems with an answer, measured against the operation's documented responses. */
function conformance(o: Operation, a: Answer): string[] {
  const problems: string[] = [];
  if (a.status >= 500) problems.push(`a server error ${a.status}: ${a.text.slice(0, 300)}`);
  const response = o.op.responses[String(a.status)] as Schema | undefined;
  if (!response) return [...problems, `status ${a.status} is not documented for ${o.method.toUpperCase()} ${o.path}`];
  for (const name of Object.keys((response.headers ?? {}) as Schema)) {
    if (!a.headers.has(name)) problems.push(`status ${a.status} promises header ${name}, missing`);
  }
  const content = (response.content ?? {}) as Schema;
  const type = (a.headers.get('content-type') ?? '').split(';')[0].trim();
  const types = Object.keys(content);
  if (types.length === 0) {
    if (a.text !== '') problems.push(`status ${a.status} documents no body, got ${a.text.slice(0, 100)}`);
    return problems;
  }
  if (!types.includes(type)) return [...problems, `content-type ${type} is not documented (${types.join(', ')})`];
  const schema = content[type].schema as Schema;
  if (type === 'application/json') {
    let body: unknown;
    try {
      body = JSON.parse(a.text);
    } catch {
      return [...problems, `not JSON: ${a.text.slice(0, 100)}`];
    }
    const v = validator(schema);
    if (!v(body)) problems.push(`body does not match its schema: ${ajv.errorsText(v.errors)}; body ${a.text.slice(0, 300)}`);
  } else if (type === SSE_MEDIA_TYPE) {
    const eventSchema = resolve(schema);
    const dataSchema = eventSchema.properties?.data?.contentSchema as Schema | undefined;
    for (const e of sseEvents(a.text)) {
      const v = validator(eventSchema);
      if (!v(e)) problems.push(`event does not match its schema: ${ajv.errorsText(v.errors)}`);
      if (!dataSchema) continue;
      let data: unknown;
      try {
        data = JSON.parse(e.data);
      } catch {
        problems.push(`event data is not JSON: ${e.data}`);
        continue;
      }
      const dv = validator(dataSchema);
      if (!dv(data)) problems.push(`event data does not match ${JSON.stringify(dataSchema)}: ${ajv.errorsText(dv.errors)}`);
    }
  }
  return problems;
}

// ---- the properties -----------------------------------------------------------------------------

beforeAll(async () => {
  // Short long polls and streams, so that thousands of cases finish in seconds.
  h = await startHarness({ waitMaxSeconds: 1, streamMaxSeconds: 1, sseHeartbeatSeconds: 1 });
  doc = (await (await fetch(`${h.base}/openapi.json`)).json()) as Schema;
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(doc, 'openapi');
  operations = Object.entries(doc.paths as Schema).flatMap(([path, ops]) =>
    Object.entries(ops as Schema).map(([method, op]) => ({ method, path, op: op as Schema })),
  );
  await ensureFixtures();
});

afterAll(async () => {
  await h?.close();
  writeFigures('fuzz-api-routes', {
    cases: counts.cases,
    operations: operations.length,
    byStatus: Object.fromEntries([...counts.byStatus].sort(([a], [b]) => a - b)),
  });
});

const RUNS: Record<string, number> = { default: 400, stream: 200, wait: 250 };

describe('fuzz: every API route, from the OpenAPI document and beyond it', () => {
  // One property per operation, so a failure names the route.
  const names = [
    'post /spawn',
    'get /backend/{id}/ready',
    'get /backend/{id}/status',
    'get /backend/{id}/status/stream',
    'post /v1/backends',
    'get /v1/backends',
    'get /v1/backends/{name}',
    'delete /v1/backends/{name}',
    'get /v1/backends/{name}/wait',
    'get /v1/backends/{name}/events',
    'get /healthz',
    'get /readyz',
    'get /metrics',
    'get /openapi.json',
  ];
  // The list is written out so that each route is a test of its own; it must be the document's.
  // (api/src/openapi.test.ts checks that the document lists every route the app serves.)
  test('fuzz: every operation of the document is fuzzed', () => {
    expect([...names].sort()).toEqual(operations.map((o) => `${o.method} ${o.path}`).sort());
  });

  test.each(names)('fuzz: %s answers below 500, as documented', async (key) => {
    const [method, path] = key.split(' ');
    const o = operations.find((x) => x.method === method && x.path === path);
    expect(o).toBeDefined();
    const runs =
      path.endsWith('/stream') || path.endsWith('/events') ? RUNS.stream : path.endsWith('/wait') ? RUNS.wait : RUNS.default;
    await fc.assert(
      fc.asyncProperty(requestArb(o!), async (r) => {
        await ensureFixtures();
        const a = await send(r);
        if (!a) return;
        const problems = conformance(o!, a);
        if (problems.length > 0)
          throw new Error(`${r.method} ${r.path} ${JSON.stringify(r.headers)} ${r.body ?? ''}\n→ ${problems.join('\n→ ')}`);
      }),
      { numRuns: runs },
    );
  });

  test('fuzz: other methods and paths get a JSON 400, 404 or 405 (with Allow), never a 5xx', async () => {
    const errorSchema = { $ref: '#/components/schemas/Error' };
    const paths = Object.keys(doc.paths as Schema);
    const pathArb = fc.oneof(
      fc.constantFrom(...paths).chain((p) => nameArb(false).map((n) => p.replace(/\{[^}]+\}/g, n.name))),
      fc
        .array(
          fc.oneof(fc.stringMatching(/^[a-z0-9.-]{1,12}$/), fc.constantFrom('v1', 'backends', 'backend', 'p', '%zz', '..')),
          {
            minLength: 1,
            maxLength: 5,
          },
        )
        .map((parts) => `/${parts.join('/')}`),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'),
        pathArb,
        auth,
        async (method, path, headers) => {
          const documented = Object.entries(doc.paths as Schema).some(
            ([p, ops]) =>
              new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path) &&
              (method.toLowerCase() in (ops as Schema) || (method === 'HEAD' && 'get' in (ops as Schema))),
          );
          if (documented) return; // the per-route properties cover those
          const a = await send({ method, path, headers });
          if (!a) return;
          expect(a.status).toBeLessThan(500);
          if (method === 'HEAD') return;
          expect([400, 401, 404, 405]).toContain(a.status); // 400: a malformed %-escape
          if (a.status === 405) expect(a.headers.get('allow')).toBeTruthy();
          const v = validator(errorSchema);
          expect({ valid: v(JSON.parse(a.text)), errors: ajv.errorsText(v.errors) }).toEqual({
            valid: true,
            errors: 'No errors',
          });
        },
      ),
      { numRuns: 600 },
    );
  });

  test('fuzz: the cases add up to thousands', () => {
    expect(counts.cases).toBeGreaterThanOrEqual(4000);
  });
});
