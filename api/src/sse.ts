/**
 * Server-Sent Events on a plain response: headers that stop proxies from buffering, a comment
 * heartbeat so idle streams survive load-balancer timeouts, and an end that is safe to call twice.
 * The head and frames are common/src/sse.ts's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatComment, formatEvent, SSE_RESPONSE_HEADERS } from '../../common/src/sse';

const HEARTBEAT = formatComment('keep-alive');

export interface EventStream {
  send(data: unknown, id?: number | string): void;
  end(): void;
  readonly closed: boolean;
  /** Runs when the stream ends, by us or by the client going away. */
  onClose(fn: () => void): void;
}

export interface EventStreamOptions {
  heartbeatMs: number;
  /**
   * Streams end after this long even if nothing is over: long-lived connections then rebalance
   * across replicas, and clients (EventSource, the SpawnerClient) resume with Last-Event-ID.
   */
  maxMs: number;
}

export function openEventStream(req: IncomingMessage, res: ServerResponse, opts: EventStreamOptions): EventStream {
  res.writeHead(200, SSE_RESPONSE_HEADERS);
  res.flushHeaders();
  let closed = false;
  const closers: Array<() => void> = [];
  const timer = setInterval(() => {
    if (!closed) res.write(HEARTBEAT);
  }, opts.heartbeatMs);
  timer.unref();
  const limit = setTimeout(() => stream.end(), opts.maxMs);
  limit.unref();
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(timer);
    clearTimeout(limit);
    for (const fn of closers.splice(0)) fn();
  };
  res.on('close', close);
  const stream: EventStream = {
    get closed() {
      return closed;
    },
    send(data, id) {
      if (closed) return;
      res.write(formatEvent({ data: JSON.stringify(data), id }));
    },
    end() {
      if (!closed) res.end();
      close();
    },
    onClose(fn) {
      if (closed) fn();
      else closers.push(fn);
    },
  };
  // A HEAD request gets the headers of a stream, never a stream that stays open.
  if (req.method === 'HEAD') stream.end();
  return stream;
}

/** The rank after which a reconnecting EventSource wants events (its Last-Event-ID), or -1. */
export function lastEventId(req: IncomingMessage): number {
  const raw = req.headers['last-event-id'];
  const n = typeof raw === 'string' && /^\d{1,2}$/.test(raw.trim()) ? Number(raw.trim()) : -1;
  return n;
}
