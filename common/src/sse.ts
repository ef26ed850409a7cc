/**
 * Server-Sent Events, written and read in one place (SPEC §5): the response head of a stream, the
 * frame writer, and an incremental parser that follows the WHATWG rules for interpreting an event
 * stream (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 * Every stream the project serves (the API's status streams, the sidecar's /events) and every
 * reader (the sweeper, the API client, tests, e2e suites, benchmarks) goes through this module.
 *
 * No imports and nothing Node-only: the API client (api/client) uses it too and stays free of
 * dependencies. The parser is our own rather than `eventsource-parser`: its releases for Node 20
 * (3.x; 4.x needs Node 22.12) hold back an event whose blank line ends in a CR at the end of a
 * chunk until more bytes arrive, and drop an `id:` sent in a block without data, which the spec
 * keeps as the last event ID.
 */

/** The media type of an event stream (Accept headers, OpenAPI). */
export const SSE_MEDIA_TYPE = 'text/event-stream';

/**
 * The head of every stream served: UTF-8 (the only encoding of the format), never cached or
 * transformed, and `X-Accel-Buffering: no` so that nginx (an ingress) passes each frame on at once.
 */
export const SSE_RESPONSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': `${SSE_MEDIA_TYPE}; charset=utf-8`,
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
});

/** One event to write. */
export interface SseMessage {
  /** Any text; each line (split at CRLF, CR or LF) becomes a `data:` line, read back joined by LF. */
  data: string;
  /** The event type (`event:`); readers default it to `message`. */
  event?: string;
  /** The event ID (`id:`) a reconnecting client sends back as Last-Event-ID. */
  id?: string | number;
  /** The reconnection time readers should use, in milliseconds (`retry:`). */
  retry?: number;
}

const LINE_BREAK = /\r\n|\r|\n/;

/** One event as a frame: `event:`, `id:`, `retry:` lines as given, the `data:` lines, a blank line. */
export function formatEvent({ data, event, id, retry }: SseMessage): string {
  let frame = '';
  if (event !== undefined) {
    if (LINE_BREAK.test(event)) throw new Error('an SSE event type cannot contain a line break');
    frame += `event: ${event}\n`;
  }
  if (id !== undefined) {
    const text = String(id);
    // A reader ignores an id with NUL in it: refuse it rather than send one that is lost.
    if (LINE_BREAK.test(text) || text.includes('\0')) throw new Error('an SSE id cannot contain a line break or NUL');
    frame += `id: ${text}\n`;
  }
  if (retry !== undefined) {
    if (!Number.isSafeInteger(retry) || retry < 0) throw new Error(`an SSE retry must be a whole number of ms, not ${retry}`);
    frame += `retry: ${retry}\n`;
  }
  for (const line of data.split(LINE_BREAK)) frame += `data: ${line}\n`;
  return `${frame}\n`;
}

/** A comment frame (`: text`): readers skip it, so it serves as a heartbeat that keeps a stream alive. */
export function formatComment(text = ''): string {
  let frame = '';
  for (const line of text.split(LINE_BREAK)) frame += line ? `: ${line}\n` : ':\n';
  return `${frame}\n`;
}

/** One event as read: what an EventSource would dispatch. */
export interface ServerSentEvent {
  /** The `event:` field, or `message` when it was absent or empty. */
  event: string;
  /** The `data:` lines joined by LF. */
  data: string;
  /**
   * The last event ID (the spec's lastEventId): set by an `id:` field of this event or of an
   * earlier block, and kept until another one changes it; `''` when none was sent.
   */
  id: string;
}

/**
 * An incremental event stream parser: feed it the stream's bytes (UTF-8) or text in pieces cut
 * anywhere, get the complete events back. Lines may end in CRLF, LF or CR; a CR at the end of a
 * piece ends its line at once (a LF starting the next piece is taken as its pair). Comments and
 * unknown fields are skipped; an event the stream ends in the middle of is never returned. Feed
 * one stream either bytes or text throughout.
 */
export class SseParser {
  private decoder?: InstanceType<typeof TextDecoder>;
  private started = false;
  private afterCr = false;
  private line = '';
  private data = '';
  private hasData = false;
  private eventType = '';
  private idBuffer = '';
  private lastId = '';
  private retryMs: number | undefined;

  /** The last event ID of the stream so far (what a reconnect sends as Last-Event-ID, if not empty). */
  get lastEventId(): string {
    return this.lastId;
  }

  /** The reconnection time the stream last asked for with `retry:` (ms), if any. */
  get retry(): number | undefined {
    return this.retryMs;
  }

  /** Characters held for an event not complete yet: to bound what a stream may make us buffer. */
  get buffered(): number {
    return this.line.length + this.data.length;
  }

  /** Feeds the next piece of the stream; returns the events it completes, in order. */
  push(chunk: string | Uint8Array): ServerSentEvent[] {
    let text: string;
    if (typeof chunk === 'string') text = chunk;
    else {
      // ignoreBOM keeps a byte order mark in the text: the one leading mark is dropped below.
      this.decoder ??= new TextDecoder('utf-8', { ignoreBOM: true });
      text = this.decoder.decode(chunk, { stream: true });
    }
    if (text === '') return [];
    if (!this.started) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    if (this.afterCr) {
      this.afterCr = false;
      if (text.charCodeAt(0) === 10) start = 1;
    }
    const events: ServerSentEvent[] = [];
    const breaks = /\r\n|\r|\n/g;
    breaks.lastIndex = start;
    for (let m = breaks.exec(text); m; m = breaks.exec(text)) {
      const line = this.line + text.slice(start, m.index);
      this.line = '';
      start = breaks.lastIndex;
      if (m[0] === '\r' && start === text.length) this.afterCr = true;
      if (line === '') this.dispatch(events);
      else this.field(line);
    }
    this.line += text.slice(start);
    return events;
  }

  private field(line: string): void {
    if (line.charCodeAt(0) === 58) return; // ':' starts a comment
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (name) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data = this.hasData ? `${this.data}\n${value}` : value;
        this.hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.idBuffer = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retryMs = Number(value);
        break;
      default: // unknown fields are ignored
    }
  }

  private dispatch(events: ServerSentEvent[]): void {
    this.lastId = this.idBuffer;
    if (this.hasData) events.push({ event: this.eventType || 'message', data: this.data, id: this.lastId });
    this.data = '';
    this.hasData = false;
    this.eventType = '';
  }
}

/**
 * The events of a response body (fetch), until it ends or `signal` aborts. On an abort, or when
 * the caller stops iterating early, the body is cancelled (the connection closes) and the
 * iteration ends quietly.
 */
export async function* readEvents(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const parser = new SseParser();
  const cancel = (): void => {
    reader.cancel().catch(() => undefined);
  };
  if (signal?.aborted) cancel();
  signal?.addEventListener('abort', cancel, { once: true });
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        return;
      }
      yield* parser.push(value);
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
    if (!ended) cancel();
    reader.releaseLock();
  }
}
