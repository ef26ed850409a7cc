/** Bytes queued for a socket: strings (heads, answers; latin1) and Buffers (passed-on data). */
import type * as net from 'node:net';

export type Chunk = string | Buffer;

function writeChunk(socket: net.Socket, chunk: Chunk): boolean {
  return typeof chunk === 'string' ? socket.write(chunk, 'latin1') : socket.write(chunk);
}

/** Writes queued chunks in one go (corked: one writev), empties the queue; false when buffered. */
export function writeAll(socket: net.Socket, chunks: Chunk[]): boolean {
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

/** Queues `buf[from, to)` without copying. */
export function pushSlice(out: Chunk[], buf: Buffer, from: number, to: number): void {
  if (to > from) out.push(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
}
