import fc from 'fast-check';
import {
  formatComment,
  formatEvent,
  readEvents,
  SSE_MEDIA_TYPE,
  SSE_RESPONSE_HEADERS,
  SseParser,
  type ServerSentEvent,
  type SseMessage,
} from './sse';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Parses `input` fed whole. */
function parse(input: string | Uint8Array): ServerSentEvent[] {
  return new SseParser().push(input);
}

/** Feeds `pieces` one by one, collecting the events. */
function parsePieces(pieces: Array<string | Uint8Array>, parser = new SseParser()): ServerSentEvent[] {
  return pieces.flatMap((p) => parser.push(p));
}

/** `bytes` cut at the given positions (any, in any order; out of range ones wrap). */
function cut<T extends string | Uint8Array>(whole: T, positions: number[]): T[] {
  const at = [...new Set(positions.map((p) => (whole.length === 0 ? 0 : p % (whole.length + 1))))].sort((a, b) => a - b);
  const pieces: T[] = [];
  let from = 0;
  for (const p of [...at, whole.length]) {
    pieces.push(whole.slice(from, p) as T);
    from = p;
  }
  return pieces;
}

const message = (data: string, id = '', event = 'message'): ServerSentEvent => ({ event, data, id });

describe('the response head', () => {
  it('is an uncached, unbuffered UTF-8 event stream', () => {
    expect(SSE_MEDIA_TYPE).toBe('text/event-stream');
    expect(SSE_RESPONSE_HEADERS).toEqual({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    });
  });
});

describe('formatEvent', () => {
  it('writes the frames the streams have always sent', () => {
    expect(formatEvent({ data: '{"ready":true}' })).toBe('data: {"ready":true}\n\n');
    expect(formatEvent({ data: '{"phase":"Ready"}', id: 4 })).toBe('id: 4\ndata: {"phase":"Ready"}\n\n');
  });

  it('writes event, id and retry before the data', () => {
    expect(formatEvent({ data: 'x', event: 'phase', id: 'a-1', retry: 2500 })).toBe(
      'event: phase\nid: a-1\nretry: 2500\ndata: x\n\n',
    );
  });

  it('splits data into one data line per line, at CRLF, CR or LF', () => {
    expect(formatEvent({ data: 'a\nb\r\nc\rd' })).toBe('data: a\ndata: b\ndata: c\ndata: d\n\n');
    expect(formatEvent({ data: '' })).toBe('data: \n\n');
    expect(formatEvent({ data: '\n' })).toBe('data: \ndata: \n\n');
    expect(formatEvent({ data: ' lead' })).toBe('data:  lead\n\n');
  });

  it('refuses fields that could not be read back', () => {
    expect(() => formatEvent({ data: 'x', event: 'a\nb' })).toThrow(/line break/);
    expect(() => formatEvent({ data: 'x', id: 'a\rb' })).toThrow(/line break/);
    expect(() => formatEvent({ data: 'x', id: 'a\0b' })).toThrow(/NUL/);
    expect(() => formatEvent({ data: 'x', retry: -1 })).toThrow(/retry/);
    expect(() => formatEvent({ data: 'x', retry: 1.5 })).toThrow(/retry/);
  });
});

describe('formatComment', () => {
  it('writes comment lines and a blank line', () => {
    expect(formatComment('keep-alive')).toBe(': keep-alive\n\n');
    expect(formatComment()).toBe(':\n\n');
    expect(formatComment('a\nb')).toBe(': a\n: b\n\n');
  });

  it('is skipped by readers', () => {
    expect(parse(`${formatComment('keep-alive')}${formatEvent({ data: 'x' })}${formatComment('a\n\nb')}`)).toEqual([
      message('x'),
    ]);
  });
});

describe('SseParser (the WHATWG interpretation rules)', () => {
  // The examples of the specification, section "Event stream format".
  it('joins data lines with LF', () => {
    expect(parse('data: YHOO\ndata: +2\ndata: 10\n\n')).toEqual([message('YHOO\n+2\n10')]);
  });

  it('keeps the last event ID across events until it is changed, and skips comments', () => {
    const parser = new SseParser();
    expect(parser.push(': test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n')).toEqual([
      message('first event', '1'),
      message('second event', ''),
      message(' third event', ''),
    ]);
    expect(parser.lastEventId).toBe('');
  });

  it('dispatches empty data, and never an event the stream ends in the middle of', () => {
    expect(parse('data\n\ndata\ndata\n\ndata:')).toEqual([message(''), message('\n')]);
    expect(parse('data: complete\n\ndata: incomplete\n')).toEqual([message('complete')]);
  });

  it('removes one space after the colon, no more', () => {
    expect(parse('data:test\n\ndata: test\n\ndata:  test\n\n')).toEqual([message('test'), message('test'), message(' test')]);
  });

  it('takes CRLF, LF and CR as line ends, mixed', () => {
    expect(parse('data: a\r\ndata: b\rdata: c\n\r\n')).toEqual([message('a\nb\nc')]);
    expect(parse('data: a\r\rdata: b\n\n')).toEqual([message('a'), message('b')]);
  });

  it('ends a line at a CR at the end of a piece at once, and takes a LF after it as its pair', () => {
    const parser = new SseParser();
    expect(parser.push('data: a\r\r')).toEqual([message('a')]);
    expect(parser.push('\ndata: b\r')).toEqual([]);
    expect(parser.push('')).toEqual([]);
    expect(parser.push('\ndata: c\r')).toEqual([]);
    expect(parser.push('\n')).toEqual([]);
    expect(parser.push('\n')).toEqual([message('b\nc')]);
  });

  it('reads the event type, which defaults to message and does not carry over', () => {
    expect(parse('event: add\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\nevent: x\n\ndata: 4\n\n')).toEqual([
      message('1', '', 'add'),
      message('2'),
      message('3'),
      message('4'),
    ]);
  });

  it('sets the last event ID from a block without data, ignores an id with NUL, and reports it per event', () => {
    const parser = new SseParser();
    expect(parser.push('id: 7\n\ndata: a\n\nid: 8\0\ndata: b\n\nid: 9\ndata: c\n\n')).toEqual([
      message('a', '7'),
      message('b', '7'),
      message('c', '9'),
    ]);
    expect(parser.lastEventId).toBe('9');
    // An id of a block the stream ends in does not count yet.
    parser.push('id: 10\n');
    expect(parser.lastEventId).toBe('9');
  });

  it('reads retry only when it is all digits', () => {
    const parser = new SseParser();
    expect(parser.retry).toBeUndefined();
    parser.push('retry: 1500\n\n');
    expect(parser.retry).toBe(1500);
    parser.push('retry: 1.5\nretry: -3\nretry:\nretry: 2e3\n\n');
    expect(parser.retry).toBe(1500);
  });

  it('ignores unknown fields, fields in another case, and a field name without a colon but data', () => {
    expect(parse('Data: x\nfoo: y\nevent\nid\nretry\ndata\n\n')).toEqual([message('')]);
    expect(parse('foo\n\n')).toEqual([]);
  });

  it('drops one leading byte order mark, in text or bytes', () => {
    expect(parse('\uFEFFdata: a\n\n')).toEqual([message('a')]);
    expect(parse(new Uint8Array([0xef, 0xbb, 0xbf, ...utf8('data: a\n\n')]))).toEqual([message('a')]);
    expect(parsePieces([new Uint8Array([0xef]), new Uint8Array([0xbb, 0xbf]), utf8('data: a\n\n')])).toEqual([message('a')]);
    // A second one is part of the first line (a field named "\uFEFFdata", ignored).
    expect(parse('\uFEFF\uFEFFdata: a\n\n')).toEqual([]);
    expect(parse('data: \uFEFF\n\n')).toEqual([message('\uFEFF')]);
  });

  it('decodes UTF-8 cut inside a character', () => {
    const bytes = utf8('data: é😀\n\n');
    expect(parsePieces([...bytes].map((b) => new Uint8Array([b])))).toEqual([message('é😀')]);
  });

  it('counts what it holds for an event not complete yet', () => {
    const parser = new SseParser();
    parser.push('data: 12345\ndata: 67');
    expect(parser.buffered).toBe('12345'.length + 'data: 67'.length);
    parser.push('\n\n');
    expect(parser.buffered).toBe(0);
  });
});

describe('readEvents', () => {
  const body = (pieces: string[], keepOpen = false): ReadableStream<Uint8Array> =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (const p of pieces) controller.enqueue(utf8(p));
        if (!keepOpen) controller.close();
      },
    });

  it('yields the events of a body to its end', async () => {
    const out: ServerSentEvent[] = [];
    for await (const e of readEvents(body(['id: 1\nda', 'ta: a\n', '\n: hb\n\ndata: b\n\ndata: cut']))) out.push(e);
    expect(out).toEqual([message('a', '1'), message('b', '1')]);
  });

  it('ends quietly when the signal aborts, cancelling the body', async () => {
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(utf8('data: a\n\n'));
      },
      cancel() {
        cancelled = true;
      },
    });
    const abort = new AbortController();
    const out: string[] = [];
    for await (const e of readEvents(stream, abort.signal)) {
      out.push(e.data);
      abort.abort();
    }
    expect(out).toEqual(['a']);
    expect(cancelled).toBe(true);
  });

  it('cancels the body when the caller stops early', async () => {
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(utf8('data: a\n\ndata: b\n\n'));
      },
      cancel() {
        cancelled = true;
      },
    });
    for await (const e of readEvents(stream)) if (e.data === 'a') break;
    expect(cancelled).toBe(true);
  });
});

// ---- properties ------------------------------------------------------------------------------

/** Text that is mostly the stream's own syntax: line ends, colons, spaces, field names, BOMs. */
const tricky = fc.string({
  unit: fc.constantFrom('\r', '\n', '\r\n', ':', ' ', 'data', 'id', 'event', 'retry', '1', 'x', '\0', '\uFEFF', 'é', '😀'),
  maxLength: 80,
});
const anyText = fc.oneof(fc.string({ unit: 'binary' }), tricky);
const noBreak = (s: string): boolean => !/[\r\n]/.test(s);

const sseMessage: fc.Arbitrary<SseMessage> = fc.record(
  {
    data: anyText,
    event: anyText.filter(noBreak),
    id: fc.oneof(
      anyText.filter((s) => noBreak(s) && !s.includes('\0')),
      fc.nat(),
    ),
    retry: fc.nat(),
  },
  { requiredKeys: ['data'] },
);

/** What a reader gets for `messages` written in order (with a comment after each). */
function expected(messages: SseMessage[]): ServerSentEvent[] {
  let id = '';
  return messages.map((m) => {
    if (m.id !== undefined) id = String(m.id);
    return { event: m.event || 'message', data: m.data.replace(/\r\n|\r/g, '\n'), id };
  });
}

describe('properties', () => {
  it('any events written, cut at any byte positions, read back the same', () => {
    fc.assert(
      fc.property(
        fc.array(sseMessage, { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        anyText,
        (messages, at, note) => {
          const stream = messages.map((m) => formatEvent(m) + formatComment(note)).join('');
          const parser = new SseParser();
          expect(parsePieces(cut(utf8(stream), at), parser)).toEqual(expected(messages));
          const retries = messages.filter((m) => m.retry !== undefined);
          expect(parser.retry).toBe(retries.at(-1)?.retry);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('any stream, cut anywhere, parses as it does whole', () => {
    fc.assert(
      fc.property(tricky, fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), (text, at, asBytes) => {
        const whole = referenceParse(text);
        const pieces = asBytes ? cut(utf8(text), at) : cut(text, at);
        expect(parsePieces(pieces)).toEqual(whole);
      }),
      { numRuns: 500 },
    );
  });
});

/**
 * The specification's steps, read literally over a whole stream: the reference the incremental
 * parser is held to.
 */
function referenceParse(stream: string): ServerSentEvent[] {
  const events: ServerSentEvent[] = [];
  let data = '';
  let type = '';
  let idBuffer = '';
  const text = stream.startsWith('\uFEFF') ? stream.slice(1) : stream;
  const lines = text.split(/\r\n|\r|\n/);
  lines.pop(); // the part after the last line end is not a line
  for (const line of lines) {
    if (line === '') {
      if (data !== '') events.push({ event: type || 'message', data: data.slice(0, -1), id: idBuffer });
      data = '';
      type = '';
      continue;
    }
    if (line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (field === 'data') data += `${value}\n`;
    else if (field === 'event') type = value;
    else if (field === 'id' && !value.includes('\0')) idBuffer = value;
  }
  return events;
}
