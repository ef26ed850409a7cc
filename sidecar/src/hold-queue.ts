/**
 * Requests and upgrades that arrive before the app listens wait here instead of failing, bounded
 * in count (the caller answers 503 when `add` refuses) and in time (`expire` answers 504).
 * Released in arrival order once the app is ready.
 */
export interface HeldEntry {
  /** The app is ready: pass the request on. */
  forward(): void;
  /** Waited too long. */
  expire(): void;
  /** The sidecar is stopping. */
  reject(): void;
}

export class HoldQueue {
  private readonly entries = new Map<HeldEntry, NodeJS.Timeout>();

  constructor(
    private readonly timeoutMs: number,
    private readonly maxQueued: number,
    private readonly onSizeChange: (delta: number) => void,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** False when the queue is full. */
  add(entry: HeldEntry): boolean {
    if (this.entries.size >= this.maxQueued) return false;
    const timer = setTimeout(() => {
      if (this.remove(entry)) entry.expire();
    }, this.timeoutMs);
    this.entries.set(entry, timer);
    this.onSizeChange(1);
    return true;
  }

  /** For a client that went away while waiting; true if the entry was still held. */
  remove(entry: HeldEntry): boolean {
    const timer = this.entries.get(entry);
    if (timer === undefined) return false;
    clearTimeout(timer);
    this.entries.delete(entry);
    this.onSizeChange(-1);
    return true;
  }

  releaseAll(): void {
    for (const entry of this.drain()) entry.forward();
  }

  rejectAll(): void {
    for (const entry of this.drain()) entry.reject();
  }

  private drain(): HeldEntry[] {
    const list = [...this.entries.keys()];
    for (const timer of this.entries.values()) clearTimeout(timer);
    this.entries.clear();
    if (list.length > 0) this.onSizeChange(-list.length);
    return list;
  }
}
