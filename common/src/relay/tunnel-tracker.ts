/**
 * Exact accounting of upgraded (WebSocket) connections, for the sidecar and the entry point.
 *
 * A connection counts from the moment both sides are up (the app answered 101 and it is being
 * relayed) until the FIRST of close, error or end on EITHER socket, exactly once. Relying on a
 * clean close alone would leak counts: a client that vanishes, an app that resets, or an error on
 * one side emits no close on the pair, and a leaked count keeps a backend alive forever.
 *
 * The tracker also tears the pair down: an error or an abrupt close on one side destroys the
 * other; a clean end is passed on by the pipe and the pair is destroyed if it lingers.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** After one side ended cleanly, how long the other may take to finish before it is cut. */
export const LINGER_MS = 10_000;

interface Pair {
  client: Duplex;
  upstream: Socket;
}

export class TunnelTracker {
  private readonly pairs = new Set<Pair>();

  constructor(
    private readonly onOpen: () => void,
    private readonly onClose: () => void,
  ) {}

  /**
   * Starts counting the pair. Returns false (and destroys both) when either side is already gone,
   * which happens when the client gave up while the app was still answering the upgrade.
   */
  track(client: Duplex, upstream: Socket): boolean {
    if (client.destroyed || upstream.destroyed || !client.writable) {
      client.destroy();
      upstream.destroy();
      return false;
    }
    const pair: Pair = { client, upstream };
    this.pairs.add(pair);
    this.onOpen();

    let counted = true;
    let linger: NodeJS.Timeout | undefined;
    let closedSockets = 0;
    const destroyBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      this.pairs.delete(pair);
      this.onClose();
    };
    const watch = (self: Duplex, other: Duplex): void => {
      let ended = false;
      self.on('error', () => {
        uncount();
        destroyBoth();
      });
      self.once('end', () => {
        ended = true;
        uncount();
        if (!linger) linger = setTimeout(destroyBoth, LINGER_MS).unref();
      });
      self.once('close', () => {
        uncount();
        if (++closedSockets === 2 && linger) clearTimeout(linger);
        // Without a clean end there is nothing left to flush: the other side goes too.
        if (!ended) other.destroy();
      });
    };
    watch(client, upstream);
    watch(upstream, client);
    return true;
  }

  /** Cuts every tracked connection (shutdown); each is uncounted by its close. */
  destroyAll(): void {
    for (const { client, upstream } of [...this.pairs]) {
      client.destroy();
      upstream.destroy();
    }
  }
}
