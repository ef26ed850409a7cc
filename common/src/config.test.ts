import { ConfigError, loadConfig, type ConfigSpec } from './config';

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
