/**
 * The entry point's routing view: Spawner's backend Pods (label-selected), and how fresh that
 * view is. SPEC section 12: traffic goes to a backend only through the Pod whose uid its status
 * names (`status.podUID`), whose controller ownerReference is that backend (uid match), and which
 * is Running, Ready and not terminating. A Pod IP is reused by the cluster once its Pod is gone;
 * a Failed or Succeeded Pod's leftover `podIP` is never used.
 *
 * Freshness. Every routing decision is only as good as the watch behind it, and a watch can stall
 * silently (a half-open connection, a paused API server). Bookmarks alone prove little: the API
 * server sends them about once a minute. So, every `probeIntervalMs`, one cheap consistent read
 * (a list of at most 1 Pod) tells the API server's current resourceVersion R at time T; once the
 * watch delivers an event or bookmark at R or later, everything up to T has reached this view, so
 * the view is fresh as of T. Pod watches end after `watchTimeoutSeconds` (and resume where they
 * were), since the API server sends a bookmark shortly before a watch's deadline: that bounds how
 * long a proof takes when no Pod changes (the probe's consistent read makes the API server's watch
 * cache catch up to R, which the bookmark then carries). A full list (the first, and any relist)
 * proves freshness as of when it was sent. When the API server answers probes but the watch
 * proves nothing for `relistAfterMs`, the view is rebuilt from a fresh list and watch.
 *
 * resourceVersions are compared as numbers (etcd revisions, as every etcd-backed API server has
 * them); where they are not numbers only an equal one proves anything, and the relist keeps the
 * view fresh instead.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { sleep } from '../../common/src/backoff';
import { KIND, LABEL_MANAGED_BY, MANAGED_BY } from '../../common/src/constants';
import { errorMessage } from '../../common/src/errors';
import { Informer } from '../../common/src/kube/informer';
import { PODS } from '../../common/src/kube/resources';
import type { KubeClient, KubeObject, ResourceType, WatchEvent, WatchOptions } from '../../common/src/kube/types';
import type { Logger } from '../../common/src/logger';
import type { SessionLivedBackend } from './backend-store';

/** Spawner's backend Pods (operator/src/desired-state.ts labels every one so). */
export const BACKEND_POD_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

/** The default bound on the view's age before new connections are refused. */
export const DEFAULT_ROUTES_FRESHNESS_SECONDS = 15;

export interface PodRoutesOptions {
  client: KubeClient;
  namespace: string;
  logger: Logger;
  /** Past this age the view is stale (`stale()`). */
  freshnessBoundMs: number;
  /** How often the current resourceVersion is read (default: a fifth of the bound). */
  probeIntervalMs?: number;
  /** Pod watches end (and resume) after this; a bookmark comes shortly before (default: a quarter of the bound, 3 to 60). */
  watchTimeoutSeconds?: number;
  /** Rebuild the view when it has proven nothing this long while probes succeed (default: 60 % of the bound). */
  relistAfterMs?: number;
  /** Milliseconds, monotonic enough (default Date.now). */
  now?: () => number;
  /** A Pod's routability changed; `backendName` is its controller (a SessionLivedBackend). */
  onRouteChange?: (backendName: string) => void;
  onWatchError?: (err: unknown) => void;
}

/** One list-then-watch of the Pods, with its own index; a relist builds the next one beside it. */
interface Generation {
  informer: Informer<V1Pod>;
  byUid: Map<string, V1Pod>;
  uidByName: Map<string, string>;
  /** When the first page of its latest full list was asked for, and that list's resourceVersion. */
  listSentAt?: number;
  listRv?: string;
}

/** a ≥ b, for resourceVersions: as numbers when both are, else only when equal. */
export function rvAtLeast(a: string, b: string): boolean {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) >= BigInt(b);
  return a === b;
}

/** The Pod's controller, when it is a SessionLivedBackend. */
function controllerOf(pod: V1Pod): { name: string; uid: string } | undefined {
  const ref = pod.metadata?.ownerReferences?.find((r) => r.controller === true);
  return ref && ref.kind === KIND ? { name: ref.name, uid: ref.uid } : undefined;
}

/** The Pod's IP when traffic may go to it: Running, Ready, not terminating. */
function servingIp(pod: V1Pod | undefined): string | undefined {
  if (!pod || pod.metadata?.deletionTimestamp) return undefined;
  const status = pod.status;
  if (status?.phase !== 'Running') return undefined;
  if (!status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return undefined;
  return status.podIP || undefined;
}

/** What a route through this Pod depends on; a change is announced to the backend's watchers. */
function routeKey(pod: V1Pod | undefined): string {
  if (!pod) return '';
  return `${controllerOf(pod)?.uid ?? ''}|${servingIp(pod) ?? ''}`;
}

export class PodRoutes {
  private current: Generation;
  private next?: Generation;
  private readonly boundMs: number;
  private readonly probeMs: number;
  private readonly relistAfterMs: number;
  private readonly watchTimeoutSeconds: number;
  private readonly now: () => number;
  /** The view holds everything the API server had at this moment (ms; -Infinity: never proven). */
  private freshAsOf = -Infinity;
  /** The newest resourceVersion the current view is known to have caught up to. */
  private progressRv?: string;
  /** Probes not yet proven: when each was sent, and the resourceVersion it read. */
  private pending: Array<{ at: number; rv: string }> = [];
  private probing = false;
  private lastProbeOkAt = -Infinity;
  private lastRelistAt = -Infinity;
  private relisting?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private wasStale?: boolean;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(private readonly opts: PodRoutesOptions) {
    this.boundMs = opts.freshnessBoundMs;
    this.probeMs = opts.probeIntervalMs ?? Math.max(100, Math.round(this.boundMs / 5));
    this.relistAfterMs = opts.relistAfterMs ?? Math.round(this.boundMs * 0.6);
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? Math.min(60, Math.max(3, Math.ceil(this.boundMs / 4000)));
    this.now = opts.now ?? Date.now;
    this.current = this.generation();
  }

  start(): void {
    this.current.informer.start();
    this.timer = setInterval(() => void this.tick(), this.probeMs);
    this.timer.unref?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearInterval(this.timer);
    await Promise.all([this.current.informer.stop(), this.next?.informer.stop()]);
  }

  get hasSynced(): boolean {
    return this.current.informer.hasSynced;
  }

  waitForSync(): Promise<void> {
    return this.current.informer.waitForSync();
  }

  /**
   * The IP to send the backend's traffic to: its status names the Pod (podUID), the Pod's
   * controller is this backend (uid), and the Pod is Running, Ready and not terminating. Answers
   * from the view as it is; `stale()` says whether to trust it for new connections.
   */
  route(backend: SessionLivedBackend): string | undefined {
    const podUid = backend.status?.podUID;
    const owner = backend.metadata.uid;
    if (!podUid || !owner) return undefined;
    const pod = this.current.byUid.get(podUid);
    if (!pod || pod.metadata?.namespace !== this.opts.namespace) return undefined;
    if (controllerOf(pod)?.uid !== owner) return undefined;
    return servingIp(pod);
  }

  /** Whether the view may be older than the bound (or was never complete). */
  stale(): boolean {
    return !this.current.informer.hasSynced || this.ageMs() > this.boundMs;
  }

  /** How old the view may be: now minus the last moment it is proven to hold (Infinity: never). */
  ageMs(): number {
    return this.now() - this.freshAsOf;
  }

  private generation(): Generation {
    const gen: Generation = { byUid: new Map(), uidByName: new Map() } as Generation;
    gen.informer = new Informer<V1Pod>(
      this.tapped(gen),
      PODS,
      {
        onUpsert: (pod) => this.upsert(gen, pod),
        onDelete: (pod) => this.remove(gen, pod),
        onSynced: () => {
          // A full list: the view holds what the API server had when it was sent.
          if (gen === this.current && gen.listRv !== undefined && gen.listSentAt !== undefined) {
            this.proven(gen.listRv, gen.listSentAt);
          }
        },
      },
      this.opts.logger,
      {
        namespace: this.opts.namespace,
        labelSelector: BACKEND_POD_SELECTOR,
        watchTimeoutSeconds: this.watchTimeoutSeconds,
        onWatchError: this.opts.onWatchError,
      },
    );
    return gen;
  }

  /** The client as the generation's informer sees it, noting what its lists and watches prove. */
  private tapped(gen: Generation): KubeClient {
    const client = this.opts.client;
    return {
      get: (type, namespace, name) => client.get(type, namespace, name),
      create: (type, namespace, obj, opts) => client.create(type, namespace, obj, opts),
      patch: (type, namespace, name, patch, patchType, opts) => client.patch(type, namespace, name, patch, patchType, opts),
      delete: (type, namespace, name, opts) => client.delete(type, namespace, name, opts),
      list: async <T extends KubeObject>(...args: Parameters<KubeClient['list']>) => {
        const sentAt = this.now();
        const page = await client.list<T>(...args);
        if (!args[2]?.continue) gen.listSentAt = sentAt;
        gen.listRv = page.resourceVersion;
        return page;
      },
      watch: <T extends KubeObject>(
        type: ResourceType,
        namespace: string | undefined,
        opts: WatchOptions,
        onEvent: (event: WatchEvent<T>) => void,
      ) =>
        client.watch<T>(type, namespace, opts, (event) => {
          onEvent(event);
          // After the informer has applied it: the view now holds everything up to this version.
          const rv = event.object.metadata?.resourceVersion;
          if (rv && gen === this.current) this.progressed(rv);
        }),
    };
  }

  private upsert(gen: Generation, pod: V1Pod): void {
    const name = pod.metadata?.name ?? '';
    const uid = pod.metadata?.uid;
    if (!uid) return;
    // A same-named successor seen in a relist: the predecessor is gone even without its delete.
    const before = gen.uidByName.get(name);
    if (before !== undefined && before !== uid) {
      const old = gen.byUid.get(before);
      gen.byUid.delete(before);
      this.changed(gen, old, undefined);
    }
    gen.uidByName.set(name, uid);
    const prev = gen.byUid.get(uid);
    gen.byUid.set(uid, pod);
    this.changed(gen, prev, pod);
  }

  private remove(gen: Generation, pod: V1Pod): void {
    const name = pod.metadata?.name ?? '';
    const uid = pod.metadata?.uid;
    if (!uid) return;
    if (gen.uidByName.get(name) === uid) gen.uidByName.delete(name);
    const prev = gen.byUid.get(uid);
    gen.byUid.delete(uid);
    this.changed(gen, prev, undefined);
  }

  private changed(gen: Generation, prev: V1Pod | undefined, next: V1Pod | undefined): void {
    if (gen !== this.current || routeKey(prev) === routeKey(next)) return;
    const owner = (next && controllerOf(next)) ?? (prev && controllerOf(prev));
    if (owner) this.opts.onRouteChange?.(owner.name);
  }

  /** The current view has caught up to `rv`. */
  private progressed(rv: string): void {
    if (this.progressRv === undefined || rvAtLeast(rv, this.progressRv)) this.progressRv = rv;
    this.settle();
  }

  /** The current view holds what the API server had at `at`, whose version was `rv`. */
  private proven(rv: string, at: number): void {
    this.progressRv = rv;
    this.freshAsOf = Math.max(this.freshAsOf, at);
    this.settle();
  }

  /** Probes the progress has reached prove freshness as of when they were sent. */
  private settle(): void {
    const progress = this.progressRv;
    if (progress === undefined) return;
    const open: typeof this.pending = [];
    for (const p of this.pending) {
      if (rvAtLeast(progress, p.rv)) this.freshAsOf = Math.max(this.freshAsOf, p.at);
      else open.push(p);
    }
    this.pending = open;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    this.logTransition();
    if (!this.probing) {
      this.probing = true;
      try {
        await this.probe();
      } finally {
        this.probing = false;
      }
    }
    if (this.stopped || this.relisting || !this.current.informer.hasSynced) return;
    const now = this.now();
    const answering = now - this.lastProbeOkAt <= this.probeMs * 2;
    if (answering && now - this.freshAsOf > this.relistAfterMs && now - this.lastRelistAt > this.relistAfterMs) {
      this.relisting = this.relist().finally(() => (this.relisting = undefined));
    }
  }

  /** One consistent read of the current resourceVersion (at most one Pod in the answer). */
  private async probe(): Promise<void> {
    const at = this.now();
    try {
      const page = await this.opts.client.list(PODS, this.opts.namespace, { labelSelector: BACKEND_POD_SELECTOR, limit: 1 });
      this.lastProbeOkAt = this.now();
      this.pending.push({ at, rv: page.resourceVersion });
      // Only the newest few matter: an older probe is proven by any newer one's proof.
      if (this.pending.length > 16) this.pending.splice(0, this.pending.length - 16);
      this.settle();
    } catch (err) {
      this.opts.logger.debug('routing view: resourceVersion probe failed', { error: errorMessage(err) });
    }
  }

  /** A fresh list and watch beside the current one; it takes over once it has synced. */
  private async relist(): Promise<void> {
    this.lastRelistAt = this.now();
    this.opts.logger.info('routing view: the Pod watch proved nothing recently; relisting', {
      ageMs: Number.isFinite(this.ageMs()) ? this.ageMs() : undefined,
    });
    const gen = this.generation();
    this.next = gen;
    gen.informer.start();
    const synced = await Promise.race([
      gen.informer.waitForSync().then(() => true),
      sleep(this.boundMs, this.abort.signal).then(() => false),
    ]);
    this.next = undefined;
    if (!synced || this.stopped) {
      await gen.informer.stop();
      return;
    }
    const old = this.current;
    this.current = gen;
    if (gen.listRv !== undefined && gen.listSentAt !== undefined) this.proven(gen.listRv, gen.listSentAt);
    for (const uid of new Set([...old.byUid.keys(), ...gen.byUid.keys()])) {
      const before = old.byUid.get(uid);
      const after = gen.byUid.get(uid);
      if (routeKey(before) === routeKey(after)) continue;
      const owner = (after && controllerOf(after)) ?? (before && controllerOf(before));
      if (owner) this.opts.onRouteChange?.(owner.name);
    }
    await old.informer.stop();
  }

  /** Logs when the view turns stale and when it is fresh again (from the first sync on). */
  private logTransition(): void {
    if (!this.current.informer.hasSynced) return;
    const stale = this.stale();
    if (stale === (this.wasStale ?? false)) return;
    this.wasStale = stale;
    const ageMs = Number.isFinite(this.ageMs()) ? Math.round(this.ageMs()) : undefined;
    if (stale) this.opts.logger.warn('routing view is stale (older than its bound)', { ageMs, boundMs: this.boundMs });
    else this.opts.logger.info('routing view is fresh again', { ageMs });
  }
}
