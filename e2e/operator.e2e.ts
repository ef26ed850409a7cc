/**
 * The operator against the real control plane: it runs as a host process (admin credentials, or
 * a ServiceAccount's where the test says so); backend Pods run through the node agent, sidecar
 * included.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Event, V1Pod, V1Service } from '@kubernetes/client-node';
import * as yaml from 'js-yaml';
import { type SessionLivedBackend } from '../common/src/backend';
import { phaseOf } from '../common/src/lifecycle';
import { backendManifest, phaseIs, waitBackend } from './support/backends';
import { BACKENDS, EVENTS, PODS, SERVICES } from '../common/src/kube/resources';
import { adminClient, describeWithAgent, kubeconfigPath, kubectl, useNamespace, waitFor } from './support/cluster';
import { startComponent, type Component } from './support/components';

jest.setTimeout(180_000);

async function eventsOf(namespace: string, name: string): Promise<CoreV1Event[]> {
  const list = await adminClient().list<CoreV1Event>(EVENTS, namespace, {
    fieldSelector: `involvedObject.kind=SessionLivedBackend,involvedObject.name=${name}`,
  });
  return list.items;
}

/** A kubeconfig for a ServiceAccount token, against the test cluster (so RBAC applies). */
function kubeconfigForToken(token: string): string {
  const admin = yaml.load(readFileSync(kubeconfigPath(), 'utf8')) as {
    clusters: Array<{ name: string; cluster: Record<string, string> }>;
  };
  const cluster = admin.clusters[0];
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [cluster],
    users: [{ name: 'sa', user: { token } }],
    contexts: [{ name: 'sa', context: { cluster: cluster.name, user: 'sa' } }],
    'current-context': 'sa',
  };
  const file = join(mkdtempSync(join(tmpdir(), 'spawner-kc-')), 'kubeconfig');
  writeFileSync(file, yaml.dump(config), { mode: 0o600 });
  return file;
}

describeWithAgent('operator', () => {
  const ns = useNamespace('operator');
  let operator: Component | undefined;
  const kube = adminClient();

  const startOperator = (extra: string[] = [], kubeconfig?: string) =>
    startComponent('operator', [`--namespaces=${ns.name}`, '--failed-retention-seconds=30', ...extra], { kubeconfig });

  afterEach(async () => {
    await operator?.stop();
    operator = undefined;
  });

  test('operator: backend reaches Ready', async () => {
    operator = await startOperator();
    await kubectl(['apply', '-f', '-'], { input: JSON.stringify(backendManifest('ready-1', ns.name)) });
    const ready = await waitBackend(ns.name, 'ready-1', 'Ready', phaseIs('Ready'));

    // The phases in order, each reached once, with the original's flags; conditions say what is now.
    expect(ready.status?.transitions?.map((t) => t.phase)).toEqual(['Constructed', 'Scheduled', 'Running', 'Ready']);
    expect(Object.fromEntries((ready.status?.conditions ?? []).map((c) => [c.type, c.status]))).toEqual({
      Ready: 'True',
      Terminated: 'False',
    });
    expect(ready.status).toMatchObject({ constructed: true, scheduled: true, running: true, ready: true, port: 9090 });
    expect(ready.status?.podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(ready.metadata.labels?.spawnerGroup).toBe(ready.status?.nodeName);

    const pod = (await kube.get<V1Pod>(PODS, ns.name, 'ready-1'))!;
    const svc = (await kube.get<V1Service>(SERVICES, ns.name, 'ready-1'))!;
    for (const child of [pod, svc]) {
      expect(child.metadata?.ownerReferences).toEqual([
        expect.objectContaining({ kind: 'SessionLivedBackend', name: 'ready-1', uid: ready.metadata.uid, controller: true }),
      ]);
      expect(child.metadata?.labels).toMatchObject({
        run: 'ready-1',
        'app.kubernetes.io/managed-by': 'spawner',
        'e2e.spawner.dev/test': 'operator',
      });
    }
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(['app', 'spawner-sidecar']);
    expect(pod.spec?.containers[1].args).toEqual(['--serve-port=9090', '--upstream-port=8080']);
    expect(svc.spec?.ports?.[0]).toMatchObject({ name: 'spawner-app', port: 9090 });

    // One Event per transition.
    const events = await waitFor(
      async () => {
        const e = await eventsOf(ns.name, 'ready-1');
        return e.length >= 4 ? e : undefined;
      },
      { description: 'four events' },
    );
    expect(events.map((e) => e.action).sort()).toEqual(['Constructed', 'Ready', 'Running', 'Scheduled']);

    // The printer columns show it.
    const table = await kubectl(['get', 'slab', 'ready-1', '-n', ns.name]);
    expect(table.stdout).toMatch(/NAME\s+PHASE\s+NODE\s+URL\s+AGE/);
    expect(table.stdout).toMatch(/ready-1\s+Ready\s+\S+\s+http:\/\/ready-1\./);
  });

  test('operator: deleting a backend removes its pod and service', async () => {
    operator = await startOperator();
    await kube.create(BACKENDS, ns.name, backendManifest('delete-1', ns.name));
    await waitBackend(ns.name, 'delete-1', 'Ready', phaseIs('Ready'));
    await kubectl(['delete', 'slab', 'delete-1', '-n', ns.name, '--wait=false']);
    // The garbage collector (kube-controller-manager) removes the children through their ownerReferences.
    await waitFor(async () => !(await kube.get(PODS, ns.name, 'delete-1')) && !(await kube.get(SERVICES, ns.name, 'delete-1')), {
      description: 'pod and service of delete-1 to be garbage-collected',
      timeoutMs: 90_000,
    });
  });

  test('operator: app exit fails the backend', async () => {
    operator = await startOperator();
    await kube.create(BACKENDS, ns.name, backendManifest('exit-1', ns.name, { env: { EXIT_AFTER_MS: '1500', EXIT_CODE: '3' } }));
    const failed = await waitBackend(ns.name, 'exit-1', 'Failed', phaseIs('Failed'));
    expect(failed.status).toMatchObject({ phase: 'Failed', failed: true, reason: 'ContainerExited', exitCode: 3 });
    expect(failed.status?.message).toContain('exited with code 3');
    // Nothing of it keeps running: the Pod is deleted, the resource kept for the retention.
    await waitFor(async () => !(await kube.get(PODS, ns.name, 'exit-1')), {
      description: 'pod of the failed backend to be gone',
    });
    expect((await eventsOf(ns.name, 'exit-1')).some((e) => e.reason === 'ContainerExited' && e.type === 'Warning')).toBe(true);
  });

  test('operator: survives a restart mid-spawn', async () => {
    // An operator that may create Pods but not Services stops half-way through a spawn, for real.
    await kubectl(['create', 'serviceaccount', 'op-limited', '-n', ns.name]);
    const role = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'op-limited', namespace: ns.name },
      rules: [
        {
          apiGroups: ['spawner.dev'],
          resources: ['sessionlivedbackends', 'sessionlivedbackends/status'],
          verbs: ['get', 'list', 'watch', 'patch'],
        },
        // Pods carry blockOwnerDeletion: OwnerReferencesPermissionEnforcement (enabled in the e2e cluster) asks for this.
        { apiGroups: ['spawner.dev'], resources: ['sessionlivedbackends/finalizers'], verbs: ['update'] },
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'create'] },
        { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['list', 'create'] },
      ],
    };
    await kubectl(['apply', '-f', '-'], { input: JSON.stringify(role) });
    await kubectl([
      'create',
      'rolebinding',
      'op-limited',
      '-n',
      ns.name,
      '--role=op-limited',
      `--serviceaccount=${ns.name}:op-limited`,
    ]);
    const token = (await kubectl(['create', 'token', 'op-limited', '-n', ns.name])).stdout.trim();
    operator = await startOperator([], kubeconfigForToken(token));

    await kube.create(BACKENDS, ns.name, backendManifest('restart-1', ns.name));
    const firstPod = await waitFor(() => kube.get<V1Pod>(PODS, ns.name, 'restart-1'), { description: 'the pod to be created' });
    await waitFor(
      async () => (await operator!.metrics()).match(/spawner_reconcile_errors_total\{kind="permanent"[^}]*\} [1-9]/),
      {
        description: 'the service create to be refused',
      },
    );
    await operator.kill(); // SIGKILL between the Pod and the Service
    expect(await kube.get(SERVICES, ns.name, 'restart-1')).toBeUndefined();

    operator = await startOperator();
    await waitBackend(ns.name, 'restart-1', 'Ready after the restart', phaseIs('Ready'));
    const pods = (await kube.list<V1Pod>(PODS, ns.name, { labelSelector: 'run=restart-1' })).items;
    const services = (await kube.list<V1Service>(SERVICES, ns.name, { labelSelector: 'run=restart-1' })).items;
    expect(pods.map((p) => p.metadata?.uid)).toEqual([firstPod.metadata?.uid]);
    expect(services).toHaveLength(1);
  });

  test('operator: a pod deleted by hand fails its backend and is not recreated', async () => {
    operator = await startOperator();
    await kube.create(BACKENDS, ns.name, backendManifest('poddel-1', ns.name));
    await waitBackend(ns.name, 'poddel-1', 'Ready', phaseIs('Ready'));
    await kubectl(['delete', 'pod', 'poddel-1', '-n', ns.name, '--wait=false']);
    const failed = await waitBackend(ns.name, 'poddel-1', 'Failed', phaseIs('Failed'));
    expect(failed.status?.reason).toBe('PodDeleted');
    await waitFor(async () => !(await kube.get(PODS, ns.name, 'poddel-1')), { description: 'pod gone' });
    await new Promise((r) => setTimeout(r, 2000));
    expect(await kube.get(PODS, ns.name, 'poddel-1')).toBeUndefined();
  });

  test('operator: an image that cannot be pulled fails the backend', async () => {
    operator = await startOperator();
    await kube.create(BACKENDS, ns.name, backendManifest('pull-1', ns.name, { image: 'registry.example/no-such-image:1' }));
    const failed = await waitBackend(ns.name, 'pull-1', 'Failed', phaseIs('Failed'));
    expect(failed.status?.reason).toBe('ImagePullError');
  });

  test('operator: maxLifetimeSeconds sweeps a busy backend', async () => {
    operator = await startOperator();
    await kube.create(BACKENDS, ns.name, backendManifest('life-1', ns.name, { spec: { maxLifetimeSeconds: 8 } }));
    await waitBackend(ns.name, 'life-1', 'Ready', phaseIs('Ready'));
    const seen: string[] = [];
    const watch = kube.watch<SessionLivedBackend>(
      BACKENDS,
      ns.name,
      { resourceVersion: '0', fieldSelector: 'metadata.name=life-1' },
      (e) => seen.push(`${phaseOf(e.object)}/${e.object.status?.reason ?? ''}`),
    );
    await waitFor(async () => !(await kube.get(BACKENDS, ns.name, 'life-1')), {
      description: 'life-1 swept and deleted',
      timeoutMs: 60_000,
    });
    watch.abort();
    expect(seen).toContain('Swept/LifetimeExceeded');
  });
});
