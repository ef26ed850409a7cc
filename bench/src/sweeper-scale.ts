/**
 * Benchmark 4, one sweeper following N sidecar state streams (1,000). The sidecars are emulated
 * by one process (sidecar-emulator.ts) on N loopback addresses; N backends are created in the API
 * server with status Ready, status.podIP = those addresses and the label spawnerGroup=<node>, so
 * the sweeper (a host process) follows all of them. Grace periods and reported idle times vary
 * so that the idle deadlines spread over `spreadS` seconds, starting 30 s after the sweeper
 * starts.
 *
 * Baseline, in the same round and against the same emulator: sse-follower.ts, a process that
 * holds the same N streams and fires a timer at each deadline and does nothing else. Sweeper −
 * baseline is the cost of the sweeper's own logic (informers, trackers, status writes, metrics);
 * the baseline's timer lag is the floor for timer-driven sweeping on this machine.
 *
 * Sweep lag = when a watch on the backends first shows Swept − the true deadline (last activity
 * + grace). It therefore includes the status write and the watch delivery.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf, writeTransition } from '../../common/src/lifecycle';
import { LABEL_SPAWNER_GROUP } from '../../common/src/constants';
import { BACKENDS } from '../../common/src/kube/resources';
import {
  createNamespace,
  deleteNamespace,
  Follower,
  metricSum,
  pool,
  startComponent,
  TEST_IMAGE,
  withCluster,
  type ClusterSession,
} from './cluster';
import { Sampler } from './proc';
import { benchScript, freePort, sleep, startChild, waitUntil } from './processes';
import type { BenchResult, Table, TargetCheck } from './report';
import { fmt, fmtSpread, latencySummary, spread } from './stats';
import { deadlineOf, loopbackAddress, type Plan, type PlanEntry } from './sweep-plan';

export interface SweeperScaleOptions {
  backends: number;
  rounds: number;
  spreadS: number;
  /** Node.js flags for the sweeper process (e.g. --max-semi-space-size=2), to compare settings. */
  nodeArgs?: string[];
}

const NODE = 'bench-sweeper-node';
const HEARTBEAT_S = 5;
const LEAD_MS = 30_000;

interface ProcessFigures {
  /** Until every stream is connected (sweeper: spawner_sweeper_connected_sidecars = N). */
  connectS?: number;
  holdingRssMb: number;
  holdingAnonMb: number;
  /** CPU per second while holding N streams, before the first deadline. */
  holdingCpuPerS: number;
  peakRssMb: number;
  /** CPU seconds from the first deadline until the last sweep. */
  sweepingCpuS: number;
}

interface RoundResult {
  round: number;
  sweepLagMs: number[];
  baselineLagMs: number[];
  sweeper: ProcessFigures;
  baseline: ProcessFigures;
  emulatorCpuS: number;
  swept: number;
  reasons: Record<string, number>;
  sweeperLagMetric: { count: number; meanS: number };
}

function figures(s: Sampler, startedAt: number, firstDeadline: number, lastDone: number, connectS?: number): ProcessFigures {
  const holding = s.samples.filter((x) => x.at >= startedAt + (connectS ?? 5) * 1000 && x.at <= firstDeadline);
  const first = holding[0] ?? s.samples[0];
  const last = holding[holding.length - 1] ?? s.samples[s.samples.length - 1];
  return {
    connectS,
    holdingRssMb: last.rssMb,
    holdingAnonMb: last.anonMb,
    holdingCpuPerS: last.at > first.at ? (last.cpuS - first.cpuS) / ((last.at - first.at) / 1000) : NaN,
    peakRssMb: s.peakRssMb,
    sweepingCpuS: s.cpuBetween(firstDeadline, lastDone),
  };
}

async function round(session: ClusterSession, opts: SweeperScaleOptions, r: number): Promise<RoundResult> {
  const ns = await createNamespace(session.kube, `sweep-${r}`, false);
  const dir = mkdtempSync(join(tmpdir(), 'spawner-bench-sweep-'));
  const n = opts.backends;
  // Deadline offsets spread evenly over spreadS, in a shuffled order; grace periods vary.
  const offsets = Array.from({ length: n }, (_, i) => (i * opts.spreadS * 1000) / n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [offsets[i], offsets[j]] = [offsets[j], offsets[i]];
  }
  const graces = offsets.map((o, i) => Math.ceil((LEAD_MS + o) / 1000) + 5 + ((i * 37) % 200));
  const names = Array.from({ length: n }, (_, i) => `sweep-${i}`);
  const children: Array<{ stop(): Promise<void> }> = [];
  let follower: Follower<SessionLivedBackend> | undefined;
  try {
    const t0 = Date.now();
    await pool(n, 40, async (i) => {
      const created = await session.kube.create<SessionLivedBackend>(BACKENDS, ns, {
        apiVersion: 'spawner.dev/v1',
        kind: 'SessionLivedBackend',
        metadata: { name: names[i], namespace: ns, labels: { [LABEL_SPAWNER_GROUP]: NODE } },
        spec: { template: { containers: [{ name: 'app', image: TEST_IMAGE }] }, gracePeriodSeconds: graces[i] },
      });
      await writeTransition(session.kube, 'operator', created, {
        phase: 'Ready',
        fields: { podIP: loopbackAddress(i), nodeName: NODE, port: 9090 },
      });
    });
    process.stdout.write(`sweeper-scale round ${r + 1}: ${n} Ready backends written in ${fmt((Date.now() - t0) / 1000, 1)} s\n`);

    // The plan: deadlines LEAD_MS + offset after now.
    const port = await freePort();
    const start = Date.now();
    const entries: PlanEntry[] = names.map((name, i) => ({
      name,
      ip: loopbackAddress(i),
      gracePeriodSeconds: graces[i],
      lastActiveMs: start + LEAD_MS + offsets[i] - graces[i] * 1000,
    }));
    const plan: Plan = { port, heartbeatSeconds: HEARTBEAT_S, entries };
    const planPath = join(dir, 'plan.json');
    writeFileSync(planPath, JSON.stringify(plan));
    const deadlines = new Map(entries.map((e) => [e.name, deadlineOf(e)]));
    const firstDeadline = Math.min(...deadlines.values());
    const lastDeadline = Math.max(...deadlines.values());

    const emulator = startChild(`sidecar-emulator-${r}`, process.execPath, [
      benchScript('sidecar-emulator'),
      `--plan=${planPath}`,
    ]);
    children.push(emulator);
    await waitUntil(() => readFileSync(emulator.logPath, 'utf8').includes('emulating'), 'the emulator to listen', 60_000, 100);
    const emulatorSampler = new Sampler(emulator.pid, 1000).start();

    const swept = new Map<string, number>();
    const reasons: Record<string, number> = {};
    follower = new Follower<SessionLivedBackend>(session.kube, BACKENDS, ns, (b, at) => {
      const name = b.metadata.name as string;
      if (!swept.has(name) && phaseOf(b) === 'Swept') {
        swept.set(name, at);
        const reason = b.status?.reason ?? '?';
        reasons[reason] = (reasons[reason] ?? 0) + 1;
      }
    });
    await follower.start();

    const outPath = join(dir, 'baseline.json');
    const baseline = startChild(`sse-follower-${r}`, process.execPath, [
      benchScript('sse-follower'),
      `--plan=${planPath}`,
      `--out=${outPath}`,
    ]);
    children.push(baseline);
    const sweeperStart = Date.now();
    const sweeper = await startComponent(
      'sweeper',
      [`--node-name=${NODE}`, `--namespaces=${ns}`, `--sidecar-admin-port=${port}`, `--heartbeat-seconds=${HEARTBEAT_S}`],
      session,
      { logName: `sweeper-${r}`, waitReady: false, nodeArgs: opts.nodeArgs },
    );
    children.push(sweeper.child);
    const sweeperSampler = new Sampler(sweeper.child.pid, 1000).start();
    const baselineSampler = new Sampler(baseline.pid, 1000).start();
    const connected = await waitUntil(
      async () => {
        const m = await sweeper.metrics().catch(() => '');
        return metricSum(m, 'spawner_sweeper_connected_sidecars') >= n ? Date.now() : undefined;
      },
      `the sweeper to follow ${n} sidecars`,
      LEAD_MS,
      250,
    );
    const connectS = (connected - sweeperStart) / 1000;
    process.stdout.write(`sweeper-scale round ${r + 1}: sweeper following ${n} streams after ${fmt(connectS, 1)} s\n`);

    await waitUntil(() => swept.size >= n, `${n} backends Swept`, lastDeadline - Date.now() + 60_000, 200);
    const lastDone = Math.max(...swept.values());
    await waitUntil(() => readFileSync(outPath, 'utf8'), 'the baseline result', 30_000, 200).catch(() => undefined);
    const metrics = await sweeper.metrics();
    for (const s of [sweeperSampler, baselineSampler, emulatorSampler]) s.stop();
    const base = JSON.parse(readFileSync(outPath, 'utf8')) as { lags: number[] };
    const count = metricSum(metrics, 'spawner_sweeper_sweep_lag_seconds_count');
    return {
      round: r,
      sweepLagMs: [...swept].map(([name, at]) => at - (deadlines.get(name) as number)),
      baselineLagMs: base.lags,
      sweeper: figures(sweeperSampler, sweeperStart, firstDeadline, lastDone, connectS),
      baseline: figures(baselineSampler, sweeperStart, firstDeadline, lastDone),
      emulatorCpuS: emulatorSampler.samples[emulatorSampler.samples.length - 1].cpuS - emulatorSampler.samples[0].cpuS,
      swept: swept.size,
      reasons,
      sweeperLagMetric: { count, meanS: metricSum(metrics, 'spawner_sweeper_sweep_lag_seconds_sum') / count },
    };
  } finally {
    follower?.stop();
    for (const c of children.reverse()) await c.stop();
    await deleteNamespace(session.kube, ns, !session.started);
  }
}

export async function sweeperScale(
  opts: SweeperScaleOptions,
): Promise<Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'>> {
  const rounds = await withCluster('sweeper-scale', async (session) => {
    const out: RoundResult[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const res = await round(session, opts, r);
      out.push(res);
      const l = latencySummary(res.sweepLagMs);
      process.stdout.write(
        `sweeper-scale round ${r + 1}/${opts.rounds}: ${res.swept} swept, lag p50 ${fmt(l.p50, 0)} ms p99 ${fmt(l.p99, 0)} ms, sweeper RSS ${fmt(res.sweeper.holdingRssMb, 0)} MB\n`,
      );
      await sleep(1000);
    }
    return out;
  });
  return summarize(opts, rounds);
}

function summarize(opts: SweeperScaleOptions, rounds: RoundResult[]): Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'> {
  const lag = (f: (r: RoundResult) => number[]) => ({
    pooled: latencySummary(rounds.flatMap(f)),
    p50: spread(rounds.map((r) => latencySummary(f(r)).p50)),
    p99: spread(rounds.map((r) => latencySummary(f(r)).p99)),
  });
  const sw = lag((r) => r.sweepLagMs);
  const bl = lag((r) => r.baselineLagMs);
  const lagRow = (label: string, l: typeof sw): string[] => [
    label,
    ...[l.pooled.p50, l.pooled.p90, l.pooled.p99, l.pooled.max].map((v) => fmt(v, 0)),
    fmtSpread(l.p50, (v) => fmt(v, 0)),
    fmtSpread(l.p99, (v) => fmt(v, 0)),
  ];
  const proc = (f: (r: RoundResult) => number, d = 1) => fmtSpread(spread(rounds.map(f)), (v) => fmt(v, d));
  const tables: Table[] = [
    {
      title: `Following ${opts.backends} state streams (heartbeat ${HEARTBEAT_S} s); median (min–max) over ${opts.rounds} rounds`,
      columns: [
        'process',
        'all streams connected, s',
        'RSS while holding, MB',
        'anonymous, MB',
        'peak RSS, MB',
        'CPU while holding, % of a core',
        'CPU while sweeping, s',
      ],
      rows: [
        [
          'sweeper',
          proc((r) => r.sweeper.connectS ?? NaN),
          proc((r) => r.sweeper.holdingRssMb, 0),
          proc((r) => r.sweeper.holdingAnonMb, 0),
          proc((r) => r.sweeper.peakRssMb, 0),
          proc((r) => r.sweeper.holdingCpuPerS * 100),
          proc((r) => r.sweeper.sweepingCpuS, 2),
        ],
        [
          'baseline: bare stream follower',
          '–',
          proc((r) => r.baseline.holdingRssMb, 0),
          proc((r) => r.baseline.holdingAnonMb, 0),
          proc((r) => r.baseline.peakRssMb, 0),
          proc((r) => r.baseline.holdingCpuPerS * 100),
          proc((r) => r.baseline.sweepingCpuS, 2),
        ],
      ],
    },
    {
      title: `Sweep lag (Swept seen by a watch − true idle deadline), ms; deadlines spread over ${opts.spreadS} s`,
      columns: ['who', 'p50', 'p90', 'p99', 'max', 'p50 per round', 'p99 per round'],
      rows: [lagRow('sweeper (status written, seen by a watch)', sw), lagRow('baseline (timer fired)', bl)],
    },
  ];
  const rss = spread(rounds.map((r) => r.sweeper.peakRssMb));
  const targets: TargetCheck[] = [
    {
      target: `sweeper RSS following ${opts.backends} backends`,
      goal: '≤ 100 MB',
      measured: `${fmt(rss.median, 0)} MB peak (holding: ${fmt(spread(rounds.map((r) => r.sweeper.holdingRssMb)).median, 0)} MB)`,
      met: rss.median <= 100,
    },
    {
      target: 'sweep lag p99',
      goal: '≤ 1 s',
      measured: `${fmt(sw.pooled.p99, 0)} ms (p50 ${fmt(sw.pooled.p50, 0)} ms)`,
      met: sw.pooled.p99 <= 1000,
    },
  ];
  return {
    benchmark: 'sweeper-scale',
    settings: { ...opts, heartbeatSeconds: HEARTBEAT_S, leadSeconds: LEAD_MS / 1000, node: NODE },
    tables,
    targets,
    notes: [
      `The sidecars are emulated by one process serving /events on ${opts.backends} loopback addresses (127.77.x.y), with the real sidecar's message format and heartbeat; the backends exist only as resources (status Ready, podIP = those addresses), so no Pods run. Reasons seen: ${JSON.stringify(rounds.map((r) => r.reasons))}.`,
      "The baseline is a bare Node.js process holding the same streams (node:http, one connection each) that only fires a timer per deadline: its memory and CPU are the cost of the streams themselves, its lag the floor for a timer on this machine. The emulator's CPU is not counted for either.",
      `The sweeper's own spawner_sweeper_sweep_lag_seconds (deadline as it computed it → status written) had a mean of ${rounds.map((r) => `${fmt(r.sweeperLagMetric.meanS * 1000, 0)} ms`).join(', ')} per round.`,
    ],
    raw: rounds,
  };
}
