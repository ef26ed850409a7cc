/**
 * Where the test process itself was not running. This machine is shared: once (CI of 918eb0d) the
 * whole machine stood still for ~40 s in the middle of `chart: upgrade keeps sessions` — every
 * Pod, the controller-manager, the node agent and the test logged nothing, and a 1 s timer in the
 * API fired 40 s late — and every session's echo gap was those 40 s. A gap the observer slept
 * through says nothing about the product, so gap assertions subtract the time this process was
 * not scheduled, and report both figures.
 *
 * Each tick also rewrites one byte of a file beside the cluster's logs, synchronously: every
 * component logs to files there, so a filesystem that stops taking writes stops them all, and the
 * probe makes this process stop with them instead of watching them stop.
 */
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface Stall {
  from: number;
  to: number;
}

export class StallWatch {
  private readonly found: Stall[] = [];
  private last = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly probe: { path: string; fd: number };
  private readonly byte = Buffer.from('.');

  /**
   * `probeDir`: where the cluster's components write their logs (cluster.ts's stateDir()). Ticks
   * every `tickMs`; a tick later than `thresholdMs` after the previous one is a stall.
   */
  constructor(
    probeDir: string,
    tickMs = 50,
    private readonly thresholdMs = 1000,
  ) {
    mkdirSync(probeDir, { recursive: true });
    const path = join(probeDir, `stall-probe-${process.pid}`);
    this.probe = { path, fd: openSync(path, 'w') };
    this.timer = setInterval(() => this.tick(), tickMs);
    this.timer.unref();
  }

  private tick(): void {
    writeSync(this.probe.fd, this.byte, 0, 1, 0);
    const now = Date.now();
    if (now - this.last > this.thresholdMs) this.found.push({ from: this.last, to: now });
    this.last = now;
  }

  stop(): void {
    this.tick();
    clearInterval(this.timer);
    closeSync(this.probe.fd);
    rmSync(this.probe.path, { force: true });
  }

  get stalls(): readonly Stall[] {
    return this.found;
  }

  /** How many milliseconds of [from, to] this process was not running. */
  overlapMs(from: number, to: number): number {
    return this.found.reduce((sum, s) => sum + Math.max(0, Math.min(to, s.to) - Math.max(from, s.from)), 0);
  }

  /** The part of the gap [from, to] the process was awake for. */
  awakeMs(from: number, to: number): number {
    return to - from - this.overlapMs(from, to);
  }
}
