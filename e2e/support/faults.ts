/**
 * Helpers for the reliability suites (chaos, soak, fuzz, security): process figures from /proc,
 * stopping and starting control-plane components, WebSocket clients that check every echo, a
 * namespace-wide record of phase changes, a connection to the API server that can be frozen, and
 * the figures each test writes to reports/reliability/.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { V1Pod } from '@kubernetes/client-node';
import { type Phase, type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf, phaseRank } from '../../common/src/lifecycle';
import { BACKENDS, PODS } from '../../common/src/kube/resources';
import { adminClient, kubeconfigPath, ROOT, runCommand, stateDir } from './cluster';

// ---- processes --------------------------------------------------------------------------------

export interface ProcStats {
  /** Resident set size in bytes. */
  rss: number;
  /** Open file descriptors (sockets included). */
  fds: number;
}

/** RSS and open fds of a live process (undefined once it is gone). */
export function procStats(pid: number): ProcStats | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return { rss: kb ? Number(kb[1]) * 1024 : 0, fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return undefined;
  }
}

export const MB = 1024 * 1024;
export const mb = (bytes: number): number => Math.round((bytes / MB) * 10) / 10;

/** Samples `procStats` of named pids every `intervalMs`, with the time of each sample. */
export class Sampler {
  readonly samples = new Map<string, Array<{ at: number } & ProcStats>>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly pids: Record<string, number>,
    private readonly intervalMs = 5_000,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  sample(): void {
    const at = Date.now();
    for (const [name, pid] of Object.entries(this.pids)) {
      const s = procStats(pid);
      if (!s) continue;
      let list = this.samples.get(name);
      if (!list) this.samples.set(name, (list = []));
      list.push({ at, ...s });
    }
  }

  /** The largest value of `key` for `name` among samples taken in [from, to). */
  max(name: string, key: keyof ProcStats, from: number, to: number): number {
    const values = (this.samples.get(name) ?? []).filter((s) => s.at >= from && s.at < to).map((s) => s[key]);
    return values.length ? Math.max(...values) : NaN;
  }
}

// ---- the control plane -------------------------------------------------------------------------

/** `e2e/cluster.sh stop|start <component>` (etcd, kube-apiserver) of the running test cluster. */
export async function controlPlane(action: 'stop' | 'start', component: 'etcd' | 'kube-apiserver'): Promise<void> {
  await runCommand('bash', [join(ROOT, 'e2e', 'cluster.sh'), action, component], { timeoutMs: 90_000 });
}

// ---- clean-up -----------------------------------------------------------------------------------

/**
 * Registers an afterEach that undoes what a test started (watches, timers, sockets, stopped
 * processes), also when the test fails half-way: a leftover watch or timer keeps jest (and the
 * machine-wide e2e lock) from being released. Returns the function that registers an undo.
 */
export function undoAfterEach(): (undo: () => unknown) => void {
  const undos: Array<() => unknown> = [];
  afterEach(async () => {
    for (const undo of undos.splice(0).reverse()) {
      try {
        await undo();
      } catch {
        // best effort
      }
    }
  });
  return (undo) => undos.push(undo);
}

// ---- concurrency ------------------------------------------------------------------------------

/** Runs `fn` over `items` with at most `concurrency` at once; results in order. */
export async function pool<T, R>(items: T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return results;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- WebSockets -------------------------------------------------------------------------------

export function openWebSocket(url: string, timeoutMs = 15_000, headers?: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, handshakeTimeout: timeoutMs });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      reject(new Error(`WebSocket ${url.replace(/spawner_token=[^&]*/, 'spawner_token=…')} answered HTTP ${res.statusCode}`));
    });
    ws.once('error', reject);
  });
}

/** The HTTP status a WebSocket upgrade gets (101 when it opens). */
export function upgradeStatus(url: string, headers?: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers, handshakeTimeout: 10_000 });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => {
      resolve(101);
      ws.close();
    });
    ws.once('error', () => resolve(-1));
  });
}

/**
 * A client that sends sequence-numbered messages to an echo server and checks every echo:
 * in order, unaltered, none missing. `sent - received` are in flight at any moment.
 */
export class EchoClient {
  sent = 0;
  received = 0;
  reordered = 0;
  corrupted = 0;
  closedEarly = false;
  private closing = false;
  private readonly padding: string;

  constructor(
    readonly id: string,
    readonly ws: WebSocket,
    padBytes = 64,
  ) {
    this.padding = 'x'.repeat(padBytes);
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('close', () => {
      if (!this.closing) this.closedEarly = true;
    });
  }

  send(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ c: this.id, s: this.sent, p: this.padding }));
    this.sent++;
  }

  private onMessage(text: string): void {
    let msg: { c?: string; s?: number; p?: string };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      this.corrupted++;
      return;
    }
    if (msg.c !== this.id || msg.p !== this.padding) this.corrupted++;
    else if (msg.s !== this.received) this.reordered++;
    this.received++;
  }

  get lost(): number {
    return this.sent - this.received;
  }

  close(): void {
    this.closing = true;
    this.ws.close();
  }
}

// ---- raw sockets ------------------------------------------------------------------------------

/** A TCP connection, resolved once connected. */
export function connect(host: string, port: number, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => s.destroy(new Error(`connect ${host}:${port} timed out`)), timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Sends raw bytes and collects the answer until the server closes or `timeoutMs` passes. */
export async function rawRequest(host: string, port: number, bytes: string | Buffer, timeoutMs = 10_000): Promise<string> {
  const s = await connect(host, port);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', done);
    s.on('error', done);
    s.write(bytes);
  });
}

export const statusOf = (raw: string): number => Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? 0);

// ---- a connection that can be frozen ----------------------------------------------------------

/**
 * A TCP relay to `target` (TLS passes through untouched) that a test can freeze: while frozen no
 * byte moves in either direction on any connection, new ones included, yet none is closed, as
 * with a stalled network path or a paused API server. Give a component a kubeconfig whose server
 * is the relay (`kubeconfigVia`) and its view of the cluster stands still until `thaw`.
 */
export class FreezableProxy {
  readonly sockets = new Set<net.Socket>();
  private server?: net.Server;
  private frozen = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target);
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.sockets.add(from);
        from.on('data', (chunk: Buffer) => {
          if (!to.write(chunk)) {
            from.pause();
            to.once('drain', () => {
              if (!this.frozen) from.resume();
            });
          }
        });
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
        from.on('error', () => to.destroy());
        if (this.frozen) from.pause();
      }
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server!.address() as net.AddressInfo).port;
    return this;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  freeze(): void {
    this.frozen = true;
    for (const s of this.sockets) s.pause();
  }

  thaw(): void {
    this.frozen = false;
    for (const s of this.sockets) s.resume();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** A copy of the test cluster's kubeconfig whose API server is reached through `proxy`. */
export function kubeconfigVia(proxy: FreezableProxy): string {
  const source = kubeconfigPath();
  const text = readFileSync(source, 'utf8').replace(/(server:\s*https?:\/\/)[^\s/]+/g, `$1127.0.0.1:${proxy.port}`);
  const path = join(stateDir(), `kubeconfig-via-${proxy.port}`);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

/** The test cluster's API server as host and port (from its kubeconfig). */
export function apiServerAddress(): { host: string; port: number } {
  const server = /server:\s*https?:\/\/([^\s/:]+):(\d+)/.exec(readFileSync(kubeconfigPath(), 'utf8'));
  if (!server) throw new Error(`no server address in ${kubeconfigPath()}`);
  return { host: server[1], port: Number(server[2]) };
}

// ---- what happened to backends ------------------------------------------------------------------

export interface BackendRecord {
  uid?: string;
  /** Every phase seen, in order of arrival, with the time it was first seen. */
  phases: Array<{ phase: Phase; at: number }>;
  reason?: string;
  deletedAt?: number;
}

/**
 * Watches every backend and Pod of a namespace and records what happened: each backend's phases
 * in the order they were seen (a phase going backwards would show here), and every Pod uid ever
 * seen per name (a Pod replaced by another shows as two uids).
 */
export class NamespaceRecorder {
  readonly backends = new Map<string, BackendRecord>();
  readonly podUids = new Map<string, Set<string>>();
  private readonly handles: Array<{ abort(): void }> = [];
  private stopped = false;

  constructor(readonly namespace: string) {}

  start(): this {
    this.watchBackends();
    this.watchPods();
    return this;
  }

  /** Watches again after any end (an API server restart, the server's timeout). */
  private keep(open: () => { done: Promise<void>; abort(): void }): void {
    if (this.stopped) return;
    const handle = open();
    this.handles.push(handle);
    const again = (): void => {
      this.handles.splice(this.handles.indexOf(handle), 1);
      if (!this.stopped) setTimeout(() => this.keep(open), 500).unref();
    };
    handle.done.then(again, again);
  }

  private watchBackends(): void {
    this.keep(() =>
      adminClient().watch<SessionLivedBackend>(BACKENDS, this.namespace, { resourceVersion: '0' }, (e) => {
        if (e.type === 'BOOKMARK') return;
        const name = e.object.metadata.name as string;
        let rec = this.backends.get(name);
        if (!rec) this.backends.set(name, (rec = { phases: [] }));
        rec.uid ??= e.object.metadata.uid;
        if (e.type === 'DELETED') {
          rec.deletedAt ??= Date.now();
          return;
        }
        const phase = phaseOf(e.object);
        if (rec.phases[rec.phases.length - 1]?.phase !== phase) rec.phases.push({ phase, at: Date.now() });
        if (e.object.status?.reason) rec.reason = e.object.status.reason;
      }),
    );
  }

  private watchPods(): void {
    this.keep(() =>
      adminClient().watch<V1Pod & { metadata: { name: string } }>(PODS, this.namespace, { resourceVersion: '0' }, (e) => {
        if (e.type === 'BOOKMARK') return;
        const name = e.object.metadata?.name as string;
        const uid = e.object.metadata?.uid;
        if (!uid) return;
        let set = this.podUids.get(name);
        if (!set) this.podUids.set(name, (set = new Set()));
        set.add(uid);
      }),
    );
  }

  stop(): void {
    this.stopped = true;
    for (const h of [...this.handles]) h.abort();
  }

  phaseAt(name: string, phase: Phase): number | undefined {
    return this.backends.get(name)?.phases.find((p) => p.phase === phase)?.at;
  }

  /** Backends whose recorded phases went backwards (a later phase seen before an earlier one). */
  backwards(): string[] {
    return [...this.backends.entries()]
      .filter(([, r]) => r.phases.some((p, i) => i > 0 && phaseRank(p.phase) < phaseRank(r.phases[i - 1].phase)))
      .map(([n]) => n);
  }
}

// ---- figures ----------------------------------------------------------------------------------

export { writeFigures } from './figures';
