/**
 * Readiness, liveness and startup probes with the kubelet's counting rules: a result changes only
 * after successThreshold successes or failureThreshold failures in a row. One deliberate
 * difference: the first probe runs as soon as the container starts (after initialDelaySeconds)
 * rather than on the next tick of a worker started at pod admission, which on a kubelet adds up to
 * one period of jitter to readiness.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { V1ContainerPort, V1Probe } from '@kubernetes/client-node';

export interface ProbeTarget {
  podIP: string;
  ports: V1ContainerPort[];
  /** Runs a command in the container's namespaces; resolves to its exit code. */
  exec(command: string[], timeoutMs: number): Promise<number>;
}

export type ProbeKind = 'readiness' | 'liveness' | 'startup';

function resolvePort(port: number | string | undefined, ports: V1ContainerPort[]): number {
  if (typeof port === 'number') return port;
  if (port !== undefined && /^\d+$/.test(port)) return Number(port);
  const named = ports.find((p) => p.name === port);
  if (!named) throw new Error(`port ${String(port)} is not a named container port`);
  return named.containerPort;
}

export async function probeOnce(probe: V1Probe, target: ProbeTarget): Promise<{ ok: boolean; message?: string }> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet) {
      const g = probe.httpGet;
      const port = resolvePort(g.port as number | string, target.ports);
      const mod = g.scheme === 'HTTPS' ? https : http;
      const headers: Record<string, string> = { 'user-agent': 'kube-probe/1.36', accept: '*/*' };
      for (const h of g.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
      const status = await new Promise<number>((resolve, reject) => {
        const req = mod.request(
          {
            host: g.host || target.podIP,
            port,
            path: g.path || '/',
            method: 'GET',
            headers,
            timeout: timeoutMs,
            agent: false,
            rejectUnauthorized: false,
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
        req.on('error', reject);
        req.end();
      });
      return status >= 200 && status < 400
        ? { ok: true }
        : { ok: false, message: `HTTP probe failed with statuscode: ${status}` };
    }
    if (probe.tcpSocket) {
      const port = resolvePort(probe.tcpSocket.port as number | string, target.ports);
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect({ host: probe.tcpSocket?.host || target.podIP, port, timeout: timeoutMs });
        socket.on('connect', () => {
          socket.destroy();
          resolve();
        });
        socket.on('timeout', () => socket.destroy(new Error(`timeout after ${timeoutMs} ms`)));
        socket.on('error', reject);
      });
      return { ok: true };
    }
    if (probe.exec?.command?.length) {
      const code = await target.exec(probe.exec.command, timeoutMs);
      return code === 0 ? { ok: true } : { ok: false, message: `command exited ${code}` };
    }
    return { ok: false, message: 'probe has no handler the e2e agent supports (httpGet, tcpSocket, exec)' };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

export class ProbeWorker {
  /** The probe's current verdict. */
  result: boolean;
  lastMessage?: string;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private lastRaw?: boolean;
  private run = 0;

  constructor(
    readonly kind: ProbeKind,
    private readonly probe: V1Probe,
    private readonly target: ProbeTarget,
    private readonly onChange: (result: boolean) => void,
  ) {
    // Liveness is presumed healthy and readiness/startup not, until a probe says otherwise.
    this.result = kind === 'liveness';
  }

  start(): void {
    this.timer = setTimeout(() => void this.tick(), (this.probe.initialDelaySeconds ?? 0) * 1000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const { ok, message } = await probeOnce(this.probe, this.target);
    if (this.stopped) return;
    this.lastMessage = message;
    this.run = ok === this.lastRaw ? this.run + 1 : 1;
    this.lastRaw = ok;
    const threshold = ok ? (this.probe.successThreshold ?? 1) : (this.probe.failureThreshold ?? 3);
    if (this.run >= threshold && ok !== this.result) {
      this.result = ok;
      this.onChange(ok);
    }
    // A startup probe is done once it succeeds.
    if (this.kind === 'startup' && this.result) return;
    this.timer = setTimeout(() => void this.tick(), (this.probe.periodSeconds ?? 10) * 1000);
  }
}
