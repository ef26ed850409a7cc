/**
 * The optional per-backend connection secret. The sidecar knows only the token's SHA-256; a
 * request proves it knows the token by carrying it in one of:
 *
 * - header `X-Spawner-Token` (for programmatic clients),
 * - cookie `spawner_token` (what browsers send on later requests and WebSocket upgrades),
 * - query parameter `spawner_token` (the URL handed to the browser; stripped before proxying),
 * - `Authorization: Bearer <token>`, accepted only when it is this token, because the app may use
 *   the Authorization header for its own credentials.
 *
 * The token is removed from whatever carried it before the request reaches the app: the app never
 * needs it, and an app that logs URLs, headers or cookies must not leak it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * What the gate reads and rewrites: an `http.IncomingMessage` fits, and so does the relay's view
 * of a parsed request head (only the headers the token can travel in, lowercase names).
 */
export interface TokenRequest {
  method?: string;
  url?: string;
  headers: Record<string, string | string[] | undefined>;
}

export const TOKEN_PARAM = 'spawner_token';
export const TOKEN_COOKIE = 'spawner_token';
export const TOKEN_HEADER = 'x-spawner-token';

/** Longer values are not tokens; refusing them early bounds the hashing work per request. */
const MAX_TOKEN_LENGTH = 1024;
/** Characters safe in a cookie Path attribute. */
const SAFE_PATH = /^\/[A-Za-z0-9._~%/-]*$/;

export type Admission = { ok: false } | { ok: true; setCookie?: string };

function decode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}

/** Removes `spawner_token` from the query, keeping every other parameter byte for byte. */
export function takeQueryToken(url: string): { url: string; tokens: string[] } {
  const q = url.indexOf('?');
  if (q < 0 || !url.includes(TOKEN_PARAM, q)) return { url, tokens: [] };
  const hashAt = url.indexOf('#', q);
  const query = url.slice(q + 1, hashAt < 0 ? undefined : hashAt);
  const kept: string[] = [];
  const tokens: string[] = [];
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const name = decode(eq < 0 ? part : part.slice(0, eq));
    if (name === TOKEN_PARAM) tokens.push(eq < 0 ? '' : decode(part.slice(eq + 1)));
    else kept.push(part);
  }
  const rest = kept.join('&');
  return { url: url.slice(0, q) + (rest === '' ? '' : `?${rest}`), tokens };
}

/** Removes every `spawner_token` cookie; returns the remaining header (or undefined) and the values. */
export function takeCookieTokens(header: string): { header: string | undefined; tokens: string[] } {
  if (!header.includes(TOKEN_COOKIE)) return { header, tokens: [] };
  const kept: string[] = [];
  const tokens: string[] = [];
  for (const raw of header.split(';')) {
    const pair = raw.trim();
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === TOKEN_COOKIE) {
      let value = pair.slice(eq + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      tokens.push(decode(value));
    } else {
      kept.push(pair);
    }
  }
  return { header: kept.length === 0 ? undefined : kept.join('; '), tokens };
}

function bearer(header: string | undefined): string | undefined {
  if (!header || header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  return header.slice(7).trim();
}

/** The cookie that lets a browser's later requests and upgrades through. */
export function tokenCookie(token: string, req: TokenRequest): string {
  const prefix = req.headers['x-forwarded-prefix'];
  const path = typeof prefix === 'string' && SAFE_PATH.test(prefix) ? prefix : '/';
  const proto = req.headers['x-forwarded-proto'];
  const secure = typeof proto === 'string' && proto.split(',')[0].trim().toLowerCase() === 'https';
  return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=${path}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

export class TokenGate {
  private readonly expected: Buffer;

  constructor(tokenSha256Hex: string) {
    this.expected = Buffer.from(tokenSha256Hex, 'hex');
    if (this.expected.length !== 32) throw new Error('tokenSha256 must be 64 hex digits');
  }

  matches(candidate: string | undefined): boolean {
    if (candidate === undefined || candidate === '' || candidate.length > MAX_TOKEN_LENGTH) return false;
    const digest = createHash('sha256').update(candidate, 'utf8').digest();
    return timingSafeEqual(digest, this.expected);
  }

  /**
   * Decides whether `req` may pass and, when it may, strips the token from it. `setCookie` is set
   * when the token came only in the query of a plain GET, so the browser carries it from then on.
   */
  admit(req: TokenRequest, isUpgrade: boolean): Admission {
    const headers = req.headers;
    const header = headers[TOKEN_HEADER];
    const fromHeader = typeof header === 'string' && this.matches(header);

    const cookie = headers.cookie;
    const cookies = typeof cookie === 'string' ? takeCookieTokens(cookie) : undefined;
    const fromCookie = cookies !== undefined && cookies.tokens.some((t) => this.matches(t));

    const query = takeQueryToken(req.url ?? '/');
    const queryToken = query.tokens.find((t) => this.matches(t));

    const authorization = headers.authorization;
    const auth = bearer(typeof authorization === 'string' ? authorization : undefined);
    const fromBearer = !fromHeader && !fromCookie && queryToken === undefined && this.matches(auth);

    if (!fromHeader && !fromCookie && queryToken === undefined && !fromBearer) return { ok: false };

    delete headers[TOKEN_HEADER];
    if (cookies !== undefined && cookies.tokens.length > 0) {
      if (cookies.header === undefined) delete headers.cookie;
      else headers.cookie = cookies.header;
    }
    if (query.tokens.length > 0) req.url = query.url;
    if (fromBearer) delete headers.authorization;

    const plainGet = req.method === 'GET' && !isUpgrade;
    if (queryToken !== undefined && !fromCookie && plainGet) return { ok: true, setCookie: tokenCookie(queryToken, req) };
    return { ok: true };
  }
}
