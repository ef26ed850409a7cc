/**
 * The chart installed into the test cluster, as the chart and security suites both use it: one
 * release, its API reached at the API Pod's IP (the test cluster routes no Service addresses).
 */
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { PODS } from '../../common/src/kube/resources';
import { adminClient, deleteNamespace, helm, ROOT, waitFor } from './cluster';

export const RELEASE = 'spawner';

/** A Ready Pod of one of the release's components (operator, api, sweeper), if any. */
export async function readyComponentPod(ns: string, component: string): Promise<V1Pod | undefined> {
  const pods = await adminClient().list<V1Pod>(PODS, ns, {
    labelSelector: `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=${component}`,
  });
  return pods.items.find((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
}

/** `helm install --wait` with an API token and extra `--set`s; resolves to the API's base URL. */
export async function installChart(ns: string, apiToken: string, sets: string[] = []): Promise<string> {
  await helm(
    [
      'install',
      RELEASE,
      join(ROOT, 'chart'),
      '--namespace',
      ns,
      '--set',
      `api.auth.tokens[0]=${apiToken}`,
      ...sets.flatMap((s) => ['--set', s]),
      '--wait',
      '--timeout',
      '180s',
    ],
    { timeoutMs: 200_000 },
  );
  const api = await waitFor(() => readyComponentPod(ns, 'api'), { description: 'a ready API pod', timeoutMs: 60_000 });
  return `http://${api.status!.podIP}:8080`;
}

/** `helm upgrade --reuse-values --wait` of the release to `chart` (default: this repository's) with extra `--set`s. */
export async function upgradeChart(ns: string, sets: string[] = [], chart = join(ROOT, 'chart')): Promise<void> {
  await helm(
    [
      'upgrade',
      RELEASE,
      chart,
      '--namespace',
      ns,
      '--reuse-values',
      ...sets.flatMap((s) => ['--set', s]),
      '--wait',
      '--timeout',
      '180s',
    ],
    { timeoutMs: 200_000 },
  );
}

export async function uninstallChart(ns: string): Promise<void> {
  await helm(['uninstall', RELEASE, '--namespace', ns, '--wait'], { allowFail: true });
  if (ns) await deleteNamespace(ns);
}
