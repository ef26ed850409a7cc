/**
 * The e2e control plane for the cluster benchmarks (e2e/cluster.sh: kube-apiserver, etcd,
 * controller manager, scheduler and the test node agent). One cluster per machine: a session
 * holds the machine-wide e2e lock (/tmp/spawner-e2e.lock, the one e2e/run.sh takes) for as long
 * as it uses the cluster, starts the cluster when none runs and stops it afterwards, or reuses a
 * running one and leaves it running.
 *
 * The lock is held by a child `flock … cat` whose standard input is our pipe: however this
 * process ends, the pipe closes, `cat` exits and the lock is released.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as https from 'node:https';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { HttpKubeClient } from '../../common/src/kube/http-client';
import { loadKubeConfig } from '../../common/src/kube/kube-config';
import { NAMESPACES } from '../../common/src/kube/resources';
import type { KubeClient, KubeObject, ResourceType, WatchHandle } from '../../common/src/kube/types';
import type { AgentPod } from '../../e2e/node-agent/pod-worker';
import { dist, freePort, httpGet, ROOT, runToEnd, sleep, startChild, waitUntil, type Child } from './processes';

export const STATE_DIR = process.env.SPAWNER_E2E_DIR ?? '/tmp/spawner-e2e';
export const LOCK_PATH = process.env.SPAWNER_E2E_LOCK ?? '/tmp/spawner-e2e.lock';
/** The e2e test app (images.json maps it to e2e/test-app): HTTP + WebSocket echo, ~40 MB. */
export const TEST_IMAGE = 'ghcr.io/spawner-dev/spawner-test-app:e2e';

const SERVICE_ACCOUNTS: ResourceType = {
  group: '',
  version: 'v1',
  plural: 'serviceaccounts',
  kind: 'ServiceAccount',
  namespaced: true,
};

export interface AgentInfo {
  pid: number;
  port: number;
  url: string;
  nodeName: string;
}

export interface ClusterSession {
  kubeconfig: string;
  kubeConfig: KubeConfig;
  kube: HttpKubeClient;
  agent: AgentInfo;
  /** Whether this session started the cluster (and will stop it). */
  started: boolean;
}

const log = (msg: string): void => void process.stdout.write(`[cluster] ${msg}\n`);

async function takeLock(): Promise<() => Promise<void>> {
  const child = spawn('flock', [LOCK_PATH, 'sh', '-c', 'echo locked; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting = setTimeout(() => log(`waiting for the e2e lock ${LOCK_PATH} (an e2e run or another benchmark holds it)`), 1000);
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`flock exited ${code} before taking ${LOCK_PATH}`)));
  });
  clearTimeout(waiting);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return async () => {
    child.stdin.end();
    await exited;
  };
}

const cleanups = new Set<() => Promise<void>>();
/** Runs what open cluster sessions must undo (on an interrupt). */
export async function runClusterCleanups(): Promise<void> {
  for (const c of [...cleanups]) await c().catch(() => undefined);
}

/**
 * Runs `fn` with the cluster, holding the e2e lock throughout. Keep sessions short (minutes):
 * another engineer's e2e runs wait for the lock meanwhile.
 */
export async function withCluster<T>(what: string, fn: (c: ClusterSession) => Promise<T>): Promise<T> {
  const release = await takeLock();
  const t0 = Date.now();
  let started = false;
  const stop = async (): Promise<void> => {
    if (started) {
      log('stopping the cluster (cluster.sh down)');
      await runToEnd('bash', [join(ROOT, 'e2e/cluster.sh'), 'down'], { timeoutMs: 120_000 });
      started = false;
    }
    await release();
  };
  cleanups.add(stop);
  try {
    const status = await runToEnd('bash', [join(ROOT, 'e2e/cluster.sh'), 'status'], { timeoutMs: 30_000 });
    let kubeconfig = join(STATE_DIR, 'admin.kubeconfig');
    if (status.code === 0) {
      log(`reusing the running cluster (${STATE_DIR}); it stays up afterwards`);
    } else {
      log('starting the cluster (cluster.sh up)');
      started = true;
      const up = await runToEnd('bash', [join(ROOT, 'e2e/cluster.sh'), 'up'], { timeoutMs: 900_000 });
      if (up.code !== 0) throw new Error(`cluster.sh up failed (${up.code}):\n${up.stderr.slice(-3000)}`);
      kubeconfig = up.stdout.trim().split('\n').pop() as string;
    }
    const kubeConfig = loadKubeConfig(kubeconfig);
    const agentPath = join(STATE_DIR, 'agent.json');
    if (!existsSync(agentPath)) throw new Error(`no node agent (${agentPath} missing)`);
    const agent = JSON.parse(readFileSync(agentPath, 'utf8')) as AgentInfo;
    log(`cluster ready in ${((Date.now() - t0) / 1000).toFixed(1)} s for ${what}`);
    return await fn({ kubeconfig, kubeConfig, kube: new HttpKubeClient(kubeConfig), agent, started });
  } finally {
    await stop();
    cleanups.delete(stop);
    log(`${what}: cluster session (lock held) ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
}

// ---- namespaces ----

export async function createNamespace(kube: KubeClient, prefix: string, waitForServiceAccount = true): Promise<string> {
  const name = `bench-${prefix}-${randomBytes(3).toString('hex')}`;
  await kube.create(NAMESPACES, undefined, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'spawner.dev/bench': 'true' } },
  });
  // Pods are refused until the namespace's default ServiceAccount exists.
  if (waitForServiceAccount)
    await waitUntil(() => kube.get(SERVICE_ACCOUNTS, name, 'default'), `ServiceAccount ${name}/default`, 30_000, 100);
  return name;
}

/** Deletes the namespace; with `wait`, until it is gone (and with it every Pod, process and Service). */
export async function deleteNamespace(kube: KubeClient, name: string, wait: boolean, timeoutMs = 180_000): Promise<void> {
  await kube.delete(NAMESPACES, undefined, name, { propagationPolicy: 'Background' }).catch(() => false);
  if (wait)
    await waitUntil(
      async () => (await kube.get(NAMESPACES, undefined, name)) === undefined,
      `namespace ${name} to be gone`,
      timeoutMs,
      500,
    );
}

// ---- Service IPs ----

const SERVICE_CIDRS: ResourceType = {
  group: 'networking.k8s.io',
  version: 'v1',
  plural: 'servicecidrs',
  kind: 'ServiceCIDR',
  namespaced: false,
};
export const BENCH_SERVICE_CIDR = 'spawner-bench';

/**
 * The e2e cluster's Service range is a /24 (~250 ClusterIPs): too small for thousands of
 * backends, each with a Service. Kubernetes ≥ 1.33 extends it at run time with a ServiceCIDR
 * object; this adds 10.96.0.0/16 (no overlap with the pod network 10.88.0.0/16). Returns a
 * function that removes it again (for a cluster this session did not start).
 */
export async function extendServiceRange(kube: KubeClient): Promise<() => Promise<void>> {
  const existing = await kube.get(SERVICE_CIDRS, undefined, BENCH_SERVICE_CIDR);
  if (!existing)
    await kube.create(SERVICE_CIDRS, undefined, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'ServiceCIDR',
      metadata: { name: BENCH_SERVICE_CIDR },
      spec: { cidrs: ['10.96.0.0/16'] },
    } as KubeObject);
  // Its Ready condition comes from the controller manager's service-cidr controller, which the e2e
  // cluster does not run; the API server's allocator picks the range up from its informer.
  await sleep(1000);
  return async () => {
    if (!existing) await kube.delete(SERVICE_CIDRS, undefined, BENCH_SERVICE_CIDR).catch(() => false);
  };
}

// ---- API server metrics ----

/** apiserver_request_total by "VERB resource[/subresource]" (summed over codes, groups, scopes). */
export type RequestCounts = Map<string, number>;

export const WRITE_VERBS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'APPLY', 'DELETECOLLECTION']);

export interface ApiServerScrape {
  requests: RequestCounts;
  /** apiserver_request_duration_seconds sum and count by "VERB resource[/subresource]". */
  durations: Map<string, { sum: number; count: number }>;
}

async function scrapeApiServer(kubeConfig: KubeConfig): Promise<string> {
  const opts: https.RequestOptions = {};
  await kubeConfig.applyToHTTPSOptions(opts);
  const url = new URL('/metrics', kubeConfig.getCurrentCluster()?.server);
  return new Promise<string>((resolve, reject) => {
    const req = https.get(url, { ...opts, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics answered ${res.statusCode}`))));
    });
    req.on('error', reject);
  });
}

export async function apiServerMetrics(kubeConfig: KubeConfig): Promise<ApiServerScrape> {
  const text = await scrapeApiServer(kubeConfig);
  const requests: RequestCounts = new Map();
  const durations = new Map<string, { sum: number; count: number }>();
  for (const line of text.split('\n')) {
    const m =
      /^(apiserver_request_total|apiserver_request_duration_seconds_sum|apiserver_request_duration_seconds_count)\{([^}]*)\} (\S+)/.exec(
        line,
      );
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`;
    const value = Number(m[3]);
    if (m[1] === 'apiserver_request_total') requests.set(key, (requests.get(key) ?? 0) + value);
    else {
      const d = durations.get(key) ?? { sum: 0, count: 0 };
      if (m[1].endsWith('_sum')) d.sum += value;
      else d.count += value;
      durations.set(key, d);
    }
  }
  return { requests, durations };
}

export async function apiServerRequests(kubeConfig: KubeConfig): Promise<RequestCounts> {
  return (await apiServerMetrics(kubeConfig)).requests;
}

/** Mean API-server latency (ms) per write request kind between two scrapes. */
export function meanWriteLatency(before: ApiServerScrape, after: ApiServerScrape): Array<[string, number, number]> {
  const out: Array<[string, number, number]> = [];
  for (const [key, d] of after.durations) {
    if (!WRITE_VERBS.has(key.split(' ')[0])) continue;
    const b = before.durations.get(key) ?? { sum: 0, count: 0 };
    const count = d.count - b.count;
    if (count > 0) out.push([key, count, ((d.sum - b.sum) / count) * 1000]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}

/** Write requests between two snapshots, by "VERB resource", largest first. */
export function writeDelta(before: RequestCounts, after: RequestCounts): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const [key, v] of after) {
    if (!WRITE_VERBS.has(key.split(' ')[0])) continue;
    const d = v - (before.get(key) ?? 0);
    if (d > 0) out.push([key, d]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}

// ---- Spawner's components as host processes ----

export interface Component {
  child: Child;
  port: number;
  metrics(): Promise<string>;
}

/** Starts operator, sweeper or API from dist/ against the cluster; waits for /readyz unless told not to. */
export async function startComponent(
  name: 'operator' | 'sweeper' | 'api',
  args: string[],
  session: ClusterSession,
  opts: { env?: NodeJS.ProcessEnv; waitReady?: boolean; logName?: string; nodeArgs?: string[] } = {},
): Promise<Component> {
  const port = await freePort();
  const portFlag = name === 'api' ? '--port' : '--admin-port';
  const child = startChild(
    opts.logName ?? name,
    process.execPath,
    [...(opts.nodeArgs ?? []), dist(`${name}/src/main.js`), `${portFlag}=${port}`, '--log-level=warn', ...args],
    { env: { ...process.env, KUBECONFIG: session.kubeconfig, ...opts.env } },
  );
  const component: Component = {
    child,
    port,
    metrics: async () => (await httpGet(`http://127.0.0.1:${port}/metrics`, 10_000)).body,
  };
  if (opts.waitReady !== false) await waitReady(component, 120_000);
  return component;
}

export async function waitReady(c: Component, timeoutMs: number): Promise<void> {
  await waitUntil(
    async () => {
      if (c.child.process.exitCode !== null) throw new Error(`${c.child.name} exited; see ${c.child.logPath}`);
      return (await httpGet(`http://127.0.0.1:${c.port}/readyz`, 2000).catch(() => ({ status: 0 }))).status === 200;
    },
    `${c.child.name} /readyz`,
    timeoutMs,
    50,
  );
}

/** Sum of a Prometheus metric's samples whose labels match `match` (all of them by default). */
export function metricSum(text: string, name: string, match: (labels: string) => boolean = () => true): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    if (match(m[2] ?? '')) sum += Number(m[3]);
  }
  return sum;
}

// ---- following objects client-side ----

/**
 * Lists, then watches a resource in a namespace, calling `onObject` with every version and the
 * local time it arrived (the client-side clock all latencies are measured on). Rewatches from
 * the last resourceVersion when a watch ends; relists after a 410.
 */
export class Follower<T extends KubeObject> {
  private handle?: WatchHandle;
  private stopped = false;
  private rv = '';

  constructor(
    private readonly kube: KubeClient,
    private readonly type: ResourceType,
    private readonly namespace: string,
    private readonly onObject: (obj: T, at: number, deleted: boolean) => void,
  ) {}

  async start(): Promise<void> {
    const list = await this.kube.list<T>(this.type, this.namespace);
    const at = Date.now();
    for (const o of list.items) this.onObject(o, at, false);
    this.rv = list.resourceVersion;
    void this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      this.handle = this.kube.watch<T>(
        this.type,
        this.namespace,
        { resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds: 600 },
        (e) => {
          const rv = e.object.metadata?.resourceVersion;
          if (rv) this.rv = rv;
          if (e.type !== 'BOOKMARK') this.onObject(e.object, Date.now(), e.type === 'DELETED');
        },
      );
      try {
        await this.handle.done;
      } catch (err) {
        if (this.stopped) return;
        if ((err as { status?: number }).status === 410) {
          const list = await this.kube.list<T>(this.type, this.namespace);
          this.rv = list.resourceVersion;
          const at = Date.now();
          for (const o of list.items) this.onObject(o, at, false);
        } else await sleep(200);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.handle?.abort();
  }
}

/** Runs `task(i)` for i in [0, n) with at most `concurrency` at once. */
export async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

/** The node agent's view of the pods of a namespace (process timings). */
export async function agentPods(session: ClusterSession, namespace?: string): Promise<AgentPod[]> {
  const { body } = await httpGet(`${session.agent.url}/pods`, 30_000);
  const pods = (JSON.parse(body) as { pods: AgentPod[] }).pods;
  return namespace ? pods.filter((p) => p.namespace === namespace) : pods;
}
