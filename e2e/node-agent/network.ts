/**
 * Pod networking: one network namespace per Pod, joined to a host bridge by a veth pair, with an
 * address from the pod CIDR. Containers of a Pod share its 127.0.0.1; every Pod may listen on the
 * same ports; the host (tests, the API server at the bridge address) reaches each Pod at its IP.
 *
 * Set-up is a handful of netlink operations batched through `ip -batch`: 7–15 ms on an idle
 * machine, but 0.1–0.3 s each when a burst of pods keeps both cores busy (the kernel work contends
 * on rtnl and RCU), so they became the bottleneck of a 200-pod burst (pods waited up to 12 s for
 * their namespace). So a pool of namespaces is kept ready (about 130 KB of kernel memory each),
 * refilled in the background, and a finished pod's namespace is recycled into it.
 */
import type { Logger } from '../../common/src/logger';
import { limiter, run } from './run';

export const NETNS_PREFIX = 'spawner-pod-';
/** Host-side veth names: `spv` + hex address index (interface names are limited to 15 chars). */
export const VETH_PREFIX = 'spv';

export interface Sandbox {
  /** Undefined for hostNetwork pods, which run in the host's namespace. */
  netns?: string;
  veth?: string;
  ip: string;
  index?: number;
  setupMs: number;
}

export interface NetworkOptions {
  bridge: string;
  /** e.g. 10.88.0.0/16 */
  podCidr: string;
  /** The bridge's address, also the pods' default gateway, e.g. 10.88.0.1 */
  hostIp: string;
  logger: Logger;
  /** How many namespaces to keep set up ahead of demand. */
  poolSize: number;
}

const ipToInt = (ip: string): number => ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
const intToIp = (n: number): string => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');

/**
 * How a freed Pod address is handed out again: `round-robin` (the default) as late as possible,
 * so a stale client of a deleted Pod's IP does not reach the next Pod; `immediate` to the very next
 * Pod, so tests can provoke exactly that (a reused IP must never receive another backend's traffic).
 */
export type IpReuse = 'round-robin' | 'immediate';
export const IP_REUSE_MODES: readonly IpReuse[] = ['round-robin', 'immediate'];

/** Hands out addresses round-robin, so a freed address is reused as late as possible (or at once: `reuse`). */
export class AddressPool {
  readonly prefix: number;
  private mode: IpReuse = 'round-robin';
  private readonly base: number;
  private readonly size: number;
  private readonly reserved: number;
  private readonly used = new Set<number>();
  /** Addresses freed while `immediate`, most recent last. */
  private freed: number[] = [];
  private next = 2;

  constructor(cidr: string, reservedIp: string) {
    const [net, bits] = cidr.split('/');
    this.prefix = Number(bits);
    this.size = 2 ** (32 - this.prefix);
    this.base = ipToInt(net) - (ipToInt(net) % this.size);
    this.reserved = ipToInt(reservedIp) - this.base;
  }

  /** `immediate`: the most recently freed address first (from the moment it is set). */
  get reuse(): IpReuse {
    return this.mode;
  }

  set reuse(mode: IpReuse) {
    this.mode = mode;
    this.freed = [];
  }

  allocate(): { index: number; ip: string } {
    if (this.mode === 'immediate') {
      const index = this.freed.pop();
      if (index !== undefined) {
        this.used.add(index);
        return { index, ip: intToIp(this.base + index) };
      }
    }
    for (let tries = 0; tries < this.size; tries++) {
      const index = this.next;
      this.next = this.next + 1 >= this.size - 1 ? 1 : this.next + 1;
      if (index === 0 || index === this.reserved || this.used.has(index)) continue;
      this.used.add(index);
      return { index, ip: intToIp(this.base + index) };
    }
    throw new Error('pod CIDR exhausted');
  }

  release(index: number): void {
    if (!this.used.delete(index) || this.mode !== 'immediate') return;
    this.freed.push(index);
    // Only the latest few matter; the round-robin walk finds the rest.
    if (this.freed.length > 64) this.freed.shift();
  }

  /** Whether `immediate` has a freed address to hand out before any other. */
  get hasFreed(): boolean {
    return this.freed.length > 0;
  }
}

export class PodNetwork {
  private readonly pool: AddressPool;
  private readonly inUse = new Set<Sandbox>();
  /** Namespaces set up ahead of demand (see the file comment). */
  private readonly warm: Sandbox[] = [];
  private refilling?: Promise<void>;
  /** Namespaces on their way into the pool (being built or recycled), so it never overfills. */
  private incoming = 0;
  private stopped = false;
  private createdBridge = false;
  private seq = 0;
  // `ip netns add` and veth creation contend on the same kernel locks; a few at a time is fastest.
  private readonly limit = limiter(4);

  constructor(private readonly opts: NetworkOptions) {
    this.pool = new AddressPool(opts.podCidr, opts.hostIp);
  }

  get hostIp(): string {
    return this.opts.hostIp;
  }

  get stats(): { warm: number; inUse: number } {
    return { warm: this.warm.length, inUse: this.inUse.size };
  }

  async init(): Promise<void> {
    await this.sweep();
    const exists = await run('ip', ['link', 'show', this.opts.bridge], { allowFail: true });
    if (exists.code !== 0) {
      await run('ip', ['-batch', '-'], {
        input: [
          `link add ${this.opts.bridge} type bridge`,
          `addr add ${this.opts.hostIp}/${this.pool.prefix} dev ${this.opts.bridge}`,
          `link set ${this.opts.bridge} up`,
        ].join('\n'),
      });
      this.createdBridge = true;
    } else {
      await run('ip', ['addr', 'replace', `${this.opts.hostIp}/${this.pool.prefix}`, 'dev', this.opts.bridge]);
      await run('ip', ['link', 'set', this.opts.bridge, 'up']);
    }
    this.refill();
  }

  /** Removes namespaces and veths a previous agent left behind (it crashed, or was killed). */
  async sweep(): Promise<void> {
    const netns = await run('ip', ['netns', 'list'], { allowFail: true });
    const names = netns.stdout
      .split('\n')
      .map((l) => l.split(' ')[0])
      .filter((n) => n.startsWith(NETNS_PREFIX));
    for (const name of names) await this.killAll(name);
    await this.deleteNamespaces(names);
    const links = await run('ip', ['-o', 'link', 'show'], { allowFail: true });
    const veths = links.stdout
      .split('\n')
      .map((line) => line.split(': ')[1]?.split('@')[0])
      .filter((name): name is string => name !== undefined && new RegExp(`^${VETH_PREFIX}[0-9a-f]+$`).test(name));
    if (veths.length)
      await run('ip', ['-force', '-batch', '-'], { input: veths.map((v) => `link del ${v}`).join('\n'), allowFail: true });
    if (names.length) this.opts.logger.info('removed leftover pod network namespaces', { count: names.length });
  }

  /** How freed addresses are handed out again (`--ip-reuse`, or PUT /network/ip-reuse). */
  get ipReuse(): IpReuse {
    return this.pool.reuse;
  }

  set ipReuse(mode: IpReuse) {
    this.pool.reuse = mode;
  }

  /**
   * A sandbox for a new pod: a warm one if there is one, else one made now. With `immediate` IP
   * reuse, a freed address goes first: a recycled namespace keeping it is at the front of the
   * pool, and one that could not be recycled is rebuilt with it.
   */
  async acquire(): Promise<Sandbox> {
    const started = process.hrtime.bigint();
    const sandbox = (this.pool.hasFreed ? undefined : this.warm.shift()) ?? (await this.build());
    sandbox.setupMs = Number(process.hrtime.bigint() - started) / 1e6;
    this.inUse.add(sandbox);
    this.refill();
    return sandbox;
  }

  hostNetwork(): Sandbox {
    return { ip: this.opts.hostIp, setupMs: 0 };
  }

  private async build(): Promise<Sandbox> {
    const { index, ip } = this.pool.allocate();
    const id = (this.seq++).toString(16);
    const netns = `${NETNS_PREFIX}${id}`;
    const veth = `${VETH_PREFIX}${id}`;
    try {
      await this.limit(async () => {
        await run('ip', ['-batch', '-'], {
          input: [
            `netns add ${netns}`,
            `link add ${veth} type veth peer name eth0 netns ${netns}`,
            `link set ${veth} master ${this.opts.bridge} up`,
          ].join('\n'),
        });
        await run('ip', ['-n', netns, '-batch', '-'], {
          input: [
            `addr add ${ip}/${this.pool.prefix} dev eth0`,
            'link set lo up',
            'link set eth0 up',
            `route add default via ${this.opts.hostIp}`,
          ].join('\n'),
        });
      });
    } catch (err) {
      await this.deleteNamespaces([netns]);
      await run('ip', ['link', 'del', veth], { allowFail: true });
      this.pool.release(index);
      throw err;
    }
    return { netns, veth, ip, index, setupMs: 0 };
  }

  private get wanted(): number {
    return this.opts.poolSize - this.warm.length - this.incoming;
  }

  private refill(): void {
    if (this.refilling || this.stopped || this.wanted <= 0) return;
    this.refilling = (async () => {
      try {
        while (!this.stopped && this.wanted > 0) {
          this.incoming++;
          const sandbox = await this.build().finally(() => this.incoming--);
          if (this.stopped) await this.discard([sandbox]);
          else this.warm.push(sandbox);
        }
      } catch (err) {
        this.opts.logger.warn('pre-warming a pod network namespace failed', { error: (err as Error).message });
      } finally {
        this.refilling = undefined;
      }
    })();
  }

  /**
   * Frees a pod's namespace. Unless the caller knows nothing runs in it any more (every process of
   * the pod was in a cgroup it emptied), whatever is left is killed first. The namespace then goes
   * back to the warm pool under a fresh address (round-robin, so a stale client of the old IP never
   * reaches the next pod), or is deleted; the kernel removes its veth with it, asynchronously.
   */
  async release(sandbox: Sandbox, knownEmpty = false): Promise<void> {
    if (!this.inUse.delete(sandbox) || !sandbox.netns) return;
    const clean = knownEmpty || (await this.killAll(sandbox.netns));
    if (clean && !this.stopped && this.pool.reuse === 'immediate') {
      // The next pod gets this very address (and namespace, so the host's ARP entry still holds).
      this.warm.unshift({ ...sandbox, setupMs: 0 });
      return;
    }
    if (clean && !this.stopped && this.wanted > 0) {
      const next = this.pool.allocate();
      this.incoming++;
      try {
        await run('ip', ['-n', sandbox.netns, '-batch', '-'], {
          input: [
            'addr flush dev eth0',
            `addr add ${next.ip}/${this.pool.prefix} dev eth0`,
            `route replace default via ${this.opts.hostIp}`,
          ].join('\n'),
        });
        if (sandbox.index !== undefined) this.pool.release(sandbox.index);
        this.warm.push({ netns: sandbox.netns, veth: sandbox.veth, ip: next.ip, index: next.index, setupMs: 0 });
        return;
      } catch {
        this.pool.release(next.index);
      } finally {
        this.incoming--;
      }
    }
    await this.discard([sandbox]);
  }

  private async discard(sandboxes: Sandbox[]): Promise<void> {
    await this.deleteNamespaces(sandboxes.map((s) => s.netns).filter((n): n is string => n !== undefined));
    for (const s of sandboxes) if (s.index !== undefined) this.pool.release(s.index);
  }

  /** One `ip` process for any number of namespaces (deleting is an unmount; the kernel does the rest). */
  private async deleteNamespaces(names: string[]): Promise<void> {
    if (names.length === 0) return;
    await run('ip', ['-force', '-batch', '-'], { input: names.map((n) => `netns del ${n}`).join('\n'), allowFail: true });
  }

  /** SIGKILLs every process in the namespace; true when none was left to kill. */
  private async killAll(netns: string): Promise<boolean> {
    const pids = (await run('ip', ['netns', 'pids', netns], { allowFail: true })).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    return pids.length === 0;
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    await this.refilling;
    const inUse = [...this.inUse];
    this.inUse.clear();
    for (const sandbox of inUse) if (sandbox.netns) await this.killAll(sandbox.netns);
    await this.discard([...inUse, ...this.warm.splice(0)]);
    if (this.createdBridge) await run('ip', ['link', 'del', this.opts.bridge], { allowFail: true });
  }
}
