/**
 * The upstream → client direction: response heads are parsed for their status and framing (and
 * a Set-Cookie is added when the policy asked for one), bodies are skipped by arithmetic, and
 * bytes go out as they came. A 101 to an upgrade request ends the reading: the pair becomes a
 * tunnel.
 */
import type { Chunk } from './chunks';
import { pushSlice } from './chunks';
import type { Exchange } from './exchange';
import { BodyFramer, CRLFCRLF, MAX_RESPONSE_HEAD, parseResponseHead, responseHasNoBody } from './http1';
import type { Upstream } from './upstream';

/** What the response side tells the connection. */
export interface ResponseSink {
  /** Exchanges in order; the first one is the one being answered. */
  readonly pending: Exchange[];
  /** The response of `ex` (the first) is complete. True when the connection is closing now. */
  responseDone(ex: Exchange): boolean;
  /** The response broke HTTP framing. */
  responseBroken(): void;
  /** The upstream answered 101 (its bytes up to here are queued). */
  startTunnel(): void;
  /** The upstream spoke unasked: drop its connection. */
  dropUpstream(): void;
}

export class ResponseReader {
  /** Inside a body (else between responses). */
  inBody = false;
  /** An incomplete response head (a copy: read buffers are reused). */
  partial: Buffer | null = null;
  readonly body = new BodyFramer();

  reset(): void {
    this.inBody = false;
    this.partial = null;
  }

  /** Between responses, nothing half-read: the connection could serve another request. */
  get idle(): boolean {
    return !this.inBody && this.partial === null;
  }

  /** Reads `buf` from the upstream; what goes to the client is queued on `out`. */
  read(buf: Buffer, out: Chunk[], sink: ResponseSink, upstream: Upstream): void {
    let pos = 0;
    let end = buf.length;
    let run = 0; // bytes of buf from here on are not queued for the client yet
    while (pos < end) {
      const ex = sink.pending[0];
      if (ex === undefined || !ex.sent) {
        // Bytes nobody asked for (some servers say 408 before closing an idle connection): the
        // upstream's connection is dropped; the client's is not concerned.
        pushSlice(out, buf, run, pos);
        sink.dropUpstream();
        return;
      }
      if (this.inBody) {
        pos = this.body.advance(buf, pos, end);
        if (this.body.error) {
          pushSlice(out, buf, run, pos);
          sink.responseBroken();
          return;
        }
        if (this.body.done) {
          pushSlice(out, buf, run, pos);
          run = pos;
          this.inBody = false;
          if (sink.responseDone(ex)) return;
        }
        continue;
      }
      if (this.partial !== null) {
        pushSlice(out, buf, run, pos);
        buf = Buffer.concat([this.partial, buf.subarray(pos)]);
        this.partial = null;
        pos = 0;
        run = 0;
        end = buf.length;
      }
      const at = buf.indexOf(CRLFCRLF, pos);
      if (at < 0 || at + 4 - pos > MAX_RESPONSE_HEAD) {
        pushSlice(out, buf, run, pos);
        if (at >= 0 || end - pos > MAX_RESPONSE_HEAD) sink.responseBroken();
        else this.partial = Buffer.from(buf.subarray(pos)); // a copy: buf is reused for the next read
        return;
      }
      const head = buf.toString('latin1', pos, at + 2);
      const parsed = parseResponseHead(head);
      if (parsed === undefined) {
        pushSlice(out, buf, run, pos);
        sink.responseBroken();
        return;
      }
      const headEnd = at + 4;
      if (parsed.status < 200) {
        if (parsed.status === 101) {
          if (!ex.upgrade) {
            pushSlice(out, buf, run, pos);
            sink.responseBroken();
            return;
          }
          // The 101 and whatever followed it (already WebSocket frames) go out as they are.
          pushSlice(out, buf, run, end);
          sink.startTunnel();
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
      // A refused upgrade leaves the upstream's connection in a state of its own choosing: close after.
      if (parsed.close || ex.upgrade) ex.close = true;
      if (parsed.keepAliveMs > 0) upstream.keepAliveMs = parsed.keepAliveMs;
      pos = headEnd;
      if (responseHasNoBody(parsed.status, ex.headOnly)) {
        this.body.length(0);
      } else if (parsed.chunked) {
        this.body.chunked();
      } else if (parsed.untilClose) {
        this.body.untilClose();
        ex.close = true;
      } else {
        this.body.length(parsed.contentLength);
      }
      if (this.body.done) {
        pushSlice(out, buf, run, pos);
        run = pos;
        if (sink.responseDone(ex)) return;
      } else {
        this.inBody = true;
      }
    }
    pushSlice(out, buf, run, end);
  }
}
