/**
 * Warm pools in local mode (SPEC section 12): for each configured pool, `replicas` pre-started
 * app processes of its template (warm-process.ts), ready and unassigned, which a backend with
 * spec.poolRef claims. What the pool controller does on a cluster, here: refill at once after a
 * claim, replace a process that exits, replace an unclaimed one older than maxIdleAgeSeconds, and
 * report replicas and readyReplicas live, which the API reads through `get` (its PoolReader) for
 * a Reject pool's 429. The claim itself is planned by the operator's own `decide` in the store;
 * `claim` here is synchronous, so two claims can never take the same process.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { replicasOf, whenEmptyOf, type SessionBackendPool } from '../../common/src/backend';
import { backoffDelay } from '../../common/src/backoff';
import { ConfigError } from '../../common/src/config';
import { LABEL_POOL, POOL_API_VERSION, POOL_KIND } from '../../common/src/constants';
import type { ImageCatalog, ResolvedImage } from '../../common/src/image-catalog';
import type { Logger } from '../../common/src/logger';
import type { BackendPodTemplate, SessionBackendPoolSpec } from '../../crd-schemas/generated/types';
import { createAjv, describeErrors, SCHEMA_ID } from '../../crd-schemas/src/validators';
import type { DecideInput } from '../../operator/src/decide';
import { APP_CONTAINER_NAME } from '../../api/src/use-cases/create-backend';
import type { PoolReader } from '../../api/src/use-cases/deps';
import type { PortAllocator } from './ports';
import type { Watchdog } from './watchdog';
import { WarmProcess, type ClaimedProcess } from './warm-process';

/** A pool in local mode's configuration: a SessionBackendPool's spec with its name, `image` a shortcut for the template. */
export interface LocalPoolConfig extends Partial<SessionBackendPoolSpec> {
  name: string;
  image?: string;
}

/** The pool as a cluster would store it, its spec checked against the CRD's schema. */
export function poolFromConfig(entry: LocalPoolConfig, namespace: string): SessionBackendPool {
  const { name, image, ...rest } = entry;
  const where = `pools: "${name}"`;
  if ((image === undefined) === (rest.template === undefined)) {
    throw new ConfigError(`${where}: give either "image" or "template"`);
  }
  const template: BackendPodTemplate = rest.template ?? { containers: [{ name: APP_CONTAINER_NAME, image: image as string }] };
  const spec: SessionBackendPoolSpec = { ...rest, template };
  // Checked on a copy: the CRD's defaults are filled in by the validator, and the pool's defaults
  // have one home (whenEmptyOf, replicasOf).
  const validate = createAjv().getSchema(`${SCHEMA_ID}#/definitions/SessionBackendPoolSpec`);
  if (validate && !validate(structuredClone(spec))) {
    const problems = describeErrors(validate.errors).map((p) => `${p.path} ${p.message}`);
    throw new ConfigError(`${where}: invalid pool: ${problems.join('; ')}`);
  }
  return { apiVersion: POOL_API_VERSION, kind: POOL_KIND, metadata: { name, namespace }, spec };
}

export interface LocalPoolsDeps {
  images: ImageCatalog;
  ports: PortAllocator;
  logger: Logger;
  host: string;
  stopGraceMs: number;
}

interface Pool {
  pool: SessionBackendPool;
  image: ResolvedImage;
  /** Unclaimed processes, starting or ready, by name. */
  members: Map<string, WarmProcess>;
  /** maxIdleAgeSeconds timers, by process name. */
  expiries: Map<string, NodeJS.Timeout>;
  /** Processes in a row that ended without ever accepting a connection: slows the refills. */
  failures: number;
  retry?: NodeJS.Timeout;
}

export class LocalPools implements PoolReader {
  private readonly pools = new Map<string, Pool>();
  private readonly stopping = new Set<Promise<void>>();
  private watchdog?: Watchdog;
  private running = false;

  constructor(
    pools: SessionBackendPool[],
    private readonly deps: LocalPoolsDeps,
  ) {
    for (const pool of pools) {
      const name = pool.metadata.name as string;
      if (this.pools.has(name)) throw new ConfigError(`pools: "${name}" is configured twice`);
      const container = pool.spec.template.containers[0];
      const image = deps.images.resolve(container.image);
      if (!image) {
        const known = deps.images.names().join(', ');
        throw new ConfigError(
          `pools: "${name}": local mode has no command for image "${container.image}"; known images: ${known}`,
        );
      }
      this.pools.set(name, { pool, image, members: new Map(), expiries: new Map(), failures: 0 });
    }
  }

  /** Starts filling every pool. */
  start(watchdog?: Watchdog): void {
    if (this.running) return;
    this.running = true;
    this.watchdog = watchdog;
    for (const p of this.pools.values()) this.fill(p);
  }

  /** Stops every unclaimed process; no refills after this. */
  async stop(): Promise<void> {
    this.running = false;
    for (const p of this.pools.values()) {
      clearTimeout(p.retry);
      for (const t of p.expiries.values()) clearTimeout(t);
      p.expiries.clear();
      for (const m of p.members.values()) this.retire(m);
      p.members.clear();
    }
    await Promise.all([...this.stopping]);
  }

  // ---- PoolReader: the pool with its live status ----

  async get(name: string): Promise<SessionBackendPool | undefined> {
    const p = this.pools.get(name);
    if (!p) return undefined;
    const members = [...p.members.values()];
    return {
      ...structuredClone(p.pool),
      status: { replicas: members.length, readyReplicas: members.filter((m) => m.state === 'ready').length },
    };
  }

  // ---- for the store's operator part ----

  /** The pool as the operator's `decide` takes it: found, whenEmpty, the processes ready to be claimed. */
  input(name: string): NonNullable<DecideInput['pool']> {
    const p = this.pools.get(name);
    if (!p) return { found: false, whenEmpty: 'ColdStart', claimable: [] };
    const claimable: V1Pod[] = [...p.members.values()]
      .filter((m) => m.state === 'ready')
      .map((m) => ({ metadata: { name: m.name, labels: { [LABEL_POOL]: name } } }));
    return { found: true, whenEmpty: whenEmptyOf(p.pool), claimable };
  }

  /** Takes the first of `names` that is still ready; the pool refills at once. */
  claim(pool: string, names: string[]): ClaimedProcess | undefined {
    const p = this.pools.get(pool);
    if (!p) return undefined;
    for (const name of names) {
      const m = p.members.get(name);
      const claimed = m?.claim();
      if (!claimed) continue;
      p.members.delete(name);
      clearTimeout(p.expiries.get(name));
      p.expiries.delete(name);
      this.fill(p);
      const assignPath = p.pool.spec.assignPath;
      return assignPath === undefined ? claimed : { ...claimed, assignPath };
    }
    return undefined;
  }

  /** A pool's unclaimed processes (for tests and diagnostics). */
  members(pool: string): Array<{ name: string; state: string; pid?: number }> {
    const p = this.pools.get(pool);
    return p ? [...p.members.values()].map((m) => ({ name: m.name, state: m.state, pid: m.pid })) : [];
  }

  /** The pids of the unclaimed processes (for tests and diagnostics). */
  pids(): number[] {
    const out: number[] = [];
    for (const p of this.pools.values()) for (const m of p.members.values()) if (m.pid !== undefined) out.push(m.pid);
    return out;
  }

  /** Signals every unclaimed process's group now (an exit of local mode that cannot wait). */
  signal(sig: NodeJS.Signals): void {
    for (const pid of this.pids()) {
      try {
        process.kill(-pid, sig);
      } catch {
        // already gone
      }
    }
  }

  // ---- the pool controller's part ----

  private fill(p: Pool): void {
    if (!this.running || p.retry) return;
    const name = p.pool.metadata.name as string;
    while (p.members.size < replicasOf(p.pool)) {
      const m = new WarmProcess(name, p.image, p.pool.spec.template.containers[0], {
        ports: this.deps.ports,
        watchdog: this.watchdog,
        logger: this.deps.logger,
        host: this.deps.host,
        stopGraceMs: this.deps.stopGraceMs,
        onChange: (changed) => this.changed(p, changed),
      });
      p.members.set(m.name, m);
      const maxAge = p.pool.spec.maxIdleAgeSeconds;
      if (maxAge !== undefined) {
        const timer = setTimeout(() => this.expire(p, m), maxAge * 1000);
        timer.unref();
        p.expiries.set(m.name, timer);
      }
      m.start();
    }
  }

  private changed(p: Pool, m: WarmProcess): void {
    if (m.state === 'ready') {
      p.failures = 0;
      return;
    }
    if (m.state !== 'ended' || p.members.get(m.name) !== m) return;
    this.forget(p, m);
    if (m.wasReady) {
      this.fill(p);
      return;
    }
    // A process that never accepted a connection: the next may fail the same way; do not spin.
    const delay = backoffDelay(p.failures++, 500);
    p.retry = setTimeout(() => {
      p.retry = undefined;
      this.fill(p);
    }, delay);
    p.retry.unref();
  }

  /** An unclaimed process older than maxIdleAgeSeconds: a fresh one takes its place. */
  private expire(p: Pool, m: WarmProcess): void {
    if (p.members.get(m.name) !== m) return;
    this.deps.logger.info('replacing a pool process after maxIdleAgeSeconds', {
      pool: m.pool,
      process: m.name,
      seconds: p.pool.spec.maxIdleAgeSeconds,
    });
    this.forget(p, m);
    this.retire(m);
    this.fill(p);
  }

  private forget(p: Pool, m: WarmProcess): void {
    p.members.delete(m.name);
    clearTimeout(p.expiries.get(m.name));
    p.expiries.delete(m.name);
  }

  private retire(m: WarmProcess): void {
    const done: Promise<void> = m
      .stop()
      .catch((err: unknown) => this.deps.logger.error('stopping a pool process failed', { process: m.name, error: err }))
      .finally(() => this.stopping.delete(done));
    this.stopping.add(done);
  }
}
