import fc from 'fast-check';
import { BodyFramer, hasToken, parseRequestHead, parseResponseHead, type RequestHead } from './http1';

const head = (lines: string[]): string => lines.map((l) => `${l}\r\n`).join('');

function request(lines: string[], withTokenHeaders = false): RequestHead {
  const parsed = parseRequestHead(head(lines), withTokenHeaders);
  if (typeof parsed === 'number') throw new Error(`refused with ${parsed}`);
  return parsed;
}

describe('parseRequestHead', () => {
  it('reads the request line and the fields the relay needs', () => {
    const r = request([
      'POST /p?q=1 HTTP/1.1',
      'host: example.com',
      'Content-Length: 12',
      'X-Forwarded-For: 10.0.0.1',
      'x-forwarded-for: 10.0.0.2',
      'X-Forwarded-Proto: https',
      'Expect: 100-Continue',
    ]);
    expect(r).toMatchObject({
      method: 'POST',
      target: '/p?q=1',
      targetAt: 5,
      minor: 1,
      contentLength: 12,
      chunked: false,
      close: false,
      upgrade: undefined,
      expectContinue: true,
      host: 'example.com',
      forwardedFor: '10.0.0.1, 10.0.0.2',
      hasForwardedProto: true,
      hasForwardedHost: false,
    });
    expect(r.forwardedForLines).toHaveLength(2);
  });

  it('knows upgrades, closes and HTTP/1.0 keep-alive', () => {
    expect(request(['GET /ws HTTP/1.1', 'Host: x', 'Connection: keep-alive, Upgrade', 'Upgrade: websocket']).upgrade).toBe(
      'websocket',
    );
    expect(request(['GET /ws HTTP/1.1', 'Host: x', 'Upgrade: websocket']).upgrade).toBeUndefined();
    expect(request(['GET / HTTP/1.1', 'Host: x', 'Connection: close']).close).toBe(true);
    expect(request(['GET / HTTP/1.0']).close).toBe(true);
    expect(request(['GET / HTTP/1.0', 'Connection: Keep-Alive']).close).toBe(false);
    expect(request(['POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: gzip, chunked']).chunked).toBe(true);
  });

  it('collects the token-carrying headers only when asked, with their lines', () => {
    const lines = ['GET / HTTP/1.1', 'Host: x', 'Cookie: a=1', 'X-Spawner-Token: t', 'cookie: b=2', 'Authorization: Bearer z'];
    expect(request(lines).tokenHeaders).toBeUndefined();
    const r = request(lines, true);
    expect(r.tokenHeaders).toEqual({ cookie: 'a=1; b=2', 'x-spawner-token': 't', authorization: 'Bearer z' });
    expect(r.tokenLines!.cookie).toHaveLength(2);
    const text = head(lines);
    const [from, to] = r.tokenLines!['x-spawner-token'][0];
    expect(text.slice(from, to)).toBe('X-Spawner-Token: t\r\n');
  });

  it.each([
    ['CL and TE', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: 1', 'Transfer-Encoding: chunked'], 400],
    ['TE not ending in chunked', ['POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked, identity'], 400],
    ['TE in HTTP/1.0', ['POST / HTTP/1.0', 'Transfer-Encoding: chunked'], 400],
    ['a second CL', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: 1', 'Content-Length: 1'], 400],
    ['a signed CL', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: +1'], 400],
    ['a CL list', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: 1, 1'], 400],
    ['two Hosts', ['GET / HTTP/1.1', 'Host: x', 'Host: y'], 400],
    ['no Host', ['GET / HTTP/1.1'], 400],
    ['space before colon', ['GET / HTTP/1.1', 'Host : x'], 400],
    ['obs-fold', ['GET / HTTP/1.1', 'Host: x', 'X: a', ' b'], 400],
    ['NUL in a value', ['GET / HTTP/1.1', 'Host: x', 'X: a\0b'], 400],
    ['an empty name', ['GET / HTTP/1.1', 'Host: x', ': v'], 400],
    ['a space in the target', ['GET /a b HTTP/1.1', 'Host: x'], 400],
    ['lowercase http', ['GET / http/1.1', 'Host: x'], 400],
    ['HTTP/2.0', ['GET / HTTP/2.0', 'Host: x'], 505],
  ])('refuses %s', (_what, lines, status) => {
    expect(parseRequestHead(head(lines), false)).toBe(status);
  });

  it('refuses a bare LF or a bare CR anywhere in the head', () => {
    expect(parseRequestHead('GET / HTTP/1.1\r\nHost: x\nX: y\r\n', false)).toBe(400);
    expect(parseRequestHead('GET / HTTP/1.1\r\nHost: x\rX: y\r\n', false)).toBe(400);
  });
});

describe('parseResponseHead', () => {
  it('reads status and framing', () => {
    expect(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 5', 'Keep-Alive: timeout=5']))).toEqual({
      status: 200,
      minor: 1,
      contentLength: 5,
      chunked: false,
      untilClose: false,
      close: false,
      keepAliveMs: 5000,
    });
    expect(parseResponseHead(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'Content-Length: 5']))).toMatchObject({
      chunked: true,
      contentLength: -1,
    });
    expect(parseResponseHead(head(['HTTP/1.1 204']))).toMatchObject({ status: 204, untilClose: true });
    expect(parseResponseHead(head(['HTTP/1.0 200 OK', 'Content-Length: 1']))).toMatchObject({ close: true });
    expect(parseResponseHead(head(['HTTP/1.0 200 OK', 'Connection: keep-alive', 'Content-Length: 1']))).toMatchObject({
      close: false,
    });
    expect(parseResponseHead(head(['HTTP/1.1 200 OK', 'Connection: Keep-Alive, Close']))).toMatchObject({ close: true });
    expect(parseResponseHead(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: gzip']))).toMatchObject({ untilClose: true });
  });

  it.each([
    ['HTTP/1.1 20 OK'],
    ['HTTP/1.1 099 X'],
    ['HTTP/1.2 200 OK'],
    ['HTTP/1.1 200 OK', 'Content-Length: x'],
    ['HTTP/1.1 200 OK', 'Content-Length: 1', 'Content-Length: 2'],
    ['HTTP/1.1 200 OK', 'Content-Length : 1'],
    ['HTTP/1.1 200 OK', ' folded: 1'],
    ['HTTP/1.1 200 OK', 'no colon'],
  ])('rejects %j', (...lines) => {
    expect(parseResponseHead(head(lines))).toBeUndefined();
  });
});

describe('hasToken', () => {
  it('matches whole list elements only', () => {
    expect(hasToken(' keep-alive, Upgrade', 'upgrade')).toBe(true);
    expect(hasToken('upgrades', 'upgrade')).toBe(false);
    expect(hasToken('x-upgrade', 'upgrade')).toBe(false);
    expect(hasToken('close', 'close')).toBe(true);
  });
});

/** Feeds `bytes` to a framer in the given pieces; returns where the body ended (or -1). */
function feed(framer: BodyFramer, bytes: Buffer, cuts: number[]): number {
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    const end = Math.min(Math.max(cut, at), bytes.length);
    const stop = framer.advance(bytes, at, end);
    if (framer.error) return -2;
    if (framer.done) return stop;
    at = end;
  }
  return -1;
}

describe('BodyFramer', () => {
  it('counts Content-Length bodies', () => {
    const f = new BodyFramer();
    f.length(10);
    expect(feed(f, Buffer.alloc(15), [3, 7])).toBe(10);
    f.length(0);
    expect(f.done).toBe(true);
  });

  it('finds the end of any chunked body, however it is cut, and only there', () => {
    const chunkedBody = fc
      .record({
        chunks: fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 6 }),
        ext: fc.boolean(),
        upper: fc.boolean(),
        trailers: fc.array(fc.constantFrom('X-A: 1', 'Digest: sha-256=abc', 'T:'), { maxLength: 2 }),
      })
      .map(({ chunks, ext, upper, trailers }) => {
        const parts: Buffer[] = [];
        for (const c of chunks) {
          const size = c.length.toString(16);
          parts.push(
            Buffer.from(`${upper ? size.toUpperCase() : size}${ext ? ';name="v"' : ''}\r\n`),
            Buffer.from(c),
            Buffer.from('\r\n'),
          );
        }
        parts.push(Buffer.from(`0\r\n${trailers.map((t) => `${t}\r\n`).join('')}\r\n`));
        return Buffer.concat(parts);
      });
    fc.assert(
      fc.property(chunkedBody, fc.array(fc.nat({ max: 2000 }), { maxLength: 8 }), (body, cuts) => {
        const f = new BodyFramer();
        f.chunked();
        const withNext = Buffer.concat([body, Buffer.from('GET / HTTP/1.1\r\n')]);
        expect(
          feed(
            f,
            withNext,
            [...cuts].sort((a, b) => a - b),
          ),
        ).toBe(body.length);
      }),
    );
  });

  it.each([
    ['a non-hex size', 'g\r\n'],
    ['an empty size', '\r\n'],
    ['a space after the size', '5 \r\nhello\r\n0\r\n\r\n'],
    ['a bare LF after the size', '5\nhello\r\n0\r\n\r\n'],
    ['data longer than its size', '5\r\nhello!\r\n0\r\n\r\n'],
    ['a bare LF in an extension', '5;a\nb\r\nhello\r\n0\r\n\r\n'],
    ['a huge size', 'fffffffffffff\r\n'],
    ['a bare LF ending a trailer', '0\r\nX: 1\n\r\n'],
  ])('rejects %s', (_what, text) => {
    const f = new BodyFramer();
    f.chunked();
    expect(feed(f, Buffer.from(text), [])).toBe(-2);
  });

  it('ends a body that runs until close only at the close', () => {
    const f = new BodyFramer();
    f.untilClose();
    expect(feed(f, Buffer.alloc(100), [])).toBe(-1);
    expect(f.endsWithClose).toBe(true);
    expect(f.closed()).toBe(true);
  });
});
