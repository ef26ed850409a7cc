import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLogger } from '../../common/src/logger';
import { BearerAuth, parseTokenFile } from './bearer-auth';
import { ANNOTATION_TOKEN_NONCE, backendTokenValid, ConnectionTokens, sha256Hex, verifyTokenHash } from './connection-tokens';
import { newBackend } from '../../common/src/backend';
import { ANNOTATION_TOKEN_HASH } from '../../common/src/constants';
import { waitUntil } from './test-harness';

describe('API bearer tokens', () => {
  it('parses one token per line, skipping blanks and comments', () => {
    expect(parseTokenFile('# app servers\ntoken-one\r\n\n  token-two  \n#x\n')).toEqual(['token-one', 'token-two']);
  });

  it('accepts configured tokens only, from env and file, and re-reads the file when it changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spawner-auth-'));
    const file = join(dir, 'tokens');
    writeFileSync(file, 'file-token-aaaaaaaaaaaa\n');
    const auth = new BearerAuth({
      tokens: ['env-token-bbbbbbbbbbbbbb'],
      tokenFile: file,
      logger: memoryLogger(),
      pollIntervalMs: 20,
    });
    try {
      expect(auth.verify('file-token-aaaaaaaaaaaa')).toBe(true);
      expect(auth.verify('env-token-bbbbbbbbbbbbbb')).toBe(true);
      expect(auth.verify('file-token-aaaaaaaaaaab')).toBe(false);
      expect(auth.verify('')).toBe(false);
      expect(auth.verify(undefined)).toBe(false);
      writeFileSync(file, 'rotated-token-cccccccccc\n');
      await waitUntil(() => auth.verify('rotated-token-cccccccccc'), 3000);
      expect(auth.verify('file-token-aaaaaaaaaaaa')).toBe(false);
      expect(auth.verify('env-token-bbbbbbbbbbbbbb')).toBe(true);
    } finally {
      auth.close();
    }
  });

  it('refuses to start without tokens unless anonymous access is allowed', () => {
    expect(() => new BearerAuth({ logger: memoryLogger() })).toThrow(/no API tokens/);
    const logger = memoryLogger();
    const open = new BearerAuth({ allowAnonymous: true, logger });
    expect(open.verify(undefined)).toBe(true);
    expect(logger.lines.some((l) => l.level === 'warn')).toBe(true);
  });

  it('fails at start when the token file cannot be read', () => {
    expect(() => new BearerAuth({ tokenFile: '/nonexistent/tokens', logger: memoryLogger() })).toThrow(
      /cannot read the token file/,
    );
  });
});

describe('connection tokens', () => {
  const tokens = new ConnectionTokens(Buffer.from('a-signing-secret-of-some-length'));
  const withToken = (name: string, t = tokens) => {
    const issued = t.issue('spawner', name);
    const b = newBackend(
      name,
      'spawner',
      { template: { containers: [{ name: 'app', image: 'x' }] } },
      {
        annotations: { [ANNOTATION_TOKEN_NONCE]: issued.nonce, [ANNOTATION_TOKEN_HASH]: issued.hash },
      },
    );
    return { b, issued };
  };

  it('is an HMAC of namespace, name and a random nonce; only its hash is stored', () => {
    const { b, issued } = withToken('spawner-a');
    expect(issued.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(issued.hash).toBe(sha256Hex(issued.token));
    expect(tokens.derive('spawner', 'spawner-a', issued.nonce)).toBe(issued.token);
    expect(tokens.tokenFor(b)).toBe(issued.token);
    expect(JSON.stringify(b)).not.toContain(issued.token);
    // The same name twice (a replaced keyed backend) gets a different token.
    expect(tokens.issue('spawner', 'spawner-a').token).not.toBe(issued.token);
  });

  it("one backend's token does not open another", () => {
    const a = withToken('spawner-a');
    const b = withToken('spawner-b');
    expect(backendTokenValid(a.b, a.issued.token)).toBe(true);
    expect(backendTokenValid(b.b, a.issued.token)).toBe(false);
    expect(backendTokenValid(a.b, undefined)).toBe(false);
    expect(verifyTokenHash('not-hex', a.issued.token)).toBe(false);
  });

  it('cannot re-derive a token issued under another secret (no token in URLs then)', () => {
    const { b } = withToken('spawner-a', new ConnectionTokens(Buffer.from('another-secret-entirely-000')));
    expect(tokens.tokenFor(b)).toBeUndefined();
  });

  it('a backend without a token hash is not opened by any token', () => {
    const b = newBackend('spawner-x', 'spawner', { template: { containers: [{ name: 'app', image: 'x' }] } });
    expect(backendTokenValid(b, 'anything')).toBe(false);
    expect(tokens.tokenFor(b)).toBeUndefined();
  });
});
