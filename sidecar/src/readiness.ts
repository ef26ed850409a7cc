/**
 * Waits until the app accepts TCP connections, by connecting to it every ~150 ms. Connecting is
 * the one test that works for any app (HTTP, WebSocket-only, any framework) and is what the
 * sidecar needs before it can forward anything.
 *
 * Readiness is one-way: once the app has accepted a connection the sidecar stays ready. An app
 * that stops listening later gets 502s (and exits, normally, which fails the Pod); flipping back
 * to "not ready" would hold traffic for an app that is most likely gone.
 */
import * as net from 'node:net';

export const PROBE_INTERVAL_MS = 150;
/** A connect to a local port answers in microseconds; this bounds a black-holed remote host. */
const CONNECT_TIMEOUT_MS = 1000;

export interface ReadinessProbe {
  stop(): void;
}

export function probeUntilReady(host: string, port: number, onReady: () => void, intervalMs = PROBE_INTERVAL_MS): ReadinessProbe {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let socket: net.Socket | undefined;

  const attempt = (): void => {
    timer = undefined;
    if (stopped) return;
    const s = net.connect({ host, port });
    socket = s;
    s.setTimeout(CONNECT_TIMEOUT_MS);
    const fail = (): void => {
      s.destroy();
      if (socket !== s || stopped) return;
      socket = undefined;
      timer = setTimeout(attempt, intervalMs);
    };
    s.once('connect', () => {
      s.destroy();
      socket = undefined;
      if (!stopped) {
        stopped = true;
        onReady();
      }
    });
    s.on('error', fail);
    s.once('timeout', fail);
  };

  attempt();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      socket?.destroy();
      socket = undefined;
    },
  };
}
