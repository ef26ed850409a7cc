import { validateSpec } from './validators';

const spec = (extra: Record<string, unknown> = {}) => ({
  template: { containers: [{ name: 'app', image: 'spawner-demo-backend' }] },
  ...extra,
});

describe('spec validators (derived from the CRD schema)', () => {
  it('accepts a minimal spec and applies the CRD defaults', () => {
    const s: any = spec();
    expect(validateSpec(s)).toEqual([]);
    expect(s.httpPort).toBe(8080);
    expect(s.gracePeriodSeconds).toBe(300);
  });

  it.each([
    ['no containers', { template: { containers: [] } }, '/spec/template/containers'],
    ['a port out of range', spec({ httpPort: 70000 }), '/spec/httpPort'],
    ['a string port', spec({ httpPort: '8080' }), '/spec/httpPort'],
    ['an unknown field', spec({ gracePeriod: 3 }), '/spec'],
    [
      'a bad quantity',
      spec({ template: { containers: [{ name: 'a', image: 'b', resources: { limits: { memory: '12 MB' } } }] } }),
      '/spec/template/containers/0/resources/limits/memory',
    ],
  ])('rejects %s, naming the field', (_name, value, path) => {
    const problems = validateSpec(value);
    expect(problems.map((p) => p.path)).toContain(path);
  });

  it('lets unknown container fields through, as the CRD preserves them', () => {
    expect(validateSpec(spec({ template: { containers: [{ name: 'a', image: 'b', ports: [{ containerPort: 1 }] }] } }))).toEqual(
      [],
    );
  });
});
