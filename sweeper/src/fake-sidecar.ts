/**
 * A stand-in for a sidecar's admin port, for tests of the sweeper: serves `/events` with whatever
 * state the test sets, the first message at once, then on every change.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatEvent, SSE_RESPONSE_HEADERS } from '../../common/src/sse';

export interface FakeState {
  ready: boolean;
  liveConnections: number;
  secondsSinceActive: number;
}

export class FakeSidecar {
  state: FakeState = { ready: true, liveConnections: 0, secondsSinceActive: 0 };
  private readonly clients = new Set<http.ServerResponse>();
  connections = 0;
  private server?: http.Server;

  async start(port = 0, host = '127.0.0.1'): Promise<number> {
    this.server = http.createServer((req, res) => {
      if (req.url !== '/events') {
        res.writeHead(404).end();
        return;
      }
      this.connections++;
      res.writeHead(200, SSE_RESPONSE_HEADERS);
      res.write(this.frame());
      this.clients.add(res);
      req.on('close', () => this.clients.delete(res));
    });
    await new Promise<void>((r) => this.server!.listen(port, host, r));
    return (this.server.address() as AddressInfo).port;
  }

  set(state: Partial<FakeState>): void {
    this.state = { ...this.state, ...state };
    for (const c of this.clients) c.write(this.frame());
  }

  private frame(): string {
    return formatEvent({ data: JSON.stringify(this.state) });
  }

  get liveStreams(): number {
    return this.clients.size;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
