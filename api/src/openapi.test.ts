import fc from 'fast-check';
import { parseLabelSelector } from '../../common/src/kube/selectors';
import { apiSchema } from './schemas';
import { jsonOf, startHarness, type Harness } from './test-harness';

let h: Harness;
let doc: any;
beforeAll(async () => {
  h = await startHarness();
  doc = await jsonOf(await fetch(`${h.base}/openapi.json`));
});
afterAll(() => h.close());

function refs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => refs(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

function resolvePointer(root: unknown, ref: string): unknown {
  expect(ref.startsWith('#/')).toBe(true);
  let node: any = root;
  for (const seg of ref.slice(2).split('/')) {
    node = node?.[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node;
}

describe('/openapi.json', () => {
  it('is OpenAPI 3.1 with every $ref resolvable inside the document', () => {
    expect(doc.openapi).toBe('3.1.0');
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(20);
    for (const r of all) expect([r, resolvePointer(doc, r) !== undefined]).toEqual([r, true]);
  });

  it('describes every route the app serves, and nothing else', () => {
    const documented = new Set<string>();
    for (const [path, ops] of Object.entries<Record<string, unknown>>(doc.paths)) {
      for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${path}`);
    }
    expect([...documented].sort()).toEqual(
      [
        'POST /spawn',
        'GET /backend/{id}/ready',
        'GET /backend/{id}/status',
        'GET /backend/{id}/status/stream',
        'POST /v1/backends',
        'GET /v1/backends',
        'GET /v1/backends/{name}',
        'DELETE /v1/backends/{name}',
        'GET /v1/backends/{name}/wait',
        'GET /v1/backends/{name}/events',
        'GET /healthz',
        'GET /readyz',
        'GET /metrics',
        'GET /openapi.json',
      ].sort(),
    );
  });

  it('documents, for each operation, the error answers it can give', () => {
    for (const [path, ops] of Object.entries<Record<string, any>>(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const codes = Object.keys(op.responses);
        expect(codes).toContain('default');
        if (op.security.length > 0) expect([path, method, codes]).toEqual([path, method, expect.arrayContaining(['401'])]);
        if (op.requestBody) expect(codes).toEqual(expect.arrayContaining(['400', '413', '415']));
        if (path.includes('{')) expect(codes).toEqual(expect.arrayContaining(['400', '404']));
      }
    }
  });

  it('takes the pod template from the CRD schema (one source)', () => {
    const template = doc.components.schemas.CreateBackendRequest.properties.template;
    expect(template).toEqual({ $ref: '#/components/schemas/BackendPodTemplate' });
    expect(doc.components.schemas.BackendPodTemplate.required).toEqual(['containers']);
  });
});

describe('the labelSelector pattern', () => {
  const pattern = new RegExp((apiSchema.definitions.LabelSelector as { pattern: string }).pattern, 'u');
  const key = fc.constantFrom('app', 'team', 'example.com/tier', 'a.b-c/d_e', 'x');
  const value = fc.constantFrom('', 'a', 'prod', 'v1.2', 'A-b_c');
  const requirement = fc.oneof(
    fc.tuple(key, fc.constantFrom('=', '==', '!='), value).map(([k, op, v]) => `${k}${op}${v}`),
    fc.tuple(key, fc.constantFrom(' = ', ' != ')).map(([k, op]) => `${k}${op}v`),
    key,
    key.map((k) => `!${k}`),
    fc
      .tuple(
        key,
        fc.constantFrom('in', 'notin'),
        fc.array(
          value.filter((v) => v !== ''),
          { minLength: 1, maxLength: 3 },
        ),
      )
      .map(([k, op, vs]) => `${k} ${op} (${vs.join(', ')})`),
  );

  it('accepts what it documents, and the parser accepts all of it', () => {
    fc.assert(
      fc.property(fc.array(requirement, { maxLength: 4 }), (reqs) => {
        const selector = reqs.join(',');
        expect(pattern.test(selector)).toBe(true);
        expect(() => parseLabelSelector(selector)).not.toThrow();
      }),
    );
  });

  it('never matches something the parser rejects', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40, unit: fc.constantFrom(...'ab=!,() ./-_in'.split('')) }), (s) => {
        if (pattern.test(s)) expect(() => parseLabelSelector(s)).not.toThrow();
      }),
      { numRuns: 3000 },
    );
  });
});
