import { ConfigError } from '../../common/src/config';
import { loadSidecarConfig } from './config';

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
});
