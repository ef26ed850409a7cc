/**
 * The chart installed for real with the Go-built helm: the node agent runs the operator, API and
 * sweeper from their Deployment and DaemonSet, with the ServiceAccount credentials the chart's
 * RBAC grants. A real Prometheus (Debian's) then scrapes them and the dashboard's queries are run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import * as yaml from 'js-yaml';
import WebSocket from 'ws';
import { PODS } from '../common/src/kube/resources';
import { freePort } from './support/components';
import { TEST_IMAGE } from './support/backends';
import { installChart, readyComponentPod, RELEASE, uninstallChart } from './support/chart';
import { adminClient, createNamespace, describeWithAgent, helm, kubectl, ROOT, waitFor } from './support/cluster';

jest.setTimeout(300_000);

const TOKEN = 'e2e-chart-token-0123456789abcdef';

describeWithAgent('chart', () => {
  let ns = '';
  let apiBase = '';
  const startedAt = Date.now();

  const componentPod = (component: string): Promise<V1Pod | undefined> => readyComponentPod(ns, component);

  beforeAll(async () => {
    ns = await createNamespace('chart');
    apiBase = await installChart(ns, TOKEN, ['logLevel=debug', 'operator.replicas=2']);
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
    await helm(
      [
        'upgrade',
        RELEASE,
        join(ROOT, 'chart'),
        '--namespace',
        ns,
        '--reuse-values',
        '--set',
        `tests.apiUrl=http://${podIp}:8080`,
        '--wait',
      ],
      {
        timeoutMs: 120_000,
      },
    );
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
    try {
      const promUrl = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.status === 200, {
        description: 'Prometheus ready',
      });

      // Traffic for every panel: a backend spawned, used over a WebSocket, left to be swept, and a
      // request that fails.
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
      await waitFor(async () => (await fetch(`${apiBase}/v1/backends/${backend.name}`, { headers: auth })).status === 404, {
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
    }
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
