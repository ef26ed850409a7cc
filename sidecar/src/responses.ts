/**
 * The few answers the sidecar gives itself instead of the app: short bodies, no caching. The relay
 * writes them as raw HTTP/1.1 (`renderAnswer`); the http-proxy data path uses `respond` and, for
 * upgrade requests (where only a raw socket is left), `respondRaw`.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** A client that never reads our answer to a refused upgrade must not keep its socket forever. */
const RAW_ANSWER_LINGER_MS = 5000;

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

export function respond(res: ServerResponse, answer: Answer): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  res.writeHead(answer.status, {
    'Content-Type': answer.contentType,
    'Content-Length': Buffer.byteLength(answer.body),
    'Cache-Control': 'no-store',
    ...answer.headers,
  });
  res.end(answer.body);
}

/** Answers on a socket taken over for an upgrade, then closes it. */
export function respondRaw(socket: Duplex, answer: Answer): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  const lines = [
    `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ''}`,
    `Content-Type: ${answer.contentType}`,
    `Content-Length: ${Buffer.byteLength(answer.body)}`,
    'Cache-Control: no-store',
    'Connection: close',
    ...Object.entries(answer.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${answer.body}`);
  setTimeout(() => socket.destroy(), RAW_ANSWER_LINGER_MS).unref();
}
