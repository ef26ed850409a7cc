/**
 * The sidecar's data path: a connection-level HTTP/1.1 relay (docs/adr/0005-sidecar-data-path.md).
 *
 * Each client connection gets one app connection of its own, opened at its first request (and
 * again after the app closed an idle one). Bytes are passed on as they come, in the buffers they
 * came in; an incremental parser watches both directions for message boundaries:
 *
 * - client → app: request heads (parsed strictly, rewritten: X-Forwarded-*, the connection token
 *   taken out), then bodies by Content-Length or chunked framing, pipelined requests included;
 * - app → client: response heads (status for the metrics, Set-Cookie added when the token came in
 *   the query), bodies by Content-Length, chunked framing or close; 1xx passed on; a 101 to an
 *   upgrade request turns the pair into a plain tunnel, counted by the WebSocketTracker.
 *
 * So the sidecar sees every request start and end (activity, in-flight count, requests_total,
 * durations) without Node's HTTP machinery on the hot path. Answers of its own (401, 400, 431,
 * 502, 503, 504) are queued in order with the app's responses, since HTTP/1.1 answers in order.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { DataPath, DataPathDeps } from './data-path';
import type { HeldEntry } from './hold-queue';
import {
  BodyFramer,
  CRLFCRLF,
  MAX_REQUEST_HEAD,
  MAX_RESPONSE_HEAD,
  parseRequestHead,
  parseResponseHead,
  responseHasNoBody,
  type LineRange,
  type RequestHead,
} from './http1';
import { answers, renderAnswer, type Answer } from './responses';
import type { TokenGate } from './token';

/**
 * Slow clients, in ticks of one second: the request head must arrive within 15 s of the
 * connection or of its first byte (slowloris), a request body within 5 min, and an idle
 * keep-alive connection is closed after 65 s (longer than the usual 60 s of proxies in front, so
 * they close first and never reuse a connection being closed). Responses and tunnels have no
 * limit: long polls and WebSockets are the point.
 */
const TICK_MS = 1000;
const HEADERS_TIMEOUT_TICKS = 15;
const REQUEST_TIMEOUT_TICKS = 300;
const KEEP_ALIVE_TIMEOUT_TICKS = 65;
/** After the sidecar ends a connection, how long the client may take to close its side. */
const LINGER_MS = 5000;
/** Bytes kept while a request is held or an upgrade awaits its answer, before reading pauses. */
const MAX_STASH = 64 * 1024;
/** Pipelined requests in flight on one connection before reading pauses. */
const MAX_PIPELINE = 16;
/** A refused (401) request's body is read and dropped up to this size; beyond, the connection closes. */
const MAX_DISCARD = 1024 * 1024;
/** The app's bytes are read into a buffer of this size (larger reads take several). */
const READ_BUFFER_SIZE = 16 * 1024;
/** Upstream errors come in storms (the app died); one line per interval is enough. */
const ERROR_LOG_INTERVAL_MS = 5000;
/** Status recorded for a request whose client left before any answer (nginx's convention). */
const CLIENT_CLOSED_REQUEST = 499;
/** Status recorded for a request the app never answered. */
const BAD_GATEWAY = 502;

// What the client → app direction is doing.
const R_HEAD = 0; // reading a request head
const R_BODY = 1; // passing on (or dropping) a request body
const R_WAIT = 2; // a request is held or an upgrade awaits its answer: bytes are kept
const R_TUNNEL = 3; // after a 101: plain relay
const R_DONE = 4; // no more requests on this connection: bytes are dropped
// What the app → client direction is doing.
const S_HEAD = 0;
const S_BODY = 1;
const S_TUNNEL = 2;
// Why the client socket is paused (any set bit keeps it paused).
const P_UPSTREAM = 1;
const P_STASH = 2;
const P_PIPELINE = 4;

export interface RelayDeps extends DataPathDeps {
  /** Length of a tick (tests shorten it; the timeouts are counted in ticks). */
  tickMs?: number;
}

/** One request and its answer. */
class Exchange {
  /** performance.now() at arrival; only for counted requests. */
  started = 0;
  /** A request for activity and metrics (upgrades and refused requests are not). */
  counted = false;
  headOnly = false;
  upgrade = false;
  /** The connection closes after this exchange. */
  close = false;
  /** The head as forwarded, and the body framing that follows it. */
  forward = '';
  contentLength = -1;
  chunked = false;
  /** The forwarded head when the request had no body (it can be sent again on a new connection). */
  replay: string | undefined = undefined;
  /** The sidecar's own answer, rendered. */
  local: string | undefined = undefined;
  localStatus = 0;
  /** The app's final status, once its head went to the client. */
  status = 0;
  answered = false;
  setCookie: string | undefined = undefined;
  held: HeldEntry | undefined = undefined;
}

type Chunk = string | Buffer;

function writeChunk(socket: net.Socket, chunk: Chunk): boolean {
  return typeof chunk === 'string' ? socket.write(chunk, 'latin1') : socket.write(chunk);
}

/** Writes queued chunks in one go (corked: one writev), empties the queue; false when buffered. */
function writeAll(socket: net.Socket, chunks: Chunk[]): boolean {
  let ok: boolean;
  if (chunks.length === 1) {
    ok = writeChunk(socket, chunks[0]);
  } else {
    socket.cork();
    ok = true;
    for (const chunk of chunks) ok = writeChunk(socket, chunk);
    socket.uncork();
  }
  chunks.length = 0;
  return ok;
}

function pushSlice(out: Chunk[], buf: Buffer, from: number, to: number): void {
  if (to > from) out.push(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
}

export class Relay implements DataPath {
  readonly server: net.Server;
  readonly connections = new Set<Connection>();
  /** Seconds since start, advanced by one timer for all connections. */
  tick = 0;
  private ticker: NodeJS.Timeout | undefined;
  private lastErrorLog = 0;
  private suppressedErrors = 0;

  constructor(readonly deps: RelayDeps) {
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      this.connections.add(new Connection(this, socket));
    });
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject);
        // Accept errors (EMFILE...) are not fatal: the server keeps listening.
        this.server.on('error', (err) => this.deps.logger.warn('accept failed', { error: err }));
        this.ticker = setInterval(() => this.onTick(), this.deps.tickMs ?? TICK_MS);
        this.ticker.unref();
        resolve();
      });
    });
  }

  get port(): number | undefined {
    return (this.server.address() as net.AddressInfo | null)?.port;
  }

  /** Stops accepting; idle connections close now, busy ones after their last answer. Resolves once all are gone. */
  drain(): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.server.listening) this.server.close(() => resolve());
      else resolve();
    });
    for (const connection of [...this.connections]) connection.drain();
    return closed;
  }

  /** Cuts every HTTP connection (tunnels belong to the tracker). */
  destroyAll(): void {
    for (const connection of [...this.connections]) connection.destroy();
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  logUpstreamError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.suppressedErrors++;
      return;
    }
    this.deps.logger.warn('upstream error', { code: code ?? err.message, suppressed: this.suppressedErrors });
    this.lastErrorLog = now;
    this.suppressedErrors = 0;
  }

  private onTick(): void {
    const tick = ++this.tick;
    for (const connection of this.connections) connection.check(tick);
  }
}

class Connection {
  private upstream: net.Socket | null = null;
  private req = R_HEAD;
  private res = S_HEAD;
  /** An incomplete request head, or response head. */
  private partial: Buffer | null = null;
  private resPartial: Buffer | null = null;
  private readonly reqBody = new BodyFramer();
  private readonly resBody = new BodyFramer();
  /** The exchange whose request is being read (its body, or its upgrade answer). */
  private current: Exchange | null = null;
  /** The current request body is dropped, not forwarded (a refused request). */
  private discarding = false;
  private discarded = 0;
  /** Exchanges in order: the app's responses and the sidecar's own answers go out in this order. */
  private readonly pending: Exchange[] = [];
  private stash: Buffer[] = [];
  private stashBytes = 0;
  private paused = 0;
  private upstreamPaused = false;
  /** The client's side ends once what is queued for it is written. */
  private closeAfterFlush = false;
  /** The sidecar ended its side of the client connection. */
  private ended = false;
  private clientEnded = false;
  private draining = false;
  private dead = false;
  private linger: NodeJS.Timeout | undefined;
  /** Complete responses on the current app connection (a failure after one may be a stale reuse). */
  private responsesOnUpstream = 0;
  private retried = false;
  /** The app's Keep-Alive timeout hint, and when its last response ended. */
  private keepAliveMs = 0;
  private lastResponseAt = 0;
  private headDeadline: number;
  private bodyDeadline = Infinity;
  private idleDeadline = Infinity;
  private readonly toUpstream: Chunk[] = [];
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

  // ---- client → app ------------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    switch (this.req) {
      case R_TUNNEL:
        if (!this.upstream!.write(chunk)) this.pause(P_UPSTREAM);
        return;
      case R_WAIT:
        this.addStash(chunk);
        return;
      case R_DONE:
        return;
    }
    this.readRequests(chunk);
    this.flushUpstream();
    if (this.closeAfterFlush) this.flushClient();
  }

  private readRequests(buf: Buffer): void {
    let pos = 0;
    let end = buf.length;
    while (pos < end) {
      if (this.req === R_BODY) {
        const stop = this.reqBody.advance(buf, pos, end);
        if (this.reqBody.error) {
          this.brokenRequestBody();
          return;
        }
        if (this.discarding) {
          this.discarded += stop - pos;
          if (this.discarded > MAX_DISCARD) {
            this.closeWhenAnswered();
            return;
          }
        } else {
          pushSlice(this.toUpstream, buf, pos, stop);
        }
        pos = stop;
        if (this.reqBody.done) this.requestDone();
        continue;
      }
      if (this.req === R_WAIT) {
        this.addStash(pos === 0 ? buf : buf.subarray(pos));
        return;
      }
      if (this.req !== R_HEAD) return;

      if (this.partial !== null) {
        buf = Buffer.concat([this.partial, buf.subarray(pos)]);
        this.partial = null;
        pos = 0;
        end = buf.length;
      }
      // RFC 9112 §2.2: empty lines before a request line are ignored.
      while (pos + 1 < end && buf[pos] === 13 && buf[pos + 1] === 10) pos += 2;
      const at = buf.indexOf(CRLFCRLF, pos);
      if (at < 0 || at + 4 - pos > MAX_REQUEST_HEAD) {
        if (at >= 0 || end - pos > MAX_REQUEST_HEAD) {
          this.refuse(answers.headTooLarge());
        } else if (pos < end) {
          this.partial = buf.subarray(pos);
          if (this.headDeadline === Infinity) this.headDeadline = this.relay.tick + HEADERS_TIMEOUT_TICKS;
        }
        return;
      }
      this.headDeadline = Infinity;
      const head = buf.toString('latin1', pos, at + 2);
      pos = at + 4;
      this.onRequestHead(head);
    }
  }

  private onRequestHead(head: string): void {
    const deps = this.relay.deps;
    const parsed = parseRequestHead(head, deps.gate !== undefined);
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
    const ex = new Exchange();
    ex.headOnly = parsed.method === 'HEAD';
    ex.upgrade = upgrade;
    ex.close = parsed.close;
    ex.contentLength = parsed.contentLength;
    ex.chunked = parsed.chunked;
    if (deps.gate !== undefined) {
      const forward = this.admit(deps.gate, head, parsed, ex);
      if (forward === undefined) {
        this.unauthorized(parsed, ex);
        return;
      }
      ex.forward = forward;
    } else {
      ex.forward = this.rewrite(head, parsed, parsed.target, undefined, '');
    }
    if (!upgrade) {
      ex.counted = true;
      ex.started = performance.now();
      deps.activity.requestStarted();
    }
    this.pending.push(ex);
    this.current = ex;
    if (deps.activity.ready) this.forward(ex);
    else this.hold(ex);
  }

  /**
   * The token check: undefined when refused; otherwise the head to forward, with the token taken
   * out of whatever carried it (query, X-Spawner-Token, cookie, matching bearer).
   */
  private admit(gate: TokenGate, head: string, parsed: RequestHead, ex: Exchange): string | undefined {
    const received = parsed.tokenHeaders ?? {};
    const view = { method: parsed.method, url: parsed.target, headers: { ...received } as Record<string, string | undefined> };
    const admission = gate.admit(view, ex.upgrade);
    if (!admission.ok) return undefined;
    ex.setCookie = admission.setCookie;
    let drop: LineRange[] | undefined;
    let extra = '';
    for (const name of ['x-spawner-token', 'cookie', 'authorization']) {
      const lines = parsed.tokenLines?.[name];
      if (lines === undefined || view.headers[name] === received[name]) continue;
      (drop ??= []).push(...lines);
      const kept = view.headers[name];
      if (kept !== undefined) extra += `${name === 'cookie' ? 'Cookie' : name}: ${kept}\r\n`;
    }
    return this.rewrite(head, parsed, view.url ?? parsed.target, drop, extra);
  }

  /** The head as the app gets it: X-Forwarded-For appended to, -Proto and -Host set when absent. */
  private rewrite(head: string, parsed: RequestHead, target: string, drop: LineRange[] | undefined, extra: string): string {
    let out = head;
    const xffLines = parsed.forwardedForLines;
    if (drop !== undefined || xffLines !== undefined || target !== parsed.target) {
      const removed = [...(drop ?? []), ...(xffLines ?? [])].sort((a, b) => a[0] - b[0]);
      const lineEnd = head.indexOf('\r\n') + 2;
      out = head.slice(0, parsed.targetAt) + target + head.slice(parsed.targetAt + parsed.target.length, lineEnd);
      let at = lineEnd;
      for (const [from, to] of removed) {
        out += head.slice(at, from);
        at = to;
      }
      out += head.slice(at);
    }
    const remote = this.remote;
    if (remote !== undefined) {
      out += `X-Forwarded-For: ${parsed.forwardedFor ? `${parsed.forwardedFor}, ${remote}` : remote}\r\n`;
    }
    if (!parsed.hasForwardedProto) out += 'X-Forwarded-Proto: http\r\n';
    if (!parsed.hasForwardedHost && parsed.host !== undefined) out += `X-Forwarded-Host: ${parsed.host}\r\n`;
    return `${out}${extra}\r\n`;
  }

  /** 401: never forwarded, no activity; a body is dropped (or, when that is unwise, the connection closes). */
  private unauthorized(parsed: RequestHead, ex: Exchange): void {
    const deps = this.relay.deps;
    deps.metrics.unauthorized(!ex.upgrade);
    const hasBody = parsed.contentLength > 0 || parsed.chunked;
    // A client waiting for 100-continue may or may not send its body now: closing is the only
    // safe way on. Upgrades are answered and closed as before.
    const close = ex.upgrade || parsed.close || (hasBody && (parsed.expectContinue || parsed.contentLength > MAX_DISCARD));
    ex.local = renderAnswer(answers.unauthorized(), close, ex.headOnly);
    ex.localStatus = 401;
    ex.close = close;
    this.pending.push(ex);
    this.current = ex;
    if (close) {
      this.stopReading();
    } else if (hasBody) {
      this.discarding = true;
      this.discarded = 0;
      if (parsed.chunked) this.reqBody.chunked();
      else this.reqBody.length(parsed.contentLength);
      this.req = R_BODY;
      this.bodyDeadline = this.relay.tick + REQUEST_TIMEOUT_TICKS;
    }
    this.writeLocals();
    this.flushClient();
  }

  /** Sends the request on to the app: its head now, its body as it comes. */
  private forward(ex: Exchange): void {
    if (this.upstream === null) {
      this.connectUpstream();
    } else if (
      this.keepAliveMs > 0 &&
      this.pending.length === 1 &&
      performance.now() - this.lastResponseAt > this.keepAliveMs - 1000
    ) {
      // The app announced it closes idle connections after keepAliveMs: do not race it.
      this.upstream.destroy();
      this.connectUpstream();
    }
    this.toUpstream.push(ex.forward);
    if (ex.contentLength > 0 || ex.chunked) {
      if (ex.chunked) this.reqBody.chunked();
      else this.reqBody.length(ex.contentLength);
      this.discarding = false;
      this.req = R_BODY;
      this.bodyDeadline = this.relay.tick + REQUEST_TIMEOUT_TICKS;
    } else {
      ex.replay = ex.forward;
      this.requestDone();
    }
  }

  /** The current request (head and body) has been read. */
  private requestDone(): void {
    const ex = this.current;
    // An upgrade stays current until the app answers it.
    this.current = ex !== null && ex.upgrade ? ex : null;
    this.discarding = false;
    this.bodyDeadline = Infinity;
    if (ex !== null && ex.upgrade) this.req = R_WAIT;
    else if ((ex !== null && ex.close) || this.clientEnded) this.req = R_DONE;
    else this.req = R_HEAD;
    if (this.pending.length >= MAX_PIPELINE) this.pause(P_PIPELINE);
  }

  /** The app does not accept connections yet: the request waits in the hold queue. */
  private hold(ex: Exchange): void {
    const deps = this.relay.deps;
    this.req = R_WAIT;
    if (deps.stopping()) {
      this.answer(ex, answers.stopping());
      return;
    }
    const held: HeldEntry = {
      forward: () => this.release(ex),
      expire: () => this.answer(ex, answers.holdTimeout()),
      reject: () => this.answer(ex, answers.stopping()),
    };
    if (!deps.queue.add(held)) {
      this.answer(ex, answers.holdFull());
      return;
    }
    ex.held = held;
  }

  private release(ex: Exchange): void {
    ex.held = undefined;
    if (this.dead) return;
    this.req = R_HEAD;
    this.forward(ex);
    for (const chunk of this.takeStash()) this.onClientData(chunk);
    this.flushUpstream();
  }

  /** Answers a held exchange itself and closes the connection after it. */
  private answer(ex: Exchange, answer: Answer): void {
    ex.held = undefined;
    if (this.dead) return;
    ex.local = renderAnswer(answer, true, ex.headOnly);
    ex.localStatus = answer.status;
    ex.close = true;
    this.stopReading();
    this.writeLocals();
    this.flushClient();
  }

  /** A malformed or unsupported request: answered, then the connection closes. Not a counted request. */
  private refuse(answer: Answer): void {
    const ex = new Exchange();
    ex.local = renderAnswer(answer, true);
    ex.localStatus = answer.status;
    ex.close = true;
    this.pending.push(ex);
    this.stopReading();
    this.writeLocals();
    this.flushClient();
  }

  /** A request body broke its framing after part of it was forwarded: nothing sane is left. */
  private brokenRequestBody(): void {
    if (this.discarding) this.closeWhenAnswered();
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
    this.partial = null;
    this.stash = [];
    this.stashBytes = 0;
    this.headDeadline = Infinity;
    this.bodyDeadline = Infinity;
    this.unpause(P_STASH | P_PIPELINE);
  }

  private flushUpstream(): void {
    if (this.toUpstream.length === 0) return;
    const upstream = this.upstream;
    if (upstream === null) {
      this.toUpstream.length = 0;
      return;
    }
    if (!writeAll(upstream, this.toUpstream)) this.pause(P_UPSTREAM);
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
    const stash = this.stash;
    this.stash = [];
    this.stashBytes = 0;
    this.unpause(P_STASH);
    return stash;
  }

  private pause(reason: number): void {
    if (this.paused === 0) this.client.pause();
    this.paused |= reason;
  }

  private unpause(reason: number): void {
    if ((this.paused & reason) === 0) return;
    this.paused &= ~reason;
    if (this.paused === 0) this.client.resume();
  }

  private onClientEnd(): void {
    if (this.req === R_TUNNEL) {
      this.upstream?.end();
      return;
    }
    if (this.dead) return;
    this.clientEnded = true;
    if (this.ended) {
      this.destroy();
      return;
    }
    // A held request or an upgrade whose client leaves before the app answers is abandoned (an
    // upgrade never counted); a request cut short cannot be completed.
    if (this.req === R_WAIT || this.req === R_BODY || this.partial !== null) {
      this.destroy();
      return;
    }
    if (this.pending.length === 0) {
      this.end();
      return;
    }
    // Requests in flight: the half-close is passed on, and the app decides what it means (Node's
    // default is to abort; the relay then ends the client's connection; an app that answers a
    // half-closed client has its answer relayed).
    this.req = R_DONE;
    this.upstream?.end();
  }

  private onClientDrain(): void {
    if (this.upstreamPaused) {
      this.upstreamPaused = false;
      this.upstream?.resume();
    }
  }

  // ---- app → client ------------------------------------------------------------------------

  private connectUpstream(): void {
    const { upstreamHost: host, upstreamPort: port } = this.relay.deps;
    // The app's bytes are read into a buffer of this connection's own, reused from read to read
    // (no allocation and no stream machinery per read): they are parsed and written on at once,
    // and only when the client could not take them all (its socket keeps a reference) does the
    // next read get a new buffer.
    let readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
    const upstream = net.connect({
      host,
      port,
      noDelay: true,
      allowHalfOpen: true,
      onread: {
        buffer: () => {
          if (this.client.writableLength > 0) readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
          return readBuffer;
        },
        callback: (n: number, buf: Uint8Array) => {
          if (upstream === this.upstream) this.onUpstreamData((buf as Buffer).subarray(0, n));
          return true;
        },
      },
    });
    this.upstream = upstream;
    this.res = S_HEAD;
    this.resPartial = null;
    this.responsesOnUpstream = 0;
    this.keepAliveMs = 0;
    upstream.on('end', () => {
      if (upstream === this.upstream) this.onUpstreamEnd();
      else upstream.destroy();
    });
    upstream.on('drain', () => {
      if (upstream === this.upstream) this.unpause(P_UPSTREAM);
    });
    upstream.on('error', (err: Error) => {
      if (upstream !== this.upstream) return;
      this.relay.logUpstreamError(err);
      this.upstreamClosed(err);
    });
    upstream.on('close', () => {
      if (upstream === this.upstream) this.upstreamClosed(undefined);
    });
  }

  private onUpstreamData(chunk: Buffer): void {
    if (this.res === S_TUNNEL) {
      if (!this.client.write(chunk)) this.pauseUpstream();
      return;
    }
    this.readResponses(chunk);
    this.flushClient();
  }

  private readResponses(buf: Buffer): void {
    const out = this.toClient;
    let pos = 0;
    let end = buf.length;
    let run = 0; // bytes of buf from here on are not queued for the client yet
    while (pos < end) {
      const ex = this.pending[0];
      if (ex === undefined || ex.local !== undefined || ex.held !== undefined) {
        // Bytes nobody asked for (some servers say 408 before closing an idle connection): the
        // app's connection is dropped; the client's is not concerned.
        pushSlice(out, buf, run, pos);
        this.dropUpstream();
        return;
      }
      if (this.res === S_BODY) {
        pos = this.resBody.advance(buf, pos, end);
        if (this.resBody.error) {
          pushSlice(out, buf, run, pos);
          this.responseBroken();
          return;
        }
        if (this.resBody.done) {
          pushSlice(out, buf, run, pos);
          run = pos;
          this.responseDone(ex);
          if (this.closeAfterFlush) return;
        }
        continue;
      }
      if (this.resPartial !== null) {
        pushSlice(out, buf, run, pos);
        buf = Buffer.concat([this.resPartial, buf.subarray(pos)]);
        this.resPartial = null;
        pos = 0;
        run = 0;
        end = buf.length;
      }
      const at = buf.indexOf(CRLFCRLF, pos);
      if (at < 0 || at + 4 - pos > MAX_RESPONSE_HEAD) {
        pushSlice(out, buf, run, pos);
        if (at >= 0 || end - pos > MAX_RESPONSE_HEAD) this.responseBroken();
        else this.resPartial = Buffer.from(buf.subarray(pos)); // a copy: buf is reused for the next read
        return;
      }
      const head = buf.toString('latin1', pos, at + 2);
      const parsed = parseResponseHead(head);
      if (parsed === undefined) {
        pushSlice(out, buf, run, pos);
        this.responseBroken();
        return;
      }
      const headEnd = at + 4;
      if (parsed.status < 200) {
        if (parsed.status === 101) {
          if (!ex.upgrade) {
            pushSlice(out, buf, run, pos);
            this.responseBroken();
            return;
          }
          // The 101 and whatever the app sent after it (already WebSocket frames) go out as they are.
          pushSlice(out, buf, run, end);
          this.startTunnel();
          return;
        }
        pos = headEnd; // 100 Continue, 103 Early Hints...: passed on, the final answer follows
        continue;
      }
      ex.status = parsed.status;
      ex.answered = true;
      if (ex.setCookie !== undefined) {
        pushSlice(out, buf, run, pos);
        out.push(`${head}Set-Cookie: ${ex.setCookie}\r\n\r\n`);
        run = headEnd;
      }
      // A refused upgrade leaves the app's connection in a state of its own choosing: close after.
      if (parsed.close || ex.upgrade) ex.close = true;
      if (parsed.keepAliveMs > 0) this.keepAliveMs = parsed.keepAliveMs;
      pos = headEnd;
      if (responseHasNoBody(parsed.status, ex.headOnly)) {
        this.resBody.length(0);
      } else if (parsed.chunked) {
        this.resBody.chunked();
      } else if (parsed.untilClose) {
        this.resBody.untilClose();
        ex.close = true;
      } else {
        this.resBody.length(parsed.contentLength);
      }
      if (this.resBody.done) {
        pushSlice(out, buf, run, pos);
        run = pos;
        this.responseDone(ex);
        if (this.closeAfterFlush) return;
      } else {
        this.res = S_BODY;
      }
    }
    pushSlice(out, buf, run, end);
  }

  /** The response at the head of the queue is complete. */
  private responseDone(ex: Exchange): void {
    this.pending.shift();
    this.res = S_HEAD;
    this.responsesOnUpstream++;
    this.retried = false;
    this.finished(ex, ex.status);
    if (ex.close) {
      this.closeAfterAnswers();
      return;
    }
    this.writeLocals();
    if (this.pending.length === 0) {
      if (this.keepAliveMs > 0) this.lastResponseAt = performance.now();
      this.idleDeadline = this.relay.tick + KEEP_ALIVE_TIMEOUT_TICKS;
      if (this.draining || this.clientEnded) this.closeAfterFlush = true;
    }
    if (this.paused & P_PIPELINE && this.pending.length < MAX_PIPELINE / 2) this.unpause(P_PIPELINE);
  }

  /** The sidecar's own answers at the head of the queue go out now. */
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
      this.upstream.pause();
    }
  }

  private onUpstreamEnd(): void {
    if (this.res === S_TUNNEL) {
      this.client.end();
      return;
    }
    this.upstreamClosed(undefined);
  }

  private dropUpstream(): void {
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    this.upstreamPaused = false;
    this.res = S_HEAD;
    this.resPartial = null;
  }

  /** The app's connection ended (cleanly with `err` undefined) or failed. */
  private upstreamClosed(err: Error | undefined): void {
    if (this.res === S_TUNNEL) return; // the tracker owns the pair now
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    this.upstreamPaused = false;
    if (this.dead) return;
    const ex = this.pending[0];
    if (ex === undefined || ex.local !== undefined || ex.held !== undefined) {
      // Closed while idle (its keep-alive timeout): the next request opens a new connection.
      this.resPartial = null;
      this.res = S_HEAD;
      return;
    }
    if (this.res === S_BODY && this.resBody.endsWithClose && err === undefined) {
      this.resBody.closed();
      this.responseDone(ex);
      this.flushClient();
      return;
    }
    if (!ex.answered && this.res === S_HEAD && this.resPartial === null && this.canRetry()) {
      this.retry();
      return;
    }
    if (!ex.answered && this.clientEnded) {
      this.destroy(); // the app gave up on a half-closed client: recorded as the client's doing
      return;
    }
    if (!ex.answered) {
      // Nothing of an answer went out yet: a 502 can still be given.
      this.pending.shift();
      this.res = S_HEAD;
      this.resPartial = null;
      const refused = (err as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED';
      this.toClient.push(renderAnswer(refused ? answers.refused() : answers.upstreamFailed(), true, ex.headOnly));
      this.finished(ex, BAD_GATEWAY);
      this.closeAfterAnswers();
      this.flushClient();
      return;
    }
    // Cut mid-response: the client must see its connection end, not a complete-looking answer.
    this.destroy();
  }

  /**
   * A kept-alive connection the app closed just as requests went out on it: requests without a
   * body (all of them still unanswered) are sent again, once, on a new connection.
   */
  private canRetry(): boolean {
    if (this.responsesOnUpstream === 0 || this.retried || this.req === R_BODY) return false;
    for (const ex of this.pending) if (ex.local === undefined && ex.replay === undefined) return false;
    return true;
  }

  private retry(): void {
    this.connectUpstream();
    this.retried = true;
    for (const ex of this.pending) if (ex.replay !== undefined) this.toUpstream.push(ex.replay);
    this.flushUpstream();
  }

  /** The app's response broke HTTP framing: answer 502 when nothing went out yet, else cut. */
  private responseBroken(): void {
    this.relay.deps.logger.warn('malformed response from the app; closing the connection');
    const ex = this.pending[0];
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    if (ex !== undefined && ex.local === undefined && ex.held === undefined && !ex.answered) {
      this.pending.shift();
      this.toClient.push(renderAnswer(answers.upstreamFailed(), true, ex.headOnly));
      this.finished(ex, BAD_GATEWAY);
      this.closeAfterAnswers();
      return;
    }
    this.closeAfterAnswers();
    this.toClient.length = 0;
    this.destroy();
  }

  private startTunnel(): void {
    this.pending.shift();
    this.current = null;
    this.req = R_TUNNEL;
    this.res = S_TUNNEL;
    this.headDeadline = Infinity;
    this.bodyDeadline = Infinity;
    this.idleDeadline = Infinity;
    this.relay.connections.delete(this);
    const upstream = this.upstream!;
    const early = this.takeStash();
    this.unpause(P_PIPELINE);
    this.flushClient();
    for (const chunk of early) upstream.write(chunk);
    // Counted from here until the first close, error or end of either side (the tracker's rules).
    this.relay.deps.tracker.track(this.client, upstream);
  }

  // ---- both --------------------------------------------------------------------------------

  private finished(ex: Exchange, status: number): void {
    if (ex.held !== undefined) {
      this.relay.deps.queue.remove(ex.held);
      ex.held = undefined;
    }
    if (!ex.counted) return;
    ex.counted = false;
    const deps = this.relay.deps;
    deps.activity.requestEnded();
    deps.metrics.request(status, (performance.now() - ex.started) / 1000);
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
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    // Half-close: the answer is flushed first. What the client still sends is read and dropped
    // (a close with unread data would reset the connection and could lose the answer); the
    // socket goes once both sides ended, or after LINGER_MS.
    this.client.end();
    this.client.resume();
    this.linger = setTimeout(() => this.destroy(), LINGER_MS).unref();
  }

  /** Shutdown: idle connections close now; busy ones after their last answer. */
  drain(): void {
    if (this.req === R_TUNNEL) return;
    if (this.pending.length === 0 && this.req === R_HEAD && this.partial === null) this.destroy();
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
    if (this.req === R_TUNNEL) return; // the tracker tears the pair down
    this.client.destroy();
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    this.current = null;
    this.abandonPending(CLIENT_CLOSED_REQUEST);
  }

  /** Called once a second: slow heads, slow bodies, idle keep-alive connections. */
  check(tick: number): void {
    if (tick >= this.headDeadline) {
      if (this.pending.length === 0) this.refuse(answers.headersTimeout());
      else this.destroy();
    } else if (tick >= this.bodyDeadline) {
      this.destroy();
    } else if (tick >= this.idleDeadline && this.pending.length === 0 && this.req === R_HEAD && this.partial === null) {
      this.destroy();
    }
  }
}
