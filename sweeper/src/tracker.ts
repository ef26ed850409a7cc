/**
 * Follows one backend's sidecar: keeps its state stream open, applies the idle rule at every
 * report and at the deadline it implies, and says when the sidecar has been unreachable for too
 * long. It knows nothing of Kubernetes, so local mode uses it as it is.
 */
import { judge, type SidecarReport } from './idle-rule';
import { StateStream, type StateStreamOptions } from './state-stream';

export interface TrackerOptions {
  url: string;
  gracePeriodSeconds: number;
  /** When the backend was first Ready (ms since the epoch); undefined while it never was: never idle. */
  idleCountdownFromMs?: number;
  heartbeatSeconds: number;
  unreachableAfterMs: number;
  /** How often to ask again while the sidecar stays unreachable. */
  unreachableRecheckMs?: number;
  stream?: StateStreamOptions;
  now?: () => number;
  /** The backend is idle past its grace; `deadlineMs` is when it became so. */
  onIdle(deadlineMs: number): void;
  /** The sidecar has been unreachable since `sinceMs`; return true once handled. */
  onUnreachable(sinceMs: number): boolean | Promise<boolean>;
  onReport?(report: SidecarReport): void;
  onConnectFailure?(error: string): void;
}

export class Tracker {
  private readonly stream: StateStream;
  private report?: SidecarReport;
  private idleTimer?: NodeJS.Timeout;
  private unreachableTimer?: NodeJS.Timeout;
  private fired = false;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly opts: TrackerOptions) {
    this.now = opts.now ?? Date.now;
    this.stream = new StateStream(
      opts.url,
      {
        onReport: (r) => this.onReport(r),
        onConnected: () => this.clearUnreachable(),
        onDisconnected: (since, error) => {
          opts.onConnectFailure?.(error);
          this.scheduleUnreachable(since);
        },
      },
      { idleTimeoutMs: opts.heartbeatSeconds * 3 * 1000, ...opts.stream, now: this.now },
    );
  }

  get url(): string {
    return this.opts.url;
  }

  get lastReport(): SidecarReport | undefined {
    return this.report;
  }

  get connected(): boolean {
    return this.stream.isConnected;
  }

  start(): void {
    this.stream.start();
  }

  close(): void {
    this.closed = true;
    this.stream.close();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.clearUnreachable();
  }

  setGracePeriod(seconds: number): void {
    if (seconds === this.opts.gracePeriodSeconds) return;
    this.opts.gracePeriodSeconds = seconds;
    this.evaluate();
  }

  setIdleCountdownFrom(ms: number | undefined): void {
    if (ms === this.opts.idleCountdownFromMs) return;
    this.opts.idleCountdownFromMs = ms;
    this.evaluate();
  }

  private onReport(r: SidecarReport): void {
    this.report = r;
    this.opts.onReport?.(r);
    this.evaluate();
  }

  private evaluate(): void {
    if (this.closed || this.fired) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const verdict = judge(
      this.report,
      this.opts.gracePeriodSeconds,
      this.now(),
      this.opts.heartbeatSeconds,
      this.opts.idleCountdownFromMs,
    );
    if (verdict.kind === 'sweep') {
      this.fired = true;
      this.opts.onIdle(verdict.deadlineMs);
    } else if (verdict.kind === 'wait' && verdict.untilMs !== undefined) {
      this.idleTimer = setTimeout(() => this.evaluate(), Math.max(0, verdict.untilMs - this.now()) + 5);
      this.idleTimer.unref?.();
    }
  }

  /** After a failed sweep (a conflict, the API server away), look again. */
  rearm(): void {
    this.fired = false;
    this.evaluate();
  }

  private clearUnreachable(): void {
    if (this.unreachableTimer) clearTimeout(this.unreachableTimer);
    this.unreachableTimer = undefined;
  }

  private scheduleUnreachable(since: number): void {
    if (this.closed || this.unreachableTimer) return;
    const check = async (): Promise<void> => {
      this.unreachableTimer = undefined;
      if (this.closed || this.stream.isConnected) return;
      const handled = await Promise.resolve(this.opts.onUnreachable(since)).catch(() => false);
      if (!handled && !this.closed && !this.stream.isConnected) {
        this.unreachableTimer = setTimeout(() => void check(), this.opts.unreachableRecheckMs ?? 2000);
        this.unreachableTimer.unref?.();
      }
    };
    const wait = Math.max(0, since + this.opts.unreachableAfterMs - this.now());
    this.unreachableTimer = setTimeout(() => void check(), wait);
    this.unreachableTimer.unref?.();
  }
}
