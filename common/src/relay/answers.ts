/**
 * Answers a relay gives itself instead of the upstream: short bodies, no caching, written as raw
 * HTTP/1.1 and queued in order with the upstream's responses. Each relay user (the sidecar, the
 * entry point) can phrase them its own way (`RelayAnswers`); the statuses are the relay's.
 */
import { STATUS_CODES } from 'node:http';

export interface Answer {
  status: number;
  body: string;
  contentType: string;
  headers?: Record<string, string>;
}

/** What the relay itself refuses or reports, one answer per situation. */
export interface RelayAnswers {
  badRequest(): Answer; // 400: malformed request (closes)
  badUpgrade(): Answer; // 400: an upgrade to something else than WebSocket
  headTooLarge(): Answer; // 431
  badVersion(): Answer; // 505
  noConnect(): Answer; // 405
  headersTimeout(): Answer; // 408: slowloris
  refused(): Answer; // 502: the upstream refused the connection
  upstreamFailed(): Answer; // 502: the upstream closed or broke before answering
  timedOut(): Answer; // 504: the upstream did not accept the connection in time
}

export const text = (status: number, body: string): Answer => ({ status, body, contentType: 'text/plain; charset=utf-8' });

export const plainAnswers: RelayAnswers = {
  badRequest: () => text(400, 'malformed request\n'),
  badUpgrade: () => text(400, 'only WebSocket upgrades are supported\n'),
  headTooLarge: () => text(431, 'request header fields too large\n'),
  badVersion: () => text(505, 'only HTTP/1.0 and HTTP/1.1 are supported\n'),
  noConnect: () => text(405, 'CONNECT is not supported\n'),
  headersTimeout: () => text(408, 'the request head did not arrive in time\n'),
  refused: () => text(502, 'the backend is not accepting connections\n'),
  upstreamFailed: () => text(502, 'the backend closed the connection without answering\n'),
  timedOut: () => text(504, 'the backend could not be reached in time\n'),
};

/**
 * An answer as raw HTTP/1.1 bytes (latin1). `close` adds `Connection: close` (the relay closes
 * after it); `headOnly` leaves the body out (an answer to HEAD).
 */
export function renderAnswer(answer: Answer, close: boolean, headOnly = false): string {
  let head =
    `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ''}\r\n` +
    `Content-Type: ${answer.contentType}\r\n` +
    `Content-Length: ${Buffer.byteLength(answer.body)}\r\n` +
    'Cache-Control: no-store\r\n';
  for (const [name, value] of Object.entries(answer.headers ?? {})) head += `${name}: ${value}\r\n`;
  if (close) head += 'Connection: close\r\n';
  return `${head}\r\n${headOnly ? '' : answer.body}`;
}
