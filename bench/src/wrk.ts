/** Runs wrk (Debian's `wrk`) and reads its summary: requests/s, latency percentiles, errors. */
import { runToEnd } from './processes';

export interface WrkOptions {
  threads?: number;
  connections?: number;
  durationS?: number;
  headers?: Record<string, string>;
}

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** Socket errors plus non-2xx/3xx answers. */
  errors: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function toMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
}

export function parseWrk(out: string): WrkResult {
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]) : NaN;
  };
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errors = (socket ? socket.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  if (!total || !rps) throw new Error(`could not read wrk's output:\n${out}`);
  return {
    requests: Number(total[1]),
    durationS: Number(total[2]) * (UNIT_MS[total[3]] / 1000),
    rps: Number(rps[1]),
    p50Ms: pct('50'),
    p90Ms: pct('90'),
    p99Ms: pct('99'),
    errors,
  };
}

export async function runWrk(url: string, opts: WrkOptions = {}): Promise<WrkResult> {
  const args = [
    `-t${opts.threads ?? 1}`,
    `-c${opts.connections ?? 50}`,
    `-d${opts.durationS ?? 3}s`,
    '--latency',
    ...Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    url,
  ];
  const { code, stdout, stderr } = await runToEnd('wrk', args, { timeoutMs: ((opts.durationS ?? 3) + 30) * 1000 });
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} exited ${code}: ${stderr}${stdout}`);
  return parseWrk(stdout);
}
