/**
 * What a benchmark hands back, and how it is shown: tables printed to the terminal, the whole
 * result (raw rounds included) as JSON under bench/results/, and the tables as Markdown next to
 * it, ready for docs/benchmarks.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { RESULTS_DIR } from './processes';

export interface Table {
  title: string;
  columns: string[];
  rows: string[][];
}

export interface TargetCheck {
  target: string;
  goal: string;
  measured: string;
  /** undefined when this run could not tell. */
  met?: boolean;
}

export interface BenchResult {
  benchmark: string;
  startedAt: string;
  finishedAt: string;
  machine: MachineInfo;
  settings: Record<string, unknown>;
  tables: Table[];
  targets: TargetCheck[];
  notes: string[];
  /** Every round's measurements, for later analysis. */
  raw: unknown;
}

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memTotalGb: number;
  memAvailableGb: number;
  loadAverage: string;
  node: string;
  kernel: string;
  tools: Record<string, string>;
}

function toolVersion(cmd: string, args: string[]): string {
  try {
    const out = execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    return out.trim().split('\n')[0];
  } catch (err) {
    const e = err as { stderr?: string | Buffer; stdout?: string | Buffer };
    const text = `${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`.trim();
    return text ? text.split('\n')[0] : 'missing';
  }
}

export function machineInfo(): MachineInfo {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const avail = Number(/^MemAvailable:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0) / 1024 / 1024;
  return {
    nproc: Number(toolVersion('nproc', [])) || cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memTotalGb: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    memAvailableGb: Math.round(avail * 10) / 10,
    loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    node: process.version,
    kernel: toolVersion('uname', ['-r']),
    tools: {
      wrk: toolVersion('wrk', ['-v']),
      nginx: toolVersion('nginx', ['-v']),
      haproxy: toolVersion('haproxy', ['-v']),
    },
  };
}

export function renderText(t: Table): string {
  const widths = t.columns.map((c, i) => Math.max(c.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ');
  return [t.title, line(t.columns), widths.map((w) => '-'.repeat(w)).join('  '), ...t.rows.map(line)].join('\n');
}

export function renderMarkdown(t: Table): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `**${t.title}**`,
    '',
    `| ${t.columns.map(esc).join(' | ')} |`,
    `| ${t.columns.map(() => '---').join(' | ')} |`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export function targetsTable(targets: TargetCheck[]): Table {
  return {
    title: 'Targets',
    columns: ['target', 'goal', 'measured', 'met'],
    rows: targets.map((t) => [t.target, t.goal, t.measured, t.met === undefined ? '?' : t.met ? 'yes' : 'no']),
  };
}

export function printResult(r: BenchResult): void {
  const out: string[] = [`\n=== ${r.benchmark} (${r.startedAt} → ${r.finishedAt}) ===`];
  for (const t of r.tables) out.push('', renderText(t));
  if (r.targets.length) out.push('', renderText(targetsTable(r.targets)));
  if (r.notes.length) out.push('', ...r.notes.map((n) => `- ${n}`));
  process.stdout.write(`${out.join('\n')}\n`);
}

/** Writes `<benchmark>-<time>.json` and `<benchmark>-latest.{json,md}`; returns the JSON path. */
export function saveResult(r: BenchResult): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = r.startedAt.replace(/[:.]/g, '-');
  const json = `${JSON.stringify(r, null, 2)}\n`;
  const path = join(RESULTS_DIR, `${r.benchmark}-${stamp}.json`);
  writeFileSync(path, json);
  writeFileSync(join(RESULTS_DIR, `${r.benchmark}-latest.json`), json);
  const md = [
    `### ${r.benchmark}`,
    '',
    `Run ${r.startedAt}; ${r.machine.nproc} CPUs (${r.machine.cpuModel}), ${r.machine.memTotalGb} GB, Node ${r.machine.node}, kernel ${r.machine.kernel}; load average at start ${r.machine.loadAverage}.`,
    '',
    ...r.tables.flatMap((t) => [renderMarkdown(t), '']),
    ...(r.targets.length ? [renderMarkdown(targetsTable(r.targets)), ''] : []),
    ...r.notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
  writeFileSync(join(RESULTS_DIR, `${r.benchmark}-latest.md`), md);
  return path;
}
