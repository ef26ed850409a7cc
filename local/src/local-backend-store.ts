/**
 * The BackendStore of local mode: SessionLivedBackend objects in memory, each run as a child
 * process behind the real sidecar (see backend-run.ts), so the API, the entry point and clients
 * see what they see on Kubernetes, under the same rules: the lifecycle here is the operator's and
 * the sweeper's own code, not a second copy of it.
 *
 * Who does what, compared with a cluster:
 * - the API server: this map (create is the atomic arbiter for names; every write bumps the
 *   resourceVersion and watchers hear it);
 * - the kubelet: BackendRun, which keeps a Pod and a Service for its backend and says when they
 *   change; it writes no status;
 * - the operator: `reconcile`, which runs the operator's planner (`decide`, operator/src/decide.ts)
 *   on the backend, its Pod and its Service, and applies the plan: start the run (the Pod and the
 *   Service created), phase transitions through common's lifecycle module as the 'operator'
 *   writer, the spawnerGroup label, stopping the run (the Pod deleted: a Failed backend's app
 *   stops at once), removing the backend (a Swept one at once, a Failed one after
 *   `failedRetentionSeconds`), and one timer for the plan's next deadline (startup timeout,
 *   maxLifetimeSeconds, retention);
 * - the sweeper: the sweeper's own Tracker on each sidecar's /events stream, its countdown from
 *   the backend's first Ready, sweeping as the 'sweeper' writer;
 * - the API's delete: Swept (DeletedByClient) as the 'api' writer, then removal.
 *
 * A reconcile runs on create, on every change of the backend's Pod, at its timer and after every
 * write. Reconciles of one backend never overlap: one asked for while another runs (a write, or a
 * change of the Pod, during the pass) makes the running one pass again.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { type SessionBackendPool, type SessionLivedBackend } from '../../common/src/backend';
import {
  isTerminal,
  phaseOf,
  phaseRank,
  phaseTime,
  planTransition,
  Reasons,
  wasReady,
  type Transition,
  type Writer,
} from '../../common/src/lifecycle';
import {
  ANNOTATION_KEY,
  DEFAULT_FAILED_RETENTION_SECONDS,
  DEFAULT_GRACE_PERIOD_SECONDS,
  LABEL_SPAWNER_GROUP,
} from '../../common/src/constants';
import { matchesSelector, type Requirement } from '../../common/src/kube/selectors';
import type { Logger } from '../../common/src/logger';
import { validateSpec } from '../../crd-schemas/src/validators';
import { decide } from '../../operator/src/decide';
import { Tracker } from '../../sweeper/src/tracker';
import {
  BackendAlreadyExistsError,
  BackendStoreUnavailableError,
  type BackendListener,
  type BackendStore,
  type DeleteBackendOptions,
  type Endpoint,
  type GetOptions,
} from '../../api/src/backend-store';
import type { ImageCatalog } from '../../common/src/image-catalog';
import { BackendListeners } from '../../api/src/backend-listeners';
import { DEFAULT_ENDED_RETENTION_SECONDS, EndedBackends } from '../../api/src/ended-backends';
import { BackendRun, type SidecarSettings } from './backend-run';
import { LocalPools } from './local-pools';
import { PortAllocator } from './ports';
import { Watchdog } from './watchdog';
import type { ClaimedProcess } from './warm-process';

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
  /** How long a Failed backend stays (default DEFAULT_FAILED_RETENTION_SECONDS, as the operator's). */
  failedRetentionSeconds?: number;
  /** How long a removed backend's ending stays answerable (the API's --ended-retention-seconds). */
  endedRetentionSeconds?: number;
  /** SIGTERM → SIGKILL when an app is stopped. */
  stopGraceMs?: number;
  sidecar?: Partial<SidecarSettings>;
  /** Guard process that stops the apps if this process dies without stopping them (default on). */
  watchdog?: boolean;
  /** Warm pools: pre-started processes that backends with spec.poolRef claim. */
  pools?: SessionBackendPool[];
}

export const LOCAL_NODE_NAME = 'local';
export const LOCAL_NAMESPACE = 'local';

/** How long an embedded sidecar's state stream may be down before it is logged (it is in process: a bug). */
const UNREACHABLE_AFTER_MS = 30_000;
/** Passes of one reconcile before it yields (each write makes another; a handful settle any backend). */
const MAX_PASSES = 20;

/** setTimeout caps delays at 2^31-1 ms (~24.8 days); maxLifetimeSeconds may be a year. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function longTimeout(fn: () => void, delayMs: number): { clear(): void } {
  let timer: NodeJS.Timeout;
  const arm = (remaining: number): void => {
    timer = setTimeout(
      () => (remaining > MAX_TIMER_MS ? arm(remaining - MAX_TIMER_MS) : fn()),
      Math.min(remaining, MAX_TIMER_MS),
    );
    timer.unref();
  };
  arm(Math.max(0, delayMs));
  return { clear: () => clearTimeout(timer) };
}

/** The operator's and the sweeper's state for one backend (one incarnation: by uid). */
interface Control {
  name: string;
  uid: string;
  /** A reconcile of this backend is running ... */
  busy: boolean;
  /** ... and must pass again: something changed meanwhile. */
  dirty: boolean;
  /** The plan's next deadline. */
  timer?: { clear(): void };
  /** The sweeper's view of the sidecar, from Running on. */
  tracker?: Tracker;
}

export class LocalBackendStore implements BackendStore {
  readonly namespace: string;
  /** The warm pools (the API reads them as its PoolReader). */
  readonly pools: LocalPools;
  private readonly items = new Map<string, SessionLivedBackend>();
  /** Removed backends' endings, answered by the status routes for a while (as the API does on a cluster). */
  private readonly endedBackends: EndedBackends;
  private readonly listeners = new BackendListeners();
  /** By uid: live runs, and runs still stopping after their backend is gone. */
  private readonly runs = new Map<string, BackendRun>();
  /** By uid, while the backend exists. */
  private readonly controls = new Map<string, Control>();
  private readonly stopping = new Set<Promise<void>>();
  private readonly ports: PortAllocator;
  private readonly host: string;
  private readonly logger: Logger;
  private readonly sidecar: SidecarSettings;
  private watchdog?: Watchdog;
  private rv = 0;
  private running = false;
  private closed = false;

  constructor(private readonly opts: LocalBackendStoreOptions) {
    this.namespace = opts.namespace ?? LOCAL_NAMESPACE;
    this.host = opts.host ?? '127.0.0.1';
    this.ports = opts.ports ?? new PortAllocator({ host: this.host, min: 20000, max: 29999 });
    this.logger = opts.logger;
    this.sidecar = { heartbeatSeconds: 5, holdTimeoutMs: 30_000, holdMaxQueued: 1000, shutdownGraceMs: 1000, ...opts.sidecar };
    this.endedBackends = new EndedBackends({
      retentionMs: (opts.endedRetentionSeconds ?? DEFAULT_ENDED_RETENTION_SECONDS) * 1000,
    });
    this.pools = new LocalPools(opts.pools ?? [], {
      images: opts.images,
      ports: this.ports,
      logger: opts.logger,
      host: this.host,
      stopGraceMs: this.stopGraceMs,
    });
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
    this.pools.start(this.watchdog);
  }

  /** Stops every app (SIGTERM, SIGKILL after the grace), pool processes included, and sidecar; resolves when all are gone. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.controls.values()) this.quiet(c);
    for (const uid of [...this.runs.keys()]) this.stopRun(uid);
    await Promise.all([...this.stopping, this.pools.stop()]);
    this.watchdog?.close();
    process.off('exit', this.onProcessExit);
    this.running = false;
  }

  /** On an exit we did not plan (process.exit elsewhere, an uncaught exception): at least SIGTERM. */
  private readonly onProcessExit = (): void => {
    for (const run of this.runs.values()) run.signal('SIGTERM');
    this.pools.signal('SIGTERM');
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
    this.endedBackends.revived(stored);
    const uid = stored.metadata.uid as string;
    this.controls.set(uid, { name, uid, busy: false, dirty: false });
    this.logger.info('backend Submitted', {
      backend: name,
      image: stored.spec.template.containers[0].image,
      key: stored.metadata.annotations?.[ANNOTATION_KEY],
    });
    this.notify(name);
    // As on a cluster, create answers with the object as submitted; the operator acts from the next turn.
    setImmediate(() => this.reconcile(uid));
    return clone(stored);
  }

  async get(name: string, _opts?: GetOptions): Promise<SessionLivedBackend | undefined> {
    return clone(this.items.get(name));
  }

  ended(name: string): SessionLivedBackend | undefined {
    return clone(this.endedBackends.get(name));
  }

  async list(selector: Requirement[] = []): Promise<SessionLivedBackend[]> {
    return [...this.items.values()].filter((b) => matchesSelector(b.metadata.labels, selector)).map(clone);
  }

  async delete(name: string, opts: DeleteBackendOptions = {}): Promise<SessionLivedBackend | undefined> {
    const current = this.items.get(name);
    if (!current) return undefined;
    const uid = current.metadata.uid as string;
    if (opts.uid && uid !== opts.uid) return undefined;
    let last = current;
    if (opts.reason && !isTerminal(phaseOf(current))) {
      // Recorded as the API records it on a cluster; the reconcile this write starts may remove it already.
      last = this.write(uid, { phase: 'Swept', reason: opts.reason, message: opts.message }, 'api') ?? last;
    }
    this.remove(name, uid);
    return clone(last);
  }

  watch(name: string, listener: BackendListener): () => void {
    return this.listeners.add(name, listener, () => clone(this.items.get(name)));
  }

  endpoint(backend: SessionLivedBackend): Endpoint | undefined {
    const port = this.runs.get(backend.metadata.uid ?? '')?.servePort;
    return port ? { host: this.host, port } : undefined;
  }

  /** The runs are this process's own children: the view is never stale. */
  routesStale(): boolean {
    return false;
  }

  countLive(): number {
    let n = 0;
    for (const b of this.items.values()) if (!isTerminal(phaseOf(b))) n++;
    return n;
  }

  // ---- for tests and diagnostics ----

  /** The pids of backends' apps running now (including those still being stopped); the pools' are `pools.pids()`. */
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

  private get failedRetentionMs(): number {
    return (this.opts.failedRetentionSeconds ?? DEFAULT_FAILED_RETENTION_SECONDS) * 1000;
  }

  /** A run whose Pod exists: not one being stopped (its Pod is being deleted). */
  private liveRun(uid: string): BackendRun | undefined {
    const run = this.runs.get(uid);
    return run && !run.isStopping ? run : undefined;
  }

  private reconcile(uid: string): void {
    const c = this.controls.get(uid);
    if (!c || this.closed) return;
    if (c.busy) {
      c.dirty = true;
      return;
    }
    c.busy = true;
    try {
      for (let pass = 0; pass < MAX_PASSES; pass++) {
        c.dirty = false;
        this.pass(c);
        if (!c.dirty || !this.controls.has(uid)) return;
      }
      this.logger.warn('reconcile did not settle; looking again shortly', { backend: c.name });
      this.arm(c, 100);
    } catch (err) {
      this.logger.error('reconcile failed; looking again shortly', { backend: c.name, error: err });
      this.arm(c, 1000);
    } finally {
      c.busy = false;
    }
  }

  /** One decide-and-apply, as the operator's reconcile of one key. */
  private pass(c: Control): void {
    const backend = this.items.get(c.name);
    if (!backend || backend.metadata.uid !== c.uid) {
      this.forget(c.uid);
      return;
    }
    const run = this.liveRun(c.uid);
    // A claimed process is getting its sidecar (milliseconds): planned once its Pod is complete,
    // so the backend goes to Ready in one write, as a claimed Pod's backend does on a cluster.
    if (run?.adopting) return;
    const poolRef = backend.spec.poolRef;
    const plan = decide({
      backend,
      pod: run?.pod,
      service: run?.service,
      // No cache here: a Pod that is not there is gone.
      podConfirmedMissing: true,
      now: new Date(),
      failedRetentionMs: this.failedRetentionMs,
      // Also once the Pod exists: a cold start's launchReason is written on a later pass here.
      pool: poolRef && !backend.status?.launch ? this.pools.input(poolRef.name) : undefined,
    });
    for (const action of plan.actions) {
      if (!this.controls.has(c.uid)) return;
      switch (action.kind) {
        case 'createPod':
        case 'createService':
          // The run is both. Created at once, so the next pass plans from them.
          this.startRun(backend);
          c.dirty = true;
          return;
        case 'claim': {
          // Synchronous: no other claim runs in between, so a process goes to one backend only.
          const names = action.pods.map((p) => p.metadata?.name ?? '');
          // A claimed process has no way back to its pool: claim only what startRun will take.
          const claimed = this.runs.has(c.uid) ? undefined : this.pools.claim(backend.spec.poolRef?.name ?? '', names);
          if (claimed) {
            this.logger.info('backend claimed a pool process', { backend: c.name, process: claimed.name, pid: claimed.pid });
            this.startRun(backend, claimed);
          }
          c.dirty = true;
          return;
        }
        case 'transition':
          this.write(c.uid, action.transition, 'operator');
          break;
        case 'labelNode':
          this.label(c.uid, action.node);
          break;
        case 'deleteChildren':
          this.stopRun(c.uid);
          break;
        case 'deleteBackend': {
          const phase = phaseOf(backend);
          if (phase === 'Failed') {
            this.logger.info('removed failed backend after its retention', {
              backend: c.name,
              seconds: this.failedRetentionMs / 1000,
            });
          }
          this.remove(c.name, c.uid);
          return;
        }
        case 'deleteStale':
        case 'confirmPodGone':
          // Neither happens here: a run belongs to its backend's uid, and a missing Pod is confirmed.
          break;
      }
    }
    if (!this.controls.has(c.uid)) return;
    this.arm(c, plan.requeueAfterMs);
    this.follow(c);
  }

  /** The plan's next deadline: one timer per backend, replaced at each pass. */
  private arm(c: Control, delayMs: number | undefined): void {
    c.timer?.clear();
    c.timer = delayMs === undefined ? undefined : longTimeout(() => this.reconcile(c.uid), delayMs);
  }

  /**
   * Applies `t` as `writer` through common's transition module, then reconciles; the backend as
   * written, or undefined when the transition is refused. Status that would not change is not
   * written (no new resourceVersion, nothing for watchers).
   */
  private write(uid: string, t: Transition, writer: Writer): SessionLivedBackend | undefined {
    const c = this.controls.get(uid);
    const current = c ? this.items.get(c.name) : undefined;
    if (!c || !current || current.metadata.uid !== uid) return undefined;
    const verdict = planTransition(current, this.localAddresses(uid, t), writer, new Date());
    if (!verdict.ok) {
      this.logger.debug('transition not applied', { backend: c.name, writer, to: t.phase, why: verdict.refused });
      return undefined;
    }
    if (isDeepStrictEqual(verdict.status, current.status)) return current;
    const from = phaseOf(current);
    const next: SessionLivedBackend = {
      ...current,
      metadata: { ...current.metadata, resourceVersion: String(++this.rv) },
      status: verdict.status,
    };
    this.items.set(c.name, next);
    if (phaseOf(next) !== from) this.logPhase(next, writer);
    this.notify(c.name);
    this.reconcile(uid);
    return next;
  }

  /**
   * `decide` writes the cluster's addresses (the Service's DNS name, the sidecar's port 9090); here
   * the backend is reached at its sidecar's own port on this machine, once it listens.
   */
  private localAddresses(uid: string, t: Transition): Transition {
    if (!t.fields || !('url' in t.fields || 'port' in t.fields)) return t;
    const fields = { ...t.fields };
    delete fields.url;
    delete fields.port;
    const port = this.liveRun(uid)?.servePort;
    if (port) Object.assign(fields, { port, url: `http://${this.host}:${port}/` });
    return { ...t, fields };
  }

  /** The operator labels a scheduled backend with its node, so sweepers can select theirs. */
  private label(uid: string, node: string): void {
    const c = this.controls.get(uid);
    const current = c ? this.items.get(c.name) : undefined;
    if (!c || !current || current.metadata.labels?.[LABEL_SPAWNER_GROUP] === node) return;
    const labels = { ...(current.metadata.labels ?? {}), [LABEL_SPAWNER_GROUP]: node };
    this.items.set(c.name, { ...current, metadata: { ...current.metadata, labels, resourceVersion: String(++this.rv) } });
    this.notify(c.name);
    this.reconcile(uid);
  }

  private logPhase(backend: SessionLivedBackend, writer: Writer): void {
    const s = backend.status ?? {};
    const phase = phaseOf(backend);
    const info = this.runs.get(backend.metadata.uid ?? '')?.info;
    const fields: Record<string, unknown> = { backend: backend.metadata.name, phase, image: info?.image };
    if (info?.pid !== undefined) fields.pid = info.pid;
    if (phase === 'Running' && info?.command) fields.command = info.command.join(' ');
    if (info?.appPort !== undefined) fields.appPort = info.appPort;
    if (info?.servePort !== undefined) fields.sidecarPort = info.servePort;
    if (info?.adminPort !== undefined) fields.adminPort = info.adminPort;
    if (isTerminal(phase)) Object.assign(fields, { reason: s.reason, message: s.message, by: writer });
    if (s.exitCode !== undefined && isTerminal(phase)) fields.exitCode = s.exitCode;
    if (phase === 'Failed') this.logger.warn(`backend ${phase}`, fields);
    else this.logger.info(`backend ${phase}`, fields);
  }

  /** Removes the backend (this incarnation); its run goes with it, as Kubernetes' garbage collector does. */
  private remove(name: string, uid: string): void {
    this.forget(uid);
    this.stopRun(uid);
    const current = this.items.get(name);
    if (!current || current.metadata.uid !== uid) return;
    this.items.delete(name);
    this.endedBackends.record(clone(current));
    this.notify(name);
  }

  private forget(uid: string): void {
    const c = this.controls.get(uid);
    if (!c) return;
    this.quiet(c);
    this.controls.delete(uid);
  }

  /** No timer, no tracker. */
  private quiet(c: Control): void {
    c.timer?.clear();
    c.timer = undefined;
    c.tracker?.close();
    c.tracker = undefined;
  }

  private startRun(backend: SessionLivedBackend, claimed?: ClaimedProcess): void {
    const uid = backend.metadata.uid as string;
    if (this.runs.has(uid) || this.closed) return;
    const run = new BackendRun(
      clone(backend),
      {
        images: this.opts.images,
        ports: this.ports,
        watchdog: this.watchdog,
        logger: this.logger,
        sidecarLogger: this.opts.sidecarLogger ?? this.logger,
        host: this.host,
        nodeName: this.opts.nodeName ?? LOCAL_NODE_NAME,
        stopGraceMs: this.stopGraceMs,
        sidecar: this.sidecar,
        onChange: () => this.reconcile(uid),
      },
      claimed,
    );
    this.runs.set(uid, run);
    run.start();
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

  // ---- the sweeper's part ----

  /**
   * Follows the sidecar of a backend at Running or later with the sweeper's Tracker, its idle
   * countdown from the backend's first Ready (never idle before); stops following at the end.
   */
  private follow(c: Control): void {
    const backend = this.items.get(c.name);
    const run = this.liveRun(c.uid);
    const phase = backend ? phaseOf(backend) : undefined;
    if (!backend || !run || !phase || isTerminal(phase)) {
      c.tracker?.close();
      c.tracker = undefined;
      return;
    }
    if (phaseRank(phase) < phaseRank('Running') || run.info.adminPort === undefined) return;
    const countdownFrom = wasReady(backend) ? (phaseTime(backend, 'Ready') ?? Date.now()) : undefined;
    if (c.tracker) {
      c.tracker.setIdleCountdownFrom(countdownFrom);
      return;
    }
    const grace = backend.spec.gracePeriodSeconds ?? DEFAULT_GRACE_PERIOD_SECONDS;
    c.tracker = new Tracker({
      url: `http://${this.host}:${run.info.adminPort}/events`,
      gracePeriodSeconds: grace,
      idleCountdownFromMs: countdownFrom,
      heartbeatSeconds: this.sidecar.heartbeatSeconds,
      unreachableAfterMs: UNREACHABLE_AFTER_MS,
      onIdle: () => {
        const message = `idle for gracePeriodSeconds (${grace})`;
        this.write(c.uid, { phase: 'Swept', reason: Reasons.IdleTimeout, message }, 'sweeper');
      },
      onUnreachable: (since) => {
        this.logger.warn("the sidecar's state stream is down; not sweeping meanwhile", {
          backend: c.name,
          sinceMs: Date.now() - since,
        });
        return true;
      },
    });
    c.tracker.start();
  }

  private notify(name: string): void {
    this.listeners.emit(name, clone(this.items.get(name)));
  }
}
