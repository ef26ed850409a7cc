/**
 * The upstream side of a relay: one connection to an upstream (`Upstream`), and the idle ones
 * kept alive per upstream address (`UpstreamPool`), as nginx's `keepalive` does.
 *
 * An Upstream belongs to one client connection at a time (its `owner`), which gets its bytes and
 * events; in the pool it has no owner, and anything it does there (the upstream closing it,
 * stray bytes) ends it. Bytes are read with `onread` into a buffer of the Upstream's own, reused
 * from read to read (no allocation and no stream machinery per read): they are parsed and
 * written on at once, and only when the client could not take them all (its socket keeps a
 * reference) does the next read get a new buffer.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { UpstreamAddress } from './policy';

/** The upstream's bytes are read into a buffer of this size (larger reads take several). */
const READ_BUFFER_SIZE = 16 * 1024;

/** What an owner of an upstream connection hears from it. */
export interface UpstreamOwner {
  onUpstreamData(chunk: Buffer): void;
  onUpstreamEnd(): void;
  onUpstreamDrain(): void;
  /** The connection failed (`err`) or closed (undefined). */
  onUpstreamClosed(err: NodeJS.ErrnoException | undefined): void;
  /** The client still holds bytes of the last read (the read buffer cannot be reused). */
  clientBuffered(): boolean;
}

export class Upstream {
  readonly socket: net.Socket;
  owner: UpstreamOwner | null;
  /** Complete responses on this connection (a failure after one may be a stale reuse). */
  responses = 0;
  /** The upstream's Keep-Alive timeout hint, and when its last response ended. */
  keepAliveMs = 0;
  lastResponseAt = 0;
  /** False once an exchange on it asked for the connection to close (either side's `Connection: close`). */
  reusable = true;
  /** In the pool: the tick it went idle at. */
  idleSince = 0;
  pool: UpstreamPool | null = null;
  private readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);

  constructor(
    readonly address: UpstreamAddress,
    owner: UpstreamOwner,
    connectTimeoutMs: number,
  ) {
    this.owner = owner;
    const socket = net.connect({
      host: address.host,
      port: address.port,
      noDelay: true,
      allowHalfOpen: true,
      onread: {
        buffer: () => {
          if (this.owner?.clientBuffered()) this.readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
          return this.readBuffer;
        },
        callback: (n: number, buf: Uint8Array) => {
          if (this.owner !== null) this.owner.onUpstreamData((buf as Buffer).subarray(0, n));
          else this.destroy(); // a pooled connection speaking unasked
          return true;
        },
      },
    });
    this.socket = socket;
    if (connectTimeoutMs > 0) {
      // Without it, an address nobody answers (a Pod gone, its IP unused) takes the OS's SYN
      // retries (minutes) to fail.
      socket.setTimeout(connectTimeoutMs, () => {
        const err: NodeJS.ErrnoException = new Error(`connect to ${address.key} timed out`);
        err.code = 'ETIMEDOUT';
        socket.destroy(err);
      });
      socket.once('connect', () => socket.setTimeout(0));
    }
    socket.on('end', () => {
      if (this.owner !== null) this.owner.onUpstreamEnd();
      else this.destroy();
    });
    socket.on('drain', () => this.owner?.onUpstreamDrain());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const owner = this.owner;
      this.owner = null;
      this.leavePool();
      owner?.onUpstreamClosed(err);
    });
    socket.on('close', () => {
      const owner = this.owner;
      this.owner = null;
      this.leavePool();
      owner?.onUpstreamClosed(undefined);
    });
  }

  /** The upstream announced it closes idle connections after keepAliveMs: do not race it. */
  stale(): boolean {
    return this.keepAliveMs > 0 && performance.now() - this.lastResponseAt > this.keepAliveMs - 1000;
  }

  get usable(): boolean {
    return !this.socket.destroyed && this.socket.readable && this.socket.writable;
  }

  /** Ends the connection; its owner hears nothing more. */
  destroy(): void {
    this.owner = null;
    this.leavePool();
    this.socket.destroy();
  }

  private leavePool(): void {
    this.pool?.remove(this);
  }
}

/** Idle upstream connections, per address, reused last-in first-out. */
export class UpstreamPool {
  private readonly idle = new Map<string, Upstream[]>();

  constructor(
    /** Idle connections kept per address; 0 keeps none. */
    private readonly maxPerAddress: number,
    /** Ticks an idle connection is kept. */
    private readonly idleTicks: number,
  ) {}

  /** An idle connection to `address`, now owned by `owner`; undefined when there is none. */
  take(address: UpstreamAddress, owner: UpstreamOwner): Upstream | undefined {
    const list = this.idle.get(address.key);
    while (list !== undefined && list.length > 0) {
      const upstream = list.pop()!;
      upstream.pool = null;
      if (list.length === 0) this.idle.delete(address.key);
      if (!upstream.usable || upstream.stale()) {
        upstream.destroy();
        continue;
      }
      upstream.owner = owner;
      return upstream;
    }
    return undefined;
  }

  /** Keeps an idle connection for the next request to its address, or ends it when full. */
  put(upstream: Upstream, tick: number): void {
    upstream.owner = null;
    if (this.maxPerAddress === 0 || !upstream.reusable || !upstream.usable || upstream.stale()) {
      upstream.destroy();
      return;
    }
    let list = this.idle.get(upstream.address.key);
    if (list === undefined) this.idle.set(upstream.address.key, (list = []));
    if (list.length >= this.maxPerAddress) {
      upstream.destroy();
      return;
    }
    upstream.idleSince = tick;
    upstream.pool = this;
    upstream.socket.resume(); // its owner may have paused it; a close must be seen
    list.push(upstream);
  }

  remove(upstream: Upstream): void {
    if (upstream.pool !== this) return;
    upstream.pool = null;
    const list = this.idle.get(upstream.address.key);
    const at = list?.indexOf(upstream) ?? -1;
    if (at >= 0) list!.splice(at, 1);
    if (list !== undefined && list.length === 0) this.idle.delete(upstream.address.key);
  }

  /** Ends connections idle for longer than the limit. */
  sweep(tick: number): void {
    for (const list of [...this.idle.values()]) {
      for (const upstream of [...list]) if (tick - upstream.idleSince >= this.idleTicks || upstream.stale()) upstream.destroy();
    }
  }

  /** Ends every idle connection to `key` (the address no longer belongs to the backend). */
  forget(key: string): void {
    for (const upstream of [...(this.idle.get(key) ?? [])]) upstream.destroy();
  }

  get size(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  destroyAll(): void {
    for (const list of [...this.idle.values()]) for (const upstream of [...list]) upstream.destroy();
  }
}
