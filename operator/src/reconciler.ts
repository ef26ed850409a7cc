/**
 * The reconcile of one backend, by key: read the world (watch caches, and the API server where a
 * cache could mislead), let `decide` compute the plan, apply it, and say when to look again.
 *
 * Why it is safe to run again at any point, and after a crash at any point:
 * - Pod and Service have the backend's name and a controller ownerReference; creating one that
 *   exists answers AlreadyExists, so nothing is ever created twice.
 * - Status is written with a merge patch carrying the resourceVersion it was computed from, so a
 *   write based on a stale read fails with Conflict and is retried from a fresh one; the phase
 *   therefore only moves forward even while the sweeper and the API write status too.
 * - Events have deterministic names (backend, phase, uid), so re-emitting one is a no-op. They are
 *   written by an EventRecorder off the critical path: a reconcile never waits for its Events.
 * - There is no finalizer: deleting a backend never waits for the operator. Its Pod and Service go
 *   with it through Kubernetes' garbage collector (the ownerReferences), even with no operator
 *   running at all.
 */
import type { CoreV1Event, V1Pod, V1Service } from '@kubernetes/client-node';
import { whenEmptyOf, type Phase, type SessionBackendPool, type SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, phaseOf, phaseRank, PHASES, Reasons, writeTransition, type Transition } from '../../common/src/lifecycle';
import { EVENT_REPORTING_COMPONENT, FIELD_MANAGER, LABEL_SPAWNER_GROUP } from '../../common/src/constants';
import { isAlreadyExists, isConflict, isNotFound } from '../../common/src/errors';
import { BACKENDS, EVENTS, objectKey, PODS, SERVICES, splitKey } from '../../common/src/kube/resources';
import type { KubeClient, KubeObject } from '../../common/src/kube/types';
import type { Logger } from '../../common/src/logger';
import type { HandlerResult } from '../../common/src/work-queue';
import type { OperatorConfig } from './config';
import { decide, type Action, type DecideInput } from './decide';
import { claimablePods, claimPatch, podsControlledBy } from './pool';
import { httpAssign, waitsForAssignment, type AssignFn } from './assign-client';
import { keyFingerprint } from '../../common/src/pool-assign';
import { EventRecorder } from './event-recorder';
import { buildPod, buildService } from './desired-state';
import type { OperatorMetrics } from './metrics';

/** Where the reconciler reads current objects from (the operator's watch caches). */
export interface ObjectCache {
  backend(namespace: string, name: string): SessionLivedBackend | undefined;
  pod(namespace: string, name: string): V1Pod | undefined;
  service(namespace: string, name: string): V1Service | undefined;
  /** Warm pools (absent: none known). */
  pool(namespace: string, name: string): SessionBackendPool | undefined;
  /** Every Spawner Pod of the namespace. */
  pods(namespace: string): Iterable<V1Pod>;
  /** Whether the namespace's pools are cached (absent: always). */
  poolsSynced?(namespace: string): boolean;
}

/** How long a Pod this operator claimed (or lost a claim on) is not offered again from a stale cache. */
const TAKEN_MEMORY_MS = 30_000;

/** Events older than this are not re-created after a restart: the API server has expired them. */
const EVENT_REEMIT_WINDOW_MS = 50 * 60 * 1000;

export function eventName(backend: SessionLivedBackend, phase: Phase): string {
  return `${backend.metadata.name}.${phase.toLowerCase()}.${(backend.metadata.uid ?? '').slice(0, 8)}`;
}

/** Resource versions are opaque, but etcd's are increasing integers; pick the newer object. */
function newer<T extends { metadata?: { resourceVersion?: string } }>(a: T | undefined, b: T | undefined): T | undefined {
  if (!a) return b;
  if (!b) return a;
  const ra = Number(a.metadata?.resourceVersion);
  const rb = Number(b.metadata?.resourceVersion);
  if (Number.isFinite(ra) && Number.isFinite(rb)) return rb > ra ? b : a;
  return a;
}

export class Reconciler {
  /** The objects this operator wrote last, which its caches may not have seen yet. */
  private readonly written = new Map<string, SessionLivedBackend>();
  /** Pods claimed (or found claimed) lately, by uid: the cache may still show them unclaimed. */
  private readonly taken = new Map<string, number>();
  /** Claims in flight (claim patch sent, Ready not written yet), by pool key. */
  private readonly claiming = new Map<string, number>();
  readonly events: EventRecorder;
  /** Called when a claim that took a Pod from a pool is over (Ready written, or failed), so the pool refills at once. */
  onPoolChanged?: (namespace: string, pool: string) => void;

  private readonly keyFp: string;

  constructor(
    private readonly kube: KubeClient,
    private readonly cache: ObjectCache,
    private readonly config: Pick<OperatorConfig, 'failedRetentionSeconds' | 'identity' | 'serviceMode' | 'assignKey'> &
      Parameters<typeof buildPod>[1],
    private readonly metrics: OperatorMetrics,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
    /** Hands a claimed pool Pod's sidecar its backend (tests pass a fake). */
    private readonly assign: AssignFn = httpAssign(config.assignKey),
  ) {
    this.events = new EventRecorder(kube, logger);
    this.keyFp = keyFingerprint(config.assignKey);
  }

  /** Seed the set of existing events, so a restarted operator does not re-create them. */
  async loadEmittedEvents(namespace: string): Promise<void> {
    const events = await this.kube.list<CoreV1Event>(EVENTS, namespace, {
      fieldSelector: 'involvedObject.kind=SessionLivedBackend',
    });
    for (const e of events.items) if (e.metadata?.name) this.events.markExisting(e.metadata.name);
  }

  forget(key: string): void {
    this.written.delete(key);
  }

  /**
   * Claims of the pool (by key) between their Pod patch and the end of their pass: the pool
   * reconcile waits for them before starting a refill (see PoolReconciler), so a refill's Pod
   * start never competes with the writes a client waits for.
   */
  claimsInFlight(poolKey: string): number {
    return this.claiming.get(poolKey) ?? 0;
  }

  async reconcile(key: string): Promise<HandlerResult> {
    const claim: { pool?: string } = {};
    try {
      return await this.reconcileBackend(key, claim);
    } finally {
      if (claim.pool) {
        const left = (this.claiming.get(claim.pool) ?? 0) - 1;
        if (left > 0) this.claiming.set(claim.pool, left);
        else this.claiming.delete(claim.pool);
        const { namespace, name } = splitKey(claim.pool);
        this.onPoolChanged?.(namespace, name);
      }
    }
  }

  private async reconcileBackend(key: string, inFlight: { pool?: string }): Promise<HandlerResult> {
    const { namespace, name } = splitKey(key);
    let backend = newer(this.cache.backend(namespace, name), this.written.get(key));
    if (!backend) {
      this.written.delete(key);
      return {};
    }
    if (this.cache.backend(namespace, name) === undefined && this.written.has(key)) {
      // Written by us but gone from the cache: it may have been deleted; ask the API server.
      backend = await this.kube.get<SessionLivedBackend>(BACKENDS, namespace, name);
      if (!backend) {
        this.written.delete(key);
        return {};
      }
    }
    // The backend's Pod: the one its status names (a pool's Pod after a warm claim), else its own.
    const podName = backend.status?.podName ?? name;
    let pod = this.cache.pod(namespace, podName);
    let pool: DecideInput['pool'];
    if (backend.spec.poolRef && !backend.status?.launch && !isTerminal(phaseOf(backend))) {
      const found = await this.poolPod(backend, pod);
      if (found === 'stop') return { requeueAfterMs: 250 };
      pod = found;
      // Not knowing the pools yet (a restart, a pool CRD not installed) is not "no such pool".
      if (!pod && this.cache.poolsSynced?.(namespace) === false) return { requeueAfterMs: 500 };
      if (!pod) pool = this.poolInput(backend);
    }
    const service = this.cache.service(namespace, name);
    const retention = this.config.failedRetentionSeconds * 1000;

    const serviceMode = this.config.serviceMode;
    let plan = decide({ backend, pod, service, now: this.now(), failedRetentionMs: retention, serviceMode, pool });
    const claim = plan.actions.find((a) => a.kind === 'claim');
    if (claim) {
      inFlight.pool = objectKey(namespace, backend.spec.poolRef?.name as string);
      this.claiming.set(inFlight.pool, this.claimsInFlight(inFlight.pool) + 1);
      const claimed = await this.claim(backend, claim.pods);
      // Every candidate was taken meanwhile: look again once the cache has caught up.
      if (!claimed) return { requeueAfterMs: 100 };
      pod = claimed;
      plan = decide({ backend, pod, service, now: this.now(), failedRetentionMs: retention, serviceMode });
    }
    if (plan.actions.some((a) => a.kind === 'confirmPodGone')) {
      const live = await this.kube.get<V1Pod>(PODS, namespace, podName);
      if (live) return { requeueAfterMs: 500 };
      plan = decide({
        backend,
        pod: undefined,
        service,
        podConfirmedMissing: true,
        now: this.now(),
        failedRetentionMs: retention,
        serviceMode,
      });
    }

    // A claimed pool Pod's sidecar learns its backend before the status write that could make it
    // routable (and again after a restart in between: the sidecar takes a repeated assignment).
    if (
      pod &&
      backend.spec.poolRef &&
      !backend.status?.launch &&
      waitsForAssignment(pod) &&
      plan.actions.some((a) => a.kind === 'transition')
    ) {
      await this.assign(backend, pod);
    }
    for (const step of steps(plan.actions)) {
      // The Pod and the Service do not depend on each other: create them at once.
      const results = await Promise.all(step.map((action) => this.apply(key, backend as SessionLivedBackend, action)));
      if (results.includes('stop')) return { requeueAfterMs: 250 };
      for (const result of results) if (result && result !== 'stop') backend = result;
    }
    this.recordEvents(backend);
    return { requeueAfterMs: plan.requeueAfterMs };
  }

  private async apply(key: string, backend: SessionLivedBackend, action: Action): Promise<SessionLivedBackend | 'stop' | void> {
    const { namespace, name } = backend.metadata as { namespace: string; name: string };
    switch (action.kind) {
      case 'createPod':
        if (backend.spec.poolRef && !backend.status?.launch)
          this.metrics.poolClaims.inc({ pool: backend.spec.poolRef.name, result: 'cold' });
        return this.createChild(PODS, namespace, buildPod(backend, this.config));
      case 'claim':
        // Applied in reconcile(), before the rest of the plan.
        return;
      case 'createService':
        return this.createChild(SERVICES, namespace, buildService(backend, this.config));
      case 'deleteStale': {
        const type = action.what === 'pod' ? PODS : SERVICES;
        this.logger.info('deleting a leftover of an earlier backend with this name', { backend: key, kind: action.what });
        const staleName = action.what === 'pod' ? (backend.status?.podName ?? name) : name;
        await this.kube.delete(type, namespace, staleName, { uid: action.uid, propagationPolicy: 'Background' });
        return 'stop';
      }
      case 'confirmPodGone':
        return;
      case 'transition':
        return this.transition(key, backend, action.transition);
      case 'labelNode': {
        const patched = await this.kube.patch<SessionLivedBackend>(
          BACKENDS,
          namespace,
          name,
          { metadata: { labels: { [LABEL_SPAWNER_GROUP]: action.node } } },
          'merge',
          { fieldManager: FIELD_MANAGER },
        );
        this.written.set(key, patched);
        return patched;
      }
      case 'deleteChildren':
        await this.kube.delete(PODS, namespace, backend.status?.podName ?? name, { propagationPolicy: 'Background' });
        await this.kube.delete(SERVICES, namespace, name, { propagationPolicy: 'Background' });
        return;
      case 'deleteBackend': {
        const deleted = await this.kube.delete(BACKENDS, namespace, name, {
          uid: backend.metadata.uid,
          propagationPolicy: 'Background',
        });
        if (deleted) {
          const phase = phaseOf(backend);
          if (phase === 'Swept') this.metrics.terminations.inc({ phase, reason: backend.status?.reason ?? 'Unknown' });
          this.logger.info('deleted backend', { backend: key, phase, reason: backend.status?.reason });
        }
        this.written.delete(key);
        return;
      }
    }
  }

  private async createChild(type: typeof PODS, namespace: string, obj: V1Pod | V1Service): Promise<'stop' | void> {
    try {
      await this.kube.create(type, namespace, obj as never, { fieldManager: FIELD_MANAGER });
      this.logger.debug('created', { kind: type.kind, name: obj.metadata?.name, namespace });
    } catch (err) {
      // Created by an earlier pass whose result we never saw, or a leftover: look again shortly,
      // when the cache shows which.
      if (isAlreadyExists(err)) return 'stop';
      throw err;
    }
  }

  private async transition(key: string, backend: SessionLivedBackend, t: Transition): Promise<SessionLivedBackend | void> {
    const now = this.now();
    const outcome = await writeTransition(this.kube, 'operator', backend, t, { now: () => now });
    if (outcome.kind === 'gone') return;
    if (outcome.kind === 'refused') {
      // Someone else moved it on meanwhile (the sweeper, the API): the next pass plans from that.
      this.logger.debug('transition no longer applies', { backend: key, to: t.phase, why: outcome.refused });
      this.written.set(key, outcome.backend);
      return outcome.backend;
    }
    const patched = outcome.backend;
    const from = outcome.from;
    this.written.set(key, patched);
    if (t.phase !== from) {
      const created = new Date(backend.metadata.creationTimestamp as unknown as string).getTime();
      for (const p of PHASES) {
        if (isTerminal(p) || phaseRank(p) <= phaseRank(from) || phaseRank(p) > phaseRank(t.phase)) continue;
        const seconds = Math.max(0, (now.getTime() - created) / 1000);
        this.metrics.spawnStage.observe({ stage: p.toLowerCase() }, seconds);
        if (p === 'Ready')
          this.metrics.startSeconds.observe({ launch: patched.status?.launch === 'Warm' ? 'warm' : 'cold' }, seconds);
      }
      this.metrics.transitions.inc({ phase: t.phase });
      if (t.phase === 'Failed') this.metrics.terminations.inc({ phase: 'Failed', reason: t.reason ?? 'Unknown' });
      if (t.reason === Reasons.PoolEmpty && backend.spec.poolRef)
        this.metrics.poolClaims.inc({ pool: backend.spec.poolRef.name, result: 'rejected' });
      const level = t.phase === 'Failed' ? 'warn' : 'info';
      this.logger[level]('phase changed', { backend: key, from, to: t.phase, reason: t.reason, message: t.message });
    }
    return patched;
  }

  /** One Event per phase reached, created once (deterministic names make retries harmless). */
  private recordEvents(backend: SessionLivedBackend): void {
    const nowMs = this.now().getTime();
    for (const step of backend.status?.transitions ?? []) {
      const phase = step.phase;
      const name = eventName(backend, phase);
      if (this.events.known(name)) continue;
      if (nowMs - Date.parse(step.time) > EVENT_REEMIT_WINDOW_MS) {
        this.events.markExisting(name);
        continue;
      }
      const failed = phase === 'Failed';
      const event: CoreV1Event = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: backend.metadata.namespace },
        involvedObject: {
          apiVersion: backend.apiVersion,
          kind: backend.kind,
          name: backend.metadata.name,
          namespace: backend.metadata.namespace,
          uid: backend.metadata.uid,
        },
        reason: step.reason ?? phase,
        action: phase,
        message: step.message ?? `Backend is ${phase}`,
        type: failed ? 'Warning' : 'Normal',
        count: 1,
        firstTimestamp: step.time as unknown as Date,
        lastTimestamp: step.time as unknown as Date,
        source: { component: 'spawner-operator' },
        reportingComponent: EVENT_REPORTING_COMPONENT,
        reportingInstance: this.config.identity,
      };
      this.events.record(event);
    }
  }

  /**
   * The Pod of a backend from a pool that has no launch recorded yet: the one its status or name
   * says, else one whose controller it already is (claimed by a pass that ended before the status
   * write). Should two be (a claim write that landed after a restarted operator listed the Pods),
   * the oldest stays and the others are deleted.
   */
  private async poolPod(backend: SessionLivedBackend, byName: V1Pod | undefined): Promise<V1Pod | undefined | 'stop'> {
    const namespace = backend.metadata.namespace as string;
    const owned = podsControlledBy(backend.metadata.uid, this.cache.pods(namespace));
    if (owned.length === 0) return byName;
    const ordered = owned.sort((a, b) =>
      String(a.metadata?.creationTimestamp).localeCompare(String(b.metadata?.creationTimestamp)),
    );
    const keep = byName && owned.includes(byName) ? byName : ordered[0];
    const extra = ordered.filter((p) => p !== keep);
    if (extra.length === 0) return keep;
    for (const p of extra) {
      this.logger.warn('backend controls more than one Pod; deleting the extra', {
        backend: `${namespace}/${backend.metadata.name}`,
        pod: p.metadata?.name,
      });
      await this.kube.delete(PODS, namespace, p.metadata?.name as string, {
        uid: p.metadata?.uid,
        propagationPolicy: 'Background',
      });
    }
    return 'stop';
  }

  /** The backend's pool as decide() needs it: found, whenEmpty, claimable Pods in a random order. */
  private poolInput(backend: SessionLivedBackend): DecideInput['pool'] {
    const namespace = backend.metadata.namespace as string;
    const pool = this.cache.pool(namespace, backend.spec.poolRef?.name as string);
    if (!pool) return { found: false, whenEmpty: 'ColdStart', claimable: [] };
    const nowMs = this.now().getTime();
    for (const [uid, at] of this.taken) if (nowMs - at > TAKEN_MEMORY_MS) this.taken.delete(uid);
    const claimable = claimablePods(pool, this.cache.pods(namespace), this.keyFp).filter(
      (p) => !this.taken.has(p.metadata?.uid as string),
    );
    // A random order: concurrent claims of one pool spread over its Pods instead of racing for one.
    for (let i = claimable.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [claimable[i], claimable[j]] = [claimable[j], claimable[i]];
    }
    return { found: true, whenEmpty: whenEmptyOf(pool), claimable };
  }

  /**
   * Claims one of `pods` for the backend: one patch per try that makes the backend the Pod's
   * controller, under the Pod's resourceVersion; a Conflict (someone else's claim, a change) or a
   * Pod gone takes the next. Returns the claimed Pod, or nothing when every one was taken.
   */
  private async claim(backend: SessionLivedBackend, pods: V1Pod[]): Promise<V1Pod | undefined> {
    const namespace = backend.metadata.namespace as string;
    const poolName = backend.spec.poolRef?.name as string;
    for (const candidate of pods) {
      const podName = candidate.metadata?.name as string;
      const uid = candidate.metadata?.uid as string;
      // Reserved before the write: this operator's concurrent claims (other backends' reconciles)
      // skip it instead of racing for it and losing to a Conflict.
      if (this.taken.has(uid)) continue;
      this.taken.set(uid, this.now().getTime());
      try {
        const claimed = await this.kube.patch<V1Pod & KubeObject>(
          PODS,
          namespace,
          podName,
          claimPatch(candidate, backend),
          'merge',
          {
            fieldManager: FIELD_MANAGER,
          },
        );
        this.metrics.poolClaims.inc({ pool: poolName, result: 'warm' });
        this.logger.info('claimed a warm Pod', {
          backend: `${namespace}/${backend.metadata.name}`,
          pod: podName,
          pool: poolName,
        });
        return claimed;
      } catch (err) {
        if (!isConflict(err) && !isNotFound(err)) {
          // Not taken by anyone we know of: free for the next try.
          this.taken.delete(uid);
          throw err;
        }
        this.metrics.poolClaimConflicts.inc({ pool: poolName });
        this.logger.debug('claim conflict; trying the next Pod', { pod: podName, pool: poolName });
      }
    }
    return undefined;
  }

  forgetEvents(backend: SessionLivedBackend): void {
    this.events.forget(PHASES.map((p) => eventName(backend, p)));
  }
}

/** The plan's actions in order, consecutive creates grouped to run together. */
function steps(actions: Action[]): Action[][] {
  const out: Action[][] = [];
  const isCreate = (a: Action): boolean => a.kind === 'createPod' || a.kind === 'createService';
  for (const action of actions) {
    const last = out[out.length - 1];
    if (last && isCreate(action) && isCreate(last[0])) last.push(action);
    else out.push([action]);
  }
  return out;
}
