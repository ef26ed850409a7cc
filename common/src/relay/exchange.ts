/** One request and its answer, as the relay core tracks them (in order, per client connection). */
import { performance } from 'node:perf_hooks';
import type { HeldDecision } from './connection';
import type { Decision, RequestView, Ticket, UpstreamAddress } from './policy';

export class Exchange implements Ticket {
  /** performance.now() when counted. */
  started = 0;
  /** The policy counts this request (activity, durations). */
  counted = false;
  /** The policy has been asked (so it hears how the exchange ends). */
  admitted = false;
  headOnly = false;
  upgrade = false;
  expectContinue = false;
  /** The connection closes after this exchange. */
  close = false;
  contentLength = -1;
  chunked = false;
  /** Forwarded: the head as sent and where to. */
  forward = '';
  upstream: UpstreamAddress | undefined = undefined;
  /** Sent to the upstream (its answer is awaited). */
  sent = false;
  /** Forwarded, but another upstream is still answering earlier requests on this connection. */
  waitingTurn = false;
  /** The forwarded head when the request had no body (it can be sent again on a new connection). */
  replay: string | undefined = undefined;
  /** The relay's own answer, rendered. */
  local: string | undefined = undefined;
  localStatus = 0;
  /** The upstream's final status, once its head went to the client. */
  status = 0;
  answered = false;
  setCookie: string | undefined = undefined;
  /** The request as the policy saw it (kept for a second decision after a refused connection). */
  view: RequestView | undefined = undefined;
  /** Still waiting for the policy's decision. */
  deciding = false;
  private abandon: (() => void) | undefined = undefined;

  constructor(private readonly owner: HeldDecision) {}

  count(): void {
    if (this.counted) return;
    this.counted = true;
    this.started = performance.now();
  }

  decide(decision: Decision): void {
    if (!this.deciding) return;
    this.deciding = false;
    this.abandon = undefined;
    this.owner.decided(this, decision, false);
  }

  onAbandon(fn: () => void): void {
    this.abandon = fn;
  }

  /** The client went away while the policy was deciding. */
  abandoned(): void {
    if (!this.deciding) return;
    this.deciding = false;
    const fn = this.abandon;
    this.abandon = undefined;
    fn?.();
  }
}
