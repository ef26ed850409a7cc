/**
 * Benchmark 1, data plane: one tiny upstream app reached directly, through the sidecar, nginx,
 * HAProxy, and the entry point + sidecar; and, with the entry point + sidecar's topology (a first
 * hop in front of a second hop in front of the app, two processes), nginx → nginx and HAProxy →
 * HAProxy. HTTP with wrk (1 thread, 50 connections, latency distribution), WebSocket echo round
 * trips with our own generator (50 connections, closed loop). Every target runs once per round, in
 * an order rotated from round to round; figures are medians over rounds with their min–max, and
 * ratios are medians of same-round ratios.
 *
 * Two HTTP upstreams: the Node app (`node`, the realistic case, whose own ceiling caps every
 * proxy) and nginx answering 12 bytes (`static`, to show each proxy's own ceiling).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuDelta, cpuOf, memoryOf, processTree, type Memory } from './proc';
import { benchScript, freePort, httpGet, runToEnd, sleep, startChild, waitForPort, type Child } from './processes';
import { nginxProxyConfig, nginxStaticConfig, startHaproxy, startNginx, type Route } from './proxies';
import type { BenchResult, Table, TargetCheck } from './report';
import { launchSidecar, sidecarMain, sidecarReady } from './sidecar-process';
import { fmt, fmtRate, fmtSpread, median, spread } from './stats';
import { runWrk } from './wrk';

export interface DataPlaneOptions {
  rounds: number;
  durationS: number;
  connections: number;
  /** HTTP upstreams to measure: 'node' (the Node app) and/or 'static' (nginx, 12 bytes). */
  upstreams: Upstream[];
}

type Upstream = 'node' | 'static';
type Workload = 'http-node' | 'http-static' | 'ws';

const TOKEN = 'bench-connection-token-0123456789';
const TOKEN_HASH = createHash('sha256').update(TOKEN).digest('hex');

interface Target {
  id: string;
  label: string;
  /** Base URL (http://host:port/prefix/) per upstream. */
  base: Partial<Record<Upstream, string>>;
  /** The proxy's processes per upstream (empty for direct). */
  procs: Partial<Record<Upstream, () => number[]>>;
  /** Of those, the first hop's (two-hop paths: the entry point, or the front nginx/HAProxy). */
  front?: () => number[];
  headers?: Record<string, string>;
}

interface Run {
  round: number;
  target: string;
  workload: Workload;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  count: number;
  /** CPU ms of the proxy's processes per 10k requests (or messages). */
  cpuMsPer10k: number;
  userMsPer10k: number;
  systemMsPer10k: number;
  /** Two-hop paths: the first hop's share of cpuMsPer10k (NaN otherwise). */
  frontCpuMsPer10k: number;
  /** CPU ms of the Node upstream app per 10k (0 for the static upstream). */
  upstreamCpuMsPer10k: number;
  loadedRssMb: number;
}

async function sidecar(name: string, upstream: number, env: NodeJS.ProcessEnv = {}) {
  const s = launchSidecar(name, upstream, { serve: await freePort(), admin: await freePort() }, { env });
  await sidecarReady(s);
  return s;
}

type Ports = Record<Upstream, number>;

/**
 * A two-hop path of one proxy kind: a back instance in front of the upstreams, a front instance in
 * front of the back one, each a process (tree) of its own with one worker, as the entry point and
 * the sidecar are.
 */
async function twoHops(
  start: (name: string, routes: Route[]) => Child,
  name: string,
  upstreams: Ports,
): Promise<{ front: Child; back: Child; ports: Ports }> {
  const back = { node: await freePort(), static: await freePort() };
  const ports = { node: await freePort(), static: await freePort() };
  const route = (listen: Ports, to: Ports): Route[] => [
    { listen: listen.node, upstream: to.node },
    { listen: listen.static, upstream: to.static },
  ];
  const backChild = start(`${name}-back`, route(back, upstreams));
  const frontChild = start(`${name}-front`, route(ports, back));
  await waitForPort(back.node, backChild);
  await waitForPort(ports.node, frontChild);
  return { front: frontChild, back: backChild, ports };
}

async function wsRun(url: string, connections: number, durationS: number, headers: Record<string, string> = {}) {
  const args = [
    benchScript('ws-load'),
    `--url=${url}`,
    `--connections=${connections}`,
    `--duration=${durationS}`,
    ...Object.entries(headers).map(([k, v]) => `--header=${k}:${v}`),
  ];
  const { code, stdout, stderr } = await runToEnd(process.execPath, args, { timeoutMs: (durationS + 30) * 1000 });
  if (code !== 0) throw new Error(`ws-load failed for ${url}: ${stderr}`);
  return JSON.parse(stdout.trim().split('\n').pop() as string) as {
    messages: number;
    mps: number;
    p50Ms: number;
    p99Ms: number;
    errors: number;
  };
}

export async function dataPlane(opts: DataPlaneOptions): Promise<Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'>> {
  const children: Child[] = [];
  const track = (c: Child): Child => (children.push(c), c);
  const dir = mkdtempSync(join(tmpdir(), 'spawner-bench-'));
  try {
    // ---- upstreams ----
    const appPort = await freePort();
    const app = track(startChild('upstream-app', process.execPath, [benchScript('upstream-app'), `--port=${appPort}`]));
    const staticPort = await freePort();
    const staticApp = track(
      startNginx('upstream-static', join(dir, 'static'), nginxStaticConfig(join(dir, 'static'), staticPort)),
    );
    await waitForPort(appPort, app);
    await waitForPort(staticPort, staticApp);

    // ---- proxies ----
    const sc = { node: await sidecar('sidecar-node', appPort), static: await sidecar('sidecar-static', staticPort) };
    const epSc = {
      node: await sidecar('ep-sidecar-node', appPort, { SPAWNER_TOKEN_SHA256: TOKEN_HASH }),
      static: await sidecar('ep-sidecar-static', staticPort, { SPAWNER_TOKEN_SHA256: TOKEN_HASH }),
    };
    for (const c of [sc.node, sc.static, epSc.node, epSc.static]) track(c.child);
    const upstreamPorts = { node: appPort, static: staticPort };
    const nginx2 = await twoHops(
      (name, routes) => track(startNginx(name, join(dir, name), nginxProxyConfig(join(dir, name), routes))),
      'nginx',
      upstreamPorts,
    );
    const haproxy2 = await twoHops(
      (name, routes) => track(startHaproxy(name, join(dir, name), routes)),
      'haproxy',
      upstreamPorts,
    );

    const nginxPorts = { node: await freePort(), static: await freePort() };
    const nginx = track(
      startNginx(
        'nginx',
        join(dir, 'nginx'),
        nginxProxyConfig(join(dir, 'nginx'), [
          { listen: nginxPorts.node, upstream: appPort },
          { listen: nginxPorts.static, upstream: staticPort },
        ]),
      ),
    );
    const haproxyPorts = { node: await freePort(), static: await freePort() };
    const haproxy = track(
      startHaproxy('haproxy', join(dir, 'haproxy'), [
        { listen: haproxyPorts.node, upstream: appPort },
        { listen: haproxyPorts.static, upstream: staticPort },
      ]),
    );
    const epPort = await freePort();
    const ep = track(
      startChild('entry-point', process.execPath, [
        benchScript('entry-point-server'),
        `--port=${epPort}`,
        `--backend=node:${epSc.node.serve}`,
        `--backend=static:${epSc.static.serve}`,
        `--token-sha256=${TOKEN_HASH}`,
      ]),
    );
    for (const [p, c] of [
      [nginxPorts.node, nginx],
      [haproxyPorts.node, haproxy],
      [epPort, ep],
    ] as const)
      await waitForPort(p, c);
    const startedAt = Date.now();

    const tree = (c: Child) => () => processTree(c.pid);
    const targets: Target[] = [
      {
        id: 'direct',
        label: 'direct (no proxy)',
        base: { node: `http://127.0.0.1:${appPort}/`, static: `http://127.0.0.1:${staticPort}/` },
        procs: { node: () => [], static: () => [] },
      },
      {
        id: 'sidecar',
        label: 'sidecar (relay)',
        base: { node: `http://127.0.0.1:${sc.node.serve}/`, static: `http://127.0.0.1:${sc.static.serve}/` },
        procs: { node: () => [sc.node.child.pid], static: () => [sc.static.child.pid] },
      },
      {
        id: 'nginx',
        label: 'nginx (1 worker)',
        base: { node: `http://127.0.0.1:${nginxPorts.node}/`, static: `http://127.0.0.1:${nginxPorts.static}/` },
        procs: { node: tree(nginx), static: tree(nginx) },
      },
      {
        id: 'haproxy',
        label: 'HAProxy (1 thread)',
        base: { node: `http://127.0.0.1:${haproxyPorts.node}/`, static: `http://127.0.0.1:${haproxyPorts.static}/` },
        procs: { node: tree(haproxy), static: tree(haproxy) },
      },
      {
        id: 'entry-point',
        label: 'entry point + sidecar',
        base: { node: `http://127.0.0.1:${epPort}/p/node/`, static: `http://127.0.0.1:${epPort}/p/static/` },
        procs: { node: () => [ep.pid, epSc.node.child.pid], static: () => [ep.pid, epSc.static.child.pid] },
        front: () => [ep.pid],
        headers: { 'X-Spawner-Token': TOKEN },
      },
      ...(
        [
          ['nginx-2hop', 'nginx → nginx (two hops)', nginx2],
          ['haproxy-2hop', 'HAProxy → HAProxy (two hops)', haproxy2],
        ] as const
      ).map(([id, label, hops]) => {
        const both = () => [...processTree(hops.front.pid), ...processTree(hops.back.pid)];
        return {
          id,
          label,
          base: { node: `http://127.0.0.1:${hops.ports.node}/`, static: `http://127.0.0.1:${hops.ports.static}/` },
          procs: { node: both, static: both },
          front: tree(hops.front),
        };
      }),
    ];

    // Sanity: every target answers the app's body.
    for (const t of targets)
      for (const u of opts.upstreams) {
        const r = await httpGet(t.base[u] as string, 5000, t.headers);
        if (r.status !== 200 || r.body !== 'hello world\n') throw new Error(`${t.label} (${u}) answered ${r.status} ${r.body}`);
      }

    // Idle memory: 2 s after the last process started, before any load.
    await sleep(Math.max(0, startedAt + 2000 - Date.now()));
    const idle = new Map<string, Memory>();
    for (const t of targets) if (t.id !== 'direct') idle.set(t.id, memoryOf(t.procs.node!()));
    const appIdle = memoryOf([app.pid]);

    const workloads: Workload[] = [...opts.upstreams.map((u) => `http-${u}` as Workload), 'ws'];
    const runOne = async (t: Target, w: Workload, round: number, durationS: number): Promise<Run> => {
      const upstream: Upstream = w === 'http-static' ? 'static' : 'node';
      const pids = t.procs[upstream]!();
      const frontPids = t.front?.() ?? [];
      const c0 = cpuOf(pids);
      const f0 = cpuOf(frontPids);
      const a0 = cpuOf([app.pid]);
      let loaded: Memory = { rssMb: NaN, anonMb: NaN, pssMb: NaN };
      const sampler = setTimeout(() => (loaded = memoryOf(pids)), durationS * 800);
      let rate: number, p50Ms: number, p99Ms: number, errors: number, count: number;
      if (w === 'ws') {
        const url = (t.base.node as string).replace(/^http/, 'ws');
        const r = await wsRun(url, opts.connections, durationS, t.headers);
        ({ p50Ms, p99Ms, errors } = r);
        rate = r.mps;
        count = r.messages;
      } else {
        const r = await runWrk(t.base[upstream] as string, { connections: opts.connections, durationS, headers: t.headers });
        ({ p50Ms, p99Ms, errors } = r);
        rate = r.rps;
        count = r.requests;
      }
      clearTimeout(sampler);
      const cpu = cpuDelta(c0, cpuOf(pids));
      const frontCpu = cpuDelta(f0, cpuOf(frontPids));
      const appCpu = cpuDelta(a0, cpuOf([app.pid]));
      const per10k = (s: number): number => (count > 0 ? (s * 1000 * 10_000) / count : NaN);
      return {
        round,
        target: t.id,
        workload: w,
        rate,
        p50Ms,
        p99Ms,
        errors,
        count,
        cpuMsPer10k: pids.length ? per10k(cpu.total) : NaN,
        userMsPer10k: pids.length ? per10k(cpu.user) : NaN,
        systemMsPer10k: pids.length ? per10k(cpu.system) : NaN,
        frontCpuMsPer10k: frontPids.length ? per10k(frontCpu.total) : NaN,
        upstreamCpuMsPer10k: upstream === 'node' ? per10k(appCpu.total) : NaN,
        loadedRssMb: pids.length ? loaded.rssMb : NaN,
      };
    };

    // Warm-up (JIT, connection pools), not recorded.
    process.stdout.write('data-plane: warming up\n');
    for (const t of targets) for (const w of workloads) await runOne(t, w, -1, 1);

    const runs: Run[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      for (const w of workloads) {
        const order = targets.map((_, i) => targets[(i + round) % targets.length]);
        for (const t of order) {
          await sleep(300);
          const r = await runOne(t, w, round, opts.durationS);
          runs.push(r);
          process.stdout.write(
            `data-plane round ${round + 1}/${opts.rounds} ${w.padEnd(11)} ${t.id.padEnd(18)} ${fmtRate(r.rate).padStart(6)}/s p99 ${fmt(r.p99Ms)} ms${r.errors ? ` errors ${r.errors}` : ''}\n`,
          );
        }
      }
    }

    return summarize(opts, targets, workloads, runs, idle, appIdle, sidecarMain());
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}

function summarize(
  opts: DataPlaneOptions,
  targets: Target[],
  workloads: Workload[],
  runs: Run[],
  idle: Map<string, Memory>,
  appIdle: Memory,
  sidecarArtefact: string,
): Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'> {
  const of = (t: string, w: Workload) => runs.filter((r) => r.target === t && r.workload === w);
  const pick = (t: string, w: Workload, f: (r: Run) => number) => spread(of(t, w).map(f));
  const ms = (v: number): string => fmt(v, 2);
  const tables: Table[] = [];
  const titles: Record<Workload, string> = {
    'http-node': `HTTP GET, Node upstream app (wrk -t1 -c${opts.connections} -d${opts.durationS}s), median (min–max) of ${opts.rounds} rounds`,
    'http-static': `HTTP GET, nginx static upstream (wrk -t1 -c${opts.connections} -d${opts.durationS}s), median (min–max) of ${opts.rounds} rounds`,
    ws: `WebSocket echo round trips, Node upstream app (${opts.connections} connections, 64-byte messages, ${opts.durationS}s), median (min–max) of ${opts.rounds} rounds`,
  };
  for (const w of workloads) {
    const unit = w === 'ws' ? 'msgs' : 'req';
    tables.push({
      title: titles[w],
      columns: [
        'target',
        `${unit}/s`,
        'p50 ms',
        'p99 ms',
        `proxy CPU ms per 10k ${unit} (user+sys)`,
        ...(w === 'http-static' ? [] : [`app CPU ms per 10k ${unit}`]),
        ...(w === 'ws' ? [] : ['loaded RSS MB']),
        'errors',
      ],
      rows: targets.map((t) => {
        const cpu = pick(t.id, w, (r) => r.cpuMsPer10k);
        const user = median(of(t.id, w).map((r) => r.userMsPer10k));
        const sys = median(of(t.id, w).map((r) => r.systemMsPer10k));
        return [
          t.label,
          fmtSpread(
            pick(t.id, w, (r) => r.rate),
            fmtRate,
          ),
          fmtSpread(
            pick(t.id, w, (r) => r.p50Ms),
            ms,
          ),
          fmtSpread(
            pick(t.id, w, (r) => r.p99Ms),
            ms,
          ),
          cpu.n ? `${fmt(cpu.median, 0)} (${fmt(user, 0)}+${fmt(sys, 0)})` : '–',
          ...(w === 'http-static' ? [] : [fmt(median(of(t.id, w).map((r) => r.upstreamCpuMsPer10k)), 0)]),
          ...(w === 'ws' ? [] : [fmt(Math.max(...of(t.id, w).map((r) => r.loadedRssMb)), 0)]),
          String(of(t.id, w).reduce((a, r) => a + r.errors, 0)),
        ];
      }),
    });
  }
  tables.push({
    title: 'Memory of the proxy processes: idle (2 s after start, before load) and loaded (max over HTTP runs, Node upstream)',
    columns: ['target', 'idle RSS MB', 'idle anonymous MB', 'idle PSS MB', 'loaded RSS MB'],
    rows: [
      ...targets
        .filter((t) => t.id !== 'direct')
        .map((t) => {
          const i = idle.get(t.id)!;
          return [
            t.label,
            fmt(i.rssMb, 1),
            fmt(i.anonMb, 1),
            fmt(i.pssMb, 1),
            fmt(Math.max(...runs.filter((r) => r.target === t.id && r.workload !== 'ws').map((r) => r.loadedRssMb)), 1),
          ];
        }),
      ['(the Node upstream app, for scale)', fmt(appIdle.rssMb, 1), fmt(appIdle.anonMb, 1), fmt(appIdle.pssMb, 1), '–'],
    ],
  });

  // Same-round ratios.
  const ratio = (a: string, b: string, w: Workload, f: (r: Run) => number) => {
    const values: number[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      const x = runs.find((r) => r.round === round && r.target === a && r.workload === w);
      const y = runs.find((r) => r.round === round && r.target === b && r.workload === w);
      if (x && y) values.push(f(x) / f(y));
    }
    return spread(values);
  };
  const pairs: Array<[string, string]> = [
    ['sidecar', 'direct'],
    ['sidecar', 'nginx'],
    ['sidecar', 'haproxy'],
    ['entry-point', 'direct'],
    ['entry-point', 'nginx'],
    ['entry-point', 'nginx-2hop'],
    ['entry-point', 'haproxy-2hop'],
    ['nginx-2hop', 'nginx'],
  ];
  tables.push({
    title: 'Same-round ratios, median (min–max): throughput, and p99 latency',
    columns: ['ratio', ...workloads.flatMap((w) => [`${w} rate`, `${w} p99`])],
    rows: pairs.map(([a, b]) => [
      `${a} / ${b}`,
      ...workloads.flatMap((w) => [
        fmtSpread(
          ratio(a, b, w, (r) => r.rate),
          (v) => fmt(v, 2),
        ),
        fmtSpread(
          ratio(a, b, w, (r) => r.p99Ms),
          (v) => fmt(v, 2),
        ),
      ]),
    ]),
  });

  // The first hop's CPU over the second's, per run (same run, same requests).
  const hopRatio = (t: string, w: Workload) =>
    spread(of(t, w).map((r) => r.frontCpuMsPer10k / (r.cpuMsPer10k - r.frontCpuMsPer10k)));
  const twoHop = targets.filter((t) => t.front);
  tables.push({
    title: 'Two-hop paths: proxy CPU ms per 10k requests (or messages), first hop and second hop, median of rounds',
    columns: ['path', ...workloads.flatMap((w) => [`${w} first`, `${w} second`, `${w} first / second`])],
    rows: twoHop.map((t) => [
      t.label,
      ...workloads.flatMap((w) => {
        const front = median(of(t.id, w).map((r) => r.frontCpuMsPer10k));
        const back = median(of(t.id, w).map((r) => r.cpuMsPer10k - r.frontCpuMsPer10k));
        return [fmt(front, 0), fmt(back, 0), fmtSpread(hopRatio(t.id, w), (v) => fmt(v, 2))];
      }),
    ]),
  });

  const p99 = (t: string, w: Workload) => median(of(t, w).map((r) => r.p99Ms));
  const rates = (a: string, b: string, w: Workload) =>
    `(${fmtRate(median(of(a, w).map((r) => r.rate)))} vs ${fmtRate(median(of(b, w).map((r) => r.rate)))})`;
  const targetsOut: TargetCheck[] = [];
  // Issue 14's goals for the data plane.
  for (const w of workloads) {
    const unit = w === 'ws' ? 'msgs/s' : 'req/s';
    const sidecarGoal = w === 'ws' ? 1 : 0.9;
    const rr = ratio('sidecar', 'nginx', w, (r) => r.rate).median;
    targetsOut.push({
      target: `sidecar vs nginx, ${w} ${unit}`,
      goal: `ratio ≥ ${fmt(sidecarGoal, 2)}`,
      measured: `${fmt(rr, 2)} ${rates('sidecar', 'nginx', w)}`,
      met: rr >= sidecarGoal,
    });
    const pathGoal = w === 'ws' ? 0.9 : 0.8;
    const pr = ratio('entry-point', 'nginx-2hop', w, (r) => r.rate).median;
    targetsOut.push({
      target: `entry point + sidecar vs nginx → nginx, ${w} ${unit}`,
      goal: `ratio ≥ ${fmt(pathGoal, 2)}`,
      measured: `${fmt(pr, 2)} ${rates('entry-point', 'nginx-2hop', w)}`,
      met: pr >= pathGoal,
    });
    const hr = hopRatio('entry-point', w).median;
    targetsOut.push({
      target: `entry point CPU per request vs its sidecar's, ${w}`,
      goal: 'ratio ≤ 1.50',
      measured: fmt(hr, 2),
      met: hr <= 1.5,
    });
    targetsOut.push({
      target: `sidecar p99 no worse than nginx, ${w}`,
      goal: 'p99 ≤ nginx p99',
      measured: `${fmt(p99('sidecar', w), 2)} vs ${fmt(p99('nginx', w), 2)} ms`,
      met: p99('sidecar', w) <= p99('nginx', w),
    });
  }

  return {
    benchmark: 'data-plane',
    settings: {
      ...opts,
      wrk: `wrk -t1 -c${opts.connections} -d${opts.durationS}s --latency`,
      tokenOnEntryPointPath: true,
      sidecar: sidecarArtefact,
    },
    tables,
    targets: targetsOut,
    notes: [
      'All processes (load generator, proxies, upstream) share the same 2 vCPUs, and the machine is shared with other work: single runs vary by ±30 % or more; compare same-round ratios, not absolute numbers across runs.',
      'The Node upstream app is single-threaded: "direct" (wrk on one core, the app on the other) is its ceiling. With a proxy in between, wrk, proxy and app share the two cores, so the rate follows the CPU each request costs all three; the static upstream (nginx answering 12 bytes, ~6 µs per request) makes the proxy the larger share and shows the proxies\' own differences.',
      "Memory: RSS counts the node binary's file pages (~34 MB of a bare node process's ~40 MB here), which all Node.js processes of one image share; anonymous memory is what the process itself allocated; PSS divides shared pages among the processes mapping them. Idle here is 2 s after start, before V8 has shrunk its heap: the sidecar's memory goals are checked by the sidecar-memory benchmark, with many sidecars and a longer settle.",
      'CPU per 10k is the proxy processes only (nginx master+worker, HAProxy, the sidecar; for the entry-point path the entry point plus its sidecar), from /proc/<pid>/stat over each run; "app CPU" is the Node upstream app over the same run.',
      'The entry-point path carries a connection token (X-Spawner-Token), as every production request does: the entry point and the sidecar both verify it. The direct, sidecar, nginx and HAProxy paths carry none.',
      "Two-hop baselines: nginx → nginx and HAProxy → HAProxy have the entry point + sidecar path's topology (a first-hop process in front of a second-hop process in front of the app), each instance with one worker/thread and keep-alive to its upstream; their CPU is both instances'. \"First / second\" is the first hop's CPU over the second's in the same run.",
      'The sidecar processes run the one-file bundle its image runs (scripts/bundle-sidecar.mjs; settings.sidecar names the file).',
    ],
    raw: { runs, idle: Object.fromEntries(idle), appIdle },
  };
}
