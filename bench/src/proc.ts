/**
 * Process accounting from /proc (Linux): CPU time and resident memory of a process and its
 * descendants (nginx's workers, a shell's child), read before and after a load run.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let ticks: number | undefined;
/** Clock ticks per second (utime/stime units), usually 100. */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

interface StatLine {
  pid: number;
  ppid: number;
  utime: number;
  stime: number;
}

function readStat(pid: number): StatLine | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pid, ppid: Number(rest[1]), utime: Number(rest[11]), stime: Number(rest[12]) };
  } catch {
    return undefined;
  }
}

/** `pid` and all its descendants that are alive now. */
export function processTree(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = readStat(Number(entry));
    if (!s) continue;
    const list = byParent.get(s.ppid);
    if (list) list.push(s.pid);
    else byParent.set(s.ppid, [s.pid]);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop() as number;
    out.push(p);
    todo.push(...(byParent.get(p) ?? []));
  }
  return out;
}

export interface CpuSample {
  /** Seconds of user and system CPU used so far. */
  user: number;
  system: number;
  at: number;
}

/** CPU used so far by the given processes (their own time, not their reaped children's). */
export function cpuOf(pids: readonly number[]): CpuSample {
  let u = 0;
  let s = 0;
  for (const pid of pids) {
    const st = readStat(pid);
    if (!st) continue;
    u += st.utime;
    s += st.stime;
  }
  const t = clockTicks();
  return { user: u / t, system: s / t, at: Date.now() };
}

export const cpuDelta = (a: CpuSample, b: CpuSample): { user: number; system: number; total: number; wallS: number } => ({
  user: b.user - a.user,
  system: b.system - a.system,
  total: b.user - a.user + (b.system - a.system),
  wallS: (b.at - a.at) / 1000,
});

export interface Memory {
  /** Resident set in MB (VmRSS), summed over the processes. */
  rssMb: number;
  /** Anonymous resident memory in MB (RssAnon): what the process allocated, not shared file pages. */
  anonMb: number;
  /**
   * Proportional set size in MB (smaps_rollup Pss): shared pages (the node binary's, ~34 MB of a
   * bare node's 40 MB RSS) divided among the processes mapping them.
   */
  pssMb: number;
}

export function memoryOf(pids: readonly number[]): Memory {
  let rss = 0;
  let anon = 0;
  let pss = 0;
  for (const pid of pids) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rss += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      anon += Number(/^RssAnon:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      pss += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return { rssMb: rss / 1024, anonMb: anon / 1024, pssMb: pss / 1024 };
}

/** MemAvailable in MB. */
export function memAvailableMb(): number {
  const info = readFileSync('/proc/meminfo', 'utf8');
  return Number(/^MemAvailable:\s+(\d+)/m.exec(info)?.[1] ?? 0) / 1024;
}

/**
 * Samples CPU and memory of a process tree every `intervalMs` until stopped: for long runs (the
 * sweeper, the operator) where one before/after pair would hide the peak.
 */
export class Sampler {
  readonly samples: Array<{ at: number; rssMb: number; anonMb: number; cpuS: number }> = [];
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 1000,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  sample(): { at: number; rssMb: number; anonMb: number; cpuS: number } {
    const pids = processTree(this.pid);
    const cpu = cpuOf(pids);
    const mem = memoryOf(pids);
    const s = { at: Date.now(), rssMb: mem.rssMb, anonMb: mem.anonMb, cpuS: cpu.user + cpu.system };
    this.samples.push(s);
    return s;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get peakRssMb(): number {
    return Math.max(0, ...this.samples.map((s) => s.rssMb));
  }

  /** CPU seconds used between two times (nearest samples). */
  cpuBetween(fromMs: number, toMs: number): number {
    const at = (t: number) =>
      this.samples.reduce((best, s) => (Math.abs(s.at - t) < Math.abs(best.at - t) ? s : best), this.samples[0]);
    if (this.samples.length === 0) return NaN;
    return at(toMs).cpuS - at(fromMs).cpuS;
  }
}
