import fc from 'fast-check';
import { ajvProblems, ConfigError, isPlainSchema, loadConfig, plainProblems, type ConfigSpec } from './config';

const spec: ConfigSpec = {
  component: 'thing',
  envPrefix: 'THING',
  schema: {
    type: 'object',
    properties: {
      servePort: { type: 'integer', description: 'port', minimum: 1, maximum: 65535, default: 9090 },
      namespaces: { type: 'array', description: 'ns', items: { type: 'string' }, default: ['default'] },
      verbose: { type: 'boolean', description: 'v', default: false },
      mode: { type: 'string', description: 'm', enum: ['a', 'b'] },
    },
  },
};

describe('loadConfig', () => {
  it('applies defaults, then env, then flags', () => {
    expect(loadConfig(spec, [], {})).toEqual({ servePort: 9090, namespaces: ['default'], verbose: false });
    expect(loadConfig(spec, [], { THING_SERVE_PORT: '8000', THING_NAMESPACES: 'a, b' })).toMatchObject({
      servePort: 8000,
      namespaces: ['a', 'b'],
    });
    expect(loadConfig(spec, ['--serve-port=7000', '--verbose=true'], { THING_SERVE_PORT: '8000' })).toMatchObject({
      servePort: 7000,
      verbose: true,
    });
  });

  it('fails at once with a message naming the flag, the env var and the rule', () => {
    expect(() => loadConfig(spec, ['--serve-port=70000'], {})).toThrow(/--serve-port \(THING_SERVE_PORT\) must be <= 65535/);
    expect(() => loadConfig(spec, [], { THING_SERVE_PORT: 'abc' })).toThrow(/THING_SERVE_PORT.*must be integer/);
    expect(() => loadConfig(spec, ['--mode=c'], {})).toThrow(/--mode \(THING_MODE\) must be equal to one of the allowed values/);
    expect(() => loadConfig(spec, ['--nope=1'], {})).toThrow(ConfigError);
  });
});

/** Every keyword the plain check implements, in the combinations the components use. */
const plainSpec: ConfigSpec = {
  component: 'plain',
  envPrefix: 'PLAIN',
  schema: {
    type: 'object',
    properties: {
      port: { type: 'integer', description: 'p', minimum: 0, maximum: 65535, default: 9090 },
      count: { type: 'integer', description: 'c', minimum: 1 },
      ratio: { type: 'number', description: 'r', exclusiveMinimum: 0, exclusiveMaximum: 1 },
      seconds: { type: 'number', description: 's', default: 5 },
      host: { type: 'string', description: 'h', minLength: 1, maxLength: 3, default: 'abc' },
      hash: { type: 'string', description: 'x', pattern: '^[0-9a-f]{4}$' },
      level: { type: 'string', description: 'l', enum: ['info', 'warn'], default: 'info' },
      mode: { type: 'string', description: 'm', minLength: 2, enum: ['ab', 'c'] },
      level2: { type: 'integer', description: 'i', enum: [1, 2] },
      flag: { type: 'boolean', description: 'f', default: false },
      text: { type: 'string', description: 't' },
    },
  },
};

describe('plain config schemas', () => {
  it('are recognised: scalar properties and the common keywords only', () => {
    expect(isPlainSchema(plainSpec.schema)).toBe(true);
    expect(isPlainSchema(spec.schema)).toBe(false); // an array property
    expect(isPlainSchema({ ...plainSpec.schema, required: ['port'] })).toBe(false);
    const withFormat = { ...plainSpec.schema.properties.host, format: 'hostname' };
    expect(isPlainSchema({ type: 'object', properties: { host: withFormat } })).toBe(false);
  });

  it('get the same verdicts and messages as from ajv, defaults included', () => {
    const values = fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme', maxLength: 5 }),
      fc.double(),
      fc.integer({ min: -70_000, max: 70_000 }),
      fc.boolean(),
      fc.constantFrom('', 'info', 'ab', 'c', 'abcd', '0a9f', '0A9F', NaN, Infinity, -0, 0, 1, 2, 65535, 65536, '😀😀😀'),
    );
    const names = Object.keys(plainSpec.schema.properties);
    const raws = fc.record(Object.fromEntries(names.map((n) => [n, values])), { requiredKeys: [] });
    fc.assert(
      fc.property(raws, (raw) => {
        const byPlain: Record<string, unknown> = { ...raw };
        const byAjv: Record<string, unknown> = { ...raw };
        const plain = plainProblems(plainSpec.schema, byPlain);
        const ajv = ajvProblems(plainSpec.schema, byAjv).map((e) => ({ instancePath: e.instancePath, message: e.message }));
        expect(plain).toEqual(ajv);
        expect(byPlain).toEqual(byAjv);
      }),
      { numRuns: 2000 },
    );
  });

  it('name the flag, the variable and the rule as before', () => {
    expect(() => loadConfig(plainSpec, ['--port=abc'], {})).toThrow(
      'invalid plain configuration:\n  --port (PLAIN_PORT) must be integer\n  --port (PLAIN_PORT) must be <= 65535\n  --port (PLAIN_PORT) must be >= 0',
    );
    expect(() => loadConfig(plainSpec, [], { PLAIN_HASH: 'xyz', PLAIN_LEVEL: 'loud' })).toThrow(
      /--hash \(PLAIN_HASH\) must match pattern "\^\[0-9a-f\]\{4\}\$"\n {2}--level \(PLAIN_LEVEL\) must be equal to one of the allowed values/,
    );
    expect(loadConfig(plainSpec, ['--ratio=0.5'], {})).toEqual({
      port: 9090,
      ratio: 0.5,
      seconds: 5,
      host: 'abc',
      level: 'info',
      flag: false,
    });
  });
});
