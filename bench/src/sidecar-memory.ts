/**
 * Sidecar memory: N idle sidecars (10 and 50 by default) started as real processes in front of one
 * upstream app, as N backends on one node would run them, and each one's resident memory read from
 * /proc once they are ready and have settled: RSS, anonymous (RssAnon) and PSS (smaps_rollup).
 * RSS counts the node binary's pages in full for every process; PSS divides shared pages among the
 * processes that map them, so it is the per-backend cost on a node running many.
 *
 * Three builds, one after the other in each round, each with N of its own kind running:
 *   bundle   the one-file sidecar its image runs (scripts/bundle-sidecar.mjs)
 *   tsc      the same code from `npm run build`'s dist/ and node_modules
 *   node     a bare Node.js process with two idle HTTP servers: the floor any Node sidecar stands on
 * Figures are per process: the median over the N processes, then the median (min–max) over rounds.
 */
import type { Memory } from './proc';
import { memoryOf } from './proc';
import { benchScript, dist, freePorts, sleep, startChild, waitForPort, type Child } from './processes';
import type { BenchResult, Table, TargetCheck } from './report';
import { launchSidecar, SIDECAR_TSC_MAIN, sidecarMain, sidecarReady, type SidecarProcess } from './sidecar-process';
import { fmt, fmtSpread, median, spread } from './stats';

export interface SidecarMemoryOptions {
  /** How many sidecars run at once, one measurement per count. */
  counts: number[];
  rounds: number;
  /** Seconds between the last one being ready and the reading. */
  settleS: number;
}

type Build = 'bundle' | 'tsc' | 'node';

const LABELS: Record<Build, string> = {
  bundle: 'sidecar, bundle (as the image runs it)',
  tsc: 'sidecar, tsc build (dist/ + node_modules)',
  node: 'bare Node.js, two idle HTTP servers',
};

/** Two HTTP servers that answer nothing in particular: a Node.js process doing what an idle sidecar does. */
const BARE_NODE = [
  "const http = require('node:http');",
  'for (const port of process.argv.slice(1)) http.createServer((q, s) => s.end()).listen(Number(port), "127.0.0.1");',
  "process.on('SIGTERM', () => process.exit(0));",
].join(' ');

interface Reading {
  round: number;
  build: Build;
  count: number;
  /** Medians over the processes. */
  rssMb: number;
  anonMb: number;
  pssMb: number;
  /** The largest PSS among them. */
  maxPssMb: number;
}

type Mains = Record<Exclude<Build, 'node'>, string>;

async function startMany(build: Build, count: number, upstream: number, main: Mains): Promise<Child[]> {
  const ports = await freePorts(2 * count);
  const started: SidecarProcess[] = [];
  for (let i = 0; i < count; i++) {
    const serve = ports[2 * i];
    const admin = ports[2 * i + 1];
    const name = `memory-${build}-${i}`;
    started.push(
      build === 'node'
        ? { child: startChild(name, process.execPath, ['-e', BARE_NODE, String(serve), String(admin)]), serve, admin }
        : launchSidecar(name, upstream, { serve, admin }, { main: main[build] }),
    );
  }
  for (const s of started) {
    if (build === 'node') await waitForPort(s.admin, s.child);
    else await sidecarReady(s);
  }
  return started.map((s) => s.child);
}

function reading(round: number, build: Build, count: number, memories: Memory[]): Reading {
  return {
    round,
    build,
    count,
    rssMb: median(memories.map((m) => m.rssMb)),
    anonMb: median(memories.map((m) => m.anonMb)),
    pssMb: median(memories.map((m) => m.pssMb)),
    maxPssMb: Math.max(...memories.map((m) => m.pssMb)),
  };
}

export async function sidecarMemory(
  opts: SidecarMemoryOptions,
): Promise<Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'>> {
  const main: Mains = { bundle: sidecarMain(), tsc: dist(SIDECAR_TSC_MAIN) };
  const builds: Build[] = ['bundle', 'tsc', 'node'];
  const upstreamPort = (await freePorts(1))[0];
  const app = startChild('upstream-app', process.execPath, [benchScript('upstream-app'), `--port=${upstreamPort}`]);
  const readings: Reading[] = [];
  try {
    await waitForPort(upstreamPort, app);
    for (let round = 0; round < opts.rounds; round++) {
      for (const count of opts.counts) {
        // Rotated from round to round, so no build always follows the same one.
        const order = builds.map((_, i) => builds[(i + round) % builds.length]);
        for (const build of order) {
          const children = await startMany(build, count, upstreamPort, main);
          try {
            await sleep(opts.settleS * 1000);
            const r = reading(
              round,
              build,
              count,
              children.map((c) => memoryOf([c.pid])),
            );
            readings.push(r);
            process.stdout.write(
              `sidecar-memory round ${round + 1}/${opts.rounds} ${String(count).padStart(3)} × ${build.padEnd(6)} RSS ${fmt(r.rssMb, 1)} anon ${fmt(r.anonMb, 1)} PSS ${fmt(r.pssMb, 1)} MB\n`,
            );
          } finally {
            await Promise.all(children.map((c) => c.stop()));
          }
        }
      }
    }
  } finally {
    await app.stop();
  }
  return summarize(opts, builds, readings, main);
}

function summarize(
  opts: SidecarMemoryOptions,
  builds: Build[],
  readings: Reading[],
  main: Mains,
): Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'> {
  const of = (build: Build, count: number) => readings.filter((r) => r.build === build && r.count === count);
  const mb = (values: number[]) => fmtSpread(spread(values), (v) => fmt(v, 1));
  /** Same-round differences from the bare Node.js process. */
  const aboveNode = (build: Build, count: number, f: (r: Reading) => number) =>
    mb(of(build, count).map((r) => f(r) - f(of('node', count).find((n) => n.round === r.round)!)));
  const tables: Table[] = opts.counts.map((count) => ({
    title: `${count} idle processes at once: memory per process (median over the processes; median (min–max) of ${opts.rounds} rounds)`,
    columns: [
      'build',
      'RSS MB',
      'anonymous MB',
      'PSS MB',
      'largest PSS MB',
      'anonymous above bare Node.js',
      'PSS above bare Node.js',
    ],
    rows: builds.map((build) => [
      LABELS[build],
      mb(of(build, count).map((r) => r.rssMb)),
      mb(of(build, count).map((r) => r.anonMb)),
      mb(of(build, count).map((r) => r.pssMb)),
      fmt(Math.max(...of(build, count).map((r) => r.maxPssMb)), 1),
      build === 'node' ? '–' : aboveNode(build, count, (r) => r.anonMb),
      build === 'node' ? '–' : aboveNode(build, count, (r) => r.pssMb),
    ]),
  }));

  const targets: TargetCheck[] = [];
  for (const count of opts.counts) {
    const anon = median(of('bundle', count).map((r) => r.anonMb));
    targets.push({
      target: `sidecar idle anonymous memory, ${count} running`,
      goal: '≤ 10 MB',
      measured: `${fmt(anon, 1)} MB`,
      met: anon <= 10,
    });
  }
  if (opts.counts.includes(50)) {
    const pss = median(of('bundle', 50).map((r) => r.pssMb));
    targets.push({ target: 'sidecar PSS with 50 sidecars', goal: '≤ 12 MB each', measured: `${fmt(pss, 1)} MB`, met: pss <= 12 });
  }

  return {
    benchmark: 'sidecar-memory',
    settings: { ...opts, sidecarBundle: main.bundle, sidecarTsc: main.tsc },
    tables,
    targets,
    notes: [
      'Each sidecar proxies to one upstream app (ready, no traffic) and serves its admin port; nothing scrapes it. The bare Node.js row runs two idle HTTP servers per process and no proxying.',
      "PSS shares the node binary's pages among every process mapping them, the benchmark's own (the runner, the upstream app) and any other Node.js process on the machine included: with few sidecars it depends on what else runs. Anonymous memory is the process's own.",
      'The builds run one after the other (N of one build at a time), in an order rotated from round to round.',
    ],
    raw: { readings },
  };
}
