/**
 * The chart installed for real with the Go-built helm: the node agent runs the operator, API and
 * sweeper from their Deployment and DaemonSet, with the ServiceAccount credentials the chart's
 * RBAC grants. A real Prometheus (Debian's) then scrapes them and the dashboard's queries are run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import * as yaml from 'js-yaml';
import WebSocket from 'ws';
import type { SessionBackendPool, SessionLivedBackend } from '../common/src/backend';
import { LABEL_POOL, POOL_API_VERSION, POOL_KIND } from '../common/src/constants';
import { BACKENDS, PODS, POOLS } from '../common/src/kube/resources';
import type { KubeObject, ResourceType } from '../common/src/kube/types';
import { writeFigures } from './support/figures';
import { StallWatch } from './support/stalls';
import { freePort } from './support/components';
import { TEST_IMAGE } from './support/backends';
import { installChart, readyComponentPod, RELEASE, uninstallChart, upgradeChart } from './support/chart';
import {
  adminClient,
  containerLogs,
  createNamespace,
  describeWithAgent,
  helm,
  kubectl,
  ROOT,
  stateDir,
  waitFor,
} from './support/cluster';

jest.setTimeout(300_000);

const TOKEN = 'e2e-chart-token-0123456789abcdef';

describeWithAgent('chart', () => {
  let ns = '';
  let apiBase = '';
  const startedAt = Date.now();

  const componentPod = (component: string): Promise<V1Pod | undefined> => readyComponentPod(ns, component);

  beforeAll(async () => {
    ns = await createNamespace('chart');
    // The node agent caps termination grace at 5 s: the API's drain (1 s delay + 3 s) fits in it.
    apiBase = await installChart(ns, TOKEN, [
      'logLevel=debug',
      'operator.replicas=2',
      'api.drain.delaySeconds=1',
      'api.drain.seconds=3',
    ]);
  });

  afterAll(() => uninstallChart(ns));

  const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

  async function spawnAndWait(body: Record<string, unknown>): Promise<{ name: string; url: string; phase: string }> {
    const res = await fetch(`${apiBase}/v1/backends`, { method: 'POST', headers: auth, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { name: string; url: string };
    const waited = (await (
      await fetch(`${apiBase}/v1/backends/${created.name}/wait?timeoutSeconds=90`, { headers: auth })
    ).json()) as { phase: string };
    return { ...created, phase: waited.phase };
  }

  test('chart: helm install runs spawner in the cluster', async () => {
    // Every component runs from the chart's workloads, as Pods of the node agent.
    for (const component of ['operator', 'api', 'sweeper']) expect(await componentPod(component)).toBeDefined();
    // With the chart's ServiceAccount, not admin credentials: the API's account may not list Secrets.
    const canI = await kubectl(
      ['auth', 'can-i', 'list', 'secrets', '-n', ns, `--as=system:serviceaccount:${ns}:${RELEASE}-api`],
      { allowFail: true },
    );
    expect(canI.stdout.trim()).toBe('no');

    const backend = await spawnAndWait({ image: TEST_IMAGE, gracePeriodSeconds: 60 });
    expect(backend.phase).toBe('Ready');
    // Reachable through the entry point with its token.
    const page = await fetch(backend.url);
    expect(page.status).toBe(200);
    const del = await fetch(`${apiBase}/v1/backends/${backend.name}`, { method: 'DELETE', headers: auth });
    expect(del.status).toBe(202);
  });

  test('chart: helm test spawns a backend through the API and sees it Ready', async () => {
    // The test cluster has no Service routing or DNS, so the test Pod is pointed at the API Pod.
    const podIp = new URL(apiBase).hostname;
    await upgradeChart(ns, [`tests.apiUrl=http://${podIp}:8080`]);
    const result = await helm(['test', RELEASE, '--namespace', ns, '--timeout', '120s'], {
      timeoutMs: 150_000,
      allowFail: true,
    });
    expect({ code: result.code, out: result.stdout.slice(-2000) }).toMatchObject({ code: 0 });
    expect(result.stdout).toMatch(/Phase:\s+Succeeded/);
  });

  test('chart: rbac is least privilege', async () => {
    const sa = (c: string) => `--as=system:serviceaccount:${ns}:${RELEASE}-${c}`;
    const can = async (component: string, verb: string, resource: string, namespace = ns): Promise<string> => {
      const [name, subresource] = resource.split('/');
      const sub = subresource ? [`--subresource=${subresource}`] : [];
      return (
        await kubectl(['auth', 'can-i', verb, name, ...sub, '-n', namespace, sa(component)], { allowFail: true })
      ).stdout.trim();
    };
    const expectations: Array<[string, string, string, string, string?]> = [
      ['operator', 'create', 'pods', 'yes'],
      ['operator', 'delete', 'services', 'yes'],
      ['operator', 'patch', 'sessionlivedbackends.spawner.dev/status', 'yes'],
      // blockOwnerDeletion on its Pods and Services, under OwnerReferencesPermissionEnforcement:
      ['operator', 'update', 'sessionlivedbackends.spawner.dev/finalizers', 'yes'],
      ['operator', 'update', 'sessionlivedbackends.spawner.dev', 'no'],
      ['operator', 'get', 'secrets', 'no'],
      ['operator', 'create', 'deployments.apps', 'no'],
      ['operator', 'create', 'pods', 'no', 'default'],
      ['operator', 'delete', 'nodes', 'no'],
      ['sweeper', 'patch', 'sessionlivedbackends.spawner.dev/status', 'yes'],
      ['sweeper', 'list', 'pods', 'yes'],
      ['sweeper', 'delete', 'sessionlivedbackends.spawner.dev', 'no'],
      ['sweeper', 'create', 'pods', 'no'],
      ['sweeper', 'get', 'secrets', 'no'],
      ['api', 'create', 'sessionlivedbackends.spawner.dev', 'yes'],
      ['api', 'delete', 'sessionlivedbackends.spawner.dev', 'yes'],
      ['api', 'delete', 'pods', 'no'],
      ['api', 'update', 'sessionlivedbackends.spawner.dev/finalizers', 'no'],
      ['api', 'get', 'secrets', 'no'],
      ['api', 'create', 'sessionlivedbackends.spawner.dev', 'no', 'default'],
    ];
    const results = await Promise.all(
      expectations.map(async ([component, verb, resource, , namespace]) => ({
        component,
        verb,
        resource,
        namespace,
        answer: await can(component, verb, resource, namespace),
      })),
    );
    expect(results.map((r) => `${r.component} ${r.verb} ${r.resource} in ${r.namespace ?? 'release ns'}: ${r.answer}`)).toEqual(
      expectations.map(
        ([component, verb, resource, answer, namespace]) =>
          `${component} ${verb} ${resource} in ${namespace ?? 'release ns'}: ${answer}`,
      ),
    );
  });

  test('metrics: dashboard queries return data', async () => {
    // A real Prometheus. Debian builds it without Kubernetes discovery, so the test discovers the
    // Pods the way the chart's PodMonitor and ServiceMonitor select them (by container port name)
    // and hands them over through file-based discovery, refreshed every second.
    const dir = mkdtempSync(join(tmpdir(), 'spawner-prom-'));
    const port = await freePort();
    const targetsFile = join(dir, 'targets.json');
    const discover = async (): Promise<void> => {
      const pods = await adminClient().list<V1Pod>(PODS, ns, {});
      const groups = pods.items.flatMap((pod) =>
        (pod.spec?.containers ?? []).flatMap((c) =>
          (c.ports ?? [])
            .filter((p) => ['metrics', 'http', 'admin'].includes(p.name ?? '') && pod.status?.podIP)
            .map((p) => ({
              targets: [`${pod.status!.podIP}:${p.containerPort}`],
              labels: { job: p.name === 'admin' ? 'spawner-sidecars' : 'spawner-components', pod: pod.metadata!.name! },
            })),
        ),
      );
      writeFileSync(`${targetsFile}.tmp`, JSON.stringify(groups));
      renameSync(`${targetsFile}.tmp`, targetsFile);
    };
    await discover();
    const discovery = setInterval(() => void discover().catch(() => undefined), 1000);
    writeFileSync(
      join(dir, 'prometheus.yml'),
      yaml.dump({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        scrape_configs: [{ job_name: 'spawner', file_sd_configs: [{ files: [targetsFile], refresh_interval: '1s' }] }],
      }),
    );
    const prom: ChildProcess = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    );
    const POOL = 'metrics';
    try {
      const promUrl = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.status === 200, {
        description: 'Prometheus ready',
      });

      // Traffic for the warm-pool panels: a pool of one, claimed through the API (a warm claim, a
      // start latency with launch warm) and refilled (its ready Pods). Claim conflicts need claims
      // racing for one Pod, so their query shares the claims panel rather than being exempted.
      await adminClient().create<SessionBackendPool>(POOLS, ns, {
        apiVersion: POOL_API_VERSION,
        kind: POOL_KIND,
        metadata: { name: POOL, namespace: ns },
        spec: { template: { containers: [{ name: 'app', image: TEST_IMAGE }] }, replicas: 1 },
      });
      await waitFor(
        async () => ((await adminClient().get<SessionBackendPool>(POOLS, ns, POOL))?.status?.readyReplicas ?? 0) >= 1,
        {
          description: 'a ready Pod in the pool',
          timeoutMs: 90_000,
        },
      );
      const warm = await spawnAndWait({ pool: POOL, gracePeriodSeconds: 5 });
      expect(warm.phase).toBe('Ready');
      expect((await adminClient().get<SessionLivedBackend>(BACKENDS, ns, warm.name))?.status?.launch).toBe('Warm');

      // Traffic for every other panel: a backend spawned, used over a WebSocket, left to be swept,
      // and a request that fails.
      const backend = await spawnAndWait({ image: TEST_IMAGE, gracePeriodSeconds: 5 });
      expect(backend.phase).toBe('Ready');
      const ws = new WebSocket(backend.url.replace(/^http/, 'ws'));
      await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      await new Promise((r) => setTimeout(r, 3000));
      ws.close();
      await fetch(`${apiBase}/v1/backends/no-such-backend`, { headers: auth });
      // Gone from the cluster (the API keeps answering its ending for a while, by design).
      await waitFor(async () => (await adminClient().get(BACKENDS, ns, backend.name)) === undefined, {
        description: 'the backend to be swept and deleted',
        timeoutMs: 60_000,
      });
      await new Promise((r) => setTimeout(r, 4000)); // a few more scrapes

      const dashboard = JSON.parse(readFileSync(join(ROOT, 'chart/dashboards/spawner.json'), 'utf8')) as {
        panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
      };
      const start = Math.floor(startedAt / 1000);
      const end = Math.ceil(Date.now() / 1000);
      const empty: string[] = [];
      for (const panel of dashboard.panels) {
        const series = await Promise.all(
          panel.targets.map(async (t) => {
            const q = new URLSearchParams({ query: t.expr, start: String(start), end: String(end), step: '2' });
            const r = (await (await fetch(`${promUrl}/api/v1/query_range?${q}`)).json()) as {
              status: string;
              data: { result: unknown[] };
              error?: string;
            };
            expect({ expr: t.expr, status: r.status, error: r.error }).toEqual({
              expr: t.expr,
              status: 'success',
              error: undefined,
            });
            return r.data.result.length;
          }),
        );
        if (!series.some((n) => n > 0)) empty.push(panel.title);
      }
      expect(empty).toEqual([]);
    } finally {
      clearInterval(discovery);
      prom.kill('SIGTERM');
      // Its Pods are Spawner's: the later tests count those, and uninstall must leave none.
      await adminClient()
        .delete(POOLS, ns, POOL)
        .catch(() => false);
      await waitFor(
        async () => (await adminClient().list<V1Pod>(PODS, ns, { labelSelector: `${LABEL_POOL}=${POOL}` })).items.length === 0,
        { description: 'the pool and its unclaimed Pods to be gone', timeoutMs: 60_000 },
      );
    }
  });

  test('chart: upgrade keeps sessions', async () => {
    // No kube-proxy here: clients reach the entry point as a Service would route them, at a Ready
    // endpoint of its EndpointSlice (which the API's readiness, failing first on SIGTERM, steers).
    const ENDPOINT_SLICES: ResourceType = {
      group: 'discovery.k8s.io',
      version: 'v1',
      plural: 'endpointslices',
      kind: 'EndpointSlice',
      namespaced: true,
    };
    type Slice = KubeObject & { endpoints?: Array<{ addresses: string[]; conditions?: { ready?: boolean } }> };
    const readyEntryPoints = async (): Promise<string[]> => {
      const slices = await adminClient().list<Slice>(ENDPOINT_SLICES, ns, {
        labelSelector: `kubernetes.io/service-name=${RELEASE}-entry-point`,
      });
      return slices.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready).map((e) => e.addresses[0]));
    };
    const backendPods = async (): Promise<string[]> =>
      (await adminClient().list<V1Pod>(PODS, ns, { labelSelector: 'app.kubernetes.io/managed-by=spawner' })).items
        .map((p) => `${p.metadata!.name}/${p.metadata!.uid}`)
        .sort();

    /** A session that echoes every 100 ms and, when its connection ends, reconnects through the "Service". */
    class Session {
      lastEchoAt = 0;
      /** Silences between echoes longer than 300 ms, judged at the end against the stall watch. */
      gaps: Array<{ from: number; to: number }> = [];
      echoes = 0;
      reconnects = 0;
      closeCodes: number[] = [];
      servedBy = new Set<string>();
      private ws?: WebSocket;
      private timer?: NodeJS.Timeout;
      private stopped = false;
      constructor(private readonly url: URL) {}

      async connect(): Promise<void> {
        while (!this.stopped) {
          const ips = await readyEntryPoints().catch(() => []);
          const ip = ips[Math.floor(Math.random() * ips.length)];
          if (ip) {
            const target = new URL(this.url);
            target.protocol = 'ws:';
            target.hostname = ip;
            const ws = new WebSocket(target);
            const opened = await new Promise<boolean>((resolve) => {
              ws.once('open', () => resolve(true));
              ws.once('error', () => resolve(false));
            });
            if (opened) {
              this.ws = ws;
              this.servedBy.add(ip);
              ws.on('message', () => {
                const now = Date.now();
                if (this.lastEchoAt && now - this.lastEchoAt > 300) this.gaps.push({ from: this.lastEchoAt, to: now });
                this.lastEchoAt = now;
                this.echoes++;
              });
              ws.once('close', (code) => {
                this.closeCodes.push(code);
                if (this.stopped) return;
                this.reconnects++;
                void this.connect();
              });
              return;
            }
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }

      start(): void {
        this.timer = setInterval(() => {
          if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(`ping ${Date.now()}`);
        }, 100);
      }

      stop(): void {
        this.stopped = true;
        clearInterval(this.timer);
        this.ws?.close();
      }
    }

    expect((await readyEntryPoints()).length).toBe(2);
    const backends = await Promise.all([1, 2, 3].map(() => spawnAndWait({ image: TEST_IMAGE, gracePeriodSeconds: 30 })));
    expect(backends.map((b) => b.phase)).toEqual(['Ready', 'Ready', 'Ready']);
    const podsBefore = await backendPods();
    const sessions = backends.flatMap((b) => [new Session(new URL(b.url)), new Session(new URL(b.url))]);
    await Promise.all(sessions.map((s) => s.connect()));
    sessions.forEach((s) => s.start());
    await new Promise((r) => setTimeout(r, 1500));
    expect(sessions.every((s) => s.echoes > 5)).toBe(true);

    const apiPodsBefore = (
      await adminClient().list<V1Pod>(PODS, ns, { labelSelector: 'app.kubernetes.io/component=api' })
    ).items.map((p) => p.metadata!.uid);
    const stalls = new StallWatch(stateDir());
    const upgradeStarted = Date.now();
    // A changed release: every component's Pods roll (log level), the API's config changes too.
    await upgradeChart(ns, ['logLevel=info', 'api.drain.seconds=2']);
    // Until every old API Pod is gone (drained and exited), then a little longer.
    await waitFor(
      async () => {
        const pods = (await adminClient().list<V1Pod>(PODS, ns, { labelSelector: 'app.kubernetes.io/component=api' })).items;
        return pods.every((p) => !apiPodsBefore.includes(p.metadata!.uid!));
      },
      { description: 'the old API Pods to be gone', timeoutMs: 60_000 },
    );
    const upgradeMs = Date.now() - upgradeStarted;
    await new Promise((r) => setTimeout(r, 2000));
    const endedAt = Date.now();
    sessions.forEach((s) => s.stop());
    stalls.stop();
    const silentMs = sessions.map((s) => stalls.awakeMs(s.lastEchoAt, endedAt));

    const longest = (s: Session, measure: (from: number, to: number) => number): number =>
      Math.max(0, ...s.gaps.map((g) => measure(g.from, g.to)));
    // Per session, the longest silence the test process was awake for (what the assertion judges).
    const gapsMs = sessions.map((s) => longest(s, (from, to) => stalls.awakeMs(from, to)));
    const figures = {
      upgradeMs,
      sessions: sessions.length,
      maxGapMs: Math.max(...gapsMs),
      // ... and as the wall clock saw it, with the machine's stalls that explain the difference.
      rawMaxGapMs: Math.max(...sessions.map((s) => longest(s, (from, to) => to - from))),
      testProcessStalls: stalls.stalls.map((s) => ({ atMs: s.from - upgradeStarted, ms: s.to - s.from })),
      gapsMs,
      reconnects: sessions.map((s) => s.reconnects),
      closeCodes: sessions.flatMap((s) => s.closeCodes),
      echoes: sessions.map((s) => s.echoes),
    };
    writeFigures('chart-upgrade-keeps-sessions', figures);
    process.stdout.write(`upgrade keeps sessions: ${JSON.stringify(figures)}\n`);

    // Every session echoed until the end and was never silent for 5 s; no backend was swept or restarted.
    expect(silentMs.every((ms) => ms < 1000)).toBe(true);
    expect(figures.maxGapMs).toBeLessThan(5000);
    expect(await backendPods()).toEqual(podsBefore);
    const api = await waitFor(() => componentPod('api'), { description: 'a ready API pod' });
    apiBase = `http://${api.status!.podIP}:8080`;
    for (const b of backends) {
      const res = await fetch(`${apiBase}/v1/backends/${b.name}`, { headers: auth });
      expect({ name: b.name, phase: ((await res.json()) as { phase: string }).phase }).toEqual({ name: b.name, phase: 'Ready' });
    }
    await Promise.all(backends.map((b) => fetch(`${apiBase}/v1/backends/${b.name}`, { method: 'DELETE', headers: auth })));
  });

  test('chart: crd upgrade', async () => {
    // A later chart whose CRD changed: an added printer column.
    const crdName = 'sessionlivedbackends.spawner.dev';
    const dir = join(mkdtempSync(join(tmpdir(), 'spawner-chart-')), 'spawner');
    cpSync(join(ROOT, 'chart'), dir, { recursive: true });
    const crdFile = join(dir, 'crds', `${crdName}.yaml`);
    const crd = yaml.load(readFileSync(crdFile, 'utf8')) as {
      spec: { versions: Array<{ additionalPrinterColumns?: Array<Record<string, unknown>> }> };
    };
    crd.spec.versions[0].additionalPrinterColumns = [
      ...(crd.spec.versions[0].additionalPrinterColumns ?? []),
      { name: 'Upgraded', type: 'string', jsonPath: '.metadata.uid', priority: 1, description: 'Added by the e2e upgrade' },
    ];
    writeFileSync(crdFile, yaml.dump(crd));
    const columns = async (): Promise<string[]> => {
      const out = (await kubectl(['get', 'crd', crdName, '-o', 'json'])).stdout;
      const live = JSON.parse(out) as { spec: { versions: Array<{ additionalPrinterColumns?: Array<{ name: string }> }> } };
      return (live.spec.versions[0].additionalPrinterColumns ?? []).map((c) => c.name);
    };
    const upgrade = (chart: string): Promise<void> => upgradeChart(ns, [], chart);
    const applyCrds = async (chart: string): Promise<void> => {
      // The README's upgrade path: `helm show crds <chart> | kubectl apply --server-side --force-conflicts -f -`
      const crds = (await helm(['show', 'crds', chart])).stdout;
      await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], { input: crds });
    };
    try {
      expect(await columns()).not.toContain('Upgraded');
      // helm upgrade alone never touches crds/.
      await upgrade(dir);
      expect(await columns()).not.toContain('Upgraded');
      // The documented path: the chart's CRDs first, then the upgrade.
      await applyCrds(dir);
      await upgrade(dir);
      expect(await columns()).toContain('Upgraded');
      const table = (await kubectl(['get', 'sessionlivedbackends', '-n', ns, '-o', 'wide'])).stdout + '';
      expect(table === '' || /UPGRADED/.test(table) || /No resources/.test(table)).toBe(true);
    } finally {
      // Back to this chart's CRD, for what follows on this cluster.
      await applyCrds(join(ROOT, 'chart'));
      await upgrade(join(ROOT, 'chart'));
    }
    expect(await columns()).not.toContain('Upgraded');
  });

  test('chart: helm uninstall leaves nothing behind but the CRD', async () => {
    await helm(['uninstall', RELEASE, '--namespace', ns, '--wait', '--timeout', '120s'], { timeoutMs: 150_000 });
    const kinds =
      'deployments,daemonsets,replicasets,pods,services,serviceaccounts,roles,rolebindings,secrets,configmaps,networkpolicies';
    const left = await waitFor(
      async () => {
        const out = (
          await kubectl(['get', kinds, '-n', ns, '-l', `app.kubernetes.io/instance=${RELEASE}`, '-o', 'name'])
        ).stdout.trim();
        return out === '' ? 'nothing' : undefined;
      },
      { description: 'no chart objects left', timeoutMs: 60_000 },
    );
    expect(left).toBe('nothing');
    // Pods of the chart's workloads are gone too (they carry only selector labels).
    const pods = await adminClient().list<V1Pod>(PODS, ns, { labelSelector: `app.kubernetes.io/instance=${RELEASE}` });
    expect(pods.items).toEqual([]);
    expect((await kubectl(['get', 'crd', 'sessionlivedbackends.spawner.dev', '-o', 'name'])).stdout.trim()).toBe(
      'customresourcedefinition.apiextensions.k8s.io/sessionlivedbackends.spawner.dev',
    );
  });
});

/**
 * The chart with its Ingress enabled, default values otherwise. No ingress controller runs here, so
 * the test sends what one sends (Host, X-Forwarded-Proto/Host/For) to the API and entry point Pods,
 * at the paths the Ingress routes (/ to the API, /p/ to the entry point).
 */
describeWithAgent('chart behind an ingress', () => {
  const HOST = 'spawner.example.com';
  let ns = '';

  beforeAll(async () => {
    ns = await createNamespace('chart-ingress');
    await installChart(ns, TOKEN, ['ingress.enabled=true']);
  });

  afterAll(() => uninstallChart(ns));

  /** A Ready API Pod of the current release revision: its env holds `name=value`. */
  const apiPodWith = (name: string, value: string): Promise<string> =>
    waitFor(
      async () => {
        const pods = await adminClient().list<V1Pod>(PODS, ns, {
          labelSelector: `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=api`,
        });
        const pod = pods.items.find(
          (p) =>
            !p.metadata?.deletionTimestamp &&
            p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
            p.spec?.containers[0].env?.some((e) => e.name === name && e.value === value),
        );
        return pod?.status?.podIP;
      },
      { description: `a ready API pod with ${name}=${value}`, timeoutMs: 120_000 },
    );

  const upgradeWith = (sets: string[], jsonSets: string[] = []) =>
    helm(
      [
        'upgrade',
        RELEASE,
        join(ROOT, 'chart'),
        '--namespace',
        ns,
        '--reuse-values',
        ...sets.flatMap((s) => ['--set', s]),
        ...jsonSets.flatMap((s) => ['--set-json', s]),
      ].concat(['--wait', '--timeout', '120s']),
      { timeoutMs: 150_000 },
    );

  /** An HTTP request with any headers, Host included (what fetch would not let a test set). */
  function request(
    url: string,
    opts: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        url,
        {
          method: opts.method ?? 'GET',
          agent: false,
          timeout: 10_000,
          headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...opts.headers },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${url} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** What ingress-nginx sends upstream for a client of http(s)://HOST. */
  const fromIngress = (proto: 'http' | 'https'): Record<string, string> => ({
    host: HOST,
    'x-forwarded-proto': proto,
    'x-forwarded-host': HOST,
    'x-forwarded-port': proto === 'https' ? '443' : '80',
    'x-forwarded-for': '203.0.113.7',
    'x-real-ip': '203.0.113.7',
  });

  type Urls = { name: string; url: string; readyUrl: string; statusUrl: string };

  /** A backend created through /v1 and one through /spawn, as a client behind the Ingress would. */
  async function spawnBoth(apiIp: string, headers: Record<string, string>): Promise<Urls[]> {
    const v1 = await request(`http://${apiIp}:8080/v1/backends`, {
      method: 'POST',
      headers,
      body: { image: TEST_IMAGE, gracePeriodSeconds: 30 },
    });
    expect(v1.status).toBe(201);
    const legacy = await request(`http://${apiIp}:8080/spawn`, { method: 'POST', headers, body: { image: TEST_IMAGE } });
    expect(legacy.status).toBe(200);
    return [JSON.parse(v1.body) as Urls, JSON.parse(legacy.body) as Urls];
  }

  /** Where each URL points: scheme, host (with any port), and path. */
  const shape = (u: Urls) =>
    [u.url, u.readyUrl, u.statusUrl].map((s) => {
      const p = new URL(s);
      return `${p.protocol}//${p.host}${p.pathname}`;
    });

  test('chart: URLs work behind the ingress', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const apiIp = await apiPodWith('SPAWNER_API_ENTRY_POINT_BASE_URL', `http://${HOST}`);

    // Default values: the Ingress serves http://HOST; a forged X-Forwarded-Host does not steer the URLs.
    const created = await spawnBoth(apiIp, { ...auth, ...fromIngress('http') });
    const forged = await spawnBoth(apiIp, { ...auth, ...fromIngress('http'), 'x-forwarded-host': 'evil.example' });
    for (const b of [...created, ...forged]) {
      expect(shape(b)).toEqual([
        `http://${HOST}/p/${b.name}/`,
        `http://${HOST}/backend/${b.name}/ready`,
        `http://${HOST}/backend/${b.name}/status`,
      ]);
      expect(b.url).not.toContain(':8081');
    }

    // The URLs work where the Ingress sends them: readyUrl (/ → the API Service) redirects to url,
    // and url (/p/ → the entry point Service) reaches the backend.
    for (const b of created) {
      const ready = new URL(b.readyUrl);
      const redirect = await waitFor(
        async () => {
          const r = await request(`http://${apiIp}:8080${ready.pathname}${ready.search}`, { headers: fromIngress('http') });
          return r.status === 302 ? r : undefined;
        },
        { description: `${b.name} Ready (302 from its readyUrl)`, timeoutMs: 90_000 },
      );
      expect(redirect.headers.location).toBe(b.url);
      const url = new URL(b.url);
      const page = await request(`http://${apiIp}:8081${url.pathname}${url.search}`, { headers: fromIngress('http') });
      expect(page.status).toBe(200);
      const status = new URL(b.statusUrl);
      const st = await request(`http://${apiIp}:8080${status.pathname}${status.search}`, { headers: fromIngress('http') });
      expect(JSON.parse(st.body)).toMatchObject({ state: 'Ready' });
    }

    // TLS on the Ingress (a certificate for HOST): the URLs are https, still without a port.
    await upgradeWith([`ingress.tls[0].hosts[0]=${HOST}`, 'ingress.tls[0].secretName=spawner-tls']);
    const tlsApiIp = await apiPodWith('SPAWNER_API_ENTRY_POINT_BASE_URL', `https://${HOST}`);
    for (const b of await spawnBoth(tlsApiIp, { ...auth, ...fromIngress('https') })) {
      expect(shape(b)).toEqual([
        `https://${HOST}/p/${b.name}/`,
        `https://${HOST}/backend/${b.name}/ready`,
        `https://${HOST}/backend/${b.name}/status`,
      ]);
    }
  });

  test('chart: anonymous API when opted in (and still 401 by default)', async () => {
    // The release so far runs with the default: bearer tokens.
    const before = await apiPodWith('SPAWNER_API_TOKEN_FILE', '/etc/spawner/tokens/tokens');
    expect((await request(`http://${before}:8080/v1/backends`)).status).toBe(401);
    expect((await request(`http://${before}:8080/spawn`, { method: 'POST', body: { image: TEST_IMAGE } })).status).toBe(401);
    expect((await request(`http://${before}:8080/v1/backends`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(
      200,
    );

    const upgrade = await upgradeWith(['api.auth.anonymous=true'], ['api.auth.tokens=[]']);
    // Announced in NOTES ...
    expect(upgrade.stdout).toContain('WARNING: api.auth.anonymous=true, the API runs WITHOUT bearer tokens');
    const apiIp = await apiPodWith('SPAWNER_API_ALLOW_ANONYMOUS', 'true');

    // ... and protected routes answer without a token.
    expect((await request(`http://${apiIp}:8080/v1/backends`)).status).toBe(200);
    const spawned = await request(`http://${apiIp}:8080/spawn`, { method: 'POST', body: { image: TEST_IMAGE } });
    expect(spawned.status).toBe(200);
    const { name } = JSON.parse(spawned.body) as Urls;
    expect((await request(`http://${apiIp}:8080/v1/backends/${name}`, { method: 'DELETE' })).status).toBe(202);

    // ... and loudly at start, in the API's log.
    const pod = (
      await adminClient().list<V1Pod>(PODS, ns, {
        labelSelector: `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=api`,
      })
    ).items.find((p) => p.status?.podIP === apiIp)!;
    const log = await containerLogs(ns, pod.metadata!.name!, 'api', 1000);
    expect(log).toMatch(/"level":"warn".*API authentication is off/);
    // The token Secret is gone with the opt-in.
    expect((await kubectl(['get', 'secret', `${RELEASE}-api-tokens`, '-n', ns], { allowFail: true })).code).not.toBe(0);
  });
});
