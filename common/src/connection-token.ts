/**
 * The per-backend connection token on the wire: where it may travel, how it is read, and how it
 * is taken out before a request reaches the app. The one home of these rules: the entry point and
 * the sidecar both admit requests through `TokenGate`, so a token is accepted or refused the same
 * way at either hop.
 *
 * A request proves it knows the token by carrying it in one of:
 * - header `X-Spawner-Token` (programmatic clients; how the entry point hands it to the sidecar),
 * - cookie `spawner_token`, quoted or not, percent-encoded or not (what browsers send on later
 *   requests and WebSocket upgrades),
 * - query parameter `spawner_token` (the URL handed to the browser),
 * - `Authorization: Bearer <token>`, accepted only when it is this token, because the app may use
 *   the Authorization header for its own credentials.
 *
 * The token is removed from whatever carried it: the app never needs it, and an app that logs
 * URLs, headers or cookies must not leak it. Verifiers hold only SHA-256(token).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { LineRange, RequestHead } from './relay/http1';

export const TOKEN_PARAM = 'spawner_token';
export const TOKEN_COOKIE = 'spawner_token';
/** Lowercase, as the head parser reports names. */
export const TOKEN_HEADER = 'x-spawner-token';

/** Longer values are not tokens; refusing them early bounds the hashing work per request. */
const MAX_TOKEN_LENGTH = 1024;
/** Characters safe in a cookie Path attribute. */
const SAFE_PATH = /^\/[A-Za-z0-9._~%/-]*$/;

export const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

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
  // Parameter names are compared decoded (`spawner%5Ftoken` is the token too): only a query
  // without the name and without any escape can skip the parsing.
  if (q < 0 || (!url.includes(TOKEN_PARAM, q) && !url.includes('%', q))) return { url, tokens: [] };
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

/**
 * The credential of an `Authorization: Bearer ...` header value (RFC 6750: the scheme, spaces, one
 * token without spaces): the one parser for the API's tokens, backend tokens at the sidecar and the
 * operator's assign secret. Anything else is no credential (the sidecar then leaves the header to
 * the app).
 */
export function bearerToken(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Bearer +([^ ]+) *$/i.exec(header);
  return m ? m[1] : undefined;
}

/** The cookie that lets a browser's later requests and upgrades through, scoped to `path`. */
export function tokenCookie(token: string, path: string | undefined, secure: boolean): string {
  const scope = path !== undefined && SAFE_PATH.test(path) ? path : '/';
  return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=${scope}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** Whether the first X-Forwarded-Proto value says https. */
export const forwardedHttps = (proto: string | undefined): boolean =>
  proto !== undefined && proto.split(',')[0].trim().toLowerCase() === 'https';

/** Constant-time check of a presented token against a stored SHA-256 hex digest. */
export function verifyTokenHash(storedHex: string, presented: string | undefined): boolean {
  if (presented === undefined || presented === '' || presented.length > MAX_TOKEN_LENGTH) return false;
  const expected = Buffer.from(storedHex, 'hex');
  if (expected.length !== 32) return false;
  return timingSafeEqual(expected, createHash('sha256').update(presented, 'utf8').digest());
}

/** A request with every copy of the token taken out, and the copies it carried. */
export interface TokenCarriers {
  /** The request-target without `spawner_token`. */
  target: string;
  /** Field lines to leave out (the token's header and cookie lines). */
  drop: LineRange[];
  /** Field lines to add back (the Cookie header without the token), CRLF-terminated. */
  extra: string;
  header: string | undefined;
  cookies: string[];
  query: string[];
  /** An `Authorization: Bearer` value (maybe the app's own credential) and its lines. */
  bearer: string | undefined;
  bearerLines: LineRange[];
}

/**
 * Takes every copy of the token out of a parsed head (`parseRequestHead(head, true)`) and its
 * target, whether or not any is valid: a relay never passes a token on by accident.
 */
export function takeTokens(parsed: RequestHead, target: string = parsed.target): TokenCarriers {
  const headers = parsed.tokenHeaders ?? {};
  const lines = parsed.tokenLines ?? {};
  const drop: LineRange[] = [...(lines[TOKEN_HEADER] ?? [])];
  let extra = '';
  const cookie = headers.cookie;
  const cookies = cookie !== undefined ? takeCookieTokens(cookie) : undefined;
  if (cookies !== undefined && cookies.tokens.length > 0) {
    drop.push(...(lines.cookie ?? []));
    if (cookies.header !== undefined) extra += `Cookie: ${cookies.header}\r\n`;
  }
  const query = takeQueryToken(target);
  return {
    target: query.url,
    drop,
    extra,
    header: headers[TOKEN_HEADER],
    cookies: cookies?.tokens ?? [],
    query: query.tokens,
    bearer: bearerToken(headers.authorization),
    bearerLines: lines.authorization ?? [],
  };
}

/** What a request becomes once its token is taken out. */
export type Admission =
  | { ok: false }
  | {
      ok: true;
      /** The token that opened the gate. */
      token: string;
      target: string;
      drop: LineRange[];
      extra: string;
      /** The token came only in the query of a plain GET: answer with the cookie. */
      setCookie: boolean;
    };

export class TokenGate {
  private readonly expected: Buffer;

  constructor(readonly sha256: string) {
    this.expected = Buffer.from(sha256, 'hex');
    if (this.expected.length !== 32) throw new Error('tokenSha256 must be 64 hex digits');
  }

  matches(candidate: string | undefined): boolean {
    if (candidate === undefined || candidate === '' || candidate.length > MAX_TOKEN_LENGTH) return false;
    return timingSafeEqual(createHash('sha256').update(candidate, 'utf8').digest(), this.expected);
  }

  /**
   * Decides whether the request may pass, from its target and the headers the parser collected
   * (`parseRequestHead(head, true)`). An admitted request is told what to take out.
   */
  admit(parsed: RequestHead, target: string = parsed.target): Admission {
    const carriers = takeTokens(parsed, target);
    const fromHeader = this.matches(carriers.header) ? carriers.header : undefined;
    const fromCookie = carriers.cookies.find((t) => this.matches(t));
    const fromQuery = carriers.query.find((t) => this.matches(t));
    // The bearer is looked at last, and taken out only when it is what opened the gate: the app
    // may use Authorization for credentials of its own.
    const token = fromHeader ?? fromCookie ?? fromQuery ?? (this.matches(carriers.bearer) ? carriers.bearer : undefined);
    if (token === undefined) return { ok: false };
    const drop = (fromHeader ?? fromCookie ?? fromQuery) ? carriers.drop : [...carriers.drop, ...carriers.bearerLines];
    const plainGet = parsed.method === 'GET' && parsed.upgrade === undefined;
    return {
      ok: true,
      token,
      target: carriers.target,
      drop,
      extra: carriers.extra,
      setCookie: fromQuery !== undefined && fromCookie === undefined && plainGet,
    };
  }
}
