/**
 * The few answers the sidecar gives itself instead of the app: short bodies, no caching, written
 * by the relay as raw HTTP/1.1 (`renderAnswer`).
 */
import { STATUS_CODES } from 'node:http';

export const UNAUTHORIZED_BODY = `${JSON.stringify({
  error: {
    code: 'unauthorized',
    message: 'this backend needs its connection token (X-Spawner-Token header, spawner_token cookie or query parameter)',
  },
})}\n`;

export interface Answer {
  status: number;
  body: string;
  contentType: string;
  headers?: Record<string, string>;
}

export const answers = {
  unauthorized: (): Answer => ({
    status: 401,
    body: UNAUTHORIZED_BODY,
    contentType: 'application/json',
    headers: { 'WWW-Authenticate': 'Bearer realm="spawner"' },
  }),
  holdTimeout: (): Answer => text(504, 'the backend did not start accepting connections in time\n'),
  holdFull: (): Answer => text(503, 'too many requests are waiting for the backend to start\n'),
  stopping: (): Answer => text(503, 'the backend is shutting down\n'),
  refused: (): Answer => text(502, 'the backend is not accepting connections\n'),
  upstreamFailed: (): Answer => text(502, 'the backend closed the connection without answering\n'),
  badUpgrade: (): Answer => text(400, 'only WebSocket upgrades are supported\n'),
  badRequest: (): Answer => text(400, 'malformed request\n'),
  headTooLarge: (): Answer => text(431, 'request header fields too large\n'),
  badVersion: (): Answer => text(505, 'only HTTP/1.0 and HTTP/1.1 are supported\n'),
  noConnect: (): Answer => text(405, 'CONNECT is not supported\n'),
  headersTimeout: (): Answer => text(408, 'the request head did not arrive in time\n'),
};

/**
 * An answer as raw HTTP/1.1 bytes (latin1). `close` adds `Connection: close` (the sidecar closes
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

function text(status: number, body: string): Answer {
  return { status, body, contentType: 'text/plain; charset=utf-8' };
}
