/**
 * The client → upstream direction: the byte stream cut into requests. Heads are found (empty
 * lines before a request line skipped, 16 KiB at most) and handed to the connection whole;
 * bodies are followed by their framing (Content-Length or chunked, checked byte by byte) and
 * passed on in the buffers they came in, or dropped for a request the relay answered itself.
 * What arrives while the connection waits (a decision, its turn, an upgrade's answer) is kept.
 */
import { pushSlice, type Chunk } from './chunks';
import { BodyFramer, CRLFCRLF, MAX_REQUEST_HEAD } from './http1';

// What the client → upstream direction is doing (the connection's state).
export const R_HEAD = 0; // reading a request head
export const R_BODY = 1; // passing on (or dropping) a request body
export const R_WAIT = 2; // a decision, a turn or an upgrade's answer is awaited: bytes are kept
export const R_TUNNEL = 3; // after a 101: plain relay
export const R_DONE = 4; // no more requests on this connection: bytes are dropped

/** A refused request's body is read and dropped up to this size; beyond, the connection closes. */
export const MAX_DISCARD = 1024 * 1024;

/** What the request side tells the connection, and reads of it. */
export interface RequestSink {
  /** R_HEAD, R_BODY or R_WAIT while requests are read. */
  readonly reading: number;
  readonly toUpstream: Chunk[];
  onRequestHead(head: string): void;
  /** The current request's body has been read. */
  requestDone(): void;
  /** A body broke its framing. */
  brokenRequestBody(): void;
  /** A dropped body went past MAX_DISCARD. */
  discardedTooMuch(): void;
  /** A head went past MAX_REQUEST_HEAD. */
  headTooLarge(): void;
  /** A head has begun and is not complete yet (its deadline runs). */
  headPending(): void;
  headComplete(): void;
  keep(chunk: Buffer): void;
}

export class RequestSide {
  /** An incomplete request head. */
  partial: Buffer | null = null;
  readonly body = new BodyFramer();
  /** The current body is dropped, not forwarded (a request the relay answered). */
  discarding = false;
  private discarded = 0;

  /** The body that follows the current head: passed on, or dropped. */
  expectBody(chunked: boolean, length: number, discard: boolean): void {
    if (chunked) this.body.chunked();
    else this.body.length(length);
    this.discarding = discard;
    this.discarded = 0;
  }

  read(buf: Buffer, sink: RequestSink): void {
    let pos = 0;
    let end = buf.length;
    while (pos < end) {
      const state = sink.reading;
      if (state === R_BODY) {
        const stop = this.body.advance(buf, pos, end);
        if (this.body.error) {
          sink.brokenRequestBody();
          return;
        }
        if (this.discarding) {
          this.discarded += stop - pos;
          if (this.discarded > MAX_DISCARD) {
            sink.discardedTooMuch();
            return;
          }
        } else {
          pushSlice(sink.toUpstream, buf, pos, stop);
        }
        pos = stop;
        if (this.body.done) sink.requestDone();
        continue;
      }
      if (state === R_WAIT) {
        sink.keep(pos === 0 ? buf : buf.subarray(pos));
        return;
      }
      if (state !== R_HEAD) return;

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
          sink.headTooLarge();
        } else if (pos < end) {
          this.partial = buf.subarray(pos);
          sink.headPending();
        }
        return;
      }
      sink.headComplete();
      const head = buf.toString('latin1', pos, at + 2);
      pos = at + 4;
      sink.onRequestHead(head);
    }
  }
}
