/**
 * The BackendStore of local mode: SessionLivedBackend objects in memory, each run as a child
 * process behind the real sidecar (see backend-run.ts), so the API, the entry point and clients
 * see what they see on Kubernetes: the same object shape (uid, resourceVersion, generation,
 * creationTimestamp, defaults from the CRD schema), the same phases, flags, conditions and
 * reasons, written through common's `transitionStatus`.
 *
 * Who does what, compared with a cluster:
 * - the API server: this map (create is the atomic arbiter for names; watchers hear every change);
 * - the operator: `apply` (forward-only transitions) and `finish` (a Swept backend is deleted at
 *   once, a Failed one after `failedRetentionSeconds`, and nothing of either keeps running);
 * - kubelet and sweeper: BackendRun.
 */
import { randomUUID } from 'node:crypto';
import { type Phase, type SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, phaseOf, planTransition, type Transition } from '../../common/src/lifecycle';
import { ANNOTATION_KEY, LABEL_SPAWNER_GROUP } from '../../common/src/constants';
import { matchesSelector, type Requirement } from '../../common/src/kube/selectors';
import type { Logger } from '../../common/src/logger';
import { validateSpec } from '../../crd-schemas/src/validators';
import {
  BackendAlreadyExistsError,
  BackendStoreUnavailableError,
  type BackendListener,
  type BackendStore,
  type DeleteBackendOptions,
  type Endpoint,
  type GetOptions,
} from '../../api/src/backend-store';
import { BackendListeners } from '../../api/src/backend-listeners';
import { BackendRun, type SidecarSettings } from './backend-run';
import type { ImageCatalog } from './images';
import { PortAllocator } from './ports';
import { Watchdog } from './watchdog';

const clone = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T));

export interface LocalBackendStoreOptions {
  images: ImageCatalog;
  logger: Logger;
  /** For the embedded sidecars; defaults to `logger`. */
  sidecarLogger?: Logger;
  ports?: PortAllocator;
  namespace?: string;
  /** status.nodeName and the spawnerGroup label. */
  nodeName?: string;
  /** Where apps and sidecars listen. */
  host?: string;
  failedRetentionSeconds?: number;
  /** SIGTERM → SIGKILL when an app is stopped. */
  stopGraceMs?: number;
  sidecar?: Partial<SidecarSettings>;
  /** Guard process that stops the apps if this process dies without stopping them (default on). */
  watchdog?: boolean;
}

export const LOCAL_NODE_NAME = 'local';
export const LOCAL_NAMESPACE = 'local';

export class LocalBackendStore implements BackendStore {
  readonly namespace: string;
  private readonly items = new Map<string, SessionLivedBackend>();
  private readonly listeners = new BackendListeners();
  /** By uid: live runs, and runs still stopping after their backend is gone. */
  private readonly runs = new Map<string, BackendRun>();
  private readonly stopping = new Set<Promise<void>>();
  private readonly retention = new Map<string, NodeJS.Timeout>();
  private readonly ports: PortAllocator;
  private readonly host: string;
  private readonly logger: Logger;
  private watchdog?: Watchdog;
  private rv = 0;
  private running = false;
  private closed = false;

  constructor(private readonly opts: LocalBackendStoreOptions) {
    this.namespace = opts.namespace ?? LOCAL_NAMESPACE;
    this.host = opts.host ?? '127.0.0.1';
    this.ports = opts.ports ?? new PortAllocator({ host: this.host, min: 20000, max: 29999 });
    this.logger = opts.logger;
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    if (this.running || this.closed) return;
    if (this.opts.watchdog !== false) {
      this.watchdog = new Watchdog(this.stopGraceMs, this.logger);
      this.watchdog.start();
    }
    process.on('exit', this.onProcessExit);
    this.running = true;
  }

  /** Stops every app (SIGTERM, SIGKILL after the grace) and sidecar; resolves when all are gone. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const uid of [...this.runs.keys()]) this.stopRun(uid);
    await Promise.all([...this.stopping]);
    for (const t of this.retention.values()) clearTimeout(t);
    this.retention.clear();
    this.watchdog?.close();
    process.off('exit', this.onProcessExit);
    this.running = false;
  }

  /** On an exit we did not plan (process.exit elsewhere, an uncaught exception): at least SIGTERM. */
  private readonly onProcessExit = (): void => {
    for (const run of this.runs.values()) run.signal('SIGTERM');
  };

  ready(): boolean {
    return this.running && !this.closed;
  }

  // ---- BackendStore ----

  async create(backend: SessionLivedBackend): Promise<SessionLivedBackend> {
    if (this.closed) throw new BackendStoreUnavailableError('local mode is stopping');
    const name = backend.metadata.name ?? '';
    if (this.items.has(name)) throw new BackendAlreadyExistsError(name);
    const stored = clone(backend);
    // What the API server does with the CRD: defaults applied, invalid objects refused.
    const problems = validateSpec(stored.spec);
    if (problems.length > 0) throw new Error(`invalid spec: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`);
    stored.metadata = {
      ...stored.metadata,
      namespace: this.namespace,
      uid: randomUUID(),
      resourceVersion: String(++this.rv),
      generation: 1,
      creationTimestamp: new Date().toISOString() as unknown as Date,
    };
    delete stored.status;
    this.items.set(name, stored);
    const uid = stored.metadata.uid as string;
    const run = new BackendRun(clone(stored), {
      images: this.opts.images,
      ports: this.ports,
      watchdog: this.watchdog,
      logger: this.logger,
      sidecarLogger: this.opts.sidecarLogger ?? this.logger,
      host: this.host,
      nodeName: this.opts.nodeName ?? LOCAL_NODE_NAME,
      stopGraceMs: this.stopGraceMs,
      sidecar: { heartbeatSeconds: 5, holdTimeoutMs: 30_000, holdMaxQueued: 1000, shutdownGraceMs: 1000, ...this.opts.sidecar },
      unreachableAfterMs: 30_000,
      report: (t) => this.apply(name, uid, t),
    });
    this.runs.set(uid, run);
    this.logger.info('backend Submitted', {
      backend: name,
      image: run.info.image,
      key: stored.metadata.annotations?.[ANNOTATION_KEY],
    });
    this.notify(name);
    // As on a cluster, create answers with the object as submitted; the run reports from the next turn.
    setImmediate(() => {
      if (!run.isStopping) run.start();
    });
    return clone(stored);
  }

  async get(name: string, _opts?: GetOptions): Promise<SessionLivedBackend | undefined> {
    return clone(this.items.get(name));
  }

  async list(selector: Requirement[] = []): Promise<SessionLivedBackend[]> {
    return [...this.items.values()].filter((b) => matchesSelector(b.metadata.labels, selector)).map(clone);
  }

  async delete(name: string, opts: DeleteBackendOptions = {}): Promise<SessionLivedBackend | undefined> {
    const current = this.items.get(name);
    if (!current) return undefined;
    const uid = current.metadata.uid as string;
    if (opts.uid && uid !== opts.uid) return undefined;
    if (opts.reason && !isTerminal(phaseOf(current))) {
      this.update(name, uid, { phase: 'Swept', reason: opts.reason, message: opts.message });
    }
    const last = this.items.get(name) as SessionLivedBackend;
    this.remove(name, uid);
    this.stopRun(uid);
    return clone(last);
  }

  watch(name: string, listener: BackendListener): () => void {
    return this.listeners.add(name, listener, () => clone(this.items.get(name)));
  }

  endpoint(backend: SessionLivedBackend): Endpoint | undefined {
    const port = this.runs.get(backend.metadata.uid ?? '')?.servePort;
    return port ? { host: this.host, port } : undefined;
  }

  countLive(): number {
    let n = 0;
    for (const b of this.items.values()) if (!isTerminal(phaseOf(b))) n++;
    return n;
  }

  // ---- for tests and diagnostics ----

  /** The pids of apps running now (including those still being stopped). */
  appPids(): number[] {
    return [...this.runs.values()].map((r) => r.info.pid).filter((p): p is number => p !== undefined);
  }

  runInfo(name: string): BackendRun['info'] | undefined {
    const uid = this.items.get(name)?.metadata.uid;
    return uid ? this.runs.get(uid)?.info : undefined;
  }

  get watchdogPid(): number | undefined {
    return this.watchdog?.pid;
  }

  // ---- the operator's part ----

  private get stopGraceMs(): number {
    return this.opts.stopGraceMs ?? 5000;
  }

  /** A transition reported by a run: applied if still possible, then the consequences. */
  private apply(name: string, uid: string, t: Transition): boolean {
    if (!this.update(name, uid, t)) return false;
    if (isTerminal(t.phase)) this.finish(name, uid, t.phase);
    return true;
  }

  private update(name: string, uid: string, t: Transition): boolean {
    const current = this.items.get(name);
    if (!current || current.metadata.uid !== uid) return false;
    const verdict = planTransition(current, t, 'operator', new Date());
    if (!verdict.ok) return false;
    const status = verdict.status;
    const metadata = { ...current.metadata, resourceVersion: String(++this.rv) };
    // The operator labels a scheduled backend with its node, so sweepers can select theirs.
    if (t.fields?.nodeName) metadata.labels = { ...(metadata.labels ?? {}), [LABEL_SPAWNER_GROUP]: t.fields.nodeName };
    this.items.set(name, { ...current, metadata, status });
    this.logPhase(name, uid, t);
    this.notify(name);
    return true;
  }

  private logPhase(name: string, uid: string, t: Transition): void {
    const info = this.runs.get(uid)?.info;
    const fields: Record<string, unknown> = { backend: name, phase: t.phase, image: info?.image };
    if (info?.pid !== undefined) fields.pid = info.pid;
    if (t.phase === 'Running' && info?.command) fields.command = info.command.join(' ');
    if (info?.appPort !== undefined) fields.appPort = info.appPort;
    if (info?.servePort !== undefined) fields.sidecarPort = info.servePort;
    if (info?.adminPort !== undefined) fields.adminPort = info.adminPort;
    if (t.reason) fields.reason = t.reason;
    if (t.message) fields.message = t.message;
    if (t.phase === 'Failed') this.logger.warn(`backend ${t.phase}`, fields);
    else this.logger.info(`backend ${t.phase}`, fields);
  }

  private finish(name: string, uid: string, phase: Phase): void {
    this.stopRun(uid);
    if (phase === 'Swept') {
      this.remove(name, uid);
      return;
    }
    const seconds = this.opts.failedRetentionSeconds ?? 300;
    const timer = setTimeout(() => {
      this.retention.delete(uid);
      if (this.remove(name, uid)) this.logger.info('removed failed backend after its retention', { backend: name, seconds });
    }, seconds * 1000);
    timer.unref();
    this.retention.set(uid, timer);
  }

  private remove(name: string, uid: string): boolean {
    const current = this.items.get(name);
    const timer = this.retention.get(uid);
    if (timer) clearTimeout(timer);
    this.retention.delete(uid);
    if (!current || current.metadata.uid !== uid) return false;
    this.items.delete(name);
    this.notify(name);
    return true;
  }

  private stopRun(uid: string): void {
    const run = this.runs.get(uid);
    if (!run || run.isStopping) return;
    const done: Promise<void> = run
      .stop()
      .catch((err: unknown) => this.logger.error('stopping a backend failed', { backend: run.name, error: err }))
      .finally(() => {
        this.runs.delete(uid);
        this.stopping.delete(done);
      });
    this.stopping.add(done);
  }

  private notify(name: string): void {
    this.listeners.emit(name, clone(this.items.get(name)));
  }
}
