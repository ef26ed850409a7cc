/**
 * The chart, rendered by the Go-built helm (e2e/scripts/build-binaries.sh): lint and template with
 * default and non-default values, schema errors, and the properties the security review relies on.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { Registry } from 'prom-client';
import { ApiMetrics } from '../../api/src/metrics';
import { createOperatorMetrics } from '../../operator/src/metrics';
import { Activity } from '../../sidecar/src/activity';
import { createSidecarMetrics } from '../../sidecar/src/metrics';
import { createSweeperMetrics } from '../../sweeper/src/metrics';
import { projectRoot } from '../../common/src/paths';

const ROOT = projectRoot();
const CHART = join(ROOT, 'chart');
const BIN = execFileSync('bash', [join(ROOT, 'e2e/scripts/build-binaries.sh')], {
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'inherit'],
})
  .trim()
  .split('\n')
  .pop() as string;
const HELM = join(BIN, 'helm');

type Doc = {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: any;
  [k: string]: any;
};

function helm(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(HELM, args, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function render(set: string[] = []): Doc[] {
  const r = helm(['template', 'spawner', CHART, '--namespace', 'spawner', ...set.flatMap((s) => ['--set', s])]);
  if (r.code !== 0) throw new Error(r.err);
  return (yaml.loadAll(r.out) as Doc[]).filter(Boolean);
}

const VARIANTS: Record<string, string[]> = {
  defaults: [],
  'ingress, monitors, rules, no leader election': [
    'ingress.enabled=true',
    'metrics.serviceMonitor.enabled=true',
    'metrics.podMonitor.enabled=true',
    'metrics.prometheusRule.enabled=true',
    'operator.leaderElection=false',
  ],
  'separate backend namespace and existing secrets': [
    'backendNamespace=sessions',
    'api.auth.existingSecret=mine',
    'api.signingSecret.existingSecret=sig',
    'imagePullSecrets[0].name=reg',
  ],
  'anonymous API behind a TLS ingress': ['api.auth.anonymous=true', 'ingress.enabled=true', 'ingress.tls[0].secretName=tls'],
  'no network policy or dashboard, two operators': [
    'networkPolicy.enabled=false',
    'metrics.dashboard.enabled=false',
    'operator.replicas=2',
  ],
};

describe('chart', () => {
  it.each(Object.entries(VARIANTS))('helm lint passes with %s', (_name, set) => {
    const r = helm(['lint', CHART, '--strict', ...set.flatMap((s) => ['--set', s])]);
    expect(r.err + r.out).toContain('0 chart(s) failed');
  });

  it.each(Object.entries(VARIANTS))('helm template renders %s', (_name, set) => {
    const docs = render(set);
    const kinds = docs.map((d) => d.kind);
    expect(kinds).toEqual(
      expect.arrayContaining(['Deployment', 'DaemonSet', 'Service', 'Role', 'RoleBinding', 'ServiceAccount']),
    );
    expect(kinds).not.toContain('ClusterRole');
  });

  it.each([
    ['a string for a port', 'api.port=abc', "at '/api/port': got string, want integer"],
    ['an unknown value', 'operator.replica=2', "additional properties 'replica' not allowed"],
    ['a bad pull policy', 'images.api.pullPolicy=Sometimes', "at '/images/api/pullPolicy'"],
    ['a bad log level', 'logLevel=loud', "at '/logLevel'"],
    ['a negative ended retention', 'api.endedRetentionSeconds=-1', "at '/api/endedRetentionSeconds'"],
    ['a routes freshness bound below 3 s', 'api.routesFreshnessSeconds=1', "at '/api/routesFreshnessSeconds'"],
  ])('rejects %s with the schema message', (_name, set, message) => {
    const r = helm(['template', 'spawner', CHART, '--set', set]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(message);
  });

  /** The value of one environment variable of the API container, rendered with `set`. */
  const apiEnv = (set: string[], name: string): string | undefined => {
    const api = render(set).find((d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-api'))!;
    const env = api.spec.template.spec.containers[0].env as Array<{ name: string; value: string }>;
    return env.find((e) => e.name === name)?.value;
  };

  it('passes api.endedRetentionSeconds to the API (600 by default)', () => {
    const retention = (set: string[]) => apiEnv(set, 'SPAWNER_API_ENDED_RETENTION_SECONDS');
    expect(retention([])).toBe('600');
    expect(retention(['api.endedRetentionSeconds=3'])).toBe('3');
  });

  it('passes api.routesFreshnessSeconds to the API (15 by default) and lets it watch Pods, nothing more on them', () => {
    const freshness = (set: string[]) => apiEnv(set, 'SPAWNER_API_ROUTES_FRESHNESS_SECONDS');
    expect(freshness([])).toBe('15');
    expect(freshness(['api.routesFreshnessSeconds=5'])).toBe('5');
    const role = render(['backendNamespace=sessions']).find((d) => d.kind === 'Role' && d.metadata.name.endsWith('-api'))!;
    expect(role.metadata.namespace).toBe('sessions');
    expect(role.rules.filter((r: any) => r.resources.includes('pods'))).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
    ]);
  });

  it('upgrades keep sessions: two API replicas rolled one at a time, a PodDisruptionBudget, a drain within the grace', () => {
    const apiOf = (docs: Doc[]) => docs.find((d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-api'))!;
    const envOf = (d: Doc) =>
      Object.fromEntries(
        (d.spec.template.spec.containers[0].env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]),
      );
    const docs = render();
    const api = apiOf(docs);
    expect(api.spec.replicas).toBe(2);
    expect(api.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    expect(envOf(api)).toMatchObject({ SPAWNER_API_DRAIN_DELAY_SECONDS: '5', SPAWNER_API_DRAIN_SECONDS: '30' });
    expect(api.spec.template.spec.terminationGracePeriodSeconds).toBe(45);
    const pdb = docs.find((d) => d.kind === 'PodDisruptionBudget')!;
    expect(pdb.metadata.name).toBe(api.metadata.name);
    expect(pdb.spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: api.spec.selector.matchLabels } });
    // The operator keeps its own count (leader-elected).
    expect(docs.find((d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-operator'))!.spec.replicas).toBe(1);

    const custom = render(['api.drain.delaySeconds=1', 'api.drain.seconds=3', 'api.podDisruptionBudget.minAvailable=1']);
    expect(apiOf(custom).spec.template.spec.terminationGracePeriodSeconds).toBe(14);
    expect(custom.find((d) => d.kind === 'PodDisruptionBudget')!.spec.minAvailable).toBe(1);
    expect(custom.find((d) => d.kind === 'PodDisruptionBudget')!.spec.maxUnavailable).toBeUndefined();
    expect(render(['api.podDisruptionBudget.enabled=false']).map((d) => d.kind)).not.toContain('PodDisruptionBudget');
    const bad = helm(['template', 'spawner', CHART, '--set', 'api.drain.seconds=-1']);
    expect(bad.err).toContain("at '/api/drain/seconds'");
  });

  it('installs the generated CRDs (backends, warm pools)', () => {
    const r = helm(['show', 'crds', CHART]);
    const crds = (yaml.loadAll(r.out.replace(/^#.*\n/gm, '')) as Doc[]).filter(Boolean);
    expect(crds.map((c) => c.metadata.name).sort()).toEqual([
      'sessionbackendpools.spawner.dev',
      'sessionlivedbackends.spawner.dev',
    ]);
  });

  it('security: every container runs as non-root, with a read-only root and no capabilities', () => {
    const docs = render(['ingress.enabled=true']);
    const pods = docs.flatMap((d) =>
      d.kind === 'Pod'
        ? [{ name: d.metadata.name, spec: d.spec }]
        : d.spec?.template
          ? [{ name: d.metadata.name, spec: d.spec.template.spec }]
          : [],
    );
    expect(pods.length).toBeGreaterThanOrEqual(4);
    for (const { name, spec } of pods) {
      expect({ name, runAsNonRoot: spec.securityContext?.runAsNonRoot }).toEqual({ name, runAsNonRoot: true });
      for (const c of spec.containers) {
        const sc = c.securityContext ?? {};
        expect({
          name,
          container: c.name,
          ro: sc.readOnlyRootFilesystem,
          esc: sc.allowPrivilegeEscalation,
          drop: sc.capabilities?.drop,
        }).toEqual({
          name,
          container: c.name,
          ro: true,
          esc: false,
          drop: ['ALL'],
        });
      }
    }
    // The sidecar the operator injects gets the same restrictions.
    const operator = docs.find((d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-operator'))!;
    const env = operator.spec.template.spec.containers[0].env as Array<{ name: string; value: string }>;
    const sidecarSc = JSON.parse(env.find((e) => e.name === 'SPAWNER_OPERATOR_SIDECAR_SECURITY_CONTEXT')!.value);
    expect(sidecarSc).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
  });

  it('security: the NetworkPolicy selects the labels backends and components really carry', () => {
    const docs = render();
    const np = docs.find((d) => d.kind === 'NetworkPolicy')!;
    // Backend Pods carry app.kubernetes.io/managed-by=spawner (operator/src/desired-state.ts).
    expect(np.spec.podSelector.matchLabels).toEqual({ 'app.kubernetes.io/managed-by': 'spawner' });
    const [proxy, admin] = np.spec.ingress;
    expect(proxy.ports).toEqual([{ protocol: 'TCP', port: 9090 }]);
    expect(admin.ports).toEqual([{ protocol: 'TCP', port: 9091 }]);
    const podLabels = (component: string) =>
      docs.find(
        (d) =>
          (d.kind === 'Deployment' || d.kind === 'DaemonSet') && d.metadata.labels?.['app.kubernetes.io/component'] === component,
      )!.spec.template.metadata.labels;
    const matches = (sel: Record<string, string>, labels: Record<string, string>) =>
      Object.entries(sel).every(([k, v]) => labels[k] === v);
    expect(matches(proxy.from[0].podSelector.matchLabels, podLabels('api'))).toBe(true);
    expect(matches(admin.from[0].podSelector.matchLabels, podLabels('sweeper'))).toBe(true);
    expect(matches(proxy.from[0].podSelector.matchLabels, podLabels('sweeper'))).toBe(false);
    // The entry point alone on the serve port by default.
    expect(np.spec.ingress).toHaveLength(2);
    expect(proxy.from).toHaveLength(1);
  });

  it('security: networkPolicy.allowFrom adds routers to the serve port only, as given', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spawner-chart-'));
    try {
      const router = {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'edge' } },
        podSelector: { matchLabels: { app: 'my-router' } },
      };
      const block = { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } };
      writeFileSync(join(dir, 'values.yaml'), yaml.dump({ networkPolicy: { allowFrom: [router, block] } }));
      const r = helm(['template', 'spawner', CHART, '--namespace', 'spawner', '-f', join(dir, 'values.yaml')]);
      expect(r.err).toBe('');
      const np = (yaml.loadAll(r.out) as Doc[]).filter(Boolean).find((d) => d.kind === 'NetworkPolicy')!;
      const [proxy, routers, admin] = np.spec.ingress;
      expect(proxy.from).toHaveLength(1);
      expect(routers).toEqual({ from: [router, block], ports: [{ protocol: 'TCP', port: 9090 }] });
      expect(admin.ports).toEqual([{ protocol: 'TCP', port: 9091 }]);
      // The sweeper, the operator (warm pool assignment) and Prometheus.
      expect(admin.from.map((f: any) => f.podSelector?.matchLabels?.['app.kubernetes.io/component'] ?? 'prometheus')).toEqual([
        'sweeper',
        'operator',
        'prometheus',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // An empty peer would admit everyone: the schema refuses it.
    const empty = helm(['template', 'spawner', CHART, '--set-json', 'networkPolicy.allowFrom=[{}]']);
    expect(empty.code).not.toBe(0);
    expect(empty.err).toContain("at '/networkPolicy/allowFrom/0'");
  });

  it('grants each component only what it uses, in the backend namespace', () => {
    const docs = render(['backendNamespace=sessions']);
    const rules = (suffix: string) => docs.find((d) => d.kind === 'Role' && d.metadata.name.endsWith(suffix))!;
    for (const role of ['-operator', '-sweeper', '-api'].map(rules)) expect(role.metadata.namespace).toBe('sessions');
    const all = docs.filter((d) => d.kind === 'Role').flatMap((r) => r.rules);
    expect(all.some((r: any) => r.resources.includes('secrets'))).toBe(false);
    expect(all.some((r: any) => r.verbs.includes('*') || r.resources.includes('*'))).toBe(false);
    expect(rules('-sweeper').rules.flatMap((r: any) => r.verbs)).not.toContain('delete');
  });

  it('lets the operator update only the finalizers subresource (OwnerReferencesPermissionEnforcement)', () => {
    const operator = render().find((d) => d.kind === 'Role' && d.metadata.name.endsWith('-operator'))!;
    const updates = operator.rules.filter((r: any) => r.verbs.includes('update'));
    expect(updates).toEqual([{ apiGroups: ['spawner.dev'], resources: ['sessionlivedbackends/finalizers'], verbs: ['update'] }]);
  });
});

/** NOTES.txt as `helm install` prints it (which needs a cluster): rendered through a copy of the chart. */
function renderNotes(set: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'spawner-notes-'));
  try {
    cpSync(CHART, join(dir, 'chart'), { recursive: true });
    copyFileSync(join(CHART, 'templates/NOTES.txt'), join(dir, 'chart/notes.txt'));
    writeFileSync(
      join(dir, 'chart/templates/notes-as-configmap.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: notes }\ndata:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n',
    );
    const r = helm([
      'template',
      'spawner',
      join(dir, 'chart'),
      '--show-only',
      'templates/notes-as-configmap.yaml',
      ...set.flatMap((s) => ['--set', s]),
    ]);
    if (r.code !== 0) throw new Error(r.err);
    return (yaml.load(r.out) as { data: { notes: string } }).data.notes;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('chart: public URLs and anonymous access', () => {
  const apiEnv = (set: string[]): Record<string, string> => {
    const api = render(set).find((d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-api'))!;
    const env = api.spec.template.spec.containers[0].env as Array<{ name: string; value?: string }>;
    return Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
  };
  const urls = (set: string[]) => {
    const env = apiEnv(set);
    return {
      api: env.SPAWNER_API_API_BASE_URL,
      entryPoint: env.SPAWNER_API_ENTRY_POINT_BASE_URL,
      trustProxy: env.SPAWNER_API_TRUST_PROXY,
    };
  };

  it.each<[string, string[], { api?: string; entryPoint?: string; trustProxy: string }]>([
    [
      'no ingress: from the request, no proxy headers trusted',
      [],
      { api: undefined, entryPoint: undefined, trustProxy: 'false' },
    ],
    [
      'ingress with default values: its host over http',
      ['ingress.enabled=true'],
      { api: 'http://spawner.example.com', entryPoint: 'http://spawner.example.com', trustProxy: 'true' },
    ],
    [
      'ingress with TLS for its host: https',
      ['ingress.enabled=true', 'ingress.host=s.acme.io', 'ingress.tls[0].hosts[0]=s.acme.io', 'ingress.tls[0].secretName=t'],
      { api: 'https://s.acme.io', entryPoint: 'https://s.acme.io', trustProxy: 'true' },
    ],
    [
      'ingress with a wildcard certificate covering the host: https',
      ['ingress.enabled=true', 'ingress.host=s.acme.io', 'ingress.tls[0].hosts[0]=*.acme.io'],
      { api: 'https://s.acme.io', entryPoint: 'https://s.acme.io', trustProxy: 'true' },
    ],
    [
      'ingress with TLS for another host only: http',
      [
        'ingress.enabled=true',
        'ingress.host=s.acme.io',
        'ingress.tls[0].hosts[0]=*.other.io',
        'ingress.tls[1].hosts[0]=*.s.acme.io',
      ],
      { api: 'http://s.acme.io', entryPoint: 'http://s.acme.io', trustProxy: 'true' },
    ],
    [
      'ingress with explicit base URLs: those win',
      ['ingress.enabled=true', 'api.apiBaseUrl=https://api.acme.io', 'api.entryPointBaseUrl=https://ep.acme.io'],
      { api: 'https://api.acme.io', entryPoint: 'https://ep.acme.io', trustProxy: 'true' },
    ],
  ])('%s', (_name, set, expected) => {
    expect(urls(set)).toEqual(expected);
  });

  it('refuses a wildcard ingress host without explicit base URLs', () => {
    const r = helm(['template', 'spawner', CHART, '--set', 'ingress.enabled=true', '--set', 'ingress.host=*.acme.io']);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('ingress.host is a wildcard');
    expect(
      urls([
        'ingress.enabled=true',
        'ingress.host=*.acme.io',
        'api.apiBaseUrl=https://a.acme.io',
        'api.urlTemplate=https://{}.acme.io/',
      ]),
    ).toMatchObject({ api: 'https://a.acme.io', entryPoint: undefined });
  });

  it('keeps WebSockets open through ingress-nginx by default', () => {
    const ingress = render(['ingress.enabled=true']).find((d) => d.kind === 'Ingress')!;
    expect((ingress.metadata as { annotations?: Record<string, string> }).annotations).toMatchObject({
      'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
      'nginx.ingress.kubernetes.io/proxy-send-timeout': '3600',
    });
  });

  it('requires tokens by default: a token Secret, mounted, no anonymous flag', () => {
    const docs = render();
    expect(docs.some((d) => d.kind === 'Secret' && d.metadata.name.endsWith('-api-tokens'))).toBe(true);
    const env = apiEnv([]);
    expect(env.SPAWNER_API_TOKEN_FILE).toBe('/etc/spawner/tokens/tokens');
    expect(env.SPAWNER_API_ALLOW_ANONYMOUS).toBeUndefined();
  });

  it('api.auth.anonymous: no tokens anywhere, the flag set, NOTES warn', () => {
    const docs = render(['api.auth.anonymous=true']);
    expect(docs.some((d) => d.kind === 'Secret' && d.metadata.name.endsWith('-api-tokens'))).toBe(false);
    const env = apiEnv(['api.auth.anonymous=true']);
    expect(env.SPAWNER_API_ALLOW_ANONYMOUS).toBe('true');
    expect(env.SPAWNER_API_TOKEN_FILE).toBeUndefined();
    const pods = docs.flatMap((d) => (d.kind === 'Pod' ? [d.spec] : d.spec?.template ? [d.spec.template.spec] : []));
    expect(JSON.stringify(pods)).not.toContain('api-tokens');

    expect(renderNotes(['api.auth.anonymous=true'])).toMatch(
      /WARNING: api\.auth\.anonymous=true, the API runs WITHOUT bearer tokens/,
    );
    expect(renderNotes([])).not.toContain('WITHOUT bearer tokens');
    expect(renderNotes(['ingress.enabled=true'])).toContain('export SPAWNER_API=http://spawner.example.com\n');
  });

  it('api.auth.anonymous refuses tokens next to it', () => {
    for (const extra of ['api.auth.tokens[0]=0123456789abcdef0', 'api.auth.existingSecret=mine']) {
      const r = helm(['template', 'spawner', CHART, '--set', 'api.auth.anonymous=true', '--set', extra]);
      expect(r.code).not.toBe(0);
      expect(r.err).toContain('api.auth.anonymous runs the API without tokens');
    }
  });
});

describe('dashboard and alerts', () => {
  const dashboard = JSON.parse(readFileSync(join(CHART, 'dashboards/spawner.json'), 'utf8'));
  const exprs: string[] = dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));

  it('every alert rule parses (promtool check rules)', () => {
    const r = spawnSync('promtool', ['check', 'rules', join(CHART, 'files/alerts.yaml')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toMatch(/SUCCESS: 7 rules found/);
  });

  it('the warm-pool alerts fire for a pool wanted but empty, or mostly missed, and not otherwise (promtool test rules)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'alerts-'));
    const file = join(dir, 'pool-alerts.test.yaml');
    const claims = (pool: string, result: string, perMinute: number) => ({
      series: `spawner_pool_claims_total{pool="${pool}",result="${result}"}`,
      values: `0+${perMinute}x40`,
    });
    const ready = (pool: string, n: number) => ({ series: `spawner_pool_ready_pods{pool="${pool}"}`, values: `${n}x40` });
    writeFileSync(
      file,
      yaml.dump({
        rule_files: [join(CHART, 'files/alerts.yaml')],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: [
              // Wanted and empty: fires.
              ready('starved', 0),
              claims('starved', 'cold', 6),
              // Refilled by every scrape, 95 % of claims warm: quiet.
              ready('busy', 2),
              claims('busy', 'warm', 19),
              claims('busy', 'cold', 1),
              // Scaled to 0 and not used: quiet.
              ready('idle', 0),
              claims('idle', 'warm', 0),
              // Half the claims cold: a low hit ratio.
              ready('small', 1),
              claims('small', 'warm', 3),
              claims('small', 'cold', 3),
              // Too few claims to judge: quiet.
              ready('rare', 1),
              claims('rare', 'cold', 0.2),
            ],
            alert_rule_test: [
              { alertname: 'SpawnerPoolEmpty', eval_time: '3m', exp_alerts: [] },
              {
                alertname: 'SpawnerPoolEmpty',
                eval_time: '10m',
                exp_alerts: [
                  {
                    exp_labels: { severity: 'warning', pool: 'starved' },
                    exp_annotations: {
                      summary: 'A warm pool has no ready Pod while backends are created from it.',
                      description:
                        "Pool starved has had no ready Pod for 5 minutes while 100m creates per second started cold or were rejected: its Pods do not start (see the pool's PodsFailing condition) or replicas is too small for the rate of claims.",
                    },
                  },
                ],
              },
              {
                alertname: 'SpawnerPoolHitRatioLow',
                eval_time: '35m',
                exp_alerts: [
                  {
                    exp_labels: { severity: 'info', pool: 'small' },
                    exp_annotations: {
                      summary: 'Few backends from a warm pool start warm.',
                      description:
                        'Only 50% of the claims on pool small found a ready Pod over 15 minutes; the rest started cold or were rejected. Raise its replicas.',
                    },
                  },
                ],
              },
            ],
          },
        ],
      }),
    );
    const r = spawnSync('promtool', ['test', 'rules', file], { encoding: 'utf8' });
    rmSync(dir, { recursive: true, force: true });
    expect({ code: r.status, out: r.stdout + r.stderr }).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
  });

  it('every dashboard query parses (promtool, as recording rules)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dash-'));
    const file = join(dir, 'dashboard-rules.yaml');
    writeFileSync(
      file,
      yaml.dump({ groups: [{ name: 'dashboard', rules: exprs.map((expr, i) => ({ record: `dashboard:panel_${i}`, expr })) }] }),
    );
    const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain(`SUCCESS: ${exprs.length} rules found`);
  });

  it('queries only metric names the components export', async () => {
    // Every component's metrics, registered for real, then listed.
    const registry = new Registry();
    createOperatorMetrics(
      registry,
      () => [],
      () => 0,
    );
    createSweeperMetrics(
      registry,
      () => 0,
      () => 0,
    );
    createSidecarMetrics(registry, new Activity());
    new ApiMetrics(registry);
    const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const alerts = readFileSync(join(CHART, 'files/alerts.yaml'), 'utf8');
    const used = new Set(
      [...`${exprs.join('\n')}\n${alerts}`.matchAll(/\bspawner_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')),
    );
    expect(used.size).toBeGreaterThan(10);
    for (const name of used) expect({ name, exported: exported.has(name) }).toEqual({ name, exported: true });
  });
});
