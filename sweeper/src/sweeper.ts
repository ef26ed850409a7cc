/**
 * The sweeper of one node: follows the sidecar of every backend whose Pod runs here (found by the
 * operator's `spawnerGroup=<node>` label), and marks a backend Swept when the idle rule says so
 * (IdleTimeout), or when its sidecar stays unreachable while its Pod is gone or not running
 * (Unreachable). Deleting the backend is the operator's job.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { type SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, phaseOf, phaseTime, Reasons, wasReady, writeTransition } from '../../common/src/lifecycle';
import { DEFAULT_GRACE_PERIOD_SECONDS, LABEL_MANAGED_BY, LABEL_SPAWNER_GROUP, MANAGED_BY } from '../../common/src/constants';
import { isNotFound } from '../../common/src/errors';
import { Informer } from '../../common/src/kube/informer';
import { BACKENDS, objectKey, PODS } from '../../common/src/kube/resources';
import type { KubeClient, KubeObject } from '../../common/src/kube/types';
import type { Logger } from '../../common/src/logger';
import type { SweeperConfig } from './config';
import type { SweeperMetrics } from './metrics';
import { Tracker } from './tracker';

type Cfg = Pick<SweeperConfig, 'nodeName' | 'namespaces' | 'sidecarAdminPort' | 'heartbeatSeconds' | 'unreachableSeconds'>;

const TRACKED_PHASES = new Set(['Running', 'Ready']);

export class Sweeper {
  private readonly trackers = new Map<string, { tracker: Tracker; uid: string; podIP: string }>();
  private readonly backendInformers: Informer<SessionLivedBackend>[] = [];
  private readonly podInformers = new Map<string, Informer<V1Pod & KubeObject>>();

  constructor(
    private readonly kube: KubeClient,
    private readonly config: Cfg,
    private readonly metrics: SweeperMetrics,
    private readonly logger: Logger,
  ) {
    for (const ns of config.namespaces) {
      this.backendInformers.push(
        new Informer<SessionLivedBackend>(
          kube,
          BACKENDS,
          { onUpsert: (b) => this.onBackend(b), onDelete: (b) => this.drop(this.key(b)) },
          logger,
          { namespace: ns, labelSelector: `${LABEL_SPAWNER_GROUP}=${config.nodeName}`, resyncMs: 60_000 },
        ),
      );
      this.podInformers.set(
        ns,
        new Informer<V1Pod & KubeObject>(kube, PODS, {}, logger, {
          namespace: ns,
          labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}`,
          fieldSelector: `spec.nodeName=${config.nodeName}`,
        }),
      );
    }
  }

  get watched(): number {
    return this.trackers.size;
  }

  get connected(): number {
    let n = 0;
    for (const t of this.trackers.values()) if (t.tracker.connected) n++;
    return n;
  }

  get synced(): boolean {
    return this.backendInformers.every((i) => i.hasSynced) && [...this.podInformers.values()].every((i) => i.hasSynced);
  }

  start(): void {
    for (const i of this.podInformers.values()) i.start();
    for (const i of this.backendInformers) i.start();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.backendInformers, ...this.podInformers.values()].map((i) => i.stop()));
    for (const key of [...this.trackers.keys()]) this.drop(key);
  }

  private key(b: SessionLivedBackend): string {
    return objectKey(b.metadata.namespace, b.metadata.name as string);
  }

  private onBackend(b: SessionLivedBackend): void {
    const key = this.key(b);
    const phase = phaseOf(b);
    const podIP = b.status?.podIP;
    if (isTerminal(phase) || !TRACKED_PHASES.has(phase) || !podIP || b.metadata.deletionTimestamp) {
      if (isTerminal(phase) || b.metadata.deletionTimestamp) this.drop(key);
      return;
    }
    const grace = b.spec.gracePeriodSeconds ?? DEFAULT_GRACE_PERIOD_SECONDS;
    const existing = this.trackers.get(key);
    // The idle countdown starts at the first Ready (on the operator's clock; the sidecar also
    // restarts its activity clock when the app first accepts connections).
    const readySince = wasReady(b) ? (phaseTime(b, 'Ready') ?? Date.now()) : undefined;
    if (existing && existing.uid === b.metadata.uid && existing.podIP === podIP) {
      existing.tracker.setGracePeriod(grace);
      existing.tracker.setIdleCountdownFrom(readySince);
      return;
    }
    if (existing) this.drop(key);
    const uid = b.metadata.uid as string;
    const tracker = new Tracker({
      url: `http://${podIP}:${this.config.sidecarAdminPort}/events`,
      gracePeriodSeconds: grace,
      idleCountdownFromMs: readySince,
      heartbeatSeconds: this.config.heartbeatSeconds,
      unreachableAfterMs: this.config.unreachableSeconds * 1000,
      onIdle: (deadlineMs) =>
        void this.sweep(key, uid, Reasons.IdleTimeout, `idle for gracePeriodSeconds (${grace})`, deadlineMs),
      onUnreachable: (since) => this.onUnreachable(key, uid, since, b.status?.podName),
      onConnectFailure: () => this.metrics.connectFailures.inc(),
    });
    this.trackers.set(key, { tracker, uid, podIP });
    tracker.start();
    this.logger.debug('following sidecar', { backend: key, podIP });
  }

  private drop(key: string): void {
    const t = this.trackers.get(key);
    if (!t) return;
    t.tracker.close();
    this.trackers.delete(key);
    this.logger.debug('stopped following sidecar', { backend: key });
  }

  private async onUnreachable(key: string, uid: string, since: number, podName?: string): Promise<boolean> {
    const { namespace, name } = this.split(key);
    // The Pod the backend's status names (a warm pool's Pod after a claim), else its own.
    const pod = this.podInformers.get(namespace)?.get(namespace, podName ?? name);
    const podOk = pod && pod.metadata?.uid && !pod.metadata.deletionTimestamp && pod.status?.phase === 'Running';
    if (podOk) return false;
    const seconds = Math.round((Date.now() - since) / 1000);
    return this.sweep(
      key,
      uid,
      Reasons.Unreachable,
      `sidecar unreachable for ${seconds}s and its Pod is ${pod ? (pod.status?.phase ?? 'not running') : 'gone'}`,
    );
  }

  private split(key: string): { namespace: string; name: string } {
    const i = key.indexOf('/');
    return { namespace: key.slice(0, i), name: key.slice(i + 1) };
  }

  /** Writes Swept through the transition module; true once the backend is terminal or gone. */
  private async sweep(key: string, uid: string, reason: string, message: string, deadlineMs?: number): Promise<boolean> {
    const { namespace, name } = this.split(key);
    try {
      const backend =
        this.backendInformers.map((i) => i.get(namespace, name)).find(Boolean) ??
        (await this.kube.get<SessionLivedBackend>(BACKENDS, namespace, name));
      if (!backend || backend.metadata.uid !== uid) {
        this.drop(key);
        return true;
      }
      const outcome = await writeTransition(this.kube, 'sweeper', backend, { phase: 'Swept', reason, message });
      if (outcome.kind === 'written') {
        this.metrics.sweeps.inc({ reason });
        if (deadlineMs !== undefined) this.metrics.sweepLag.observe(Math.max(0, (Date.now() - deadlineMs) / 1000));
        this.logger.info('swept backend', { backend: key, reason, message });
      }
      if (outcome.kind !== 'refused' || isTerminal(phaseOf(outcome.backend))) {
        this.drop(key);
        return true;
      }
      // Not ours to sweep as it now is (not Ready, say): look again below.
      this.logger.debug('not swept', { backend: key, reason, why: outcome.refused });
    } catch (err) {
      if (isNotFound(err)) {
        this.drop(key);
        return true;
      }
      this.metrics.sweepErrors.inc();
      this.logger.warn('could not sweep backend; will retry', { backend: key, reason, error: err });
    }
    // Not written: look again shortly (the idle verdict is re-derived from the next report).
    const t = this.trackers.get(key);
    if (t) setTimeout(() => t.tracker.rearm(), 1000).unref?.();
    return false;
  }
}
