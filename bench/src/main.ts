/**
 * `npm run bench [-- <name>...] [--rounds=N] [...]`: runs the named benchmarks (all by default),
 * prints their tables, and writes JSON (and Markdown tables) to bench/results/.
 *
 *   data-plane       sidecar vs direct, nginx, HAProxy; entry point + sidecar vs nginx → nginx and
 *                    HAProxy → HAProxy (no cluster)
 *   sidecar-memory   10 and 50 idle sidecars: RSS, anonymous, PSS per process (no cluster)
 *   spawn-pipeline   200 backends through the API vs 200 raw Pod+Service pairs (cluster)
 *   operator-scale   operator with 2,000 existing backends (cluster)
 *   sweeper-scale    one sweeper following 1,000 sidecar state streams (cluster)
 *   warm-pool        warm claims from a pool vs cold creates: create→Ready, writes, hit ratio (cluster)
 *
 * Benchmarks that need the cluster take the e2e lock (/tmp/spawner-e2e.lock) for as long as they
 * use it, start the cluster if none runs (and stop it afterwards), or reuse a running one.
 */
import { execFileSync } from 'node:child_process';
import { runClusterCleanups } from './cluster';
import { dataPlane } from './data-plane';
import { sidecarMemory } from './sidecar-memory';
import { operatorScale } from './operator-scale';
import { killAllChildrenNow, stopAllChildren } from './processes';
import { machineInfo, printResult, saveResult, type BenchResult } from './report';
import { spawnPipeline } from './spawn-pipeline';
import { sweeperScale } from './sweeper-scale';
import { warmPool } from './warm-pool';
import { SERVICE_MODES, type ServiceMode } from '../../operator/src/config';

type Flags = Record<string, string>;
type Runner = (flags: Flags) => Promise<Omit<BenchResult, 'machine' | 'startedAt' | 'finishedAt'>>;

const num = (flags: Flags, name: string, def: number): number => (flags[name] !== undefined ? Number(flags[name]) : def);

/** `--service-mode=ClusterIP|Headless|None` (the operator's); `--headless` is kept as Headless. */
function serviceModeFlag(flags: Flags): ServiceMode | undefined {
  if (flags.headless !== undefined) return 'Headless';
  const mode = flags['service-mode'];
  if (mode === undefined) return undefined;
  if (!(SERVICE_MODES as readonly string[]).includes(String(mode))) {
    throw new Error(`--service-mode must be one of ${SERVICE_MODES.join(', ')}`);
  }
  return mode as ServiceMode;
}

/** `--service-mode=ClusterIP,None`: one or more modes, each run beside the others (default ClusterIP). */
function serviceModesFlag(flags: Flags): ServiceMode[] {
  if (flags.headless !== undefined) return ['Headless'];
  const modes = (flags['service-mode'] ?? 'ClusterIP').split(',');
  for (const mode of modes) {
    if (!(SERVICE_MODES as readonly string[]).includes(mode)) {
      throw new Error(`--service-mode must be one or more of ${SERVICE_MODES.join(', ')}, comma-separated`);
    }
  }
  return [...new Set(modes)] as ServiceMode[];
}

interface Benchmark {
  run: Runner;
  tools: string[];
  cluster: boolean;
  help: string;
}

const BENCHMARKS: Record<string, Benchmark> = {
  'data-plane': {
    tools: ['wrk', 'nginx', 'haproxy'],
    cluster: false,
    help: '--rounds=5 --duration=3 --connections=50 --upstreams=node,static',
    run: (f) =>
      dataPlane({
        rounds: num(f, 'rounds', 5),
        durationS: num(f, 'duration', 3),
        connections: num(f, 'connections', 50),
        upstreams: (f.upstreams ?? 'node,static').split(',') as Array<'node' | 'static'>,
      }),
  },
  'sidecar-memory': {
    tools: [],
    cluster: false,
    help: '--counts=10,50 --rounds=3 --settle=10',
    run: (f) =>
      sidecarMemory({
        counts: (f.counts ?? '10,50').split(',').map(Number),
        rounds: num(f, 'rounds', 3),
        settleS: num(f, 'settle', 10),
      }),
  },
  'spawn-pipeline': {
    tools: ['flock', 'ip', 'openssl'],
    cluster: true,
    help: '--rounds=2 --backends=200 --concurrency=20 [--operator-concurrency=N] [--service-mode=ClusterIP,Headless,None (one or more; each with its raw baseline)]',
    run: (f) =>
      spawnPipeline({
        rounds: num(f, 'rounds', 2),
        backends: num(f, 'backends', 200),
        concurrency: num(f, 'concurrency', 20),
        operatorConcurrency: f['operator-concurrency'] !== undefined ? Number(f['operator-concurrency']) : undefined,
        serviceModes: serviceModesFlag(f),
      }),
  },
  'operator-scale': {
    tools: ['flock', 'ip', 'openssl'],
    cluster: true,
    help: '--existing=2000 --new=50 --rounds=3 --concurrency=20 [--service-mode=ClusterIP|Headless|None]',
    run: (f) =>
      operatorScale({
        existing: num(f, 'existing', 2000),
        newPerRound: num(f, 'new', 50),
        rounds: num(f, 'rounds', 3),
        concurrency: num(f, 'concurrency', 20),
        serviceMode: serviceModeFlag(f),
      }),
  },
  'sweeper-scale': {
    tools: ['flock', 'ip', 'openssl'],
    cluster: true,
    help: '--backends=1000 --rounds=2 --spread=90 [--sweeper-node-args="--max-semi-space-size=2" (as the image runs it)]',
    run: (f) =>
      sweeperScale({
        backends: num(f, 'backends', 1000),
        rounds: num(f, 'rounds', 2),
        spreadS: num(f, 'spread', 90),
        // As sweeper/Dockerfile runs it; --sweeper-node-args= (empty) for Node's defaults.
        nodeArgs: (f['sweeper-node-args'] ?? '--max-semi-space-size=2').split(' ').filter(Boolean),
      }),
  },
  'warm-pool': {
    tools: ['flock', 'ip', 'openssl'],
    cluster: true,
    help: '--rounds=3 --warm=10 --cold=5 (per round, one at a time; the pool keeps rounds × warm) --concurrent=20 --pool=5 --rate=2 --seconds=30 (steady rate)',
    run: (f) =>
      warmPool({
        rounds: num(f, 'rounds', 3),
        warmPerRound: num(f, 'warm', 10),
        coldPerRound: num(f, 'cold', 5),
        poolSize: num(f, 'pool', 5),
        concurrent: num(f, 'concurrent', 20),
        steadyRate: num(f, 'rate', 2),
        steadySeconds: num(f, 'seconds', 30),
      }),
  },
};

const INSTALL: Record<string, string> = {
  wrk: 'apt-get install -y wrk',
  nginx: 'apt-get install -y nginx',
  haproxy: 'apt-get install -y haproxy',
  flock: 'apt-get install -y util-linux',
  ip: 'apt-get install -y iproute2',
  openssl: 'apt-get install -y openssl',
};

function missingTools(tools: string[]): string[] {
  return tools.filter((t) => {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], {
        stdio: 'ignore',
        env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
      });
      return false;
    } catch {
      return true;
    }
  });
}

function usage(): string {
  return [
    'usage: npm run bench [-- <name>...] [--flag=value...]',
    '',
    ...Object.entries(BENCHMARKS).map(([name, b]) => `  ${name.padEnd(16)} ${b.help}${b.cluster ? '  (cluster)' : ''}`),
    '',
    'Results: bench/results/<name>-latest.{json,md}. See bench/README.md and docs/benchmarks.md.',
  ].join('\n');
}

async function main(): Promise<void> {
  const names: string[] = [];
  const flags: Flags = {};
  for (const arg of process.argv.slice(2)) {
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${usage()}\n`);
      return;
    }
    if (arg.startsWith('--')) {
      const [k, ...v] = arg.slice(2).split('=');
      flags[k] = v.join('=');
    } else names.push(arg);
  }
  const chosen = names.length ? names : Object.keys(BENCHMARKS);
  for (const n of chosen) if (!BENCHMARKS[n]) throw new Error(`unknown benchmark "${n}"\n${usage()}`);

  const missing = [...new Set(chosen.flatMap((n) => missingTools(BENCHMARKS[n].tools)))];
  if (missing.length) {
    process.stderr.write(
      `The benchmarks need tools that are not installed: ${missing.join(', ')}.\nInstall them with:\n${missing.map((m) => `  ${INSTALL[m] ?? m}`).join('\n')}\n(CI does not run the benchmarks, so it does not install them.)\n`,
    );
    process.exit(2);
  }

  let failed = false;
  for (const name of chosen) {
    const startedAt = new Date().toISOString();
    const machine = machineInfo();
    process.stdout.write(`\n>>> ${name}\n`);
    try {
      const partial = await BENCHMARKS[name].run(flags);
      const result: BenchResult = { ...partial, machine, startedAt, finishedAt: new Date().toISOString() };
      printResult(result);
      process.stdout.write(`results: ${saveResult(result)}\n`);
    } catch (err) {
      failed = true;
      process.stderr.write(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      await stopAllChildren();
    }
  }
  if (failed) process.exitCode = 1;
}

process.on('exit', killAllChildrenNow);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping\n`);
    void stopAllChildren()
      .then(runClusterCleanups)
      .finally(() => process.exit(130));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
