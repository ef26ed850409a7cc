/**
 * Warm pools (issue 16) on the e2e control plane with its node agent: create→Ready of backends
 * claimed from a SessionBackendPool beside cold creates of the same template, in one run.
 *
 *   1. one at a time (after one warm claim and one cold create of warm-up, reported apart):
 *      blocks of warm claims alternating with blocks of cold creates, so both
 *      share the machine's state; the pool holds a Pod for every one-at-a-time claim, and after
 *      each claim the bench waits for its refill (a new Pod within 2 s, then Ready) or notes that
 *      none came; API-server writes per create from apiserver_request_total deltas per block;
 *   2. N concurrent warm claims against a pool scaled to N;
 *   3. a steady rate of claims (e.g. 2/s for 30 s) against a small pool that refills as it can:
 *      the hit ratio (warm / all).
 *
 * create→Ready is measured twice: as a client sees it (POST /v1/backends sent → the API's
 * /wait long poll answers Ready), and from the backend's own record (POST sent → the Ready time
 * the operator stamped into status.transitions, in ms; same host, same clock). The operator runs
 * with --service-mode=None, as pool Pods have no Service, for warm and cold alike.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { POOL_API_VERSION, POOL_KIND } from '../../common/src/constants';
import type { SessionBackendPool, SessionLivedBackend } from '../../common/src/backend';
import { phaseTime } from '../../common/src/lifecycle';
import { BACKENDS, PODS, POOLS } from '../../common/src/kube/resources';
import {
  apiServerMetrics,
  createNamespace,
  deleteNamespace,
  metricSum,
  startComponent,
  TEST_IMAGE,
  withCluster,
  writeDelta,
  type ClusterSession,
  type Component,
} from './cluster';
import { sleep, waitUntil } from './processes';
import type { BenchResult, Table, TargetCheck } from './report';
import { fmt, quantile } from './stats';

export interface WarmPoolOptions {
  /** Rounds of one-at-a-time blocks: warm then cold, the order swapped every round. */
  rounds: number;
  warmPerRound: number;
  coldPerRound: number;
  /** Unclaimed Pods kept for the steady-rate phase (the one-at-a-time phase keeps one per claim). */
  poolSize: number;
  /** Claims at once in the concurrent phase (the pool is scaled to this many first). */
  concurrent: number;
  /** Claims per second in the steady-rate phase, and for how long. */
  steadyRate: number;
  steadySeconds: number;
}

const API_TOKEN = 'bench-api-token-0123456789abcdef';
const SIGNING_SECRET = 'bench-signing-secret-0123456789abcdef';
const POOL = 'bench';
const TEMPLATE = { containers: [{ name: 'app', image: TEST_IMAGE }] };
// No sweeper runs here; a long grace keeps every backend Ready until its phase is over.
const GRACE = 3600;

type Phase = 'warmup' | 'serial' | 'concurrent' | 'steady';

interface Sample {
  phase: Phase;
  /** What was asked for: a claim from the pool, or a cold create without one. */
  asked: 'pool' | 'cold';
  name: string;
  sentAt: number;
  answeredAt: number;
  /** The API's /wait answered Ready. */
  apiReadyAt?: number;
  /** The Ready time in status.transitions. */
  statusReadyAt?: number;
  launch?: string;
  launchReason?: string;
}

interface Block {
  asked: 'pool' | 'cold';
  n: number;
  writes: Array<[string, number]>;
}

interface Raw {
  samples: Sample[];
  blocks: Block[];
  /** The operator's write requests over the one-at-a-time warm blocks. */
  operatorWritesWarm: number;
  steady: { claims: Record<string, number>; conflicts: number; wallS: number };
  /** After each one-at-a-time warm claim: whether a refill Pod appeared within 2 s, and how long until the pool was full. */
  refills: Array<{ seen: boolean; fullMs?: number }>;
  concurrentConflicts: number;
}

/** Every write request the operator made (its own count: Events, claims, refills, status). */
const operatorWrites = (metrics: string): number =>
  metricSum(metrics, 'spawner_kube_requests_total', (l) => /verb="(POST|PUT|PATCH|DELETE)"/.test(l));

const poolClaims = (metrics: string): Record<string, number> =>
  Object.fromEntries(
    ['warm', 'cold', 'rejected'].map((result) => [
      result,
      metricSum(metrics, 'spawner_pool_claims_total', (l) => l.includes(`result="${result}"`)),
    ]),
  );

const conflicts = (metrics: string): number => metricSum(metrics, 'spawner_pool_claim_conflicts_total');

class Run {
  readonly samples: Sample[] = [];
  private readonly base: string;
  private readonly headers = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

  constructor(
    private readonly session: ClusterSession,
    private readonly ns: string,
    api: Component,
    readonly operator: Component,
  ) {
    this.base = `http://127.0.0.1:${api.port}`;
  }

  /** POST, then the API's long poll until Ready: one backend as a client creates it. */
  async create(phase: Phase, asked: 'pool' | 'cold'): Promise<Sample> {
    const body = asked === 'pool' ? { pool: POOL, gracePeriodSeconds: GRACE } : { template: TEMPLATE, gracePeriodSeconds: GRACE };
    const sentAt = Date.now();
    const res = await fetch(`${this.base}/v1/backends`, { method: 'POST', headers: this.headers, body: JSON.stringify(body) });
    const created = (await res.json()) as { name?: string };
    const answeredAt = Date.now();
    if (res.status !== 201 || !created.name)
      throw new Error(`POST /v1/backends answered ${res.status}: ${JSON.stringify(created)}`);
    const sample: Sample = { phase, asked, name: created.name, sentAt, answeredAt };
    this.samples.push(sample);
    const waited = await fetch(`${this.base}/v1/backends/${created.name}/wait?timeoutSeconds=120`, { headers: this.headers });
    const at = Date.now();
    if (waited.status === 200 && ((await waited.json()) as { phase?: string }).phase === 'Ready') sample.apiReadyAt = at;
    return sample;
  }

  /** Fills in what the backends recorded about themselves (launch, Ready time). */
  async readStatuses(): Promise<void> {
    const list = await this.session.kube.list<SessionLivedBackend>(BACKENDS, this.ns);
    const byName = new Map(list.items.map((b) => [b.metadata.name as string, b]));
    for (const s of this.samples) {
      const b = byName.get(s.name);
      if (!b || s.launch !== undefined) continue;
      s.statusReadyAt = phaseTime(b, 'Ready');
      s.launch = b.status?.launch ?? 'Cold';
      s.launchReason = b.status?.launchReason;
    }
  }

  async scalePool(replicas: number): Promise<void> {
    await this.session.kube.patch(POOLS, this.ns, POOL, { spec: { replicas } }, 'merge');
  }

  /** The pool's Pods that are not being deleted, and how many of them are Ready. */
  private async poolPods(): Promise<{ pool?: SessionBackendPool; count: number; ready: number; names: string[] }> {
    const pool = await this.session.kube.get<SessionBackendPool>(POOLS, this.ns, POOL);
    const pods = await this.session.kube.list<V1Pod & { metadata: object }>(PODS, this.ns);
    const own = pods.items.filter(
      (p) =>
        !p.metadata?.deletionTimestamp && p.metadata?.ownerReferences?.some((r) => r.controller && r.uid === pool?.metadata.uid),
    );
    const ready = own.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    return { pool, count: own.length, ready: ready.length, names: own.map((p) => `${p.metadata?.name} ${p.status?.phase}`) };
  }

  /**
   * After a claim: the operator creates the refill Pod at once, so one not there within 2 s is
   * not coming (and the next claims find the pool smaller); one that came is waited for until Ready.
   */
  async refill(replicas: number): Promise<{ seen: boolean; fullMs?: number }> {
    const t0 = Date.now();
    const seen = await waitUntil(async () => (await this.poolPods()).count >= replicas, 'a refill Pod', 2000, 50).then(
      () => true,
      () => false,
    );
    if (!seen) return { seen };
    await this.poolFull(replicas);
    return { seen, fullMs: Date.now() - t0 };
  }

  /** Until the pool holds `replicas` Ready Pods and its status agrees. */
  async poolFull(replicas: number, timeoutMs = 120_000): Promise<void> {
    let seen = 'nothing yet';
    await waitUntil(
      async () => {
        // The status is the operator's last count; the Pods themselves show a claim at once.
        const { pool, ready, names } = await this.poolPods();
        seen = `status ${JSON.stringify(pool?.status ?? {})}; Pods ${names.join(', ')}`;
        return pool?.status?.readyReplicas === replicas && pool.status.replicas === replicas && ready === replicas;
      },
      `pool ${POOL} to hold ${replicas} ready Pods`,
      timeoutMs,
      50,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${seen}`);
    });
  }

  /** Deletes every backend and waits until their Pods are gone, so the next phase starts quiet. */
  async clearBackends(): Promise<void> {
    await this.readStatuses();
    const list = await this.session.kube.list<SessionLivedBackend>(BACKENDS, this.ns);
    await Promise.all(
      list.items.map((b) =>
        this.session.kube.delete(BACKENDS, this.ns, b.metadata.name as string, { propagationPolicy: 'Background' }),
      ),
    );
    await waitUntil(
      async () => {
        const pods = await this.session.kube.list<V1Pod & { metadata: object }>(PODS, this.ns);
        return pods.items.every((p) => !p.metadata?.ownerReferences?.some((r) => r.controller && r.kind !== POOL_KIND));
      },
      'the backends and their Pods to be gone',
      180_000,
      500,
    );
  }
}

async function oneAtATime(
  run: Run,
  session: ClusterSession,
  opts: WarmPoolOptions,
): Promise<{ blocks: Block[]; opWarm: number; refills: Raw['refills'] }> {
  const blocks: Block[] = [];
  let opWarm = 0;
  const refills: Raw['refills'] = [];
  const replicas = opts.rounds * opts.warmPerRound;
  await run.poolFull(replicas, 300_000);
  // The first request of each kind after the components start pays their warm-up (connections,
  // compiled code paths): made first, reported apart, counted nowhere else.
  await run.create('warmup', 'pool');
  await run.refill(replicas);
  await run.create('warmup', 'cold');
  for (let round = 0; round < opts.rounds; round++) {
    const order: Array<'pool' | 'cold'> = round % 2 === 0 ? ['pool', 'cold'] : ['cold', 'pool'];
    for (const asked of order) {
      const n = asked === 'pool' ? opts.warmPerRound : opts.coldPerRound;
      const before = await apiServerMetrics(session.kubeConfig);
      const opBefore = operatorWrites(await run.operator.metrics());
      for (let i = 0; i < n; i++) {
        await run.create('serial', asked);
        // Each claim finds the pool as it stands between sessions: nothing starting.
        if (asked === 'pool') refills.push(await run.refill(replicas));
      }
      // The Events the operator records off the reconcile's path.
      await sleep(1000);
      const after = await apiServerMetrics(session.kubeConfig);
      blocks.push({ asked, n, writes: writeDelta(before.requests, after.requests) });
      if (asked === 'pool') opWarm += operatorWrites(await run.operator.metrics()) - opBefore;
      process.stdout.write(
        `warm-pool round ${round + 1}/${opts.rounds}: ${n} ${asked === 'pool' ? 'warm claims' : 'cold creates'} one at a time\n`,
      );
    }
  }
  return { blocks, opWarm, refills };
}

async function concurrentClaims(run: Run, opts: WarmPoolOptions): Promise<number> {
  await run.scalePool(opts.concurrent);
  await run.poolFull(opts.concurrent, 300_000);
  // The last Pods' processes have just started: let the machine settle as a pool between bursts would.
  await sleep(3000);
  const before = conflicts(await run.operator.metrics());
  await Promise.all(Array.from({ length: opts.concurrent }, () => run.create('concurrent', 'pool')));
  const delta = conflicts(await run.operator.metrics()) - before;
  process.stdout.write(`warm-pool: ${opts.concurrent} concurrent claims\n`);
  return delta;
}

async function steadyRate(run: Run, opts: WarmPoolOptions): Promise<Raw['steady']> {
  await run.scalePool(opts.poolSize);
  await run.poolFull(opts.poolSize, 300_000);
  await sleep(3000);
  const text = await run.operator.metrics();
  const claimsBefore = poolClaims(text);
  const conflictsBefore = conflicts(text);
  const n = Math.round(opts.steadyRate * opts.steadySeconds);
  const t0 = Date.now();
  const pending: Array<Promise<Sample>> = [];
  for (let i = 0; i < n; i++) {
    // On a fixed schedule, whatever the earlier claims are doing: arrivals do not wait for Ready.
    await sleep(Math.max(0, t0 + (i * 1000) / opts.steadyRate - Date.now()));
    pending.push(run.create('steady', 'pool'));
  }
  await Promise.all(pending);
  const wallS = (Date.now() - t0) / 1000;
  const after = await run.operator.metrics();
  const claimsAfter = poolClaims(after);
  process.stdout.write(`warm-pool: ${n} claims at ${opts.steadyRate}/s\n`);
  return {
    claims: Object.fromEntries(Object.entries(claimsAfter).map(([k, v]) => [k, v - (claimsBefore[k] ?? 0)])),
    conflicts: conflicts(after) - conflictsBefore,
    wallS,
  };
}

export async function warmPool(opts: WarmPoolOptions): Promise<Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'>> {
  const raw = await withCluster('warm-pool', async (session): Promise<Raw> => {
    const ns = await createNamespace(session.kube, 'pool');
    const operator = await startComponent('operator', [`--namespaces=${ns}`, '--service-mode=None'], session, {
      logName: 'operator-warm-pool',
    });
    const api = await startComponent(
      'api',
      [`--namespace=${ns}`, '--entry-point-port=0', '--host=127.0.0.1', '--entry-point-host=127.0.0.1'],
      session,
      { env: { SPAWNER_API_TOKENS: API_TOKEN, SPAWNER_API_SIGNING_SECRET: SIGNING_SECRET }, logName: 'api-warm-pool' },
    );
    try {
      await session.kube.create<SessionBackendPool>(POOLS, ns, {
        apiVersion: POOL_API_VERSION,
        kind: POOL_KIND,
        metadata: { name: POOL, namespace: ns },
        spec: { template: TEMPLATE, replicas: opts.rounds * opts.warmPerRound, whenEmpty: 'ColdStart' },
      });
      const run = new Run(session, ns, api, operator);
      const { blocks, opWarm, refills } = await oneAtATime(run, session, opts);
      await run.clearBackends();
      const concurrentConflicts = await concurrentClaims(run, opts);
      await run.clearBackends();
      const steady = await steadyRate(run, opts);
      await run.readStatuses();
      return { samples: run.samples, blocks, operatorWritesWarm: opWarm, steady, concurrentConflicts, refills };
    } finally {
      await api.child.stop();
      await operator.child.stop();
      await deleteNamespace(session.kube, ns, true);
    }
  });
  return summarize(opts, raw);
}

/** Writes on a warm claim's own path (create, claim patch, status, labels), apart from the pool's refill and Events. */
const onClaimPath = (key: string): boolean => key.split(' ')[1].startsWith('sessionlivedbackends') || key === 'PATCH pods';
const isEvent = (key: string): boolean => key.split(' ')[1].startsWith('events');
/** Writes of a refill: the new Pod, its binding and status, the pool's status. */
const isRefill = (key: string): boolean =>
  ['POST pods', 'POST pods/binding'].includes(key) ||
  key.split(' ')[1] === 'pods/status' ||
  key.split(' ')[1].startsWith('sessionbackendpools');

function summarize(opts: WarmPoolOptions, raw: Raw): Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'> {
  const ms = (v: number): string => fmt(v, 0);
  const api = (s: Sample): number | undefined => (s.apiReadyAt !== undefined ? s.apiReadyAt - s.sentAt : undefined);
  const rec = (s: Sample): number | undefined => (s.statusReadyAt !== undefined ? s.statusReadyAt - s.sentAt : undefined);
  const values = (ss: Sample[], f: (s: Sample) => number | undefined): number[] =>
    ss.map(f).filter((v): v is number => v !== undefined);
  const pick = (phase: Phase, launch?: string) =>
    raw.samples.filter((s) => s.phase === phase && (launch === undefined || s.launch === launch));
  const q = (vs: number[], p: number) => quantile(vs, p);
  const cells = (vs: number[]): string[] => [
    String(vs.length),
    ms(q(vs, 0.5)),
    ms(q(vs, 0.95)),
    ms(q(vs, 0.99)),
    ms(Math.max(...vs)),
  ];

  const serialWarm = raw.samples.filter((s) => s.phase === 'serial' && s.asked === 'pool');
  const serialCold = raw.samples.filter((s) => s.phase === 'serial' && s.asked === 'cold');
  const concurrent = pick('concurrent');
  const steady = pick('steady');
  const groups: Array<[string, Sample[]]> = [
    ['warm claims, one at a time', serialWarm],
    ['cold creates (same template, no pool), one at a time', serialCold],
    [`warm claims, ${opts.concurrent} at once`, concurrent],
    [`steady ${opts.steadyRate}/s against a pool of ${opts.poolSize}: launched warm`, pick('steady', 'Warm')],
    [`steady ${opts.steadyRate}/s: launched cold (pool empty)`, pick('steady', 'Cold')],
  ];
  const warmup = (asked: 'pool' | 'cold'): Sample[] => pick('warmup').filter((s) => s.asked === asked);
  if (warmup('pool').length > 0) groups.push(['warm-up: the first warm claim (counted nowhere else)', warmup('pool')]);
  if (warmup('cold').length > 0) groups.push(['warm-up: the first cold create (counted nowhere else)', warmup('cold')]);
  const latencyRows = groups.flatMap(([label, ss]) => [
    [`${label}: client (POST → /wait Ready)`, ...cells(values(ss, api))],
    [`${label}: status (POST → Ready in status.transitions)`, ...cells(values(ss, rec))],
  ]);
  const postRows = groups.map(([label, ss]) => [label, ...cells(ss.map((s) => s.answeredAt - s.sentAt))]);

  const ratio = (f: (s: Sample) => number | undefined, p: number): number =>
    q(values(serialWarm, f), p) / q(values(serialCold, f), p);

  // Writes per create by request, summed over the blocks of each kind.
  const perCreate = (asked: 'pool' | 'cold'): Map<string, number> => {
    const bs = raw.blocks.filter((b) => b.asked === asked);
    const n = bs.reduce((a, b) => a + b.n, 0);
    const out = new Map<string, number>();
    for (const b of bs) for (const [k, v] of b.writes) out.set(k, (out.get(k) ?? 0) + v / n);
    return out;
  };
  const warmW = perCreate('pool');
  const coldW = perCreate('cold');
  const keys = [...new Set([...warmW.keys(), ...coldW.keys()])].sort(
    (a, b) => (warmW.get(b) ?? 0) + (coldW.get(b) ?? 0) - (warmW.get(a) ?? 0) - (coldW.get(a) ?? 0),
  );
  const classOf = (k: string): string =>
    isEvent(k) ? 'Event' : onClaimPath(k) ? 'on the create path' : isRefill(k) ? 'refill (warm) / Pod start (cold)' : 'other';
  const sumWhere = (w: Map<string, number>, f: (k: string) => boolean): number =>
    [...w.entries()].filter(([k]) => f(k)).reduce((a, [, v]) => a + v, 0);
  const warmPath = sumWhere(warmW, onClaimPath);
  const warmRefill = sumWhere(warmW, (k) => !onClaimPath(k) && !isEvent(k) && isRefill(k));
  const warmEvents = sumWhere(warmW, isEvent);
  const nWarmSerial = raw.blocks.filter((b) => b.asked === 'pool').reduce((a, b) => a + b.n, 0);
  const opPerClaim = raw.operatorWritesWarm / nWarmSerial;

  const steadyWarm = steady.filter((s) => s.launch === 'Warm').length;
  const hitRatio = steady.length ? steadyWarm / steady.length : NaN;
  const claimsAll = Object.values(raw.steady.claims).reduce((a, b) => a + b, 0);
  const hitRatioMetric = claimsAll ? raw.steady.claims.warm / claimsAll : NaN;

  const pct = (v: number): string => `${fmt(v * 100, 1)} %`;
  const warmSerialApi = values(serialWarm, api);
  const concurrentApi = values(concurrent, api);
  const missed = (ss: Sample[]) => ss.filter((s) => s.launch !== 'Warm').length;
  const refillMs = raw.refills.map((r) => r.fullMs).filter((v): v is number => v !== undefined);

  const tables: Table[] = [
    {
      title: 'create→Ready, ms (p95 and p99 of a few dozen samples are near their maximum)',
      columns: ['what', 'n', 'p50', 'p95', 'p99', 'max'],
      rows: latencyRows,
    },
    {
      title: 'Warm over cold, one at a time (same run, alternating blocks)',
      columns: ['measure', 'p50 warm / cold', 'p99 warm / cold'],
      rows: [
        ['client (POST → /wait Ready)', fmt(ratio(api, 0.5), 3), fmt(ratio(api, 0.99), 3)],
        ['status (POST → Ready in status.transitions)', fmt(ratio(rec, 0.5), 3), fmt(ratio(rec, 0.99), 3)],
      ],
    },
    {
      title: 'POST /v1/backends answered (201), ms',
      columns: ['what', 'n', 'p50', 'p95', 'p99', 'max'],
      rows: postRows,
    },
    {
      title:
        'API-server write requests per create, one at a time, by verb and resource (apiserver_request_total deltas over each block, whoever wrote; the refill of a claimed Pod included)',
      columns: ['request', 'class', 'per warm claim', 'per cold create'],
      rows: [
        ...keys.map((k) => [k, classOf(k), fmt(warmW.get(k) ?? 0, 2), fmt(coldW.get(k) ?? 0, 2)]),
        [
          'total',
          '',
          fmt(
            sumWhere(warmW, () => true),
            2,
          ),
          fmt(
            sumWhere(coldW, () => true),
            2,
          ),
        ],
        [
          'total, Events apart',
          '',
          fmt(
            sumWhere(warmW, (k) => !isEvent(k)),
            2,
          ),
          fmt(
            sumWhere(coldW, (k) => !isEvent(k)),
            2,
          ),
        ],
      ],
    },
    {
      title: `Steady rate: ${steady.length} claims at ${opts.steadyRate}/s over ${fmt(raw.steady.wallS, 1)} s against a pool of ${opts.poolSize} (whenEmpty ColdStart)`,
      columns: ['measure', 'value'],
      rows: [
        ['launched warm / cold (status.launch)', `${steadyWarm} / ${steady.length - steadyWarm}`],
        ['hit ratio from status.launch', pct(hitRatio)],
        [
          'spawner_pool_claims_total delta: warm / cold / rejected',
          `${raw.steady.claims.warm} / ${raw.steady.claims.cold} / ${raw.steady.claims.rejected}`,
        ],
        ['hit ratio from spawner_pool_claims_total', pct(hitRatioMetric)],
        ['claim conflicts (spawner_pool_claim_conflicts_total delta)', String(raw.steady.conflicts)],
      ],
    },
    {
      title: 'Other counts',
      columns: ['measure', 'value'],
      rows: [
        ['one-at-a-time claims that did not launch warm', `${missed(serialWarm)} of ${serialWarm.length}`],
        [
          'one-at-a-time claims refilled (a new pool Pod within 2 s)',
          `${raw.refills.filter((r) => r.seen).length} of ${raw.refills.length}`,
        ],
        ['claim → pool full again (refilled ones), p50 / max ms', `${ms(q(refillMs, 0.5))} / ${ms(Math.max(...refillMs))}`],
        [`concurrent claims that did not launch warm`, `${missed(concurrent)} of ${concurrent.length}`],
        [`claim conflicts during the ${opts.concurrent} concurrent claims`, String(raw.concurrentConflicts)],
        ["operator's own write requests per warm claim (spawner_kube_requests_total; refill included)", fmt(opPerClaim, 2)],
      ],
    },
  ];

  const targets: TargetCheck[] = [
    {
      target: 'warm create→Ready p50, one at a time (client via the API)',
      goal: '≤ 100 ms',
      measured: `${ms(q(warmSerialApi, 0.5))} ms (status: ${ms(q(values(serialWarm, rec), 0.5))} ms)`,
      met: q(warmSerialApi, 0.5) <= 100,
    },
    {
      target: 'warm create→Ready p99, one at a time (client via the API)',
      goal: '≤ 300 ms',
      measured: `${ms(q(warmSerialApi, 0.99))} ms (status: ${ms(q(values(serialWarm, rec), 0.99))} ms)`,
      met: q(warmSerialApi, 0.99) <= 300,
    },
    {
      target: `warm create→Ready p99, ${opts.concurrent} concurrent (client via the API)`,
      goal: '≤ 500 ms',
      measured: `${ms(q(concurrentApi, 0.99))} ms (status: ${ms(q(values(concurrent, rec), 0.99))} ms)`,
      met: q(concurrentApi, 0.99) <= 500,
    },
    {
      target: 'API-server writes per warm claim on its path, Events apart',
      goal: '≤ 3',
      measured: `${fmt(warmPath, 2)} (refill off the path: ${fmt(warmRefill, 2)}; Events: ${fmt(warmEvents, 2)})`,
      met: warmPath <= 3,
    },
    {
      target: `hit ratio at ${opts.steadyRate} claims/s against a pool of ${opts.poolSize}`,
      goal: '≥ 95 %',
      measured: `${pct(hitRatio)} (metric: ${pct(hitRatioMetric)})`,
      met: hitRatio >= 0.95,
    },
  ];

  return {
    benchmark: 'warm-pool',
    settings: {
      ...opts,
      image: TEST_IMAGE,
      serviceMode: 'None (pool Pods have no Service), warm and cold alike',
      components: 'operator and API as host processes (dist/), Pods through the e2e node agent',
    },
    tables,
    targets,
    notes: [
      'Control plane: the e2e cluster and its node agent, which runs each Pod (app + sidecar: two Node.js processes) on the same 2 vCPUs as everything else.',
      'Warm-up: one warm claim and one cold create before the measured ones, since the first request of each kind after the operator and the API start pays their warm-up; shown on their own row.',
      `One at a time: the pool keeps ${opts.rounds * opts.warmPerRound} Pods (one per claim, so none needs a refill to start warm); after each claim the bench waits for the refill Pod (up to 2 s for it to appear, then until Ready) so that the next claim finds nothing starting; cold creates one after the other; warm and cold blocks alternate, their order swapped every round.`,
      '"client": POST /v1/backends sent → the API\'s GET /v1/backends/:name/wait long poll answered Ready. "status": POST sent → the Ready time the operator wrote into status.transitions (ms resolution, the same host clock; stamped when the operator decides the transition, before its write lands).',
      "Writes: every write request the API server counted during a block, whoever made it (the scheduler's bindings, the agent's Pod status, leases), divided by the creates in it. \"On the create path\" are those on the backend (create, status, labels) and PATCH pods (the claim); a warm claim's refill (a new Pod, its binding and status, the pool's status) is the pool's upkeep, off the path.",
      `Steady rate: arrivals on a fixed schedule, each waiting for Ready on its own, against a pool of ${opts.poolSize} that refills as its Pods start.`,
    ],
    raw,
  };
}
