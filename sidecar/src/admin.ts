/**
 * The sidecar's own admin routes, served beside /metrics and /healthz on the admin port (never
 * proxied, never counted as activity):
 *
 * - `/ready`: 200 once the app accepts connections, else 503 (the Pod's readiness probe).
 * - `/state`: the full state as JSON, for people and debugging.
 * - `/events`: Server-Sent Events for the sweeper, `data: {"ready","liveConnections",
 *   "secondsSinceActive"}`: one message at once, then one after every change (coalesced per turn
 *   of the event loop) and one every heartbeat. Any number of clients may listen (a restarted
 *   sweeper connects while the old connection has not noticed yet).
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { formatEvent, SSE_RESPONSE_HEADERS } from '../../common/src/sse';
import type { Activity } from './activity';

/** A listener that stops reading is dropped rather than buffered for without bound. */
const MAX_BUFFERED_BYTES = 64 * 1024;

export class EventStream {
  private readonly clients = new Set<ServerResponse>();
  private heartbeat: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly activity: Activity,
    private readonly heartbeatMs: number,
  ) {}

  get size(): number {
    return this.clients.size;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, SSE_RESPONSE_HEADERS);
    req.socket.setNoDelay(true);
    this.clients.add(res);
    if (this.clients.size === 1) this.startBroadcasting();
    res.once('close', () => {
      this.clients.delete(res);
      if (this.clients.size === 0) this.stopBroadcasting();
    });
    this.send(res, this.frame());
  };

  /** Ends every stream (shutdown). */
  closeAll(): void {
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.stopBroadcasting();
  }

  private startBroadcasting(): void {
    this.unsubscribe = this.activity.subscribe(() => this.broadcast());
    this.heartbeat = setInterval(() => this.broadcast(), this.heartbeatMs);
    this.heartbeat.unref();
  }

  private stopBroadcasting(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private frame(): string {
    return formatEvent({ data: JSON.stringify(this.activity.message()) });
  }

  private broadcast(): void {
    const frame = this.frame();
    for (const res of this.clients) this.send(res, frame);
  }

  private send(res: ServerResponse, frame: string): void {
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      res.destroy();
      return;
    }
    res.write(frame);
  }
}

export function adminRoutes(activity: Activity, events: EventStream): Record<string, RequestListener> {
  return {
    '/ready': (_req, res) => {
      const ready = activity.ready;
      res.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(ready ? 'ready\n' : 'waiting for the app to accept connections\n');
    },
    '/state': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(`${JSON.stringify(activity.snapshot())}\n`);
    },
    '/events': events.handle,
  };
}
