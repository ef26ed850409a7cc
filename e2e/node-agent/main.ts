/**
 * The e2e node agent: a kubelet stand-in that runs the Pods bound to its Node as local processes,
 * each Pod in its own network namespace. See e2e/README.md.
 */
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { errorMessage, KubeApiError } from '../../common/src/errors';
import { ImageCatalog } from '../../common/src/image-catalog';
import { HttpKubeClient } from '../../common/src/kube/http-client';
import { loadKubeConfig } from '../../common/src/kube/kube-config';
import { Informer } from '../../common/src/kube/informer';
import { PODS } from '../../common/src/kube/resources';
import { createLogger, type Logger } from '../../common/src/logger';
import { projectRoot } from '../../common/src/paths';
import { onShutdown } from '../../common/src/shutdown';
import { backoffDelay, sleep } from '../../common/src/backoff';
import { parseArgs, type AgentConfig } from './config';
import { KubeSources } from './kube-sources';
import { PodNetwork } from './network';
import { NodeRegistration } from './node';
import { podKey, type Pod, type PodStatusJson } from './pod-types';
import { PodWorker, type WorkerContext } from './pod-worker';
import { CGROUP_MEMORY_ROOT, cgroupsAvailable, removeCgroup } from './process';
import { parseQuantity } from './quantity';
import { startServer, type Samples } from './server';
import { spawner } from './spawner';

const FIELD_MANAGER = 'spawner-e2e-node-agent';

class Agent {
  private readonly workers = new Map<string, PodWorker>();
  /** Pods deleted before they ever ran here, being finalized. */
  private readonly finalizing = new Set<string>();

  constructor(
    private readonly ctx: WorkerContext,
    private readonly logger: Logger,
  ) {}

  list(): PodWorker[] {
    return [...this.workers.values()];
  }

  upsert(pod: Pod): void {
    const key = podKey(pod);
    let worker = this.workers.get(key);
    if (worker && worker.uid !== pod.metadata.uid) {
      // A new Pod of the same name means the old one is gone from the API.
      this.workers.delete(key);
      void worker.kill();
      worker = undefined;
    }
    if (worker) {
      worker.update(pod);
      return;
    }
    const phase = pod.status?.phase;
    if (pod.metadata.deletionTimestamp) {
      void this.finalize(pod);
      return;
    }
    // Finished before this agent started: nothing to run, and the status already says so.
    if (phase === 'Succeeded' || phase === 'Failed') return;
    worker = new PodWorker(this.ctx, pod);
    this.workers.set(key, worker);
    worker.start();
  }

  remove(pod: Pod): void {
    const key = podKey(pod);
    const worker = this.workers.get(key);
    if (worker && worker.uid === pod.metadata.uid) {
      this.workers.delete(key);
      void worker.kill();
    }
  }

  private async finalize(pod: Pod): Promise<void> {
    if (this.finalizing.has(pod.metadata.uid)) return;
    this.finalizing.add(pod.metadata.uid);
    try {
      await this.ctx.deletePod(pod);
    } finally {
      this.finalizing.delete(pod.metadata.uid);
    }
  }

  async stop(): Promise<void> {
    const all = this.list();
    this.workers.clear();
    await Promise.all(
      all.map((w) =>
        w.kill().catch((err: unknown) => this.logger.warn('pod clean-up failed', { pod: w.key, error: errorMessage(err) })),
      ),
    );
  }
}

/** Mount targets the agent had to create on the host; removed (when empty) at shutdown. */
class CreatedPaths {
  private readonly paths = new Set<string>();
  constructor(private readonly file: string) {}

  record(top: string): void {
    if (this.paths.has(top)) return;
    this.paths.add(top);
    appendFileSync(this.file, `${top}\n`);
  }

  static removeEmpty(dir: string): void {
    if (!existsSync(dir)) return;
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) CreatedPaths.removeEmpty(join(dir, e.name));
      rmdirSync(dir);
    } catch {
      // not empty, or not a directory (a file target): leave it
      try {
        if (readFileSync(dir).length === 0) rmSync(dir);
      } catch {
        // keep
      }
    }
  }

  cleanup(): void {
    const recorded = existsSync(this.file) ? readFileSync(this.file, 'utf8').split('\n').filter(Boolean) : [];
    for (const p of new Set([...this.paths, ...recorded])) CreatedPaths.removeEmpty(p);
    rmSync(this.file, { force: true });
  }
}

async function sweepCgroups(root: string, logger: Logger): Promise<void> {
  if (!existsSync(root)) return;
  const dirs: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    dirs.push(d);
  };
  walk(root);
  let killed = 0;
  for (const d of dirs) {
    for (const pid of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
        killed++;
      } catch {
        // gone
      }
    }
  }
  for (const d of dirs) if (d !== root) await removeCgroup(d);
  if (killed) logger.info('killed leftover pod processes', { count: killed });
}

function writeJsonAtomic(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

/** One agent per bridge: a second one would sweep the first one's namespaces. */
function takeLock(config: AgentConfig): string {
  const lock = `/run/spawner-e2e-agent-${config.bridge}.pid`;
  if (existsSync(lock)) {
    const pid = Number(readFileSync(lock, 'utf8'));
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = pid !== process.pid;
    } catch {
      alive = false;
    }
    if (alive) throw new Error(`another node agent (pid ${pid}) owns bridge ${config.bridge}; see ${lock}`);
  }
  writeFileSync(lock, String(process.pid));
  return lock;
}

async function main(): Promise<void> {
  const root = projectRoot();
  const config = parseArgs(process.argv.slice(2), root);
  const logger = createLogger('node-agent', config.logLevel, undefined, { node: config.nodeName });
  const kubeConfig = loadKubeConfig(config.kubeconfig);
  const client = new HttpKubeClient(kubeConfig, { requestTimeoutMs: 30_000 });
  const server = kubeConfig.getCurrentCluster()?.server ?? '';
  const apiPort = config.apiPort ?? Number(new URL(server).port || 443);

  const lock = takeLock(config);
  mkdirSync(join(config.stateDir, 'pods'), { recursive: true });
  const network = new PodNetwork({
    bridge: config.bridge,
    podCidr: config.podCidr,
    hostIp: config.hostIp,
    logger,
    poolSize: config.netnsPool,
  });
  network.ipReuse = config.ipReuse;
  await network.init();

  let cgroupRoot: string | undefined;
  if (cgroupsAvailable()) {
    cgroupRoot = join(CGROUP_MEMORY_ROOT, config.cgroupName);
    await sweepCgroups(cgroupRoot, logger);
    mkdirSync(cgroupRoot, { recursive: true });
  } else {
    logger.warn('no writable memory cgroup (v1); memory limits are not enforced and OOMKilled is never reported');
  }

  const created = new CreatedPaths(join(config.stateDir, 'created-paths'));
  created.cleanup();
  const samples: Samples = { netnsSetupMs: [], podReadyMs: [] };
  const keep = (list: number[], v: number): void => {
    list.push(v);
    if (list.length > 10_000) list.splice(0, list.length - 10_000);
  };

  const ctx: WorkerContext = {
    stateDir: config.stateDir,
    nodeName: config.nodeName,
    apiHost: config.apiHost,
    apiPort,
    maxGraceSeconds: config.maxGraceSeconds,
    maxRestartBackoffMs: config.maxRestartBackoffMs,
    statusDebounceMs: config.statusDebounceMs,
    cgroupRoot,
    memoryLimits: config.memoryLimits,
    podNice: config.podNice,
    node: { cpu: parseQuantity(config.capacity.cpu) ?? 64, memory: parseQuantity(config.capacity.memory) ?? 2 ** 38 },
    network,
    images: ImageCatalog.load({ file: config.images, root, builtins: false, reload: true }),
    sources: new KubeSources(client),
    logger,
    async writeStatus(pod: Pod, status: PodStatusJson) {
      try {
        // metadata.uid makes the patch a precondition: never write onto a same-named successor.
        await client.patch(
          PODS,
          pod.metadata.namespace,
          pod.metadata.name,
          { metadata: { uid: pod.metadata.uid }, status },
          'merge',
          {
            subresource: 'status',
            fieldManager: FIELD_MANAGER,
          },
        );
        return 'ok';
      } catch (err) {
        if (err instanceof KubeApiError && (err.status === 404 || err.status === 409)) return 'gone';
        throw err;
      }
    },
    async deletePod(pod: Pod) {
      for (let attempt = 0; ; attempt++) {
        try {
          await client.delete(PODS, pod.metadata.namespace, pod.metadata.name, { gracePeriodSeconds: 0, uid: pod.metadata.uid });
          return;
        } catch (err) {
          if (attempt >= 10) throw err;
          await sleep(backoffDelay(attempt, 200, 5_000));
        }
      }
    },
    recordCreatedPath: (top) => created.record(top),
    onSandbox: (ms) => keep(samples.netnsSetupMs, ms),
    onReady: (ms) => keep(samples.podReadyMs, ms),
  };

  const agent = new Agent(ctx, logger);
  // Reported on /stats: a busy agent loop delays every pod it runs.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const ms = (ns: number): number => Math.round(ns / 1e5) / 10;
  const http = await startServer(
    config.port,
    config.nodeName,
    () => agent.list(),
    samples,
    () => ({
      netns: network.stats,
      eventLoopDelayMs: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) },
    }),
    network,
  );
  const agentJson = join(config.stateDir, 'agent.json');
  writeJsonAtomic(agentJson, {
    pid: process.pid,
    port: http.port,
    url: `http://127.0.0.1:${http.port}`,
    nodeName: config.nodeName,
    apiServer: server,
    podApiServer: `https://${config.apiHost}:${apiPort}`,
    hostIp: config.hostIp,
    podCidr: config.podCidr,
    bridge: config.bridge,
    stateDir: config.stateDir,
    images: config.images,
    startedAt: new Date().toISOString(),
  });

  const registration = new NodeRegistration(client, config, process.env.KUBE_VERSION ?? 'v1.36.3', logger);
  const informer = new Informer<Pod>(
    client,
    PODS,
    { onUpsert: (pod) => agent.upsert(pod), onDelete: (pod) => agent.remove(pod) },
    logger,
    { fieldSelector: `spec.nodeName=${config.nodeName}`, resyncMs: 30_000 },
  );

  onShutdown(
    logger,
    async () => {
      registration.stop();
      await informer.stop();
      await agent.stop();
      await network.shutdown();
      if (cgroupRoot) {
        await sweepCgroups(cgroupRoot, logger);
        await removeCgroup(cgroupRoot);
      }
      created.cleanup();
      http.server.close();
      spawner().close();
      rmSync(agentJson, { force: true });
      rmSync(lock, { force: true });
      logger.info('node agent stopped; every pod process, namespace and veth is gone');
    },
    30_000,
  );

  for (let attempt = 0; ; attempt++) {
    try {
      await registration.register();
      break;
    } catch (err) {
      logger.warn('node registration failed; retrying', { error: errorMessage(err) });
      await sleep(backoffDelay(attempt, 200, 5_000));
    }
  }
  informer.start();
  await informer.waitForSync();
  logger.info('node agent ready', {
    port: http.port,
    podCIDR: config.podCidr,
    images: config.images,
    cgroups: Boolean(cgroupRoot),
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`node agent failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
