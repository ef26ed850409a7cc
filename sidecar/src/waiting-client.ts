/**
 * Notices a client that leaves while its upgrade waits (held before the app is ready, or while
 * the app answers the handshake). A socket nobody reads never reports the peer's close, so this
 * reads it, keeps what arrives (bounded) and puts it back when the wait ends, so the bytes reach
 * the app exactly as sent.
 */
import type { Duplex } from 'node:stream';

/** A WebSocket client sends nothing before the 101; anything large is not one. */
const MAX_EARLY_BYTES = 64 * 1024;

/** Calls `onGone` if the client leaves; the returned function ends the watch. */
export function watchWaitingClient(socket: Duplex, onGone: () => void): () => void {
  const early: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer): void => {
    size += chunk.length;
    if (size > MAX_EARLY_BYTES) socket.destroy();
    else early.push(chunk);
  };
  const detach = (): void => {
    socket.removeListener('data', onData);
    socket.removeListener('end', gone);
    socket.removeListener('close', gone);
  };
  function gone(): void {
    detach();
    socket.destroy();
    onGone();
  }
  socket.on('data', onData);
  socket.once('end', gone);
  socket.once('close', gone);
  return () => {
    detach();
    socket.pause();
    for (let i = early.length - 1; i >= 0; i--) socket.unshift(early[i]);
  };
}
