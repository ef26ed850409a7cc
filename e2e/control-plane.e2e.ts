/**
 * The test cluster itself: the CRD is served and validated by the real API server, and the node
 * agent runs pods and reports their status the way a kubelet would.
 */
import { KubeApiError } from '../common/src/errors';
import { BACKENDS, PODS } from '../common/src/kube/resources';
import type { KubeObject } from '../common/src/kube/types';
import type { Pod } from './node-agent/pod-types';
import {
  adminClient,
  containerPid,
  describeWithAgent,
  httpGet,
  kubectl,
  pidAlive,
  useNamespace,
  waitFor,
} from './support/cluster';

jest.setTimeout(120_000);

const CRD_FILE = 'chart/crds/sessionlivedbackends.spawner.dev.yaml';

function backend(name: string, spec: Record<string, unknown>): KubeObject & { spec: Record<string, unknown> } {
  return { apiVersion: 'spawner.dev/v1', kind: 'SessionLivedBackend', metadata: { name }, spec };
}

const APP = { name: 'app', image: 'ghcr.io/spawner/spawner-test-app:0.1.0' };

describe('control plane', () => {
  const ns = useNamespace('cp');

  beforeAll(async () => {
    await kubectl(['apply', '-f', CRD_FILE]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/sessionlivedbackends.spawner.dev']);
  });

  test('control plane: CRD is served', async () => {
    const empty = await kubectl(['get', 'slab', '-n', ns.name]);
    expect(empty.stderr).toMatch(/No resources found/);

    await kubectl(['apply', '-n', ns.name, '-f', '-'], {
      input: JSON.stringify(backend('served', { template: { containers: [APP] } })),
    });
    const table = await kubectl(['get', 'slab', '-n', ns.name]);
    const [header, row] = table.stdout.trim().split('\n');
    expect(header.split(/\s+/)).toEqual(['NAME', 'PHASE', 'NODE', 'URL', 'AGE']);
    expect(row).toMatch(/^served\s/);

    // The category and the full resource name reach it too, and the CRD's defaults apply.
    expect((await kubectl(['get', 'spawner', '-n', ns.name, '-o', 'name'])).stdout).toContain(
      'sessionlivedbackend.spawner.dev/served',
    );
    const created = await adminClient().get<KubeObject & { spec: { httpPort?: number; gracePeriodSeconds?: number } }>(
      BACKENDS,
      ns.name,
      'served',
    );
    expect(created?.spec).toMatchObject({ httpPort: 8080, gracePeriodSeconds: 300 });
  });

  test('control plane: invalid backend is rejected', async () => {
    const client = adminClient();
    const rejection = async (spec: Record<string, unknown>): Promise<KubeApiError> => {
      try {
        await client.create(BACKENDS, ns.name, backend(`invalid-${Math.random().toString(36).slice(2, 8)}`, spec));
      } catch (err) {
        if (err instanceof KubeApiError) return err;
        throw err;
      }
      throw new Error(`the API server accepted ${JSON.stringify(spec)}`);
    };

    const noContainers = await rejection({ template: {} });
    expect(noContainers.status).toBe(422);
    expect(noContainers.message).toMatch(/spec\.template\.containers/);
    expect((await rejection({ template: { containers: [] } })).message).toMatch(/spec\.template\.containers/);

    const notANumber = await rejection({ template: { containers: [APP] }, httpPort: 'abc' });
    expect(notANumber.status).toBe(422);
    expect(notANumber.message).toMatch(/spec\.httpPort/);
    expect((await rejection({ template: { containers: [APP] }, httpPort: 70000 })).message).toMatch(/spec\.httpPort/);

    // kubectl users see the same message.
    const viaKubectl = await kubectl(['apply', '-n', ns.name, '-f', '-'], {
      input: JSON.stringify(backend('bad-port', { template: { containers: [APP] }, httpPort: 70000 })),
      allowFail: true,
    });
    expect(viaKubectl.code).not.toBe(0);
    expect(viaKubectl.stderr).toMatch(/spec\.httpPort/);
  });
});

describeWithAgent('node agent', () => {
  const ns = useNamespace('agent');

  function testPod(name: string, env: Record<string, string>, extra: Partial<Pod['spec']> = {}): KubeObject & Pick<Pod, 'spec'> {
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns.name },
      spec: {
        terminationGracePeriodSeconds: 2,
        ...extra,
        containers: [
          {
            ...APP,
            env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
            ports: [{ name: 'http', containerPort: 8080 }],
            readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
          },
        ],
      },
    };
  }

  const getPod = (name: string): Promise<Pod | undefined> => adminClient().get<Pod>(PODS, ns.name, name);

  test('node agent: runs a pod and reports its status', async () => {
    const client = adminClient();
    const create = (pod: KubeObject): Promise<KubeObject> => client.create(PODS, ns.name, pod);
    await Promise.all([
      create(testPod('runs', {})),
      create(testPod('exits', { EXIT_ON_START: '3' }, { restartPolicy: 'Never' })),
    ]);

    // Running and Ready, with the fields a kubelet fills in, and reachable at its IP from here.
    const ready = await waitFor(
      async () => {
        const pod = await getPod('runs');
        return pod?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' && pod;
      },
      { description: 'pod "runs" to be Ready' },
    );
    const status = ready.status!;
    expect(status.phase).toBe('Running');
    expect(status.podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(status.podIPs).toEqual([{ ip: status.podIP }]);
    expect(status.hostIP).toBeTruthy();
    expect(status.startTime).toBeTruthy();
    const types = Object.fromEntries((status.conditions ?? []).map((c) => [c.type, c.status]));
    expect(types).toMatchObject({ PodScheduled: 'True', Initialized: 'True', ContainersReady: 'True', Ready: 'True' });
    for (const c of status.conditions ?? []) expect(c.lastTransitionTime).toBeTruthy();
    expect(status.containerStatuses).toEqual([
      expect.objectContaining({
        name: 'app',
        image: APP.image,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: expect.any(String) } },
      }),
    ]);
    const res = await httpGet(`http://${status.podIP}:8080/`);
    expect(res.status).toBe(200);
    expect(res.body).toContain('spawner-test-app');

    // restartPolicy Never and a non-zero exit: the pod fails with the container's exit code.
    const failed = await waitFor(
      async () => {
        const pod = await getPod('exits');
        return pod?.status?.phase === 'Failed' && pod;
      },
      { description: 'pod "exits" to be Failed' },
    );
    const terminated = failed.status?.containerStatuses?.[0].state.terminated;
    expect(terminated).toMatchObject({ exitCode: 3, reason: 'Error' });
    expect(terminated?.finishedAt).toBeTruthy();

    // Deleting a pod stops its process and the pod goes away once the agent has finalized it.
    const pid = await containerPid(ns.name, 'runs', 'app');
    expect(pidAlive(pid)).toBe(true);
    await client.delete(PODS, ns.name, 'runs');
    await waitFor(async () => (await getPod('runs')) === undefined, { description: 'pod "runs" to be gone', timeoutMs: 20_000 });
    expect(pidAlive(pid)).toBe(false);
  });
});
