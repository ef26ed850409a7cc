import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { takeCookieTokens, takeQueryToken, tokenCookie, TokenGate } from './token';

const TOKEN = 'abc+/=~ü';
const gate = new TokenGate(createHash('sha256').update(TOKEN).digest('hex'));

const fakeRequest = (url: string, headers: Record<string, string> = {}, method = 'GET'): IncomingMessage =>
  ({ url, method, headers: { ...headers } }) as unknown as IncomingMessage;

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
  it('is HttpOnly, SameSite=Lax, scoped to the forwarded prefix, Secure behind https', () => {
    expect(tokenCookie('t', fakeRequest('/'))).toBe('spawner_token=t; Path=/; HttpOnly; SameSite=Lax');
    expect(tokenCookie('t', fakeRequest('/', { 'x-forwarded-prefix': '/p/b1', 'x-forwarded-proto': 'https' }))).toBe(
      'spawner_token=t; Path=/p/b1; HttpOnly; SameSite=Lax; Secure',
    );
    expect(tokenCookie('t', fakeRequest('/', { 'x-forwarded-prefix': '/x; Domain=evil' }))).toContain('Path=/;');
  });
});

describe('TokenGate', () => {
  it('rejects a request without the token or with a wrong one', () => {
    expect(gate.admit(fakeRequest('/'), false)).toEqual({ ok: false });
    expect(gate.admit(fakeRequest('/', { 'x-spawner-token': 'nope' }), false)).toEqual({ ok: false });
    expect(gate.admit(fakeRequest('/?spawner_token='), false)).toEqual({ ok: false });
    expect(gate.admit(fakeRequest('/', { 'x-spawner-token': 'x'.repeat(5000) }), false)).toEqual({ ok: false });
  });

  it('accepts the token from the query of a plain GET and asks for the cookie', () => {
    const req = fakeRequest(`/p?spawner_token=${encodeURIComponent(TOKEN)}`);
    const result = gate.admit(req, false);
    expect(result).toEqual({ ok: true, setCookie: `spawner_token=${encodeURIComponent(TOKEN)}; Path=/; HttpOnly; SameSite=Lax` });
    expect(req.url).toBe('/p');
  });

  it('sets no cookie for upgrades, other methods, or when the cookie already carries it', () => {
    const q = `/p?spawner_token=${encodeURIComponent(TOKEN)}`;
    expect(gate.admit(fakeRequest(q), true)).toEqual({ ok: true });
    expect(gate.admit(fakeRequest(q, {}, 'POST'), false)).toEqual({ ok: true });
    expect(gate.admit(fakeRequest(q, { cookie: `spawner_token=${encodeURIComponent(TOKEN)}` }), false)).toEqual({ ok: true });
  });

  it('strips the token from wherever it came, keeping a foreign Authorization header', () => {
    const req = fakeRequest('/?spawner_token=stale', {
      'x-spawner-token': TOKEN,
      cookie: 'spawner_token=old; keep=1',
      authorization: 'Bearer app-credential',
    });
    expect(gate.admit(req, false)).toEqual({ ok: true });
    expect(req.url).toBe('/');
    expect(req.headers).toEqual({ cookie: 'keep=1', authorization: 'Bearer app-credential' });
  });

  it('refuses a tokenSha256 that is not 32 bytes', () => {
    expect(() => new TokenGate('abcd')).toThrow(/64 hex digits/);
  });
});
