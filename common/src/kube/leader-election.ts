/**
 * Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: the
 * holder renews every `renewMs`; others take over once `leaseDurationSeconds` passed without a
 * renewal. Every write carries the resourceVersion it was based on, so two candidates can never
 * both win the same round.
 *
 * Losing is noticed promptly, and always before anyone else can take over: the leader steps down
 * (`onStoppedLeading`) as soon as a renewal finds another holder (or loses a write race on the
 * Lease), and, whatever its requests are doing, once `renewDeadlineMs` passed since the last
 * successful renewal. The deadline is shorter than the lease, so a leader cut off from the API
 * server stops before the others may consider the lease expired. What stopping means is the
 * caller's business; the operator exits (docs/adr/0007-fenced-leadership.md).
 */
import type { V1Lease } from '@kubernetes/client-node';
import { sleep } from '../backoff';
import { isAlreadyExists, isConflict } from '../errors';
import type { Logger } from '../logger';
import { LEASES } from './resources';
import type { KubeClient } from './types';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  /** How long others wait after the last renewal before taking over (15 s, as client-go). */
  leaseDurationSeconds?: number;
  /** The leader steps down when it could not renew for this long (2/3 of the lease: 10 s). */
  renewDeadlineMs?: number;
  /**
   * How often the leader renews (1 s): also how long it may go on after someone overwrote the
   * Lease. client-go renews every 2 s; one GET and one PATCH a second from the leader is cheap.
   */
  renewMs?: number;
  /** How often a candidate tries to acquire (2 s). */
  retryMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

const microTime = (d: Date): string => d.toISOString().replace('Z', '000Z');

export class LeaderElector {
  private leading = false;
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  /** Fires `renewDeadlineMs` after the last successful renewal, whatever the requests are doing. */
  private deadline?: NodeJS.Timeout;
  private readonly durationSeconds: number;
  private readonly renewDeadlineMs: number;
  private readonly renewMs: number;
  private readonly retryMs: number;

  constructor(
    private readonly kube: KubeClient,
    private readonly opts: LeaderElectionOptions,
    private readonly logger: Logger,
  ) {
    this.durationSeconds = opts.leaseDurationSeconds ?? 15;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? Math.round((this.durationSeconds * 1000 * 2) / 3);
    this.renewMs = opts.renewMs ?? Math.min(1000, Math.round(this.renewDeadlineMs / 3));
    this.retryMs = opts.retryMs ?? 2000;
    if (!(this.renewDeadlineMs < this.durationSeconds * 1000 && this.renewMs < this.renewDeadlineMs)) {
      throw new Error(
        `leader election needs renewMs < renewDeadlineMs < leaseDurationSeconds (got ${this.renewMs} ms, ${this.renewDeadlineMs} ms, ${this.durationSeconds} s)`,
      );
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    if (this.leading) {
      // Hand over at once instead of making the next leader wait out the lease.
      await this.release().catch(() => undefined);
      this.setLeading(false);
    }
  }

  private setLeading(value: boolean, reason?: string): void {
    if (!value) clearTimeout(this.deadline);
    if (value === this.leading) return;
    this.leading = value;
    const fields = { lease: this.opts.name, identity: this.opts.identity };
    if (value) this.logger.info('became leader', fields);
    else if (reason) this.logger.warn('lost the lease', { ...fields, reason });
    else this.logger.info('stopped leading', fields);
    if (value) this.opts.onStartedLeading();
    else this.opts.onStoppedLeading();
  }

  /** (Re)arms the deadline from the time the successful renewal was sent. */
  private renewed(sentAt: number): void {
    clearTimeout(this.deadline);
    this.deadline = setTimeout(
      () => this.setLeading(false, `not renewed within ${this.renewDeadlineMs} ms`),
      Math.max(0, sentAt + this.renewDeadlineMs - Date.now()),
    );
    this.deadline.unref?.();
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      const sentAt = Date.now();
      try {
        const ok = await this.tryAcquireOrRenew(this.durationSeconds, new Date(sentAt));
        if (!ok) this.setLeading(false, 'the lease is held by another candidate');
        else if (Date.now() - sentAt >= this.renewDeadlineMs) {
          // The write went through, but too late to count: the deadline has passed (and fired).
          this.logger.warn('lease renewal answered after the renew deadline', { ms: Date.now() - sentAt });
        } else {
          this.setLeading(true);
          this.renewed(sentAt);
        }
      } catch (err) {
        // Leading or not, nothing changes until the deadline: the next attempt may succeed.
        this.logger.warn('lease update failed', { error: err, leading: this.leading });
      }
      await sleep(this.leading ? this.renewMs : this.retryMs, this.abort.signal);
    }
  }

  private async tryAcquireOrRenew(duration: number, now: Date): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const lease = await this.kube.get<V1Lease>(LEASES, namespace, name);
    if (!lease) {
      try {
        await this.kube.create<V1Lease>(LEASES, namespace, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: duration,
            acquireTime: microTime(now) as unknown as Date,
            renewTime: microTime(now) as unknown as Date,
            leaseTransitions: 0,
          },
        });
        return true;
      } catch (err) {
        if (isAlreadyExists(err)) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity;
    const renewed = spec.renewTime ? new Date(spec.renewTime as unknown as string).getTime() : 0;
    const expired = renewed + (spec.leaseDurationSeconds ?? duration) * 1000 < now.getTime();
    // While leading, any other holder (even on a lease that looks expired) means we lost it.
    if (this.leading && holder !== identity) return false;
    if (holder && holder !== identity && !expired) return false;
    const takeover = holder !== identity;
    try {
      await this.kube.patch(
        LEASES,
        namespace,
        name,
        {
          metadata: { resourceVersion: lease.metadata?.resourceVersion },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: duration,
            renewTime: microTime(now),
            ...(takeover ? { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
          },
        },
        'merge',
      );
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  private async release(): Promise<void> {
    const lease = await this.kube.get<V1Lease>(LEASES, this.opts.namespace, this.opts.name);
    if (lease?.spec?.holderIdentity !== this.opts.identity) return;
    await this.kube.patch(
      LEASES,
      this.opts.namespace,
      this.opts.name,
      { metadata: { resourceVersion: lease.metadata?.resourceVersion }, spec: { holderIdentity: null, renewTime: null } },
      'merge',
    );
  }
}
