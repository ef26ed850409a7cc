/**
 * What the sidecar knows about its backend's use: readiness, live WebSocket connections,
 * in-flight requests, and the time of the last activity. The sweeper decides idleness from the
 * snapshot; this module only keeps the numbers exact and says when they changed.
 *
 * Activity = a proxied request starting or ending, a WebSocket opening or closing. WebSocket data
 * frames are not counted: an open WebSocket already pauses the sweeper's countdown, and its close
 * counts as activity, so frames would add hot-path work without changing any decision.
 *
 * `secondsSinceActive` is measured from the last activity or, when there was none, from the
 * moment the app first accepted connections (the idle countdown starts at the first Ready: a slow
 * starter is not idle), so a backend nobody ever connects to is swept one grace period after it
 * became Ready. Before that it counts from the sidecar's start; the sweeper does not judge yet.
 * It is 0 while a request is in flight: a long download or long poll is use, even though the
 * message has no field for requests. It is a float with millisecond precision.
 */

export interface SidecarState {
  ready: boolean;
  liveConnections: number;
  secondsSinceActive: number;
  inflightRequests: number;
  heldRequests: number;
  /** Epoch ms of the last activity; null when there has been none. */
  lastActivityAt: number | null;
  startedAt: number;
}

/** The message on /events, exactly the fields the sweeper reads. */
export interface StateMessage {
  ready: boolean;
  liveConnections: number;
  secondsSinceActive: number;
}

/**
 * Activity after this much quiet is announced at once; closer activity only moves the timestamp
 * (the heartbeat carries it), so steady traffic costs no messages.
 */
export const IDLE_NOTIFY_MS = 1000;

export type Clock = () => number;

export class Activity {
  private isReady = false;
  private live = 0;
  private inflight = 0;
  private held = 0;
  private last: number;
  private hadActivity = false;
  private wasReady = false;
  private readonly listeners = new Set<() => void>();
  private notifyScheduled = false;
  readonly startedAt: number;

  constructor(private readonly now: Clock = Date.now) {
    this.startedAt = now();
    this.last = this.startedAt;
  }

  get ready(): boolean {
    return this.isReady;
  }

  get liveConnections(): number {
    return this.live;
  }

  get heldRequests(): number {
    return this.held;
  }

  /** Epoch ms of the last activity, or null. */
  get lastActivityAt(): number | null {
    return this.hadActivity ? this.last : null;
  }

  setReady(ready: boolean): void {
    if (ready === this.isReady) return;
    this.isReady = ready;
    if (ready && !this.wasReady) {
      this.wasReady = true;
      if (this.last < this.now()) this.last = this.now();
    }
    this.notify();
  }

  requestStarted(): void {
    this.touch();
    this.inflight++;
  }

  requestEnded(): void {
    if (this.inflight > 0) this.inflight--;
    this.touch();
  }

  webSocketOpened(): void {
    this.live++;
    this.touch();
    this.notify();
  }

  webSocketClosed(): void {
    // The tracker calls this once per opened connection; the guard only protects the invariant.
    if (this.live > 0) this.live--;
    this.touch();
    this.notify();
  }

  heldChanged(delta: number): void {
    this.held += delta;
  }

  secondsSinceActive(): number {
    if (this.inflight > 0) return 0;
    return Math.max(0, this.now() - this.last) / 1000;
  }

  message(): StateMessage {
    return { ready: this.isReady, liveConnections: this.live, secondsSinceActive: this.secondsSinceActive() };
  }

  snapshot(): SidecarState {
    return {
      ...this.message(),
      inflightRequests: this.inflight,
      heldRequests: this.held,
      lastActivityAt: this.lastActivityAt,
      startedAt: this.startedAt,
    };
  }

  /** Calls `listener` (coalesced, at most once per turn of the event loop) after each change. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private touch(): void {
    const t = this.now();
    const wasIdle = this.inflight === 0 && this.live === 0 && t - this.last >= IDLE_NOTIFY_MS;
    this.last = t;
    this.hadActivity = true;
    if (wasIdle) this.notify();
  }

  private notify(): void {
    if (this.notifyScheduled || this.listeners.size === 0) return;
    this.notifyScheduled = true;
    setImmediate(() => {
      this.notifyScheduled = false;
      for (const listener of this.listeners) listener();
    });
  }
}
