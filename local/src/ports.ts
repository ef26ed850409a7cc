/**
 * Ports for the apps local mode runs. An app binds its port itself, some hundred milliseconds
 * after we choose it, so the choice must avoid what is in use now (a bind check) and what we have
 * already handed out to an app that has not bound yet (the held set).
 *
 * The range defaults to one below the OS's ephemeral range (Linux 32768–60999, macOS
 * 49152–65535): ports from that range are also handed out as source ports of outgoing
 * connections, so one that is free at the check could be taken before the app binds it.
 * Candidates are picked at random so that two local-mode instances sharing a range rarely try the
 * same port at once. (The sidecars' own ports need none of this: they are bound in process on
 * port 0 and the OS picks.)
 */
import * as net from 'node:net';

export class NoFreePortError extends Error {
  override name = 'NoFreePortError';
}

export interface PortAllocatorOptions {
  /** The address apps bind (the bind check uses it). */
  host: string;
  min: number;
  max: number;
  /** Candidates tried at random before a full scan of the range. */
  randomAttempts?: number;
  random?: () => number;
}

/** Whether `port` can be bound on `host` right now. */
export function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export class PortAllocator {
  private readonly held = new Set<number>();

  constructor(private readonly opts: PortAllocatorOptions) {
    if (!(opts.min >= 1 && opts.max <= 65535 && opts.min <= opts.max)) {
      throw new RangeError(`invalid port range ${opts.min}-${opts.max}`);
    }
  }

  get inUse(): number[] {
    return [...this.held].sort((a, b) => a - b);
  }

  /** A port nobody here holds and nothing on this machine has bound; held until released. */
  async allocate(): Promise<number> {
    const { min, max } = this.opts;
    const size = max - min + 1;
    const random = this.opts.random ?? Math.random;
    const tried = new Set<number>();
    const attempts = Math.min(this.opts.randomAttempts ?? 32, size);
    for (let i = 0; i < attempts; i++) {
      const port = min + Math.floor(random() * size);
      if (tried.has(port)) continue;
      tried.add(port);
      if (await this.tryHold(port)) return port;
    }
    // A nearly full range: walk it once from a random start, so no free port is missed.
    const start = Math.floor(random() * size);
    for (let i = 0; i < size; i++) {
      const port = min + ((start + i) % size);
      if (tried.has(port)) continue;
      if (await this.tryHold(port)) return port;
    }
    throw new NoFreePortError(`no free port in ${min}-${max} (${this.held.size} held by local mode)`);
  }

  release(port: number): void {
    this.held.delete(port);
  }

  private async tryHold(port: number): Promise<boolean> {
    if (this.held.has(port)) return false;
    // Held during the check, so a concurrent allocate cannot pick it too.
    this.held.add(port);
    if (await canBind(port, this.opts.host)) return true;
    this.held.delete(port);
    return false;
  }
}
