/**
 * Benchmark 2, spawn pipeline, on the e2e control plane with its node agent (Pods run as local
 * processes): N backends created through the REST API at a fixed concurrency, with the operator
 * and the API as host processes (as the e2e suite runs them; the chart would put the same
 * processes in Pods through the same agent), against the floor any operator stands on: the same
 * client creating N bare Pod + Service pairs directly, with the Pod spec the operator would make
 * (operator/src/desired-state.ts, minus ownerReferences).
 *
 * Rounds alternate Spawner and raw (order swapped every round), each in a fresh namespace that
 * is deleted, and its processes gone, before the next round starts. With several service modes
 * (`--service-mode=ClusterIP,None`) every round runs Spawner and raw in each of them, so, e.g.,
 * Service-less backends are measured beside ClusterIP ones and bare Pods in the same run. Latencies are client-side:
 * a watch on the backends (or Pods) stamps when each phase was first seen; the status's own
 * times have one-second resolution. The app's own start time comes from the agent's timings.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, PHASES, phaseOf, phaseRank } from '../../common/src/lifecycle';
import { ANNOTATION_TOKEN_HASH, SIDECAR_CONTAINER } from '../../common/src/constants';
import { BACKENDS, EVENTS, PODS, SERVICES } from '../../common/src/kube/resources';
import { loadOperatorConfig, type ServiceMode } from '../../operator/src/config';
import { buildPod, buildService } from '../../operator/src/desired-state';
import {
  agentPods,
  apiServerMetrics,
  meanWriteLatency,
  createNamespace,
  deleteNamespace,
  extendServiceRange,
  Follower,
  metricSum,
  pool,
  startComponent,
  TEST_IMAGE,
  withCluster,
  writeDelta,
  type ClusterSession,
} from './cluster';
import { memAvailableMb } from './proc';
import { sleep, waitUntil } from './processes';
import type { BenchResult, Table, TargetCheck } from './report';
import { fmt, fmtSpread, histogramQuantile, latencySummary, median, spread } from './stats';

export interface SpawnPipelineOptions {
  rounds: number;
  backends: number;
  concurrency: number;
  /** The operator's --concurrency (its default when undefined). */
  operatorConcurrency?: number;
  /** The operator's --service-mode for each pair of runs, applied to the raw baseline alike (None: raw Pods only). */
  serviceModes: ServiceMode[];
}

/** What the raw baseline creates in a service mode. */
const RAW_LABEL: Record<ServiceMode, string> = {
  ClusterIP: 'raw Pod + Service pairs',
  Headless: 'raw Pod + headless Service pairs',
  None: 'raw Pods',
};

const API_TOKEN = 'bench-api-token-0123456789abcdef';
const SIGNING_SECRET = 'bench-signing-secret-0123456789abcdef';

interface Item {
  sentAt: number;
  answeredAt?: number;
  seen: Partial<Record<string, number>>;
  /** app process spawned → Pod Ready (sidecar's probe passed: the app accepts connections). */
  appStartMs?: number;
}

interface RoundResult {
  kind: 'spawner' | 'raw';
  mode: ServiceMode;
  round: number;
  n: number;
  ready: number;
  /** First create sent → last Ready seen. */
  totalS: number;
  perSecond: number;
  createToConstructedMs?: number[];
  createToReadyMs: number[];
  createToReadyMinusAppMs: number[];
  appStartMs: number[];
  requestMs: number[];
  writes: Array<[string, number]>;
  writesTotal: number;
  /** [request kind, count, mean API-server latency ms] over the round. */
  latency: Array<[string, number, number]>;
  /** Writes made by Spawner's own components (operator from its metrics, API: one create each). */
  spawnerWrites?: { operator: Record<string, number>; api: number };
  events: Record<string, number>;
  /** From the operator's own histograms at the end of the round, ms: [p50, p99]. */
  operatorQueueWaitMs?: [number, number];
  reconcileMs?: [number, number];
}

async function waitForMemory(minMb: number): Promise<void> {
  await waitUntil(() => memAvailableMb() >= minMb, `${minMb} MB of available memory`, 120_000, 1000);
}

async function appTimings(session: ClusterSession, ns: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const p of await agentPods(session, ns)) {
    const app = p.containers.find((c) => c.name === 'app');
    const sidecar = p.containers.find((c) => c.name === SIDECAR_CONTAINER);
    const readyAt = sidecar?.readyAt ?? p.readyAt;
    if (app?.spawnedAt && readyAt) out.set(p.name, Date.parse(readyAt) - Date.parse(app.spawnedAt));
  }
  return out;
}

async function eventsByKind(session: ClusterSession, ns: string): Promise<Record<string, number>> {
  const list = await session.kube.list<{ metadata?: object; involvedObject?: { kind?: string }; reason?: string }>(EVENTS, ns);
  const out: Record<string, number> = {};
  for (const e of list.items) {
    const k = `${e.involvedObject?.kind ?? '?'} ${e.reason ?? ''}`.trim();
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

const operatorWrites = (metrics: string): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const verb of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    out[verb] = metricSum(metrics, 'spawner_kube_requests_total', (l) => l.includes(`verb="${verb}"`));
  }
  return out;
};

async function spawnerRound(
  session: ClusterSession,
  opts: SpawnPipelineOptions,
  round: number,
  mode: ServiceMode,
): Promise<RoundResult> {
  const ns = await createNamespace(session.kube, `spawn-${round}`);
  const operatorArgs = [
    `--namespaces=${ns}`,
    ...(opts.operatorConcurrency ? [`--concurrency=${opts.operatorConcurrency}`] : []),
    `--service-mode=${mode}`,
  ];
  const operator = await startComponent('operator', operatorArgs, session, { logName: `operator-spawn-${round}` });
  const api = await startComponent(
    'api',
    [`--namespace=${ns}`, '--entry-point-port=0', '--host=127.0.0.1', '--entry-point-host=127.0.0.1'],
    session,
    { env: { SPAWNER_API_TOKENS: API_TOKEN, SPAWNER_API_SIGNING_SECRET: SIGNING_SECRET }, logName: `api-spawn-${round}` },
  );
  const items = new Map<string, Item>();
  const early = new Map<string, Partial<Record<string, number>>>();
  const follower = new Follower<SessionLivedBackend>(session.kube, BACKENDS, ns, (b, at) => {
    const name = b.metadata.name as string;
    const seen = items.get(name)?.seen ?? early.get(name) ?? {};
    if (!items.has(name)) early.set(name, seen);
    const phase = phaseOf(b);
    for (const p of PHASES) if (!isTerminal(p) && phaseRank(p) <= phaseRank(phase) && seen[p] === undefined) seen[p] = at;
    if (phase === 'Failed') seen.Failed ??= at;
  });
  await follower.start();
  try {
    const before = await apiServerMetrics(session.kubeConfig);
    const opBefore = operatorWrites(await operator.metrics());
    const base = `http://127.0.0.1:${api.port}`;
    const requestMs: number[] = [];
    const t0 = Date.now();
    await pool(opts.backends, opts.concurrency, async () => {
      const sentAt = Date.now();
      const res = await fetch(`${base}/v1/backends`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 3600 }),
      });
      const body = (await res.json()) as { name?: string };
      const answeredAt = Date.now();
      if (res.status !== 201 || !body.name) throw new Error(`POST /v1/backends answered ${res.status}: ${JSON.stringify(body)}`);
      requestMs.push(answeredAt - sentAt);
      items.set(body.name, { sentAt, answeredAt, seen: early.get(body.name) ?? {} });
      early.delete(body.name);
    });
    process.stdout.write(
      `spawn-pipeline round ${round + 1} spawner: ${opts.backends} created in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    await waitUntil(
      () => [...items.values()].every((i) => i.seen.Ready !== undefined || i.seen.Failed !== undefined),
      `${opts.backends} backends to be Ready`,
      300_000,
      100,
    );
    const lastReady = Math.max(...[...items.values()].map((i) => i.seen.Ready ?? 0));
    await sleep(1500);
    const after = await apiServerMetrics(session.kubeConfig);
    const opText = await operator.metrics();
    const opAfter = operatorWrites(opText);
    const quantiles = (metric: string): [number, number] => [
      histogramQuantile(opText, metric, 0.5) * 1000,
      histogramQuantile(opText, metric, 0.99) * 1000,
    ];
    const timings = await appTimings(session, ns);
    const events = await eventsByKind(session, ns);
    const list = [...items.entries()];
    const ready = list.filter(([, i]) => i.seen.Ready !== undefined);
    const writes = writeDelta(before.requests, after.requests);
    const latency = meanWriteLatency(before, after);
    const opDelta = Object.fromEntries(Object.entries(opAfter).map(([k, v]) => [k, v - (opBefore[k] ?? 0)]));
    return {
      kind: 'spawner',
      mode,
      round,
      n: opts.backends,
      ready: ready.length,
      totalS: (lastReady - t0) / 1000,
      perSecond: ready.length / ((lastReady - t0) / 1000),
      createToConstructedMs: list.filter(([, i]) => i.seen.Constructed).map(([, i]) => (i.seen.Constructed as number) - i.sentAt),
      createToReadyMs: ready.map(([, i]) => (i.seen.Ready as number) - i.sentAt),
      createToReadyMinusAppMs: ready
        .filter(([n]) => timings.has(n))
        .map(([n, i]) => (i.seen.Ready as number) - i.sentAt - (timings.get(n) as number)),
      appStartMs: [...timings.values()],
      requestMs,
      writes,
      writesTotal: writes.reduce((a, [, v]) => a + v, 0),
      latency,
      spawnerWrites: { operator: opDelta, api: opts.backends },
      events,
      operatorQueueWaitMs: quantiles('spawner_operator_queue_wait_seconds'),
      reconcileMs: quantiles('spawner_reconcile_duration_seconds'),
    };
  } finally {
    follower.stop();
    await api.child.stop();
    await operator.child.stop();
    await deleteNamespace(session.kube, ns, true);
  }
}

async function rawRound(
  session: ClusterSession,
  opts: SpawnPipelineOptions,
  round: number,
  mode: ServiceMode,
): Promise<RoundResult> {
  const ns = await createNamespace(session.kube, `raw-${round}`);
  const cfg = loadOperatorConfig([], {});
  const items = new Map<string, Item>();
  const readyAt = new Map<string, number>();
  const follower = new Follower<V1Pod & { metadata: object }>(session.kube, PODS, ns, (p, at) => {
    const name = p.metadata?.name as string;
    if (!readyAt.has(name) && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) readyAt.set(name, at);
  });
  await follower.start();
  try {
    const before = await apiServerMetrics(session.kubeConfig);
    const requestMs: number[] = [];
    const t0 = Date.now();
    await pool(opts.backends, opts.concurrency, async (i) => {
      const name = `raw-${i}-${randomBytes(3).toString('hex')}`;
      // What the operator would create for a backend made by the API (token hash included).
      const backend = newBackend(
        name,
        ns,
        { template: { containers: [{ name: 'app', image: TEST_IMAGE }] }, httpPort: 8080, gracePeriodSeconds: 3600 },
        { uid: 'none', annotations: { [ANNOTATION_TOKEN_HASH]: createHash('sha256').update(name).digest('hex') } },
      );
      const pod = buildPod(backend, cfg);
      const svc = mode === 'None' ? undefined : buildService(backend, { serviceMode: mode });
      delete pod.metadata?.ownerReferences;
      delete svc?.metadata?.ownerReferences;
      const sentAt = Date.now();
      items.set(name, { sentAt, seen: {} });
      await Promise.all([session.kube.create(PODS, ns, pod), ...(svc ? [session.kube.create(SERVICES, ns, svc)] : [])]);
      requestMs.push(Date.now() - sentAt);
    });
    process.stdout.write(
      `spawn-pipeline round ${round + 1} ${RAW_LABEL[mode]}: ${opts.backends} created in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    await waitUntil(() => readyAt.size >= opts.backends, `${opts.backends} Pods to be Ready`, 300_000, 100);
    const lastReady = Math.max(...readyAt.values());
    await sleep(1500);
    const after = await apiServerMetrics(session.kubeConfig);
    const timings = await appTimings(session, ns);
    const events = await eventsByKind(session, ns);
    const writes = writeDelta(before.requests, after.requests);
    const latency = meanWriteLatency(before, after);
    const ready = [...items.entries()].filter(([n]) => readyAt.has(n));
    return {
      kind: 'raw',
      mode,
      round,
      n: opts.backends,
      ready: ready.length,
      totalS: (lastReady - t0) / 1000,
      perSecond: ready.length / ((lastReady - t0) / 1000),
      createToReadyMs: ready.map(([n, i]) => (readyAt.get(n) as number) - i.sentAt),
      createToReadyMinusAppMs: ready
        .filter(([n]) => timings.has(n))
        .map(([n, i]) => (readyAt.get(n) as number) - i.sentAt - (timings.get(n) as number)),
      appStartMs: [...timings.values()],
      requestMs,
      writes,
      writesTotal: writes.reduce((a, [, v]) => a + v, 0),
      latency,
      events,
    };
  } finally {
    follower.stop();
    await deleteNamespace(session.kube, ns, true);
  }
}

export async function spawnPipeline(
  opts: SpawnPipelineOptions,
): Promise<Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'>> {
  const results = await withCluster('spawn-pipeline', async (session) => {
    // Room for more than ~250 Services (the e2e cluster's own range is a /24).
    const restoreServiceRange = await extendServiceRange(session.kube);
    const out: RoundResult[] = [];
    const runs = opts.serviceModes.flatMap((mode) => (['spawner', 'raw'] as const).map((kind) => ({ kind, mode })));
    for (let round = 0; round < opts.rounds; round++) {
      // Each round in the other order, so neither side always runs on a fresher machine.
      for (const { kind, mode } of round % 2 === 0 ? runs : [...runs].reverse()) {
        // 2 × N Node.js processes (~20 MB each of their own, the rest shared) must fit.
        await waitForMemory(Math.max(4000, opts.backends * 40));
        const r =
          kind === 'spawner' ? await spawnerRound(session, opts, round, mode) : await rawRound(session, opts, round, mode);
        out.push(r);
        process.stdout.write(
          `spawn-pipeline round ${round + 1}/${opts.rounds} ${labelOf(r).padEnd(34)} ${r.ready}/${r.n} Ready in ${fmt(r.totalS, 1)} s (${fmt(r.perSecond, 1)}/s), ${fmt(r.writesTotal / r.n, 1)} writes each\n`,
        );
      }
    }
    if (!session.started) await restoreServiceRange();
    return out;
  });
  return summarize(opts, results);
}

/** A run's short name in tables: Spawner in a service mode, or that mode's raw baseline. */
const labelOf = (r: Pick<RoundResult, 'kind' | 'mode'>): string =>
  r.kind === 'spawner' ? `Spawner, serviceMode ${r.mode}` : RAW_LABEL[r.mode];

function summarize(opts: SpawnPipelineOptions, rounds: RoundResult[]): Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'> {
  // One group per (kind, mode), Spawner before its raw baseline, modes in the order given.
  const groups = opts.serviceModes.flatMap((mode) =>
    (['spawner', 'raw'] as const).map((kind) => ({
      kind,
      mode,
      label: labelOf({ kind, mode }),
      rs: rounds.filter((r) => r.kind === kind && r.mode === mode),
    })),
  );
  const spawnerGroups = groups.filter((g) => g.kind === 'spawner');
  const sp = rounds.filter((r) => r.kind === 'spawner');
  const pooled = (rs: RoundResult[], f: (r: RoundResult) => number[] | undefined) =>
    latencySummary(rs.flatMap((r) => f(r) ?? []));
  const ms = (v: number) => fmt(v, 0);
  const row = (label: string, rs: RoundResult[]): string[] => {
    const c2c = pooled(rs, (r) => r.createToConstructedMs);
    const c2r = pooled(rs, (r) => r.createToReadyMs);
    const minus = pooled(rs, (r) => r.createToReadyMinusAppMs);
    const app = pooled(rs, (r) => r.appStartMs);
    const req = pooled(rs, (r) => r.requestMs);
    return [
      label,
      fmtSpread(spread(rs.map((r) => r.totalS)), (v) => fmt(v, 1)),
      fmtSpread(spread(rs.map((r) => r.perSecond)), (v) => fmt(v, 1)),
      c2c.n ? `${ms(c2c.p50)} / ${ms(c2c.p99)}` : '–',
      `${ms(c2r.p50)} / ${ms(c2r.p99)}`,
      `${ms(app.p50)} / ${ms(app.p99)}`,
      `${ms(minus.p50)} / ${ms(minus.p99)}`,
      `${ms(req.p50)} / ${ms(req.p99)}`,
      fmtSpread(spread(rs.map((r) => r.writesTotal / r.n)), (v) => fmt(v, 1)),
    ];
  };
  /** Spawner's rate over its raw baseline's, same round and mode. */
  const ratiosOf = (mode: ServiceMode) =>
    spread(
      sp
        .filter((s) => s.mode === mode)
        .map((s) => {
          const r = rounds.find((x) => x.kind === 'raw' && x.mode === mode && x.round === s.round);
          return r ? s.perSecond / r.perSecond : NaN;
        }),
    );
  const tables: Table[] = [
    {
      title: `${opts.backends} at concurrency ${opts.concurrency}; times median (min–max) over ${opts.rounds} rounds, latencies p50 / p99 in ms pooled over rounds`,
      columns: [
        'pipeline',
        'all Ready, s',
        'per second',
        'create→Constructed',
        'create→Ready',
        'app start (spawned→Ready)',
        'create→Ready minus app start',
        'create request',
        'API-server writes each',
      ],
      rows: groups.map((g) =>
        row(g.kind === 'spawner' ? `${g.label}: POST /v1/backends → Ready` : `${g.label} → Pod Ready`, g.rs),
      ),
    },
  ];
  // Writes by resource, per backend (median over rounds).
  const keys = [...new Set(rounds.flatMap((r) => r.writes.map(([k]) => k)))];
  const per = (rs: RoundResult[], k: string) => median(rs.map((r) => (r.writes.find(([x]) => x === k)?.[1] ?? 0) / r.n));
  tables.push({
    title:
      'API-server write requests per backend (per Pod or pair for raw) by verb and resource, from apiserver_request_total deltas, median over rounds',
    columns: ['request', ...groups.map((g) => g.label)],
    rows: keys
      .map((k) => [k, ...groups.map((g) => per(g.rs, k))] as const)
      .sort((a, b) => (b.slice(1) as number[]).reduce((x, y) => x + y, 0) - (a.slice(1) as number[]).reduce((x, y) => x + y, 0))
      .map(([k, ...v]) => [k, ...v.map((x) => fmt(x, 2))]),
  });
  const opW = (rs: RoundResult[], verb: string) => median(rs.map((r) => (r.spawnerWrites?.operator[verb] ?? 0) / r.n));
  const opTotalOf = (rs: RoundResult[]) => opW(rs, 'POST') + opW(rs, 'PUT') + opW(rs, 'PATCH') + opW(rs, 'DELETE');
  tables.push({
    title: "Spawner's own writes per backend (operator: its spawner_kube_requests_total; API: its one create)",
    columns: ['writer', 'POST', 'PATCH', 'PUT', 'DELETE', 'total'],
    rows: spawnerGroups.flatMap((g) => [
      [
        `operator (serviceMode ${g.mode})`,
        fmt(opW(g.rs, 'POST'), 2),
        fmt(opW(g.rs, 'PATCH'), 2),
        fmt(opW(g.rs, 'PUT'), 2),
        fmt(opW(g.rs, 'DELETE'), 2),
        fmt(opTotalOf(g.rs), 2),
      ],
      ['API', '1.00', '0', '0', '0', '1.00'],
      [`Spawner total (serviceMode ${g.mode})`, '', '', '', '', fmt(opTotalOf(g.rs) + 1, 2)],
    ]),
  });
  const lat = (rs: RoundResult[], k: string) =>
    median(rs.map((r) => r.latency.find(([x]) => x === k)?.[2] ?? NaN).filter(Number.isFinite));
  tables.push({
    title:
      'Mean API-server latency per write request over the round (apiserver_request_duration_seconds), ms, median over rounds',
    columns: ['request', ...groups.map((g) => g.label)],
    rows: [
      'POST sessionlivedbackends',
      'POST pods',
      'POST services',
      'PATCH sessionlivedbackends/status',
      'PATCH sessionlivedbackends',
      'POST events',
      'PATCH pods/status',
      'POST pods/binding',
    ].map((k) => [k, ...groups.map((g) => fmt(lat(g.rs, k), 0))]),
  });
  const q = (rs: RoundResult[], f: (r: RoundResult) => [number, number] | undefined, i: 0 | 1) =>
    fmtSpread(spread(rs.map((r) => f(r)?.[i] ?? NaN).filter(Number.isFinite)), (v) => fmt(v, 1));
  tables.push({
    title:
      "The operator's own latency, from its histograms (every reconcile of the round, not only the first of each backend), ms, median (min–max) over rounds",
    columns: ['what', 'p50', 'p99'],
    rows: spawnerGroups.flatMap((g) => [
      [
        `queue wait (event seen → reconcile starts), serviceMode ${g.mode}`,
        q(g.rs, (r) => r.operatorQueueWaitMs, 0),
        q(g.rs, (r) => r.operatorQueueWaitMs, 1),
      ],
      [
        `reconcile (mostly waiting on the API server), serviceMode ${g.mode}`,
        q(g.rs, (r) => r.reconcileMs, 0),
        q(g.rs, (r) => r.reconcileMs, 1),
      ],
    ]),
  });
  const eventKeys = [...new Set(rounds.flatMap((r) => Object.keys(r.events)))].sort();
  tables.push({
    title: 'Events in the namespace per backend (involved object, reason), median over rounds',
    columns: ['event', ...groups.map((g) => g.label)],
    rows: eventKeys.map((k) => [k, ...groups.map((g) => fmt(median(g.rs.map((r) => (r.events[k] ?? 0) / r.n)), 2))]),
  });
  tables.push({
    title: "Ratio: Spawner backends/s over its raw baseline's per second (same service mode), same-round pairs",
    columns: ['ratio', 'median (min–max)'],
    rows: spawnerGroups.map((g) => [`${g.label} / ${RAW_LABEL[g.mode]}`, fmtSpread(ratiosOf(g.mode), (v) => fmt(v, 2))]),
  });
  const targets: TargetCheck[] = spawnerGroups.flatMap((g): TargetCheck[] => {
    const ratios = ratiosOf(g.mode);
    const c2c = pooled(g.rs, (r) => r.createToConstructedMs);
    const totalWrites = median(g.rs.map((r) => r.writesTotal / r.n));
    const raw = groups.find((x) => x.kind === 'raw' && x.mode === g.mode)!.rs;
    const queueP99 = median(g.rs.map((r) => r.operatorQueueWaitMs?.[1] ?? NaN));
    const suffix = opts.serviceModes.length > 1 ? ` (serviceMode ${g.mode})` : '';
    return [
      {
        target: `spawn rate vs ${RAW_LABEL[g.mode]} rate${suffix}`,
        goal: '≥ 0.5×',
        measured: `${fmt(ratios.median, 2)}×`,
        met: ratios.median >= 0.5,
      },
      {
        target: `API-server writes per backend to Ready (all writers)${suffix}`,
        goal: '≤ 6',
        measured: `${fmt(totalWrites, 1)} (Spawner's own: ${fmt(opTotalOf(g.rs) + 1, 1)}; raw: ${fmt(median(raw.map((r) => r.writesTotal / r.n)), 1)})`,
        met: totalWrites <= 6,
      },
      {
        target: `operator overhead create→Constructed p99 at ${opts.concurrency} concurrent spawns${suffix}`,
        goal: '≤ 100 ms',
        measured: `${fmt(c2c.p99, 0)} ms (p50 ${fmt(c2c.p50, 0)})`,
        met: c2c.p99 <= 100,
      },
      {
        target: `operator's own queue wait p99 at ${opts.concurrency} concurrent spawns (its share of create→Constructed)${suffix}`,
        goal: '≤ 100 ms',
        measured: `${fmt(queueP99, 1)} ms`,
        met: queueP99 <= 100,
      },
    ];
  });
  return {
    benchmark: 'spawn-pipeline',
    settings: {
      ...opts,
      image: TEST_IMAGE,
      services: opts.serviceModes
        .map((m) =>
          m === 'None'
            ? 'none (serviceMode None), Spawner and raw'
            : m === 'Headless'
              ? 'headless (clusterIP: None), Spawner and raw'
              : 'with a cluster IP, Spawner and raw',
        )
        .join('; '),
      components: 'operator and API as host processes (dist/), Pods through the e2e node agent',
    },
    tables,
    targets,
    notes: [
      'Control plane: the e2e cluster (kube-apiserver, etcd, controller manager, scheduler) and the test node agent, which runs each Pod as local processes (app + sidecar: two Node.js processes per backend) on the same 2 vCPUs as everything else. Starting 400 Node.js processes saturates both cores; the app start time is reported separately and subtracted.',
      'create→X is measured client-side: from sending the create request to the first watch event showing phase X (Pod Ready condition for raw). "app start" is the agent\'s app container spawnedAt → sidecar readiness (its probe passes once the app accepts connections; the probe period is 1 s).',
      "Writes are every write request the API server counted in the window (first create → all Ready + 1.5 s), whoever made it: scheduler bindings, agent status updates, endpoint controllers, Events and leases included; background writes (leases) add a little. \"Spawner's own\" counts the operator's and the API's requests only.",
    ],
    raw: rounds,
  };
}
