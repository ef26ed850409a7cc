import fc from 'fast-check';
import { ajvProblems, ConfigError, isPlainSchema, plainProblems } from '../../common/src/config';
import { loadSidecarConfig, SIDECAR_CONFIG } from './config';

describe('loadSidecarConfig', () => {
  it('has the documented defaults', () => {
    expect(loadSidecarConfig([], {})).toEqual({
      servePort: 9090,
      upstreamPort: 8080,
      upstreamHost: '127.0.0.1',
      adminPort: 9091,
      listenHost: '0.0.0.0',
      holdTimeoutMs: 30_000,
      holdMaxQueued: 1000,
      heartbeatSeconds: 5,
      shutdownGraceMs: 5000,
      logLevel: 'info',
    });
  });

  it('takes the flags the operator passes, and the variables it sets', () => {
    const hash = 'AB'.repeat(32);
    const config = loadSidecarConfig(['--serve-port=9090', '--upstream-port=3000'], {
      SPAWNER_TOKEN_SHA256: hash,
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({ servePort: 9090, upstreamPort: 3000, tokenSha256: hash.toLowerCase(), logLevel: 'debug' });
  });

  it('prefers its own prefixed variables over the aliases', () => {
    const config = loadSidecarConfig([], { LOG_LEVEL: 'debug', SPAWNER_SIDECAR_LOG_LEVEL: 'warn' });
    expect(config.logLevel).toBe('warn');
  });

  it('refuses a malformed token hash and a port out of range', () => {
    expect(() => loadSidecarConfig([], { SPAWNER_TOKEN_SHA256: 'xyz' })).toThrow(ConfigError);
    expect(() => loadSidecarConfig(['--upstream-port=0'], {})).toThrow(/--upstream-port/);
  });

  it("takes a pool's assignPath from the variable the operator sets, and refuses one that is not a path", () => {
    expect(loadSidecarConfig([], { SPAWNER_SIDECAR_APP_ASSIGN_PATH: '/spawner/assign?v=1' }).appAssignPath).toBe(
      '/spawner/assign?v=1',
    );
    expect(() => loadSidecarConfig([], { SPAWNER_SIDECAR_APP_ASSIGN_PATH: 'assign' })).toThrow(/APP_ASSIGN_PATH/);
    expect(() => loadSidecarConfig([], { SPAWNER_SIDECAR_APP_ASSIGN_PATH: '/a b' })).toThrow(/APP_ASSIGN_PATH/);
    expect(() => loadSidecarConfig([], { SPAWNER_SIDECAR_APP_ASSIGN_PATH: `/${'a'.repeat(256)}` })).toThrow(/APP_ASSIGN_PATH/);
  });

  it('refuses a flag it does not have', () => {
    expect(() => loadSidecarConfig(['--data-path=relay'], {})).toThrow(/Unknown option '--data-path'/);
  });

  // The sidecar does not load ajv (its bundle leaves it out): its schema must stay a plain one, and
  // the plain check must say what ajv would.
  it('is checked without ajv, with the verdicts and messages of ajv', () => {
    expect(isPlainSchema(SIDECAR_CONFIG.schema)).toBe(true);
    const names = Object.keys(SIDECAR_CONFIG.schema.properties);
    const value = fc.oneof(
      fc.string(),
      fc.double(),
      fc.integer({ min: -1, max: 70_000 }),
      fc.constantFrom('', 'debug', 'loud', 'ab'.repeat(32), 'AB'.repeat(32), NaN, 0, 65536),
    );
    fc.assert(
      fc.property(fc.record(Object.fromEntries(names.map((n) => [n, value])), { requiredKeys: [] }), (raw) => {
        const [byPlain, byAjv] = [{ ...raw }, { ...raw }];
        const plain = plainProblems(SIDECAR_CONFIG.schema, byPlain);
        expect(plain).toEqual(
          ajvProblems(SIDECAR_CONFIG.schema, byAjv).map(({ instancePath, message }) => ({ instancePath, message })),
        );
        expect(byPlain).toEqual(byAjv);
      }),
      { numRuns: 500 },
    );
    expect(() => loadSidecarConfig(['--heartbeat-seconds=0', '--log-level=loud'], {})).toThrow(
      'invalid sidecar configuration:\n' +
        '  --heartbeat-seconds (SPAWNER_SIDECAR_HEARTBEAT_SECONDS) must be > 0\n' +
        '  --log-level (SPAWNER_SIDECAR_LOG_LEVEL) must be equal to one of the allowed values',
    );
  });
});
