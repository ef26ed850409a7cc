/**
 * Security properties checked on the real system: every route of the OpenAPI document (but
 * health, readiness, metrics and the document) refuses missing and wrong credentials; a backend's
 * connection token opens that backend only (entry point and sidecar), and never reaches the app;
 * no secret appears in any component's logs or in an error body; the chart's containers and the
 * sidecars the operator injects run non-root, read-only and without capabilities; the chart's
 * NetworkPolicy selects what runs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container, V1DaemonSet, V1Deployment, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import * as yaml from 'js-yaml';
import type { SessionLivedBackend } from '../common/src/backend';
import { BACKENDS, NAMESPACES, PODS } from '../common/src/kube/resources';
import { TEST_IMAGE } from './support/backends';
import { installChart, RELEASE, uninstallChart } from './support/chart';
import {
  adminClient,
  agentInfo,
  containerLogs,
  createNamespace,
  describeWithAgent,
  helm,
  ROOT,
  useNamespace,
} from './support/cluster';
import { startComponent, stopAll, type Component } from './support/components';
import { openWebSocket, rawRequest, statusOf, upgradeStatus, writeFigures } from './support/faults';

jest.setTimeout(600_000);

const TOKEN = 'e2e-security-api-token-7f3a9c2e5b1d';
const SIGNING_SECRET = 'e2e-security-signing-secret-4c8e1a7d2f6b';

interface Created {
  name: string;
  url: string;
  token: string;
  podIP: string;
}

describeWithAgent('security: API, tokens and logs', () => {
  const ns = useNamespace('sec');
  let operator: Component;
  let sweeper: Component;
  let api: Component;
  let base = '';
  let a: Created;
  let b: Created;
  /** Every connection token handed out in this file, and every body the API and entry point sent. */
  const handedOut = new Set<string>();
  const bodies: Array<{ status: number; text: string }> = [];

  const record = async (res: Response): Promise<string> => {
    const text = await res.text();
    bodies.push({ status: res.status, text });
    return text;
  };

  async function spawnReady(): Promise<Created> {
    const res = await fetch(`${base}/v1/backends`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 600 }),
    });
    expect(res.status).toBe(201);
    const body = JSON.parse(await record(res)) as { name: string; url: string };
    const token = new URL(body.url).searchParams.get('spawner_token')!;
    handedOut.add(token);
    const waited = await fetch(`${base}/v1/backends/${body.name}/wait?timeoutSeconds=90`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect((JSON.parse(await record(waited)) as { phase: string }).phase).toBe('Ready');
    const obj = await adminClient().get<SessionLivedBackend>(BACKENDS, ns.name, body.name);
    return { name: body.name, url: body.url, token, podIP: obj!.status!.podIP! };
  }

  beforeAll(async () => {
    // Everything at debug level: the most a log could give away.
    operator = await startComponent(
      'operator',
      [`--namespaces=${ns.name}`, '--log-level=debug', '--sidecar-env={"LOG_LEVEL":"debug"}'],
      {
        logName: 'security-operator',
      },
    );
    sweeper = await startComponent(
      'sweeper',
      [`--namespaces=${ns.name}`, `--node-name=${agentInfo()!.nodeName}`, '--log-level=debug'],
      {
        logName: 'security-sweeper',
      },
    );
    api = await startComponent(
      'api',
      [`--namespace=${ns.name}`, '--entry-point-port=0', '--host=127.0.0.1', '--entry-point-host=127.0.0.1', '--log-level=debug'],
      { env: { SPAWNER_API_TOKENS: TOKEN, SPAWNER_API_SIGNING_SECRET: SIGNING_SECRET }, logName: 'security-api' },
    );
    base = `http://127.0.0.1:${api.port}`;
    [a, b] = await Promise.all([spawnReady(), spawnReady()]);
  });
  afterAll(() => stopAll([api, sweeper, operator]));

  test('security: every route in the OpenAPI document except health, readiness, metrics and the document refuses a missing or wrong token', async () => {
    const doc = JSON.parse(await record(await fetch(`${base}/openapi.json`))) as {
      paths: Record<string, Record<string, { security: Array<Record<string, unknown>>; requestBody?: unknown }>>;
    };
    const open: string[] = [];
    const rows: string[] = [];
    const bodiesFor: Record<string, string> = {
      '/spawn': JSON.stringify({ image: TEST_IMAGE }),
      '/v1/backends': JSON.stringify({ image: TEST_IMAGE }),
    };
    const wrong: Array<[string, Record<string, string>, string]> = [
      ['no credentials', {}, ''],
      ['a wrong bearer token', { authorization: 'Bearer e2e-security-wrong-token-000000' }, ''],
      ['the right token with a wrong scheme', { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, ''],
      ['the right token with a suffix', { authorization: `Bearer ${TOKEN}x` }, ''],
      ['an empty bearer', { authorization: 'Bearer ' }, ''],
      ["another backend's connection token as bearer", { authorization: `Bearer ${b.token}` }, ''],
      ["another backend's connection token in the query", {}, `?spawner_token=${encodeURIComponent(b.token)}`],
      ["another backend's connection token as X-Spawner-Token", { 'x-spawner-token': b.token }, ''],
      ['a forged connection token', {}, `?spawner_token=${'A'.repeat(43)}`],
    ];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const url = `${base}${path.replace(/\{(name|id)\}/, a.name)}`;
        if (op.security.length === 0) {
          open.push(path);
          expect({ path, status: (await fetch(url)).status }).toEqual({ path, status: 200 });
          continue;
        }
        for (const [what, headers, query] of wrong) {
          // A body where the route takes one (GET /v1/backends shares its path with the POST).
          const body = op.requestBody ? bodiesFor[path] : undefined;
          const res = await fetch(`${url}${path.endsWith('/wait') && query === '' ? '?timeoutSeconds=0' : query}`, {
            method: method.toUpperCase(),
            headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) },
            body,
          });
          const text = await record(res);
          expect({ route: `${method.toUpperCase()} ${path}`, what, status: res.status }).toEqual({
            route: `${method.toUpperCase()} ${path}`,
            what,
            status: 401,
          });
          expect((JSON.parse(text) as { error: { code: string } }).error.code).toBe('unauthorized');
          expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        }
        rows.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(open.sort()).toEqual(['/healthz', '/metrics', '/openapi.json', '/readyz']);
    // The same routes do answer with the right credentials (they were refused for the token alone).
    const ok = await fetch(`${base}/v1/backends/${a.name}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    await record(ok);
    const own = await fetch(`${base}/backend/${a.name}/status?spawner_token=${encodeURIComponent(a.token)}`);
    expect(own.status).toBe(200);
    await record(own);
    writeFigures('security-routes', {
      protectedRoutes: rows.length,
      credentialsTried: wrong.length,
      refusals: rows.length * wrong.length,
      openRoutes: open,
    });
  });

  test('security: a connection token opens only its own backend, at the entry point and at the sidecar, and never reaches the app', async () => {
    const entry = new URL(a.url);
    const entryBase = `${entry.protocol}//${entry.host}/p/${a.name}/`;
    const sidecar = `http://${a.podIP}:9090/`;
    const tries: Array<[string, string, Record<string, string>]> = [
      ['no token', '', {}],
      ["B's token in the query", `?spawner_token=${encodeURIComponent(b.token)}`, {}],
      ["B's token as a cookie", '', { cookie: `spawner_token=${b.token}` }],
      ["B's token as X-Spawner-Token", '', { 'x-spawner-token': b.token }],
      ["B's token as a bearer", '', { authorization: `Bearer ${b.token}` }],
      ['the API token', '', { authorization: `Bearer ${TOKEN}` }],
      ['a forged token', `?spawner_token=${'A'.repeat(43)}`, {}],
    ];
    const results: string[] = [];
    for (const [where, url] of [
      ['entry point', entryBase],
      ['sidecar', sidecar],
    ]) {
      for (const [what, query, headers] of tries) {
        const res = await fetch(`${url}echo${query}`, { headers });
        await record(res);
        expect({ where, what, status: res.status }).toEqual({ where, what, status: 401 });
        const ws = await upgradeStatus(`${url.replace(/^http/, 'ws')}${query}`, headers);
        expect({ where, what, upgrade: ws }).toEqual({ where, what, upgrade: 401 });
        results.push(`${where}: ${what} → 401`);
      }
      // Its own token opens it; the app sees neither the token nor the cookie carrying it.
      for (const [how, query, headers] of [
        ['query', `?spawner_token=${encodeURIComponent(a.token)}&x=1`, {}],
        ['cookie', '?x=1', { cookie: `theme=dark; spawner_token=${a.token}` }],
        ['header', '?x=1', { 'x-spawner-token': a.token }],
      ] as Array<[string, string, Record<string, string>]>) {
        const res = await fetch(`${url}echo${query}`, { headers });
        const text = await record(res);
        expect({ where, how, status: res.status }).toEqual({ where, how, status: 200 });
        const echo = JSON.parse(text) as { query: Record<string, string>; headers: Record<string, string> };
        expect(echo.query).toEqual({ x: '1' });
        expect(text).not.toContain(a.token);
      }
      const ws = await openWebSocket(`${url.replace(/^http/, 'ws')}?spawner_token=${encodeURIComponent(a.token)}`);
      ws.close();
    }
    // Raw, to the sidecar (no HTTP client in between): B's token in X-Spawner-Token is refused too.
    const raw = await rawRequest(
      a.podIP,
      9090,
      `GET /echo HTTP/1.1\r\nHost: x\r\nX-Spawner-Token: ${b.token}\r\nConnection: close\r\n\r\n`,
    );
    expect(statusOf(raw)).toBe(401);
    writeFigures('security-connection-tokens', { refused: results.length, checks: results });
  });

  test('security: no secret appears in the logs of operator, API, sweeper, sidecars and apps, nor in any error body', async () => {
    // A few more errors with credentials in play: bad bodies, unknown names, wrong tokens.
    const inits: RequestInit[] = [
      { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{"image": ' },
      {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: '{"image":"x","env":{"A":1}}',
      },
      { method: 'GET', headers: { authorization: `Bearer ${TOKEN}x` } },
    ];
    for (const init of inits) {
      await record(await fetch(`${base}/v1/backends`, init));
    }
    await record(await fetch(`${base}/backend/no-such-backend/status?spawner_token=${encodeURIComponent(a.token)}`));
    await record(await fetch(`${new URL(a.url).origin}/p/no-such-backend/?spawner_token=${encodeURIComponent(a.token)}`));
    await stopAll([api, sweeper, operator]); // flush and close their logs

    const secrets = [TOKEN, SIGNING_SECRET, ...handedOut];
    const logs: Array<[string, string]> = [
      ['operator', readFileSync(operator.logPath, 'utf8')],
      ['sweeper', readFileSync(sweeper.logPath, 'utf8')],
      ['api', readFileSync(api.logPath, 'utf8')],
    ];
    for (const backend of [a, b]) {
      for (const container of ['spawner-sidecar', 'app']) {
        logs.push([`${backend.name}/${container}`, await containerLogs(ns.name, backend.name, container, 100_000)]);
      }
    }
    // The logs searched are the real ones, so an absence means something: every component wrote
    // to its file (the API keeps no request log, so its file holds little more than its start),
    // and each app logged the WebSocket opened with its token in the URL (path included).
    const lines = Object.fromEntries(logs.map(([n, text]) => [n, text.split('\n').filter(Boolean).length]));
    for (const [where, text] of logs) expect({ where, empty: text.trim() === '' }).toEqual({ where, empty: false });
    expect(logs.find(([n]) => n === `${a.name}/app`)?.[1]).toMatch(/websocket opened/);
    // Logs and error bodies may hold no secret at all. A successful answer hands out connection
    // tokens by design (a backend's URL carries its token), never the API token or signing secret.
    const searched: Array<[string, string, string[]]> = [
      ...logs.map(([where, text]): [string, string, string[]] => [where, text, secrets]),
      ...bodies.map(({ status, text }, i): [string, string, string[]] => [
        `response body #${i} (${status})`,
        text,
        status >= 400 ? secrets : [TOKEN, SIGNING_SECRET],
      ]),
    ];
    const leaks: string[] = [];
    for (const [where, text, forbidden] of searched) {
      for (const s of forbidden) {
        if (text.includes(s) || text.includes(encodeURIComponent(s))) leaks.push(`${where} contains ${s.slice(0, 6)}…`);
      }
    }
    expect(leaks).toEqual([]);
    const errorBodies = bodies.filter((b) => b.status >= 400).length;
    expect(errorBodies).toBeGreaterThanOrEqual(90); // the refusals of the route test alone are 90
    writeFigures('security-no-secrets', {
      secretsSearched: secrets.length,
      logLines: lines,
      errorBodies,
      successBodies: bodies.length - errorBodies,
      leaks: leaks.length,
    });
  });
});

// ---------------------------------------------------------------------------------------------

const CHART_TOKEN = 'e2e-security-chart-token-0123456789';
/** The `app` label of a router users run in the backends' namespace, allowed in by networkPolicy.allowFrom. */
const ROUTER_APP = 'my-router';

/** A NetworkPolicy as the API server returns it (client-node's model renames `from`). */
interface NetworkPolicy {
  metadata?: { name?: string };
  spec?: {
    podSelector: LabelSelector;
    policyTypes?: string[];
    ingress?: Array<{
      from?: Array<{ namespaceSelector?: LabelSelector; podSelector?: LabelSelector }>;
      ports?: Array<{ port?: number | string }>;
    }>;
  };
}

type LabelSelector = {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
};

function selects(selector: LabelSelector | undefined, labels: Record<string, string> = {}): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    if (e.operator === 'In' && !(has && e.values?.includes(labels[e.key]))) return false;
    if (e.operator === 'NotIn' && has && e.values?.includes(labels[e.key])) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** What is wrong with a container's effective security settings (pod-level ones apply too). */
function securityProblems(spec: V1PodSpec, c: V1Container): string[] {
  const pod = spec.securityContext ?? {};
  const sc = c.securityContext ?? {};
  const problems: string[] = [];
  if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) problems.push('runAsNonRoot is not true');
  if ((sc.runAsUser ?? pod.runAsUser) === 0) problems.push('runAsUser is 0');
  if (sc.readOnlyRootFilesystem !== true) problems.push('readOnlyRootFilesystem is not true');
  if (sc.allowPrivilegeEscalation !== false) problems.push('allowPrivilegeEscalation is not false');
  if (sc.privileged === true) problems.push('privileged');
  if (!sc.capabilities?.drop?.includes('ALL')) problems.push('capabilities.drop lacks ALL');
  if ((sc.capabilities?.add ?? []).length > 0) problems.push(`capabilities.add ${sc.capabilities?.add?.join(',')}`);
  return problems.map((p) => `${c.name}: ${p}`);
}

describeWithAgent('security: the chart', () => {
  let ns = '';
  let apiBase = '';
  const kube = adminClient();

  beforeAll(async () => {
    ns = await createNamespace('sec-chart');
    // With one router of the user's allowed to the serve port (networkPolicy.allowFrom).
    apiBase = await installChart(ns, CHART_TOKEN, [`networkPolicy.allowFrom[0].podSelector.matchLabels.app=${ROUTER_APP}`]);
    // A backend, so that its Pod (with the injected sidecar) can be looked at.
    const res = await fetch(`${apiBase}/v1/backends`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CHART_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 600 }),
    });
    expect(res.status).toBe(201);
    const { name } = (await res.json()) as { name: string };
    await fetch(`${apiBase}/v1/backends/${name}/wait?timeoutSeconds=90`, { headers: { authorization: `Bearer ${CHART_TOKEN}` } });
  });

  afterAll(() => uninstallChart(ns));

  test('security: every container in the chart, and the sidecar of every backend Pod, runs as non-root with a read-only root and no capabilities', async () => {
    const problems: string[] = [];
    const checked: string[] = [];
    // As stored in the API server after `helm install`: the workloads and the Pods they made.
    const deployments = (
      await kube.list<V1Deployment & { metadata: { name: string } }>(
        { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
        ns,
      )
    ).items;
    const daemonsets = (
      await kube.list<V1DaemonSet & { metadata: { name: string } }>(
        { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true },
        ns,
      )
    ).items;
    const pods = (await kube.list<V1Pod>(PODS, ns)).items;
    const specs: Array<[string, V1PodSpec]> = [
      ...deployments.map((d): [string, V1PodSpec] => [`Deployment ${d.metadata.name}`, d.spec!.template.spec!]),
      ...daemonsets.map((d): [string, V1PodSpec] => [`DaemonSet ${d.metadata.name}`, d.spec!.template.spec!]),
      ...pods
        .filter((p) => p.metadata?.labels?.['app.kubernetes.io/instance'] === RELEASE)
        .map((p): [string, V1PodSpec] => [`Pod ${p.metadata!.name}`, p.spec!]),
    ];
    // And as rendered, which includes the `helm test` Pod (a hook, not installed).
    const rendered = (
      await helm(['template', RELEASE, join(ROOT, 'chart'), '--namespace', ns, '--set', `api.auth.tokens[0]=${CHART_TOKEN}`])
    ).stdout;
    for (const d of yaml.loadAll(rendered) as Array<{
      kind?: string;
      metadata?: { name?: string };
      spec?: Record<string, any>;
    } | null>) {
      if (!d?.kind) continue;
      const spec = d.kind === 'Pod' ? d.spec : d.spec?.template?.spec;
      if (spec && ['Pod', 'Deployment', 'DaemonSet', 'StatefulSet', 'Job'].includes(d.kind)) {
        specs.push([`rendered ${d.kind} ${d.metadata?.name}`, spec as V1PodSpec]);
      }
    }
    expect(specs.some(([what]) => what.startsWith('rendered Pod'))).toBe(true);
    for (const [what, spec] of specs) {
      for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        checked.push(`${what}/${c.name}`);
        problems.push(...securityProblems(spec, c).map((p) => `${what}: ${p}`));
      }
    }
    // Backend Pods the operator created: the sidecar it injects (the app is the user's).
    const backendPods = pods.filter((p) => p.metadata?.labels?.['app.kubernetes.io/managed-by'] === 'spawner');
    expect(backendPods.length).toBeGreaterThan(0);
    for (const p of backendPods) {
      const sidecar = p.spec!.containers.find((c) => c.name === 'spawner-sidecar');
      expect(sidecar).toBeDefined();
      checked.push(`backend Pod ${p.metadata!.name}/spawner-sidecar`);
      problems.push(
        ...securityProblems({ ...p.spec!, securityContext: undefined }, sidecar!).map(
          (x) => `backend Pod ${p.metadata!.name}: ${x}`,
        ),
      );
      expect(sidecar!.securityContext?.runAsUser).toBe(65532);
      // Session code gets no API credentials unless its template asks for a ServiceAccount.
      expect(p.spec!.automountServiceAccountToken).toBe(false);
    }
    expect(problems).toEqual([]);
    writeFigures('security-chart-containers', { containersChecked: checked.length, checked, problems: problems.length });
  });

  test('security: the NetworkPolicy is rendered and its selectors match the real labels of the running Pods', async () => {
    const policies = (
      await kube.list<NetworkPolicy & { metadata: { name: string } }>(
        { group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true },
        ns,
      )
    ).items;
    expect(policies).toHaveLength(1);
    const policy = policies[0];
    const pods = (await kube.list<V1Pod>(PODS, ns)).items.filter((p) => p.status?.phase === 'Running');
    const byComponent = (c: string) => pods.filter((p) => p.metadata?.labels?.['app.kubernetes.io/component'] === c);
    const backends = pods.filter((p) => p.metadata?.labels?.['app.kubernetes.io/managed-by'] === 'spawner');
    const [api, sweeper, operator] = [byComponent('api'), byComponent('sweeper'), byComponent('operator')];
    for (const group of [backends, api, sweeper, operator]) expect(group.length).toBeGreaterThan(0);
    const nsObj = await kube.get<{ metadata: { labels?: Record<string, string> } }>(NAMESPACES, undefined, ns);
    const nsLabels = nsObj!.metadata.labels ?? {};

    // It applies to every backend Pod and to none of Spawner's own Pods.
    const target = policy.spec!.podSelector;
    for (const p of backends)
      expect({ pod: p.metadata!.name, selected: selects(target, p.metadata!.labels) }).toEqual({
        pod: p.metadata!.name,
        selected: true,
      });
    for (const p of [...api, ...sweeper, ...operator])
      expect({ pod: p.metadata!.name, selected: selects(target, p.metadata!.labels) }).toEqual({
        pod: p.metadata!.name,
        selected: false,
      });
    expect(policy.spec!.policyTypes).toEqual(['Ingress']);

    // Rule by rule: who may come in, on which port; the peers match the running Pods and namespace.
    const rules = policy.spec!.ingress ?? [];
    const allows = (pod: V1Pod, port: number): boolean =>
      rules.some(
        (r) =>
          (r.ports ?? []).some((p) => p.port === port) &&
          (r.from ?? []).some(
            (peer) =>
              (!peer.namespaceSelector || selects(peer.namespaceSelector, nsLabels)) &&
              (!peer.podSelector || selects(peer.podSelector, pod.metadata!.labels)),
          ),
      );
    const sidecar = backends[0].spec!.containers.find((c) => c.name === 'spawner-sidecar')!;
    const proxyPort = sidecar.ports!.find((p) => p.name === 'proxy')!.containerPort;
    const adminPort = sidecar.ports!.find((p) => p.name === 'admin')!.containerPort;
    const appPort = Number(backends[0].spec!.containers[0].env?.find((e) => e.name === 'PORT')?.value ?? 8080);
    // A Pod of that router (none runs: the rules are judged against its labels, as for the others).
    const router: V1Pod = { metadata: { name: 'router', labels: { app: ROUTER_APP } } };
    const matrix = {
      'api → proxy': allows(api[0], proxyPort),
      'sweeper → admin': allows(sweeper[0], adminPort),
      'api → admin': allows(api[0], adminPort),
      'sweeper → proxy': allows(sweeper[0], proxyPort),
      'operator → proxy': allows(operator[0], proxyPort),
      'api → app': allows(api[0], appPort),
      'a backend → another backend': allows(backends[0], proxyPort),
      'router (allowFrom) → proxy': allows(router, proxyPort),
      'router (allowFrom) → admin': allows(router, adminPort),
      'router (allowFrom) → app': allows(router, appPort),
    };
    expect(matrix).toEqual({
      'api → proxy': true,
      'sweeper → admin': true,
      'api → admin': false,
      'sweeper → proxy': false,
      'operator → proxy': false,
      'api → app': false,
      'a backend → another backend': false,
      'router (allowFrom) → proxy': true,
      'router (allowFrom) → admin': false,
      'router (allowFrom) → app': false,
    });
    // The allowFrom peers are a rule of their own: the entry point's rule names the API alone.
    const proxyRules = rules.filter((r) => (r.ports ?? []).some((p) => p.port === proxyPort));
    expect(proxyRules.map((r) => r.from?.length)).toEqual([1, 1]);
    writeFigures('security-networkpolicy', {
      policy: policy.metadata?.name,
      backendPodsSelected: backends.length,
      componentPodsSelected: 0,
      matrix,
    });
  });
});
