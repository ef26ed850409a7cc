/**
 * One connection to a sidecar's state stream (Server-Sent Events on its admin port), kept open
 * with reconnects and backoff until closed. Reports arrive as parsed `SidecarReport`s; connection
 * trouble is reported separately, so the caller can tell "idle" from "unreachable".
 */
import * as http from 'node:http';
import { backoffDelay } from '../../common/src/backoff';
import { SSE_MEDIA_TYPE, SseParser } from '../../common/src/sse';
import type { SidecarReport } from './idle-rule';

export interface StateStreamHandlers {
  onReport(report: SidecarReport): void;
  /** The stream is down; `since` is when it was last up (or first tried). */
  onDisconnected?(since: number, error: string): void;
  onConnected?(): void;
}

export interface StateStreamOptions {
  connectTimeoutMs?: number;
  /** No bytes for this long (heartbeats included) → the connection is considered dead. */
  idleTimeoutMs?: number;
  maxBackoffMs?: number;
  now?: () => number;
}

export function parseReport(data: string, receivedAtMs: number): SidecarReport | undefined {
  try {
    const v = JSON.parse(data) as Partial<SidecarReport>;
    if (typeof v.ready !== 'boolean' || typeof v.liveConnections !== 'number' || typeof v.secondsSinceActive !== 'number')
      return undefined;
    return { ready: v.ready, liveConnections: v.liveConnections, secondsSinceActive: v.secondsSinceActive, receivedAtMs };
  } catch {
    return undefined;
  }
}

export class StateStream {
  private req?: http.ClientRequest;
  private timer?: NodeJS.Timeout;
  private closed = false;
  private failures = 0;
  private downSince: number;
  private connected = false;
  private readonly now: () => number;

  constructor(
    readonly url: string,
    private readonly handlers: StateStreamHandlers,
    private readonly opts: StateStreamOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.downSince = this.now();
  }

  get isConnected(): boolean {
    return this.connected;
  }

  start(): void {
    this.connect();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.req?.destroy();
    this.req = undefined;
  }

  private connect(): void {
    if (this.closed) return;
    const parser = new SseParser();
    let gotData = false;
    const req = http.get(this.url, {
      agent: false,
      headers: { accept: SSE_MEDIA_TYPE },
      timeout: this.opts.connectTimeoutMs ?? 3000,
    });
    this.req = req;
    req.on('timeout', () => req.destroy(new Error(gotData ? 'stream silent' : 'connect timeout')));
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        req.destroy(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      req.setTimeout(this.opts.idleTimeoutMs ?? 20_000);
      res.on('data', (chunk: Buffer) => {
        for (const { data } of parser.push(chunk)) {
          const report = parseReport(data, this.now());
          if (!report) continue;
          if (!gotData) {
            gotData = true;
            this.failures = 0;
            this.connected = true;
            this.handlers.onConnected?.();
          }
          this.handlers.onReport(report);
        }
        if (parser.buffered > 64 * 1024) req.destroy(new Error('oversized event'));
      });
      res.on('end', () => req.destroy(new Error('stream ended')));
    });
    req.on('error', (err) => this.retry(req, err.message));
    req.on('close', () => this.retry(req, 'connection closed'));
  }

  private retry(req: http.ClientRequest, error: string): void {
    // Each request reports both 'error' and 'close'; only the first of the current one counts.
    if (this.req !== req || this.closed) return;
    this.req = undefined;
    if (this.connected) {
      this.connected = false;
      this.downSince = this.now();
    }
    this.handlers.onDisconnected?.(this.downSince, error);
    const delay = backoffDelay(this.failures++, 250, this.opts.maxBackoffMs ?? 5000);
    this.timer = setTimeout(() => this.connect(), delay);
    this.timer.unref?.();
  }
}
