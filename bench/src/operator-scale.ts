/**
 * Benchmark 3, the operator at scale: one operator owning `existing` backends (2,000), next to a
 * baseline operator owning none, both as host processes against the e2e control plane.
 *
 * 2,000 backends cannot all run processes on this machine (two Node.js processes each), so their
 * Pods are made unschedulable (a nodeSelector no node has, startupTimeoutSeconds 86400): they
 * stay Constructed, and the operator still holds 2,000 backends + Pods + Services in its caches
 * and reconciles all of them. New backends created during the measurement are unschedulable too,
 * so create→Constructed is the operator's own work (Pod + Service creates and a status write).
 *
 * Measured: operator RSS (scale vs baseline); create→Constructed for batches of new backends,
 * alternating baseline and scale batches; and a full resync: the operator restarted, timed to
 * /readyz (informer caches listed) and to every backend reconciled (its
 * spawner_reconcile_duration_seconds_count reaches the number of backends and
 * spawner_operator_queue_depth is 0), with the writes it made meanwhile.
 */
import { type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf } from '../../common/src/lifecycle';
import { BACKENDS } from '../../common/src/kube/resources';
import {
  apiServerMetrics,
  apiServerRequests,
  meanWriteLatency,
  createNamespace,
  deleteNamespace,
  extendServiceRange,
  Follower,
  metricSum,
  pool,
  startComponent,
  TEST_IMAGE,
  waitReady,
  withCluster,
  writeDelta,
  type ClusterSession,
  type Component,
} from './cluster';
import { memoryOf, Sampler } from './proc';
import { sleep, waitUntil } from './processes';
import type { BenchResult, Table, TargetCheck } from './report';
import { fmt, fmtSpread, latencySummary, median, spread } from './stats';
import type { ServiceMode } from '../../operator/src/config';

export interface OperatorScaleOptions {
  existing: number;
  newPerRound: number;
  rounds: number;
  concurrency: number;
  /** Both operators with this --service-mode (default ClusterIP). */
  serviceMode?: ServiceMode;
}

function unschedulable(name: string, namespace: string): SessionLivedBackend {
  return {
    apiVersion: 'spawner.dev/v1',
    kind: 'SessionLivedBackend',
    metadata: { name, namespace, labels: { 'spawner.dev/bench': 'operator-scale' } },
    spec: {
      template: {
        containers: [{ name: 'app', image: TEST_IMAGE }],
        nodeSelector: { 'spawner.dev/bench': 'no-such-node' },
      },
      startupTimeoutSeconds: 86400,
      gracePeriodSeconds: 3600,
    },
  };
}

/** Tracks when each backend of a namespace was first seen Constructed (client-side). */
class Constructed {
  readonly at = new Map<string, number>();
  readonly follower: Follower<SessionLivedBackend>;
  constructor(session: ClusterSession, ns: string) {
    this.follower = new Follower<SessionLivedBackend>(session.kube, BACKENDS, ns, (b, t) => {
      const name = b.metadata.name as string;
      if (!this.at.has(name) && phaseOf(b) !== 'Submitted') this.at.set(name, t);
    });
  }
}

interface Resync {
  which: 'baseline' | 'scale';
  backends: number;
  readyS: number;
  reconciledS: number;
  peakRssMb: number;
  cpuS: number;
  writes: Array<[string, number]>;
  operatorWrites: number;
}

const operatorWriteCount = (m: string): number =>
  metricSum(m, 'spawner_kube_requests_total', (l) => /verb="(POST|PUT|PATCH|DELETE)"/.test(l));

export async function operatorScale(
  opts: OperatorScaleOptions,
): Promise<Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'>> {
  const extra = opts.serviceMode ? [`--service-mode=${opts.serviceMode}`] : [];
  return withCluster('operator-scale', async (session) => {
    const restoreServiceRange = await extendServiceRange(session.kube);
    const nsBase = await createNamespace(session.kube, 'op-base');
    const nsScale = await createNamespace(session.kube, 'op-scale');
    const ops: Record<'baseline' | 'scale', Component> = {
      baseline: await startComponent('operator', [`--namespaces=${nsBase}`, ...extra], session, { logName: 'operator-baseline' }),
      scale: await startComponent('operator', [`--namespaces=${nsScale}`, ...extra], session, { logName: 'operator-scale' }),
    };
    const ns = { baseline: nsBase, scale: nsScale };
    const seen = { baseline: new Constructed(session, nsBase), scale: new Constructed(session, nsScale) };
    await Promise.all(Object.values(seen).map((s) => s.follower.start()));
    const counts = { baseline: 0, scale: 0 };
    try {
      const idleRss = { baseline: memoryOf([ops.baseline.child.pid]), scale: memoryOf([ops.scale.child.pid]) };

      // ---- populate ----
      const t0 = Date.now();
      await pool(opts.existing, opts.concurrency * 2, async (i) => {
        await session.kube.create(BACKENDS, nsScale, unschedulable(`existing-${i}`, nsScale));
      });
      counts.scale = opts.existing;
      const createdS = (Date.now() - t0) / 1000;
      await waitUntil(() => seen.scale.at.size >= opts.existing, `${opts.existing} backends Constructed`, 600_000, 500);
      const populateS = (Date.now() - t0) / 1000;
      process.stdout.write(
        `operator-scale: ${opts.existing} backends created in ${fmt(createdS, 1)} s, all Constructed after ${fmt(populateS, 1)} s\n`,
      );
      // Let the scheduler's first attempts and their Pod status updates pass.
      await sleep(10_000);
      const steadyRss = { baseline: memoryOf([ops.baseline.child.pid]), scale: memoryOf([ops.scale.child.pid]) };

      // ---- create→Constructed, alternating baseline and scale batches ----
      const latencies: Record<'baseline' | 'scale', number[][]> = { baseline: [], scale: [] };
      const apiLatency: Record<'baseline' | 'scale', Array<Array<[string, number, number]>>> = { baseline: [], scale: [] };
      for (let round = 0; round < opts.rounds; round++) {
        const order: Array<'baseline' | 'scale'> = round % 2 === 0 ? ['baseline', 'scale'] : ['scale', 'baseline'];
        for (const which of order) {
          const sent = new Map<string, number>();
          const scrape0 = await apiServerMetrics(session.kubeConfig);
          await pool(opts.newPerRound, opts.concurrency, async (i) => {
            const name = `new-${round}-${i}`;
            sent.set(name, Date.now());
            await session.kube.create(BACKENDS, ns[which], unschedulable(name, ns[which]));
          });
          counts[which] += opts.newPerRound;
          await waitUntil(
            () => [...sent.keys()].every((n) => seen[which].at.has(n)),
            `new ${which} backends Constructed`,
            120_000,
            50,
          );
          const l = [...sent].map(([n, t]) => (seen[which].at.get(n) as number) - t);
          latencies[which].push(l);
          apiLatency[which].push(meanWriteLatency(scrape0, await apiServerMetrics(session.kubeConfig)));
          process.stdout.write(
            `operator-scale round ${round + 1}/${opts.rounds} ${which.padEnd(8)} create→Constructed p50 ${fmt(latencySummary(l).p50, 0)} ms p99 ${fmt(latencySummary(l).p99, 0)} ms\n`,
          );
          await sleep(2000);
        }
      }

      // ---- full resync: restart and time until everything is reconciled ----
      const resyncs: Resync[] = [];
      for (let round = 0; round < 2; round++) {
        for (const which of round % 2 === 0 ? (['scale', 'baseline'] as const) : (['baseline', 'scale'] as const)) {
          await ops[which].child.stop();
          const before = await apiServerRequests(session.kubeConfig);
          const start = Date.now();
          const op = await startComponent('operator', [`--namespaces=${ns[which]}`, ...extra], session, {
            logName: `operator-${which}-restart-${round}`,
            waitReady: false,
          });
          ops[which] = op;
          const sampler = new Sampler(op.child.pid, 250).start();
          await waitReady(op, 300_000);
          const readyS = (Date.now() - start) / 1000;
          let writes = 0;
          await waitUntil(
            async () => {
              const m = await op.metrics();
              writes = operatorWriteCount(m);
              const done = metricSum(m, 'spawner_reconcile_duration_seconds_count');
              const depth = metricSum(m, 'spawner_operator_queue_depth');
              return done >= counts[which] && depth === 0;
            },
            `${which} operator to reconcile ${counts[which]} backends`,
            300_000,
            100,
          );
          const reconciledS = (Date.now() - start) / 1000;
          sampler.stop();
          const after = await apiServerRequests(session.kubeConfig);
          resyncs.push({
            which,
            backends: counts[which],
            readyS,
            reconciledS,
            peakRssMb: sampler.peakRssMb,
            cpuS: sampler.samples[sampler.samples.length - 1].cpuS - sampler.samples[0].cpuS,
            writes: writeDelta(before, after),
            operatorWrites: writes,
          });
          process.stdout.write(
            `operator-scale resync ${which}: ${counts[which]} backends, /readyz ${fmt(readyS, 2)} s, all reconciled ${fmt(reconciledS, 2)} s\n`,
          );
          await sleep(2000);
        }
      }
      const afterRss = { baseline: memoryOf([ops.baseline.child.pid]), scale: memoryOf([ops.scale.child.pid]) };
      return summarize(opts, { populateS, createdS, idleRss, steadyRss, afterRss, latencies, apiLatency, resyncs, counts });
    } finally {
      for (const s of Object.values(seen)) s.follower.stop();
      await Promise.all(Object.values(ops).map((o) => o.child.stop()));
      // A cluster this session started goes away entirely; a reused one must be left clean.
      await Promise.all([nsBase, nsScale].map((n) => deleteNamespace(session.kube, n, !session.started, 600_000)));
      if (!session.started) await restoreServiceRange();
    }
  });
}

interface Collected {
  populateS: number;
  createdS: number;
  idleRss: Record<'baseline' | 'scale', { rssMb: number; anonMb: number }>;
  steadyRss: Record<'baseline' | 'scale', { rssMb: number; anonMb: number }>;
  afterRss: Record<'baseline' | 'scale', { rssMb: number; anonMb: number }>;
  latencies: Record<'baseline' | 'scale', number[][]>;
  /** Per batch: [request kind, count, mean API-server latency ms] during the batch. */
  apiLatency: Record<'baseline' | 'scale', Array<Array<[string, number, number]>>>;
  resyncs: Resync[];
  counts: Record<'baseline' | 'scale', number>;
}

function summarize(opts: OperatorScaleOptions, c: Collected): Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'> {
  const lat = (w: 'baseline' | 'scale') => latencySummary(c.latencies[w].flat());
  const roundP99 = (w: 'baseline' | 'scale') => spread(c.latencies[w].map((l) => latencySummary(l).p99));
  const res = (w: 'baseline' | 'scale') => c.resyncs.filter((r) => r.which === w);
  const tables: Table[] = [
    {
      title: `Operator memory (RSS, anonymous in parentheses), MB`,
      columns: ['operator', 'backends owned', 'at start (empty)', `with its backends, steady`, 'after the resyncs'],
      rows: (['baseline', 'scale'] as const).map((w) => [
        w === 'scale' ? 'scale' : 'baseline (own namespace, no existing backends)',
        String(c.counts[w]),
        `${fmt(c.idleRss[w].rssMb, 0)} (${fmt(c.idleRss[w].anonMb, 0)})`,
        `${fmt(c.steadyRss[w].rssMb, 0)} (${fmt(c.steadyRss[w].anonMb, 0)})`,
        `${fmt(c.afterRss[w].rssMb, 0)} (${fmt(c.afterRss[w].anonMb, 0)})`,
      ]),
    },
    {
      title: `create→Constructed of new backends, ${opts.newPerRound} per batch at concurrency ${opts.concurrency}, batches alternating (${opts.rounds} each); ms`,
      columns: ['operator', 'p50', 'p90', 'p99 (pooled)', 'p99 per batch, median (min–max)', 'max'],
      rows: (['baseline', 'scale'] as const).map((w) => [
        `${w} (${w === 'scale' ? `${opts.existing} existing` : 'none existing'})`,
        fmt(lat(w).p50, 0),
        fmt(lat(w).p90, 0),
        fmt(lat(w).p99, 0),
        fmtSpread(roundP99(w), (v) => fmt(v, 0)),
        fmt(lat(w).max, 0),
      ]),
    },
    {
      title:
        'API-server latency of the writes on the path to Constructed during the batches (apiserver_request_duration_seconds, mean per request, median over batches), ms',
      columns: ['request', 'baseline batches', 'scale batches'],
      rows: ['POST sessionlivedbackends', 'POST pods', 'POST services', 'PATCH sessionlivedbackends/status', 'POST events'].map(
        (k) => [
          k,
          ...(['baseline', 'scale'] as const).map((w) =>
            fmt(median(c.apiLatency[w].map((batch) => batch.find(([x]) => x === k)?.[2] ?? NaN).filter(Number.isFinite)), 0),
          ),
        ],
      ),
    },
    {
      title:
        'Full resync: operator restarted; time to /readyz (caches listed) and to every backend reconciled once; median (min–max) of 2 restarts',
      columns: [
        'operator',
        'backends',
        '/readyz s',
        'all reconciled s',
        'peak RSS MB',
        'CPU s',
        'operator writes',
        'API-server writes',
      ],
      rows: (['baseline', 'scale'] as const).map((w) => [
        w,
        String(c.counts[w]),
        fmtSpread(spread(res(w).map((r) => r.readyS)), (v) => fmt(v, 2)),
        fmtSpread(spread(res(w).map((r) => r.reconciledS)), (v) => fmt(v, 2)),
        fmt(Math.max(...res(w).map((r) => r.peakRssMb)), 0),
        fmtSpread(spread(res(w).map((r) => r.cpuS)), (v) => fmt(v, 2)),
        res(w)
          .map((r) => String(r.operatorWrites))
          .join(', '),
        res(w)
          .map((r) => String(r.writes.reduce((a, [, v]) => a + v, 0)))
          .join(', '),
      ]),
    },
    {
      title: 'Populating',
      columns: ['what', 'value'],
      rows: [
        [`${opts.existing} creates (concurrency ${opts.concurrency * 2})`, `${fmt(c.createdS, 1)} s`],
        [
          `until all ${opts.existing} Constructed`,
          `${fmt(c.populateS, 1)} s (${fmt(opts.existing / c.populateS, 0)} backends/s)`,
        ],
      ],
    },
  ];
  const p99 = lat('scale').p99;
  const targets: TargetCheck[] = [
    {
      target: `create→Constructed p99 with ${opts.existing} existing backends (operator overhead)`,
      goal: '≤ 100 ms',
      measured: `${fmt(p99, 0)} ms (baseline, none existing: ${fmt(lat('baseline').p99, 0)} ms)`,
      met: p99 <= 100,
    },
  ];
  return {
    benchmark: 'operator-scale',
    settings: { ...opts, pods: 'unschedulable (nodeSelector spawner.dev/bench=no-such-node, startupTimeoutSeconds 86400)' },
    tables,
    targets,
    notes: [
      `The ${opts.existing} backends' Pods are unschedulable (no node matches their nodeSelector), so no processes run: the operator owns ${opts.existing} backends, Pods and Services in its caches and reconciles them all, but none goes past Constructed. The scheduler keeps retrying those Pods in the background.`,
      'create→Constructed is client-side: from sending the create to the first watch event showing a phase past Submitted.',
      '"all reconciled" is when spawner_reconcile_duration_seconds_count reaches the number of backends and spawner_operator_queue_depth is 0 (polled every 100 ms); a resync that finds nothing to do writes nothing, which the write columns show.',
    ],
    raw: c,
  };
}
