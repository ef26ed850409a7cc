/**
 * The agent's debugging and test endpoint on 127.0.0.1 (the port goes to <state>/agent.json):
 *   GET /healthz
 *   GET /pods                                   every pod: IP, netns, phase, per-container pid and timings
 *   GET /pods/<ns>/<name>                       one pod (404 when unknown)
 *   GET /pods/<ns>/<name>/logs/<container>?tail=N   last N lines (default 100) of the container's log
 *   GET /stats                                  sandbox set-up and pod start latencies, netns pool
 *   GET|PUT /network/ip-reuse                   how freed Pod IPs are handed out again: body
 *                                               `round-robin` (default) or `immediate` (tests of IP reuse)
 * Timings live here rather than in pod annotations so that measuring costs the API server nothing.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { IP_REUSE_MODES, type IpReuse } from './network';
import type { PodWorker } from './pod-worker';

export interface Samples {
  netnsSetupMs: number[];
  /** Agent saw the pod → every container ready. */
  podReadyMs: number[];
}

function summary(values: number[]): Record<string, number> {
  if (values.length === 0) return { count: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const round = (n: number): number => Math.round(n * 10) / 10;
  return {
    count: sorted.length,
    min: round(sorted[0]),
    p50: round(at(0.5)),
    p95: round(at(0.95)),
    max: round(sorted[sorted.length - 1]),
  };
}

export function tail(path: string, lines: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(path).size;
    const chunk = Math.min(size, Math.max(64 * 1024, lines * 400));
    const buf = Buffer.alloc(chunk);
    readSync(fd, buf, 0, chunk, size - chunk);
    const text = buf.toString('utf8');
    const all = text.split('\n');
    if (all[all.length - 1] === '') all.pop();
    return all.slice(-lines).join('\n') + (all.length ? '\n' : '');
  } finally {
    closeSync(fd);
  }
}

export function startServer(
  port: number,
  nodeName: string,
  workers: () => PodWorker[],
  samples: Samples,
  extra: () => Record<string, unknown> = () => ({}),
  network?: { ipReuse: IpReuse },
): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const send = (code: number, body: unknown): void => {
      const text = typeof body === 'string' ? body : `${JSON.stringify(body, null, 2)}\n`;
      res.writeHead(code, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json' });
      res.end(text);
    };
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (url.pathname === '/network/ip-reuse' && network) {
      if (req.method === 'GET') return send(200, { ipReuse: network.ipReuse });
      if (req.method !== 'PUT') return send(405, { error: 'GET or PUT' });
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const mode = body.trim() as IpReuse;
        if (!IP_REUSE_MODES.includes(mode)) return send(400, { error: `one of ${IP_REUSE_MODES.join(', ')}` });
        network.ipReuse = mode;
        send(200, { ipReuse: mode });
      });
      return;
    }
    if (req.method !== 'GET') return send(405, { error: 'GET only' });
    if (url.pathname === '/healthz') return send(200, 'ok\n');
    if (url.pathname === '/stats') {
      return send(200, {
        node: nodeName,
        pods: workers().length,
        ...extra(),
        netnsSetupMs: summary(samples.netnsSetupMs),
        podReadyMs: summary(samples.podReadyMs),
      });
    }
    if (parts[0] === 'pods') {
      const all = workers();
      if (parts.length === 1) return send(200, { node: nodeName, pods: all.map((w) => w.describe()) });
      // The newest incarnation wins when an old one of the same name is still terminating.
      const w = all.filter((x) => x.pod.metadata.namespace === parts[1] && x.pod.metadata.name === parts[2]).pop();
      if (!w) return send(404, { error: `no pod ${parts[1]}/${parts[2]} on this node` });
      if (parts.length === 3) return send(200, w.describe());
      if (parts.length === 5 && parts[3] === 'logs') {
        const c = (w.describe().containers as Array<{ name: string; logPath: string }>).find((x) => x.name === parts[4]);
        const ic = (w.describe().initContainers as Array<{ name: string; logPath: string }>).find((x) => x.name === parts[4]);
        const path = (c ?? ic)?.logPath;
        if (!path) return send(404, { error: `no container ${parts[4]} in ${parts[1]}/${parts[2]}` });
        return send(200, tail(path, Number(url.searchParams.get('tail') ?? 100)));
      }
    }
    send(404, { error: 'not found' });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port }));
  });
}
