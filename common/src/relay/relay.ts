/**
 * The relay core: a connection-level HTTP/1.1 proxy that the sidecar and the entry point each run
 * with their own admission policy (docs/adr/0005-sidecar-data-path.md, 0010). Per client
 * connection (connection.ts) request heads are parsed and handed to the policy, bytes pass
 * through in the buffers they arrive in, and an incremental parser watches both directions for
 * message boundaries, so every request's start and end is seen without Node's HTTP machinery on
 * the hot path. Upstream connections are kept alive per address (upstream.ts).
 */
import * as net from 'node:net';
import type { Logger } from '../logger';
import { plainAnswers, type RelayAnswers } from './answers';
import { Connection } from './connection';
import type { RelayPolicy } from './policy';
import { UpstreamPool } from './upstream';

const TICK_MS = 1000;
/** Upstream errors come in storms (the upstream died); one line per interval is enough. */
const ERROR_LOG_INTERVAL_MS = 5000;
/** An idle pooled upstream connection is closed after this many ticks. */
const POOL_IDLE_TICKS = 30;
const CONNECT_TIMEOUT_MS = 5000;

export interface RelayOptions {
  policy: RelayPolicy;
  logger: Logger;
  /** How the relay phrases its own answers (default: short text). */
  answers?: RelayAnswers;
  /** Length of a tick (tests shorten it; the timeouts are counted in ticks). */
  tickMs?: number;
  /**
   * Idle upstream connections kept per upstream address for the next request of any client
   * connection. 0: an upstream connection lives and dies with its client connection (the
   * sidecar: the app sees as many connections as it has clients, as if reached directly).
   */
  keepAlivePerUpstream?: number;
  /** A connect to an upstream that takes longer fails (504). 0: the OS's limit. */
  connectTimeoutMs?: number;
}

export class Relay {
  readonly server: net.Server;
  readonly connections = new Set<Connection>();
  readonly policy: RelayPolicy;
  readonly logger: Logger;
  readonly answers: RelayAnswers;
  readonly pool: UpstreamPool;
  readonly connectTimeoutMs: number;
  /** Ticks since start, advanced by one timer for all connections. */
  tick = 0;
  private ticker: NodeJS.Timeout | undefined;
  private lastErrorLog = 0;
  private suppressedErrors = 0;

  constructor(private readonly options: RelayOptions) {
    this.policy = options.policy;
    this.logger = options.logger;
    this.answers = options.answers ?? plainAnswers;
    this.pool = new UpstreamPool(options.keepAlivePerUpstream ?? 0, POOL_IDLE_TICKS);
    this.connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      this.connections.add(new Connection(this, socket));
    });
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject);
        // Accept errors (EMFILE...) are not fatal: the server keeps listening.
        this.server.on('error', (err) => this.logger.warn('accept failed', { error: err }));
        this.ticker = setInterval(() => this.onTick(), this.options.tickMs ?? TICK_MS);
        this.ticker.unref();
        resolve();
      });
    });
  }

  get port(): number | undefined {
    return (this.server.address() as net.AddressInfo | null)?.port;
  }

  /**
   * Stops accepting; idle connections close now, busy ones after their last answer. Resolves once
   * every client connection is gone, tunnels included (the policy cuts those when it must).
   */
  drain(): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.server.listening) this.server.close(() => resolve());
      else resolve();
    });
    for (const connection of [...this.connections]) connection.drain();
    return closed;
  }

  /** Cuts every HTTP connection (tunnels belong to the policy) and the idle upstream ones. */
  destroyAll(): void {
    for (const connection of [...this.connections]) connection.destroy();
    this.pool.destroyAll();
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  /** Idle upstream connections to an address that no longer means what it meant. */
  forgetUpstream(key: string): void {
    this.pool.forget(key);
  }

  logUpstreamError(err: NodeJS.ErrnoException): void {
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.suppressedErrors++;
      return;
    }
    this.logger.warn('upstream error', { code: err.code ?? err.message, suppressed: this.suppressedErrors });
    this.lastErrorLog = now;
    this.suppressedErrors = 0;
  }

  private onTick(): void {
    const tick = ++this.tick;
    for (const connection of this.connections) connection.check(tick);
    this.pool.sweep(tick);
  }
}
