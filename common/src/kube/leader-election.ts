/**
 * Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: the
 * holder renews every `renewMs`; others take over once `leaseDurationSeconds` passed without a
 * renewal. Every write carries the resourceVersion it was based on, so two candidates can never
 * both win the same round. A leader that fails to renew before its lease runs out steps down
 * (`onStoppedLeading`) rather than keep acting on a lease someone else may now hold.
 */
import type { V1Lease } from '@kubernetes/client-node';
import { sleep } from '../backoff';
import { errorMessage, isAlreadyExists, isConflict } from '../errors';
import type { Logger } from '../logger';
import { LEASES } from './resources';
import type { KubeClient } from './types';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  renewMs?: number;
  retryMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

const microTime = (d: Date): string => d.toISOString().replace('Z', '000Z');

export class LeaderElector {
  private leading = false;
  private readonly abort = new AbortController();
  private loop?: Promise<void>;

  constructor(
    private readonly kube: KubeClient,
    private readonly opts: LeaderElectionOptions,
    private readonly logger: Logger,
  ) {}

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

  private setLeading(value: boolean): void {
    if (value === this.leading) return;
    this.leading = value;
    this.logger.info(value ? 'became leader' : 'stopped leading', { lease: this.opts.name, identity: this.opts.identity });
    if (value) this.opts.onStartedLeading();
    else this.opts.onStoppedLeading();
  }

  private async run(): Promise<void> {
    const duration = this.opts.leaseDurationSeconds ?? 15;
    const renewMs = this.opts.renewMs ?? 5000;
    const retryMs = this.opts.retryMs ?? 2000;
    let lastRenew = 0;
    while (!this.abort.signal.aborted) {
      try {
        const ok = await this.tryAcquireOrRenew(duration);
        if (ok) lastRenew = Date.now();
        this.setLeading(ok);
      } catch (err) {
        this.logger.warn('lease update failed', { error: errorMessage(err) });
        if (this.leading && Date.now() - lastRenew > duration * 1000) this.setLeading(false);
      }
      await sleep(this.leading ? renewMs : retryMs, this.abort.signal);
    }
  }

  private async tryAcquireOrRenew(duration: number): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const now = new Date();
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
