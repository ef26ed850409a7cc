import {
  bearerToken,
  takeCookieTokens,
  takeQueryToken,
  tokenCookie,
  TokenGate,
  sha256Hex,
  verifyTokenHash,
} from './connection-token';
import { parseRequestHead, rewriteRequestHead, type RequestHead } from './relay/http1';

const TOKEN = 'abc+/=~ü';
const gate = new TokenGate(sha256Hex(TOKEN));

/** A request head as the relay parses it (latin1; the token's UTF-8 bytes as a client sends them). */
function head(target: string, headers: Record<string, string> = {}, method = 'GET'): { text: string; parsed: RequestHead } {
  let text = `${method} ${target} HTTP/1.1\r\nHost: h\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${Buffer.from(value, 'utf8').toString('latin1')}\r\n`;
  const parsed = parseRequestHead(text, true);
  if (typeof parsed === 'number') throw new Error(`unparseable: ${parsed}`);
  return { text, parsed };
}

describe('takeQueryToken', () => {
  it('removes every spawner_token parameter and keeps the others byte for byte', () => {
    expect(takeQueryToken('/a?x=%20+1&spawner_token=t1&y&spawner_token=t%2B2#frag')).toEqual({
      url: '/a?x=%20+1&y',
      tokens: ['t1', 't+2'],
    });
  });

  it('drops the question mark when nothing is left', () => {
    expect(takeQueryToken('/a?spawner_token=t')).toEqual({ url: '/a', tokens: ['t'] });
  });

  it('leaves URLs without the parameter alone', () => {
    expect(takeQueryToken('/spawner_token?a=1')).toEqual({ url: '/spawner_token?a=1', tokens: [] });
    expect(takeQueryToken('/a?my_spawner_token=1')).toEqual({ url: '/a?my_spawner_token=1', tokens: [] });
  });
});

describe('takeCookieTokens', () => {
  it('removes every spawner_token cookie, quoted or not', () => {
    expect(takeCookieTokens('a=1; spawner_token=x; b=2;spawner_token="y%2B"')).toEqual({
      header: 'a=1; b=2',
      tokens: ['x', 'y+'],
    });
  });

  it('reports an empty header when only the token was there', () => {
    expect(takeCookieTokens('spawner_token=x')).toEqual({ header: undefined, tokens: ['x'] });
  });
});

describe('tokenCookie', () => {
  it('is HttpOnly, SameSite=Lax, scoped to a safe path, Secure when asked', () => {
    expect(tokenCookie('t', undefined, false)).toBe('spawner_token=t; Path=/; HttpOnly; SameSite=Lax');
    expect(tokenCookie('t', '/p/b1', true)).toBe('spawner_token=t; Path=/p/b1; HttpOnly; SameSite=Lax; Secure');
    expect(tokenCookie('t', '/x; Domain=evil', false)).toContain('Path=/;');
  });
});

describe('verifyTokenHash', () => {
  it('accepts the token of the hash and nothing else', () => {
    expect(verifyTokenHash(sha256Hex('t1'), 't1')).toBe(true);
    expect(verifyTokenHash(sha256Hex('t1'), 't2')).toBe(false);
    expect(verifyTokenHash(sha256Hex('t1'), '')).toBe(false);
    expect(verifyTokenHash('abcd', 't1')).toBe(false);
  });
});

describe('TokenGate', () => {
  // Tokens travel as UTF-8 on the wire; the head parser reads latin1, so a non-ASCII token is
  // matched in the form a client sends it.
  const wire = Buffer.from(TOKEN, 'utf8').toString('latin1');
  const wireGate = new TokenGate(sha256Hex(wire));

  it('rejects a request without the token or with a wrong one', () => {
    expect(gate.admit(head('/').parsed)).toEqual({ ok: false });
    expect(gate.admit(head('/', { 'X-Spawner-Token': 'nope' }).parsed)).toEqual({ ok: false });
    expect(gate.admit(head('/?spawner_token=').parsed)).toEqual({ ok: false });
    expect(gate.admit(head('/', { 'X-Spawner-Token': 'x'.repeat(5000) }).parsed)).toEqual({ ok: false });
  });

  it('accepts the token from the query of a plain GET and asks for the cookie', () => {
    const result = gate.admit(head(`/p?spawner_token=${encodeURIComponent(TOKEN)}&a=1`).parsed);
    expect(result).toEqual({ ok: true, token: TOKEN, target: '/p?a=1', drop: [], extra: '', setCookie: true });
  });

  it('sets no cookie for upgrades, other methods, or when the cookie already carries it', () => {
    const q = `/p?spawner_token=${encodeURIComponent(TOKEN)}`;
    const upgrade = head(q, { Connection: 'Upgrade', Upgrade: 'websocket' }).parsed;
    expect(gate.admit(upgrade)).toMatchObject({ ok: true, setCookie: false });
    expect(gate.admit(head(q, {}, 'POST').parsed)).toMatchObject({ ok: true, setCookie: false });
    expect(gate.admit(head(q, { Cookie: `spawner_token=${encodeURIComponent(TOKEN)}` }).parsed)).toMatchObject({
      ok: true,
      setCookie: false,
    });
  });

  it('strips the token from wherever it came, keeping a foreign Authorization header', () => {
    const { text, parsed } = head('/?spawner_token=stale', {
      'X-Spawner-Token': TOKEN,
      Cookie: 'spawner_token=old; keep=1',
      Authorization: 'Bearer app-credential',
    });
    const admission = wireGate.admit(parsed);
    if (!admission.ok) throw new Error('refused');
    const out = rewriteRequestHead(text, parsed, { target: admission.target, drop: admission.drop, extra: admission.extra });
    expect(out).toBe(
      'GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer app-credential\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nCookie: keep=1\r\n\r\n',
    );
  });

  it('takes a matching bearer out, and only then', () => {
    const { text, parsed } = head('/', { Authorization: `Bearer ${TOKEN}` });
    const admission = wireGate.admit(parsed);
    if (!admission.ok) throw new Error('refused');
    expect(rewriteRequestHead(text, parsed, { drop: admission.drop })).not.toContain('Authorization');
  });

  it('refuses a tokenSha256 that is not 32 bytes', () => {
    expect(() => new TokenGate('abcd')).toThrow(/64 hex digits/);
  });
});

describe('bearerToken', () => {
  test.each([
    ['Bearer abc', 'abc'],
    ['bearer abc', 'abc'],
    ['BEARER   abc  ', 'abc'],
    ['Bearer a.b-c_d~e+f/g==', 'a.b-c_d~e+f/g=='],
  ])('%j carries %j', (header, token) => expect(bearerToken(header)).toBe(token));

  test.each([undefined, '', 'Bearer', 'Bearer ', 'Bearer a b', 'Basic abc', 'Bearerabc', ' Bearer abc'])(
    '%j carries no credential',
    (header) => expect(bearerToken(header)).toBeUndefined(),
  );
});
