/**
 * Just enough HTTP/1.1 (RFC 9112) for a connection-level relay: request and response heads, and
 * the framing of message bodies (Content-Length, chunked, or until close), observed incrementally
 * while the bytes themselves are passed on untouched.
 *
 * Request heads are parsed strictly: the sidecar must never see a request boundary where the app
 * sees another (request smuggling), so anything the grammar does not allow (bare LF, whitespace
 * before a colon, obs-fold, control characters, both Content-Length and Transfer-Encoding, a
 * transfer coding other than a final `chunked`, conflicting lengths) is refused with 400 before
 * it reaches the app. What the sidecar accepts, a conforming parser (the app's) reads the same way.
 *
 * Response heads come from the app the sidecar sits in front of; they are parsed for their
 * status and framing, with the same line grammar, and an unparseable one fails that connection.
 */

/** Node's default `--max-http-header-size`; a longer request head gets 431. */
export const MAX_REQUEST_HEAD = 16 * 1024;
/** A response head longer than this is treated as a broken app (502). */
export const MAX_RESPONSE_HEAD = 64 * 1024;
/** Trailer section of a chunked body. */
const MAX_TRAILERS = 16 * 1024;
/** 12 hex digits: 256 TiB, far beyond any chunk, and exact in a double. */
const MAX_CHUNK_SIZE_DIGITS = 12;

export const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** `method SP request-target SP HTTP/1.x CRLF`; the target has no whitespace or controls. */
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP\/1\.([01])\r\n/;
/** Every field line: `token ":" value CRLF`, value without controls (HTAB allowed). */
const FIELD_LINES = /(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*$/y;

/** `ows-trimmed` per RFC 9110 (space and tab only; String#trim would also eat obs-text 0xA0). */
function trimOws(s: string, from: number, to: number): string {
  while (from < to) {
    const c = s.charCodeAt(from);
    if (c !== 32 && c !== 9) break;
    from++;
  }
  while (to > from) {
    const c = s.charCodeAt(to - 1);
    if (c !== 32 && c !== 9) break;
    to--;
  }
  return s.slice(from, to);
}

/**
 * Case-insensitive comparison of `s[at, at + lower.length)` with `lower` (lowercase letters and
 * '-' only). `c | 0x20` lowercases ASCII letters and leaves '-' alone; no other field-name
 * character maps onto a lowercase letter or '-'.
 */
function nameIs(s: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((s.charCodeAt(at + i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Whether a comma-separated header value contains `token` (case-insensitive). */
export function hasToken(value: string, token: string): boolean {
  const lower = value.toLowerCase();
  let at = lower.indexOf(token);
  while (at >= 0) {
    const before = at === 0 ? 44 : lower.charCodeAt(at - 1);
    const afterAt = at + token.length;
    const after = afterAt === lower.length ? 44 : lower.charCodeAt(afterAt);
    if ((before === 44 || before === 32 || before === 9) && (after === 44 || after === 32 || after === 9)) return true;
    at = lower.indexOf(token, at + 1);
  }
  return false;
}

/** Strict decimal Content-Length; -1 when invalid. */
function parseLength(value: string): number {
  if (value.length === 0 || value.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** Whether a Transfer-Encoding list ends with `chunked`, and names it only there. */
function chunkedIsFinal(list: string): boolean {
  const codings = list.toLowerCase().split(',');
  for (let i = 0; i < codings.length; i++) {
    const coding = trimOws(codings[i], 0, codings[i].length);
    if (coding === 'chunked') return i === codings.length - 1;
  }
  return false;
}

/** A removed field line: [start, end) in the head string, end after its CRLF. */
export type LineRange = [number, number];

export interface RequestHead {
  method: string;
  /** The request-target as sent (origin-form normally). */
  target: string;
  /** Offset of the target in the head string (for rewriting it). */
  targetAt: number;
  /** HTTP/1.x minor version. */
  minor: number;
  /** Content-Length, or -1. */
  contentLength: number;
  chunked: boolean;
  /** The client wants the connection closed after this exchange (`close`, or HTTP/1.0 without keep-alive). */
  close: boolean;
  /** The Upgrade header's value when this is an upgrade request (Connection names `upgrade`). */
  upgrade: string | undefined;
  expectContinue: boolean;
  host: string | undefined;
  /** X-Forwarded-For as received (lines joined with ", "), and where its lines are. */
  forwardedFor: string | undefined;
  forwardedForLines: LineRange[] | undefined;
  hasForwardedProto: boolean;
  hasForwardedHost: boolean;
  /**
   * Only collected when asked for (`withRouting`): the headers a relay may take out or replace
   * (where the connection token travels, X-Forwarded-Proto/-Prefix, X-Spawner-Backend[-Uid], X-Spawner-Key),
   * lowercase names, and their lines.
   */
  tokenHeaders: Record<string, string> | undefined;
  tokenLines: Record<string, LineRange[]> | undefined;
}

function collect(head: RequestHead, name: string, value: string, line: LineRange): void {
  const headers = (head.tokenHeaders ??= {});
  const lines = (head.tokenLines ??= {});
  const prior = headers[name];
  // Node's joining rules for these: cookies with "; ", the first Authorization wins, others ", ".
  if (prior === undefined) headers[name] = value;
  else if (name === 'cookie') headers[name] = `${prior}; ${value}`;
  else if (name !== 'authorization') headers[name] = `${prior}, ${value}`;
  (lines[name] ??= []).push(line);
}

/**
 * Parses a request head: `head` is the latin1 text from the request line up to and including the
 * CRLF of the last field line (the empty line excluded). Returns the status to refuse it with
 * (400, 505) when it is not acceptable.
 */
export function parseRequestHead(head: string, withRouting: boolean): RequestHead | number {
  const line = REQUEST_LINE.exec(head);
  if (line === null) return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ \S+ HTTP\/\d\.\d\r\n/.test(head) ? 505 : 400;
  let pos = line[0].length;
  FIELD_LINES.lastIndex = pos;
  if (!FIELD_LINES.test(head)) return 400;
  const minor = line[3] === '1' ? 1 : 0;
  const req: RequestHead = {
    method: line[1],
    target: line[2],
    targetAt: line[1].length + 1,
    minor,
    contentLength: -1,
    chunked: false,
    close: false,
    upgrade: undefined,
    expectContinue: false,
    host: undefined,
    forwardedFor: undefined,
    forwardedForLines: undefined,
    hasForwardedProto: false,
    hasForwardedHost: false,
    tokenHeaders: undefined,
    tokenLines: undefined,
  };
  let connClose = false;
  let connKeepAlive = false;
  let connUpgrade = false;
  let upgrade: string | undefined;
  let transferEncoding: string | undefined;
  let hosts = 0;
  while (pos < head.length) {
    const colon = head.indexOf(':', pos);
    const eol = head.indexOf('\r\n', colon);
    const n = colon - pos;
    // Switch on the name's length first: most fields are none of these and cost one comparison.
    switch (n) {
      case 4:
        if (nameIs(head, pos, 'host')) {
          req.host = trimOws(head, colon + 1, eol);
          hosts++;
        }
        break;
      case 6:
        if (nameIs(head, pos, 'expect')) {
          if (trimOws(head, colon + 1, eol).toLowerCase() === '100-continue') req.expectContinue = true;
        } else if (withRouting && nameIs(head, pos, 'cookie')) {
          collect(req, 'cookie', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        }
        break;
      case 7:
        if (nameIs(head, pos, 'upgrade')) upgrade = trimOws(head, colon + 1, eol);
        break;
      case 10:
        if (nameIs(head, pos, 'connection')) {
          const value = head.slice(colon + 1, eol);
          if (hasToken(value, 'close')) connClose = true;
          if (hasToken(value, 'keep-alive')) connKeepAlive = true;
          if (hasToken(value, 'upgrade')) connUpgrade = true;
        }
        break;
      case 13:
        if (withRouting && nameIs(head, pos, 'authorization')) {
          collect(req, 'authorization', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        } else if (withRouting && nameIs(head, pos, 'x-spawner-key')) {
          collect(req, 'x-spawner-key', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        }
        break;
      case 14:
        if (nameIs(head, pos, 'content-length')) {
          // A second Content-Length, even an equal one, is refused (as Node's parser does).
          if (req.contentLength >= 0) return 400;
          req.contentLength = parseLength(trimOws(head, colon + 1, eol));
          if (req.contentLength < 0) return 400;
        }
        break;
      case 15:
        if (nameIs(head, pos, 'x-forwarded-for')) {
          const value = trimOws(head, colon + 1, eol);
          req.forwardedFor = req.forwardedFor === undefined ? value : `${req.forwardedFor}, ${value}`;
          (req.forwardedForLines ??= []).push([pos, eol + 2]);
        } else if (withRouting && nameIs(head, pos, 'x-spawner-token')) {
          collect(req, 'x-spawner-token', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        }
        break;
      case 16:
        if (nameIs(head, pos, 'x-forwarded-host')) req.hasForwardedHost = true;
        break;
      case 17:
        if (nameIs(head, pos, 'transfer-encoding')) {
          const value = trimOws(head, colon + 1, eol);
          transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
        } else if (nameIs(head, pos, 'x-forwarded-proto')) {
          req.hasForwardedProto = true;
          if (withRouting) collect(req, 'x-forwarded-proto', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        } else if (withRouting && nameIs(head, pos, 'x-spawner-backend')) {
          collect(req, 'x-spawner-backend', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        }
        break;
      case 18:
        if (withRouting && nameIs(head, pos, 'x-forwarded-prefix')) {
          collect(req, 'x-forwarded-prefix', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        }
        break;
      case 21:
        if (withRouting && nameIs(head, pos, 'x-spawner-backend-uid')) {
          collect(req, 'x-spawner-backend-uid', trimOws(head, colon + 1, eol), [pos, eol + 2]);
        }
        break;
    }
    pos = eol + 2;
  }
  // RFC 9112 §3.2: exactly one Host in HTTP/1.1 (and at most one in 1.0).
  if (hosts > 1 || (hosts === 0 && minor === 1)) return 400;
  if (transferEncoding !== undefined) {
    // Both framings, a final coding other than chunked, or chunked in HTTP/1.0: the length cannot
    // be known for sure, so the request is refused (RFC 9112 §6.1, §6.3).
    if (req.contentLength >= 0 || minor === 0 || !chunkedIsFinal(transferEncoding)) return 400;
    req.chunked = true;
  }
  req.close = connClose || (minor === 0 && !connKeepAlive);
  if (connUpgrade && upgrade !== undefined) req.upgrade = upgrade;
  return req;
}

export interface ResponseHead {
  status: number;
  minor: number;
  contentLength: number;
  chunked: boolean;
  /** Transfer-Encoding without a final chunked: the body runs until the app closes. */
  untilClose: boolean;
  /** The app closes the connection after this response. */
  close: boolean;
  /** The app's `Keep-Alive: timeout=N` hint in ms, or 0. */
  keepAliveMs: number;
}

let lastKeepAlive = '';
let lastKeepAliveMs = 0;

/** `Keep-Alive: timeout=N` in ms (the app sends the same value every time: parsed once). */
function keepAliveTimeout(value: string): number {
  if (value !== lastKeepAlive) {
    const m = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i.exec(value);
    lastKeepAlive = value;
    lastKeepAliveMs = m === null ? 0 : Number(m[1]) * 1000;
  }
  return lastKeepAliveMs;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Connection header flags: the usual single values without allocating, lists the long way. */
function connectionFlags(head: string, from: number, to: number): number {
  const value = trimOws(head, from, to);
  if (value.length === 10 && nameIs(value, 0, 'keep-alive')) return CONN_KEEP_ALIVE;
  if (value.length === 5 && nameIs(value, 0, 'close')) return CONN_CLOSE;
  return (hasToken(value, 'close') ? CONN_CLOSE : 0) | (hasToken(value, 'keep-alive') ? CONN_KEEP_ALIVE : 0);
}
const CONN_CLOSE = 1;
const CONN_KEEP_ALIVE = 2;

/**
 * Parses a response head (same text convention as requests); undefined when it is malformed.
 * Lighter than the request side (the app is the sidecar's own backend, and a broken response
 * only affects the connection it came on), but every field line must still be `name:value`
 * without whitespace around the name, so framing fields are never missed.
 */
export function parseResponseHead(head: string): ResponseHead | undefined {
  // HTTP/1.x SP 3DIGIT (SP reason)? CRLF
  if (head.length < 14 || !head.startsWith('HTTP/1.') || head.charCodeAt(8) !== 32) return undefined;
  const minorChar = head.charCodeAt(7);
  const d0 = head.charCodeAt(9);
  const d1 = head.charCodeAt(10);
  const d2 = head.charCodeAt(11);
  if ((minorChar !== 48 && minorChar !== 49) || d0 < 49 || d0 > 57 || !isDigit(d1) || !isDigit(d2)) return undefined;
  const after = head.charCodeAt(12);
  if (after !== 32 && after !== 13) return undefined;
  const lineEnd = head.indexOf('\r\n', 12);
  const res: ResponseHead = {
    status: (d0 - 48) * 100 + (d1 - 48) * 10 + (d2 - 48),
    minor: minorChar - 48,
    contentLength: -1,
    chunked: false,
    untilClose: false,
    close: false,
    keepAliveMs: 0,
  };
  let conn = 0;
  let transferEncoding: string | undefined;
  let pos = lineEnd + 2;
  while (pos < head.length) {
    const eol = head.indexOf('\r\n', pos);
    const colon = head.indexOf(':', pos);
    if (colon <= pos || colon > eol || head.charCodeAt(pos) <= 32 || head.charCodeAt(colon - 1) <= 32) return undefined;
    switch (colon - pos) {
      case 10:
        if (nameIs(head, pos, 'connection')) {
          conn |= connectionFlags(head, colon + 1, eol);
        } else if (nameIs(head, pos, 'keep-alive')) {
          res.keepAliveMs = keepAliveTimeout(head.slice(colon + 1, eol));
        }
        break;
      case 14:
        if (nameIs(head, pos, 'content-length')) {
          const n = parseLength(trimOws(head, colon + 1, eol));
          if (n < 0 || (res.contentLength >= 0 && n !== res.contentLength)) return undefined;
          res.contentLength = n;
        }
        break;
      case 17:
        if (nameIs(head, pos, 'transfer-encoding')) {
          const value = trimOws(head, colon + 1, eol);
          transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
        }
        break;
    }
    pos = eol + 2;
  }
  if (transferEncoding !== undefined) {
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
    res.contentLength = -1;
    if (chunkedIsFinal(transferEncoding)) res.chunked = true;
    else res.untilClose = true;
  } else if (res.contentLength < 0) {
    res.untilClose = true;
  }
  res.close = (conn & CONN_CLOSE) !== 0 || (res.minor === 0 && (conn & CONN_KEEP_ALIVE) === 0);
  return res;
}

/** Responses that never have a body, whatever their headers say (RFC 9112 §6.3). */
export function responseHasNoBody(status: number, requestMethodIsHead: boolean): boolean {
  return requestMethodIsHead || status === 204 || status === 304 || status < 200;
}

// Chunked-body states.
const C_SIZE = 0;
const C_EXT = 1;
const C_SIZE_LF = 2;
const C_DATA = 3;
const C_DATA_CR = 4;
const C_DATA_LF = 5;
const C_TRAILER_START = 6;
const C_TRAILER_LINE = 7;
const C_TRAILER_LF = 8;
const C_END_LF = 9;

const M_LENGTH = 0;
const M_CHUNKED = 1;
const M_UNTIL_CLOSE = 2;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

/**
 * Follows one message body through the byte stream without copying it: `advance` says where the
 * body ends in a chunk (or that it goes on), checking chunked framing on the way. Only chunk-size
 * lines and trailers are looked at byte by byte; data is skipped by arithmetic.
 */
export class BodyFramer {
  done = true;
  error = false;
  private mode = M_LENGTH;
  private remaining = 0;
  private state = C_SIZE;
  private digits = 0;
  private trailerBytes = 0;

  /** A body of `length` bytes (0: none). */
  length(length: number): void {
    this.mode = M_LENGTH;
    this.remaining = length;
    this.done = length === 0;
    this.error = false;
  }

  chunked(): void {
    this.mode = M_CHUNKED;
    this.state = C_SIZE;
    this.remaining = 0;
    this.digits = 0;
    this.trailerBytes = 0;
    this.done = false;
    this.error = false;
  }

  /** A body that ends when the connection does (responses only). */
  untilClose(): void {
    this.mode = M_UNTIL_CLOSE;
    this.done = false;
    this.error = false;
  }

  get endsWithClose(): boolean {
    return this.mode === M_UNTIL_CLOSE && !this.done;
  }

  /** Consumes body bytes of `buf[pos, end)`; returns where the body stopped (end when it goes on). */
  advance(buf: Buffer, pos: number, end: number): number {
    if (this.mode === M_LENGTH) {
      pos = this.consume(pos, end);
      if (this.remaining > 0) return end;
      this.done = true;
      return pos;
    }
    if (this.mode === M_UNTIL_CLOSE) return end;
    return this.advanceChunked(buf, pos, end);
  }

  /** The connection closed: whether that ended the body properly. */
  closed(): boolean {
    if (this.mode === M_UNTIL_CLOSE && !this.done) {
      this.done = true;
      return true;
    }
    return this.done;
  }

  /** Takes up to `remaining` bytes of `[pos, end)`; returns the position after them. */
  private consume(pos: number, end: number): number {
    const taken = Math.min(end - pos, this.remaining);
    this.remaining -= taken;
    return pos + taken;
  }

  private advanceChunked(buf: Buffer, pos: number, end: number): number {
    while (pos < end) {
      switch (this.state) {
        case C_DATA: {
          pos = this.consume(pos, end);
          if (this.remaining > 0) return end;
          this.state = C_DATA_CR;
          continue;
        }
        case C_SIZE: {
          const c = buf[pos++];
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) return this.fail(pos);
            this.remaining = this.remaining * 16 + v;
          } else if (this.digits === 0) {
            return this.fail(pos);
          } else if (c === 59 /* ; */) {
            this.state = C_EXT;
          } else if (c === 13) {
            this.state = C_SIZE_LF;
          } else {
            return this.fail(pos);
          }
          continue;
        }
        case C_EXT: {
          const c = buf[pos++];
          if (c === 13) this.state = C_SIZE_LF;
          else if ((c < 32 && c !== 9) || c === 127) return this.fail(pos);
          continue;
        }
        case C_SIZE_LF:
          if (buf[pos++] !== 10) return this.fail(pos);
          this.digits = 0;
          this.state = this.remaining === 0 ? C_TRAILER_START : C_DATA;
          continue;
        case C_DATA_CR:
          if (buf[pos++] !== 13) return this.fail(pos);
          this.state = C_DATA_LF;
          continue;
        case C_DATA_LF:
          if (buf[pos++] !== 10) return this.fail(pos);
          this.state = C_SIZE;
          continue;
        case C_TRAILER_START: {
          const c = buf[pos++];
          if (c === 13) this.state = C_END_LF;
          else if (c < 33 || c === 127 || c === 58) return this.fail(pos);
          else this.state = C_TRAILER_LINE;
          continue;
        }
        case C_TRAILER_LINE: {
          const c = buf[pos++];
          if (++this.trailerBytes > MAX_TRAILERS) return this.fail(pos);
          if (c === 13) this.state = C_TRAILER_LF;
          else if ((c < 32 && c !== 9) || c === 127) return this.fail(pos);
          continue;
        }
        case C_TRAILER_LF:
          if (buf[pos++] !== 10) return this.fail(pos);
          this.state = C_TRAILER_START;
          continue;
        case C_END_LF:
          if (buf[pos++] !== 10) return this.fail(pos);
          this.done = true;
          return pos;
      }
    }
    return end;
  }

  private fail(pos: number): number {
    this.error = true;
    return pos;
  }
}

/** How a relay changes a request head on its way to the upstream. */
export interface HeadRewrite {
  /** The request-target to send (default: as received). */
  target?: string;
  /** Field lines to leave out. */
  drop?: LineRange[];
  /** Field lines to add, each ending in CRLF. */
  extra?: string;
  /** The peer's address, appended to X-Forwarded-For (the received lines become one). */
  remote?: string;
}

/**
 * The head as the upstream gets it: target replaced, lines dropped, X-Forwarded-For appended to,
 * X-Forwarded-Proto and -Host set when absent, `extra` added; ends with the empty line. Lines not
 * named are passed byte for byte.
 */
export function rewriteRequestHead(head: string, parsed: RequestHead, change: HeadRewrite): string {
  let out = head;
  const target = change.target ?? parsed.target;
  const xffLines = parsed.forwardedForLines;
  if (change.drop !== undefined || xffLines !== undefined || target !== parsed.target) {
    const removed = [...(change.drop ?? []), ...(xffLines ?? [])].sort((a, b) => a[0] - b[0]);
    const lineEnd = head.indexOf('\r\n') + 2;
    out = head.slice(0, parsed.targetAt) + target + head.slice(parsed.targetAt + parsed.target.length, lineEnd);
    let at = lineEnd;
    for (const [from, to] of removed) {
      if (from < at) continue; // a line named twice
      out += head.slice(at, from);
      at = to;
    }
    out += head.slice(at);
  }
  const remote = change.remote;
  if (remote !== undefined) {
    out += `X-Forwarded-For: ${parsed.forwardedFor ? `${parsed.forwardedFor}, ${remote}` : remote}\r\n`;
  } else if (parsed.forwardedFor !== undefined) {
    out += `X-Forwarded-For: ${parsed.forwardedFor}\r\n`;
  }
  if (!parsed.hasForwardedProto) out += 'X-Forwarded-Proto: http\r\n';
  if (!parsed.hasForwardedHost && parsed.host !== undefined) out += `X-Forwarded-Host: ${parsed.host}\r\n`;
  return `${out}${change.extra ?? ''}\r\n`;
}
