/**
 * The spawn rate limit: a token bucket (a sustained rate with a burst allowance). One bucket per
 * API process; with several replicas the effective limit is the sum, which is documented.
 */
export interface TakeResult {
  ok: boolean;
  /** When not ok: seconds until a token is available. */
  retryAfterSeconds: number;
}

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  get unlimited(): boolean {
    return this.ratePerSecond <= 0;
  }

  tryTake(): TakeResult {
    if (this.unlimited) return { ok: true, retryAfterSeconds: 0 };
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond);
    this.last = t;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return { ok: true, retryAfterSeconds: 0 };
    }
    return { ok: false, retryAfterSeconds: (1 - this.tokens) / this.ratePerSecond };
  }

  /** Gives back a token taken for work that did not happen (get-or-create found a backend). */
  refund(): void {
    if (!this.unlimited) this.tokens = Math.min(this.burst, this.tokens + 1);
  }
}
