/**
 * One client connection through the relay: what each parsed request becomes (the policy's
 * decision, now or later), the order of answers (HTTP/1.1 answers in order, so the relay's own
 * answers queue with the upstream's responses), the upstream connection of the moment, retries,
 * timeouts and teardown. The bytes themselves are cut into requests by request-side.ts and into
 * responses by response-side.ts; the policy (policy.ts) decides what each request becomes.
 *
 * Requests on one client connection may go to different upstreams (the entry point routes per
 * request): a request for another upstream waits until the answers due from the current one are
 * out, then the current connection goes back to the pool and one to the new address is taken.
 */
import type * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { renderAnswer, type Answer } from './answers';
import { writeAll, type Chunk } from './chunks';
import { Exchange } from './exchange';
import { parseRequestHead } from './http1';
import type { Decision, UpstreamAddress } from './policy';
import type { Relay } from './relay';
import { MAX_DISCARD, R_BODY, R_DONE, R_HEAD, R_TUNNEL, R_WAIT, RequestSide, type RequestSink } from './request-side';
import { ResponseReader, type ResponseSink } from './response-side';
import { Upstream, type UpstreamOwner } from './upstream';

/**
 * Slow clients, in ticks of one second: the request head must arrive within 15 s of the
 * connection or of its first byte (slowloris), a request body within 5 min, and an idle
 * keep-alive connection is closed after 65 s (longer than the usual 60 s of proxies in front, so
 * they close first and never reuse a connection being closed). Responses and tunnels have no
 * limit: long polls and WebSockets are the point.
 */
export const HEADERS_TIMEOUT_TICKS = 15;
const REQUEST_TIMEOUT_TICKS = 300;
const KEEP_ALIVE_TIMEOUT_TICKS = 65;
/** After the relay ends a connection, how long the client may take to close its side. */
const LINGER_MS = 5000;
/** Bytes kept while a request is decided on or an upgrade awaits its answer, before reading pauses. */
const MAX_STASH = 64 * 1024;
/** Pipelined requests in flight on one connection before reading pauses. */
const MAX_PIPELINE = 16;
/** Status recorded for a request whose client left before any answer (nginx's convention). */
const CLIENT_CLOSED_REQUEST = 499;
/** Status recorded for a request the upstream never answered. */
const BAD_GATEWAY = 502;

// Why the client socket is paused (any set bit keeps it paused).
const P_UPSTREAM = 1;
const P_STASH = 2;
const P_PIPELINE = 4;

/** How an exchange's decision reaches its connection. */
export interface HeldDecision {
  decided(ex: Exchange, decision: Decision, now: boolean): void;
}

export class Connection implements RequestSink, UpstreamOwner, ResponseSink, HeldDecision {
  private upstream: Upstream | null = null;
  private req = R_HEAD;
  private tunnel = false;
  private readonly request = new RequestSide();
  private readonly response = new ResponseReader();
  /** The exchange whose request is being read (its body, or its upgrade answer). */
  private current: Exchange | null = null;
  /** Exchanges in order: the upstream's responses and the relay's own answers go out in this order. */
  readonly pending: Exchange[] = [];
  private stash: Buffer[] = [];
  private stashBytes = 0;
  private paused = 0;
  private upstreamPaused = false;
  /** The client's side ends once what is queued for it is written. */
  private closeAfterFlush = false;
  /** The relay ended its side of the client connection. */
  private ended = false;
  private clientEnded = false;
  private draining = false;
  private dead = false;
  private linger: NodeJS.Timeout | undefined;
  private retried = false;
  private headDeadline: number;
  private bodyDeadline = Infinity;
  private idleDeadline = Infinity;
  readonly toUpstream: Chunk[] = [];
  private readonly toClient: Chunk[] = [];
  private readonly remote: string | undefined;

  constructor(
    private readonly relay: Relay,
    private readonly client: net.Socket,
  ) {
    this.headDeadline = relay.tick + HEADERS_TIMEOUT_TICKS;
    this.remote = client.remoteAddress;
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    client.on('end', () => this.onClientEnd());
    client.on('drain', () => this.onClientDrain());
    client.on('error', () => this.teardown());
    client.on('close', () => this.teardown());
  }

  // ---- client → upstream ---------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    switch (this.req) {
      case R_TUNNEL:
        if (!this.upstream!.socket.write(chunk)) this.pause(P_UPSTREAM);
        return;
      case R_WAIT:
        this.addStash(chunk);
        return;
      case R_DONE:
        return;
    }
    this.request.read(chunk, this);
    this.flushUpstream();
    if (this.closeAfterFlush) this.flushClient();
  }

  // RequestSink: what the request side reads and tells.

  get reading(): number {
    return this.req;
  }

  headTooLarge(): void {
    this.refuse(this.relay.answers.headTooLarge());
  }

  headPending(): void {
    if (this.headDeadline === Infinity) this.headDeadline = this.relay.tick + HEADERS_TIMEOUT_TICKS;
  }

  headComplete(): void {
    this.headDeadline = Infinity;
  }

  discardedTooMuch(): void {
    this.closeWhenAnswered();
  }

  keep(chunk: Buffer): void {
    this.addStash(chunk);
  }

  onRequestHead(head: string): void {
    const answers = this.relay.answers;
    const parsed = parseRequestHead(head, true);
    if (typeof parsed === 'number') {
      this.refuse(parsed === 505 ? answers.badVersion() : answers.badRequest());
      return;
    }
    if (parsed.method === 'CONNECT') {
      this.refuse(answers.noConnect());
      return;
    }
    const upgrade = parsed.upgrade !== undefined;
    if (upgrade && (parsed.method !== 'GET' || parsed.upgrade!.toLowerCase() !== 'websocket')) {
      this.refuse(answers.badUpgrade());
      return;
    }
    const ex = new Exchange(this);
    ex.headOnly = parsed.method === 'HEAD';
    ex.upgrade = upgrade;
    ex.close = parsed.close;
    ex.expectContinue = parsed.expectContinue;
    ex.contentLength = parsed.contentLength;
    ex.chunked = parsed.chunked;
    ex.admitted = true;
    this.pending.push(ex);
    this.current = ex;
    // Until the policy decides, what follows the head is kept.
    this.req = R_WAIT;
    ex.deciding = true;
    const view = { head, parsed, remote: this.remote, upgrade };
    if (this.relay.policy.refused !== undefined) ex.view = view;
    const decision = this.relay.policy.admit(view, ex);
    if (decision !== undefined && ex.deciding) {
      ex.deciding = false;
      this.decided(ex, decision, true);
    }
  }

  /** The policy's decision for `ex`: now (inside onRequestHead) or later (bytes were kept meanwhile). */
  decided(ex: Exchange, decision: Decision, now: boolean): void {
    if (this.dead) return;
    if (decision.kind === 'answer') {
      this.answerLocally(ex, decision.answer, decision.close === true);
    } else {
      ex.forward = decision.head;
      ex.upstream = decision.upstream;
      ex.setCookie = decision.setCookie;
      if (this.pending[0] === ex || this.upstream === null || this.upstream.address.key === decision.upstream.key) {
        this.send(ex);
      } else {
        ex.waitingTurn = true; // answers from the current upstream are due first
        return;
      }
    }
    if (!now) this.replayStash();
  }

  /** Bytes kept while a request was decided on go through the request side again. */
  private replayStash(): void {
    for (const chunk of this.takeStash()) this.onClientData(chunk);
    this.flushUpstream();
    this.flushClient();
  }

  /**
   * The relay answers the request itself. A body is read and dropped (or, when that is unwise,
   * the connection closes after the answer). Never forwarded, whatever the answer.
   */
  private answerLocally(ex: Exchange, answer: Answer, close: boolean): void {
    const hasBody = ex.contentLength > 0 || ex.chunked;
    // A client waiting for 100-continue may or may not send its body now: closing is the only
    // safe way on. Upgrades are answered and closed.
    close ||= ex.upgrade || ex.close || (hasBody && (ex.expectContinue || ex.contentLength > MAX_DISCARD));
    ex.local = renderAnswer(answer, close, ex.headOnly);
    ex.localStatus = answer.status;
    ex.close = close;
    if (close) {
      this.stopReading();
    } else if (hasBody) {
      this.request.expectBody(ex.chunked, ex.contentLength, true);
      this.req = R_BODY;
      this.bodyDeadline = this.relay.tick + REQUEST_TIMEOUT_TICKS;
    } else {
      this.current = ex;
      this.requestDone();
    }
    this.writeLocals();
    this.flushClient();
  }

  /** Sends the request on to its upstream: its head now, its body as it comes. */
  private send(ex: Exchange): void {
    ex.waitingTurn = false;
    this.useUpstream(ex.upstream!);
    ex.sent = true;
    this.toUpstream.push(ex.forward);
    this.current = ex;
    if (ex.contentLength > 0 || ex.chunked) {
      this.request.expectBody(ex.chunked, ex.contentLength, false);
      this.req = R_BODY;
      this.bodyDeadline = this.relay.tick + REQUEST_TIMEOUT_TICKS;
    } else {
      ex.replay = ex.forward;
      this.requestDone();
    }
  }

  /** The current request (head and body) has been read. */
  requestDone(): void {
    const ex = this.current;
    // An upgrade stays current until the upstream answers it.
    this.current = ex !== null && ex.upgrade ? ex : null;
    this.request.discarding = false;
    this.bodyDeadline = Infinity;
    if (ex !== null && ex.upgrade) this.req = R_WAIT;
    else if ((ex !== null && ex.close) || this.clientEnded) this.req = R_DONE;
    else this.req = R_HEAD;
    if (this.pending.length >= MAX_PIPELINE) this.pause(P_PIPELINE);
  }

  /** A malformed or unsupported request: answered, then the connection closes. Not a request the policy saw. */
  private refuse(answer: Answer): void {
    const ex = new Exchange(this);
    ex.local = renderAnswer(answer, true);
    ex.localStatus = answer.status;
    ex.close = true;
    this.pending.push(ex);
    this.stopReading();
    this.writeLocals();
    this.flushClient();
  }

  /** A request body broke its framing after part of it was forwarded: nothing sane is left. */
  brokenRequestBody(): void {
    if (this.request.discarding) this.closeWhenAnswered();
    else this.destroy();
  }

  /** Reads no more requests; the connection closes once the answers still due are out. */
  private closeWhenAnswered(): void {
    this.stopReading();
    const last = this.pending[this.pending.length - 1];
    if (last !== undefined) last.close = true;
    else this.closeAfterFlush = true;
  }

  /** No more requests are read on this connection; what was kept is dropped. */
  private stopReading(): void {
    this.req = R_DONE;
    this.request.partial = null;
    this.headDeadline = Infinity;
    this.bodyDeadline = Infinity;
    this.stash = [];
    this.stashBytes = 0;
    this.unpause(P_STASH | P_PIPELINE);
  }

  private addStash(chunk: Buffer): void {
    this.stash.push(chunk);
    this.stashBytes += chunk.length;
    if (this.stashBytes > MAX_STASH) {
      // A WebSocket client sends nothing before the 101: this is not one.
      if (this.current !== null && this.current.upgrade) this.destroy();
      else this.pause(P_STASH);
    }
  }

  private takeStash(): Buffer[] {
    const chunks = this.stash;
    this.stash = [];
    this.stashBytes = 0;
    this.unpause(P_STASH);
    return chunks;
  }

  private pause(reason: number): void {
    if (this.paused === 0) this.client.pause();
    this.paused |= reason;
  }

  private unpause(reasons: number): void {
    if ((this.paused & reasons) === 0) return;
    this.paused &= ~reasons;
    if (this.paused === 0) this.client.resume();
  }

  private flushUpstream(): void {
    if (this.toUpstream.length === 0) return;
    const upstream = this.upstream;
    if (upstream === null) {
      this.toUpstream.length = 0;
      return;
    }
    if (!writeAll(upstream.socket, this.toUpstream)) this.pause(P_UPSTREAM);
  }

  onUpstreamDrain(): void {
    this.unpause(P_UPSTREAM);
  }

  private onClientEnd(): void {
    if (this.tunnel) {
      this.upstream?.socket.end();
      return;
    }
    if (this.dead) return;
    this.clientEnded = true;
    if (this.ended) {
      this.destroy();
      return;
    }
    // A request being decided on, waiting its turn, or an upgrade whose client leaves before the
    // upstream answers is abandoned (an upgrade never counted); a request cut short cannot be
    // completed.
    if (this.req === R_WAIT || this.req === R_BODY || this.request.partial !== null) {
      this.destroy();
      return;
    }
    if (this.pending.length === 0) {
      this.end();
      return;
    }
    // Requests in flight: the half-close is passed on, and the upstream decides what it means
    // (Node's default is to abort; the relay then ends the client's connection; an upstream that
    // answers a half-closed client has its answer relayed).
    this.req = R_DONE;
    this.upstream?.socket.end();
  }

  private onClientDrain(): void {
    if (this.upstreamPaused) {
      this.upstreamPaused = false;
      this.upstream?.socket.resume();
    }
  }

  clientBuffered(): boolean {
    return this.client.writableLength > 0;
  }

  // ---- the upstream connection -------------------------------------------------------------

  /** Makes `address` the upstream of this connection: the current one, a pooled one, or a new one. */
  private useUpstream(address: UpstreamAddress): void {
    const current = this.upstream;
    if (current !== null) {
      if (current.address.key === address.key && !(current.stale() && !this.awaitingUpstream())) return;
      this.releaseUpstream();
    }
    this.response.reset();
    this.upstream = this.relay.pool.take(address, this) ?? new Upstream(address, this, this.relay.connectTimeoutMs);
  }

  /** Exchanges sent and not yet answered in full. */
  private awaitingUpstream(): boolean {
    for (const ex of this.pending) if (ex.sent) return true;
    return false;
  }

  /** The current upstream connection goes back to the pool when it is clean and idle, else it ends. */
  private releaseUpstream(): void {
    const upstream = this.upstream;
    if (upstream === null) return;
    this.upstream = null;
    this.upstreamPaused = false;
    const clean = this.response.idle && !this.awaitingUpstream() && !(this.req === R_BODY && !this.request.discarding);
    this.response.reset();
    if (clean) this.relay.pool.put(upstream, this.relay.tick);
    else upstream.destroy();
  }

  /** Ends the upstream connection of the moment (its owner hears nothing more). */
  dropUpstream(): void {
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    this.upstreamPaused = false;
    this.response.reset();
  }

  // ---- upstream → client -------------------------------------------------------------------

  onUpstreamData(chunk: Buffer): void {
    if (this.tunnel) {
      if (!this.client.write(chunk)) this.pauseUpstream();
      return;
    }
    this.response.read(chunk, this.toClient, this, this.upstream!);
    this.flushClient();
  }

  responseDone(ex: Exchange): boolean {
    this.pending.shift();
    const upstream = this.upstream;
    if (upstream !== null) {
      upstream.responses++;
      // Connection headers pass between the pair: a close asked by either side closes this one too.
      if (ex.close) upstream.reusable = false;
      if (upstream.keepAliveMs > 0) upstream.lastResponseAt = performance.now();
    }
    this.retried = false;
    this.finished(ex, ex.status);
    if (ex.close) {
      this.closeAfterAnswers();
      return true;
    }
    this.writeLocals();
    // A request waiting its turn may have moved the connection to another upstream: whatever
    // else the old one sent is not for it.
    return this.closeAfterFlush || this.upstream !== upstream;
  }

  /** The relay's own answers at the head of the queue go out now; a request waiting its turn goes. */
  private writeLocals(): void {
    while (this.pending.length > 0 && this.pending[0].local !== undefined) {
      const ex = this.pending.shift()!;
      this.toClient.push(ex.local!);
      this.finished(ex, ex.localStatus);
      if (ex.close) {
        this.closeAfterAnswers();
        return;
      }
    }
    if (this.pending.length === 0) {
      this.idleDeadline = this.relay.tick + KEEP_ALIVE_TIMEOUT_TICKS;
      if (this.draining || this.clientEnded) this.closeAfterFlush = true;
    } else if (this.pending[0].waitingTurn) {
      this.send(this.pending[0]);
      this.replayStash();
    }
    if (this.paused & P_PIPELINE && this.pending.length < MAX_PIPELINE / 2) this.unpause(P_PIPELINE);
  }

  /** After what is queued for the client, the connection closes; whatever else was asked goes unanswered. */
  private closeAfterAnswers(): void {
    this.closeAfterFlush = true;
    this.stopReading();
    this.abandonPending(BAD_GATEWAY);
  }

  private flushClient(): void {
    if (this.dead) {
      this.toClient.length = 0;
      return;
    }
    if (this.toClient.length > 0 && !writeAll(this.client, this.toClient)) this.pauseUpstream();
    if (this.closeAfterFlush) this.end();
  }

  private pauseUpstream(): void {
    if (this.upstream !== null && !this.upstreamPaused) {
      this.upstreamPaused = true;
      this.upstream.socket.pause();
    }
  }

  onUpstreamEnd(): void {
    if (this.tunnel) {
      this.client.end();
      return;
    }
    this.onUpstreamClosed(undefined);
  }

  /** The upstream connection ended (cleanly with `err` undefined) or failed. */
  onUpstreamClosed(err: NodeJS.ErrnoException | undefined): void {
    if (this.tunnel) return; // the policy owns the pair now
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    this.upstreamPaused = false;
    if (this.dead) return;
    if (err !== undefined) this.relay.logUpstreamError(err);
    const ex = this.pending[0];
    if (ex === undefined || !ex.sent) {
      // Closed while idle (its keep-alive timeout): the next request opens a new connection.
      this.response.reset();
      return;
    }
    if (this.response.inBody && this.response.body.endsWithClose && err === undefined) {
      this.response.body.closed();
      this.response.reset();
      this.responseDone(ex);
      this.flushClient();
      return;
    }
    if (!ex.answered && this.response.idle && upstream !== null && this.canRetry(upstream)) {
      this.retry(upstream.address);
      return;
    }
    if (!ex.answered && this.clientEnded) {
      this.destroy(); // the upstream gave up on a half-closed client: recorded as the client's doing
      return;
    }
    if (!ex.answered && err?.code === 'ECONNREFUSED' && this.canReroute(ex)) {
      this.reroute(ex);
      return;
    }
    if (!ex.answered) {
      // Nothing of an answer went out yet: the relay can still answer.
      this.pending.shift();
      this.response.reset();
      if (ex.upstream !== undefined) this.relay.policy.upstreamFailed?.(ex.upstream, err, ex.upgrade);
      const answers = this.relay.answers;
      const code = err?.code;
      const answer =
        code === 'ECONNREFUSED' ? answers.refused() : code === 'ETIMEDOUT' ? answers.timedOut() : answers.upstreamFailed();
      this.toClient.push(renderAnswer(answer, true, ex.headOnly));
      this.finished(ex, answer.status === 504 ? 504 : BAD_GATEWAY);
      this.closeAfterAnswers();
      this.flushClient();
      return;
    }
    // Cut mid-response: the client must see its connection end, not a complete-looking answer.
    this.destroy();
  }

  /**
   * A kept-alive connection the upstream closed just as requests went out on it: requests without
   * a body (all of them still unanswered) are sent again, once, on a new connection.
   */
  private canRetry(upstream: Upstream): boolean {
    if (upstream.responses === 0 || this.retried || this.req === R_BODY) return false;
    for (const ex of this.pending) if (ex.sent && ex.replay === undefined) return false;
    return true;
  }

  private retry(address: UpstreamAddress): void {
    this.response.reset();
    this.upstream = new Upstream(address, this, this.relay.connectTimeoutMs);
    this.retried = true;
    for (const ex of this.pending) if (ex.sent && ex.replay !== undefined) this.toUpstream.push(ex.replay);
    this.flushUpstream();
  }

  /** A refused connection for a lone bodiless request, which the policy may route again. */
  private canReroute(ex: Exchange): boolean {
    return (
      ex.view !== undefined &&
      ex.replay !== undefined &&
      this.pending.length === 1 &&
      this.response.idle &&
      ((this.req === R_HEAD && this.request.partial === null) || this.req === R_DONE)
    );
  }

  /** The policy decides again; meanwhile what the client sends is kept, as for a first decision. */
  private reroute(ex: Exchange): void {
    const failed = ex.upstream!;
    ex.sent = false;
    ex.replay = undefined;
    this.response.reset();
    if (this.req === R_HEAD) this.req = R_WAIT;
    ex.deciding = true;
    const decision = this.relay.policy.refused!(ex.view!, ex, failed);
    if (decision !== undefined && ex.deciding) {
      ex.deciding = false;
      this.decided(ex, decision, false);
    }
  }

  /** The upstream's response broke HTTP framing: answer 502 when nothing went out yet, else cut. */
  responseBroken(): void {
    this.relay.logger.warn('malformed response from the upstream; closing the connection');
    const ex = this.pending[0];
    this.dropUpstream();
    if (ex !== undefined && ex.sent && !ex.answered) {
      this.pending.shift();
      this.toClient.push(renderAnswer(this.relay.answers.upstreamFailed(), true, ex.headOnly));
      this.finished(ex, BAD_GATEWAY);
      this.closeAfterAnswers();
      return;
    }
    this.closeAfterAnswers();
    this.toClient.length = 0;
    this.destroy();
  }

  startTunnel(): void {
    this.pending.shift();
    this.current = null;
    this.req = R_TUNNEL;
    this.tunnel = true;
    this.headDeadline = Infinity;
    this.bodyDeadline = Infinity;
    this.idleDeadline = Infinity;
    this.relay.connections.delete(this);
    // The pair leaves the relay's accounting (never pooled again); this connection still moves
    // the bytes, and the policy counts and tears down the pair.
    const upstream = this.upstream!;
    const early = this.takeStash();
    this.unpause(P_PIPELINE);
    this.flushClient();
    for (const chunk of early) upstream.socket.write(chunk);
    this.relay.policy.tunnel(this.client, upstream.socket);
  }

  // ---- both --------------------------------------------------------------------------------

  private finished(ex: Exchange, status: number): void {
    if (ex.deciding) ex.abandoned();
    if (!ex.admitted) return;
    ex.admitted = false;
    this.relay.policy.finished(status, ex.counted ? (performance.now() - ex.started) / 1000 : 0, ex.counted);
  }

  private abandonPending(status: number): void {
    for (const ex of this.pending) this.finished(ex, ex.answered ? ex.status : status);
    this.pending.length = 0;
  }

  /** Ends the client connection gracefully (after queued writes) and lets it linger briefly. */
  private end(): void {
    if (this.ended || this.dead) return;
    this.ended = true;
    this.closeAfterFlush = false;
    this.stopReading();
    this.releaseUpstream();
    // Half-close: the answer is flushed first. What the client still sends is read and dropped
    // (a close with unread data would reset the connection and could lose the answer); the
    // socket goes once both sides ended, or after LINGER_MS.
    this.client.end();
    this.client.resume();
    this.linger = setTimeout(() => this.destroy(), LINGER_MS).unref();
  }

  /** Shutdown: idle connections close now; busy ones after their last answer. */
  drain(): void {
    if (this.tunnel) return;
    if (this.pending.length === 0 && this.req === R_HEAD && this.request.partial === null) this.destroy();
    else this.draining = true;
  }

  destroy(): void {
    this.client.destroy();
    this.teardown();
  }

  private teardown(): void {
    if (this.dead) return;
    this.dead = true;
    this.relay.connections.delete(this);
    if (this.linger) clearTimeout(this.linger);
    if (this.tunnel) return; // the policy tears the pair down
    this.client.destroy();
    this.current = null;
    if (this.pending.length === 0) this.releaseUpstream();
    else this.dropUpstream();
    this.abandonPending(CLIENT_CLOSED_REQUEST);
  }

  /** Called once a tick: slow heads, slow bodies, idle keep-alive connections. */
  check(tick: number): void {
    if (tick >= this.headDeadline) {
      if (this.pending.length === 0) this.refuse(this.relay.answers.headersTimeout());
      else this.destroy();
    } else if (tick >= this.bodyDeadline) {
      this.destroy();
    } else if (tick >= this.idleDeadline && this.pending.length === 0 && this.req === R_HEAD && this.request.partial === null) {
      this.destroy();
    }
  }
}
