/**
 * The node agent's kubelet behaviours that the Spawner tests rely on: pod isolation, in-cluster
 * credentials under real RBAC, volumes and env references, restarts, probes, image pull errors,
 * OOM kills, graceful deletion, and the controllers (Deployments, namespace deletion) on top.
 */
import * as https from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PODS } from '../common/src/kube/resources';
import type { KubeObject } from '../common/src/kube/types';
import type { Pod } from './node-agent/pod-types';
import {
  adminClient,
  agentPod,
  containerPid,
  createNamespace,
  describeWithAgent,
  httpGet,
  kubectl,
  pidAlive,
  stateDir,
  useNamespace,
  waitFor,
} from './support/cluster';

jest.setTimeout(120_000);

const IMAGE = 'spawner-test-app:e2e';
type Manifest = KubeObject & Pick<Pod, 'spec'>;
type Container = Pod['spec']['containers'][number];

describeWithAgent('node agent', () => {
  const ns = useNamespace('node');
  const client = adminClient();

  const app = (env: Record<string, string> = {}, extra: Partial<Container> = {}): Container => ({
    name: 'app',
    image: IMAGE,
    env: Object.entries(env).map(([name, value]) => ({ name, value })),
    readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
    ...extra,
  });

  const create = (name: string, spec: Partial<Pod['spec']>): Promise<KubeObject> =>
    client.create<Manifest>(PODS, ns.name, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns.name },
      spec: { terminationGracePeriodSeconds: 2, containers: [app()], ...spec },
    });

  const get = (name: string): Promise<Pod | undefined> => client.get<Pod>(PODS, ns.name, name);

  const waitPod = (name: string, description: string, ok: (pod: Pod) => boolean, timeoutMs = 30_000): Promise<Pod> =>
    waitFor(
      async () => {
        const pod = await get(name);
        return pod && ok(pod) ? pod : undefined;
      },
      { description: `pod ${name} ${description}`, timeoutMs },
    );

  const isReady = (pod: Pod): boolean => pod.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
  const url = (pod: Pod, path: string): string => `http://${pod.status?.podIP}:8080${path}`;

  test('node agent: pods get their own network namespace and address', async () => {
    await Promise.all([create('net-a', {}), create('net-b', {})]);
    const [a, b] = await Promise.all([waitPod('net-a', 'Ready', isReady), waitPod('net-b', 'Ready', isReady)]);
    expect(a.status?.podIP).not.toBe(b.status?.podIP);
    // Both listen on 8080; each answers at its own address with its own hostname.
    expect((await httpGet(url(a, '/'))).body).toContain('on net-a');
    expect((await httpGet(url(b, '/'))).body).toContain('on net-b');
    const info = await agentPod(ns.name, 'net-a');
    expect(info?.netns).toMatch(/^spawner-pod-/);
    expect(info?.containers[0].firstReadyAt).toBeTruthy();
  });

  test('node agent: processes get the pod ServiceAccount credentials, under RBAC', async () => {
    await kubectl(['create', 'serviceaccount', 'reader', '-n', ns.name]);
    await create('creds', { serviceAccountName: 'reader' });
    const pod = await waitPod('creds', 'Ready', isReady);
    const file = async (path: string): Promise<string> =>
      (await httpGet(url(pod, `/file?path=${encodeURIComponent(path)}`))).body;
    const dir = '/var/run/secrets/kubernetes.io/serviceaccount';
    expect(await file(`${dir}/namespace`)).toBe(ns.name);
    const token = await file(`${dir}/token`);
    const ca = await file(`${dir}/ca.crt`);
    expect(ca).toContain('BEGIN CERTIFICATE');
    const env = JSON.parse((await httpGet(url(pod, '/env'))).body) as Record<string, string>;
    expect(env.KUBERNETES_SERVICE_HOST).toBeTruthy();

    // The token authenticates as the pod's ServiceAccount at the address pods use.
    const api = (path: string, method = 'GET', body?: unknown): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = https.request(
          `https://${env.KUBERNETES_SERVICE_HOST}:${env.KUBERNETES_SERVICE_PORT}${path}`,
          { method, ca, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.on('error', reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
      });
    const review = await api('/apis/authentication.k8s.io/v1/selfsubjectreviews', 'POST', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'SelfSubjectReview',
    });
    expect(JSON.parse(review.body).status.userInfo.username).toBe(`system:serviceaccount:${ns.name}:reader`);
    expect((await api(`/api/v1/namespaces/${ns.name}/pods`)).status).toBe(403);
    await kubectl(['create', 'role', 'pod-reader', '--verb=list', '--resource=pods', '-n', ns.name]);
    await kubectl([
      'create',
      'rolebinding',
      'pod-reader',
      '--role=pod-reader',
      `--serviceaccount=${ns.name}:reader`,
      '-n',
      ns.name,
    ]);
    await waitFor(async () => (await api(`/api/v1/namespaces/${ns.name}/pods`)).status === 200, {
      description: 'the RoleBinding to apply',
    });
    // The mount is the pod's alone and read-only.
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(`${ns.name}_creds`);
  });

  test('node agent: volumes and env references', async () => {
    await kubectl(['create', 'configmap', 'conf', '--from-literal=greeting=hello', '--from-literal=mode=fast', '-n', ns.name]);
    await kubectl(['create', 'secret', 'generic', 'sec', '--from-literal=password=s3cret', '-n', ns.name]);
    await create('vols', {
      containers: [
        app(
          {},
          {
            env: [
              { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'conf', key: 'greeting' } } },
              { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'sec', key: 'password' } } },
              { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
              { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
              { name: 'SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
              { name: 'COMBINED', value: '$(POD_NAME)@$(NODE_NAME)' },
            ],
            envFrom: [{ prefix: 'CM_', configMapRef: { name: 'conf' } }],
            volumeMounts: [
              { name: 'conf', mountPath: '/etc/e2e/conf' },
              { name: 'sec', mountPath: '/etc/e2e/sec', readOnly: true },
              { name: 'scratch', mountPath: '/tmp/e2e-scratch' },
              { name: 'info', mountPath: '/etc/e2e/info' },
              { name: 'all', mountPath: '/etc/e2e/all' },
            ],
          },
        ),
      ],
      volumes: [
        { name: 'conf', configMap: { name: 'conf' } },
        { name: 'sec', secret: { secretName: 'sec', items: [{ key: 'password', path: 'nested/pw' }] } },
        { name: 'scratch', emptyDir: {} },
        {
          name: 'info',
          downwardAPI: {
            items: [
              { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
              { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
            ],
          },
        },
        {
          name: 'all',
          projected: {
            sources: [{ configMap: { name: 'conf', items: [{ key: 'mode', path: 'mode' }] } }, { secret: { name: 'sec' } }],
          },
        },
      ],
    });
    const pod = await waitPod('vols', 'Ready', isReady);
    const env = JSON.parse((await httpGet(url(pod, '/env'))).body) as Record<string, string>;
    expect(env).toMatchObject({
      GREETING: 'hello',
      PASSWORD: 's3cret',
      POD_NAME: 'vols',
      POD_NAMESPACE: ns.name,
      POD_IP: pod.status?.podIP,
      NODE_NAME: pod.spec.nodeName,
      SA: 'default',
      COMBINED: `vols@${pod.spec.nodeName}`,
      CM_greeting: 'hello',
      CM_mode: 'fast',
    });
    const file = async (path: string): Promise<string> =>
      (await httpGet(url(pod, `/file?path=${encodeURIComponent(path)}`))).body;
    expect(await file('/etc/e2e/conf/greeting')).toBe('hello');
    expect(await file('/etc/e2e/sec/nested/pw')).toBe('s3cret');
    expect(await file('/etc/e2e/info/name')).toBe('vols');
    expect(await file('/etc/e2e/all/mode')).toBe('fast');
    expect(await file('/etc/e2e/all/password')).toBe('s3cret');
    expect(JSON.parse(await file('/tmp/e2e-scratch')).error).toMatch(/EISDIR/);
  });

  test('node agent: a missing Secret keeps the container waiting until it exists', async () => {
    await create('needs-secret', {
      containers: [app({}, { env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'later', key: 'token' } } }] })],
    });
    await waitPod(
      'needs-secret',
      'waiting with CreateContainerConfigError',
      (p) => p.status?.containerStatuses?.[0].state.waiting?.reason === 'CreateContainerConfigError',
    );
    await kubectl(['create', 'secret', 'generic', 'later', '--from-literal=token=t', '-n', ns.name]);
    await waitPod('needs-secret', 'Ready', isReady);
  });

  test('node agent: restarts crashing containers with back-off (restartPolicy Always)', async () => {
    await create('crashy', { containers: [app({ EXIT_AFTER_MS: '200', EXIT_CODE: '7' })] });
    const pod = await waitPod('crashy', 'restarted twice', (p) => (p.status?.containerStatuses?.[0].restartCount ?? 0) >= 2);
    expect(pod.status?.phase).toBe('Running');
    expect(pod.status?.containerStatuses?.[0].lastState.terminated).toMatchObject({ exitCode: 7, reason: 'Error' });
    await waitPod(
      'crashy',
      'in CrashLoopBackOff',
      (p) => p.status?.containerStatuses?.[0].state.waiting?.reason === 'CrashLoopBackOff',
    );
  });

  test('node agent: readiness follows the probe', async () => {
    await create('slow', { containers: [app({ LISTEN_DELAY_MS: '2500' })] });
    const running = await waitPod('slow', 'Running', (p) => p.status?.phase === 'Running');
    expect(isReady(running)).toBe(false);
    expect(running.status?.containerStatuses?.[0]).toMatchObject({ ready: false, started: true });
    const ready = await waitPod('slow', 'Ready', isReady);
    const info = await agentPod(ns.name, 'slow');
    const c = info?.containers[0];
    expect(Date.parse(c?.firstReadyAt ?? '') - Date.parse(c?.spawnedAt ?? '')).toBeGreaterThanOrEqual(2_400);
    expect(ready.status?.conditions?.find((x) => x.type === 'Ready')?.lastTransitionTime).toBeTruthy();
  });

  test('node agent: unknown image reports ErrImagePull, then ImagePullBackOff', async () => {
    await create('no-image', { containers: [{ name: 'app', image: 'registry.example/not-in-the-map:1.0' }] });
    const seen = new Set<string>();
    await waitFor(
      async () => {
        const reason = (await get('no-image'))?.status?.containerStatuses?.[0].state.waiting?.reason;
        if (reason) seen.add(reason);
        return seen.has('ErrImagePull') && seen.has('ImagePullBackOff');
      },
      { description: 'ErrImagePull and ImagePullBackOff', intervalMs: 100 },
    );
    expect((await get('no-image'))?.status?.phase).toBe('Pending');
  });

  test('node agent: a memory limit is enforced and reported as OOMKilled', async () => {
    await create('oom', {
      restartPolicy: 'Never',
      containers: [app({ ALLOCATE_MB: '400' }, { resources: { limits: { memory: '128Mi' } } })],
    });
    const pod = await waitPod('oom', 'Failed', (p) => p.status?.phase === 'Failed');
    expect(pod.status?.containerStatuses?.[0].state.terminated).toMatchObject({ reason: 'OOMKilled', exitCode: 137 });
  });

  test('node agent: deletion sends SIGTERM, then SIGKILL after the grace period', async () => {
    await create('stubborn', { terminationGracePeriodSeconds: 1, containers: [app({ IGNORE_SIGTERM: '1' })] });
    await waitPod('stubborn', 'Ready', isReady);
    const pid = await containerPid(ns.name, 'stubborn', 'app');
    const started = Date.now();
    await client.delete(PODS, ns.name, 'stubborn');
    await waitFor(async () => (await get('stubborn')) === undefined, { description: 'pod stubborn to be gone' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(pidAlive(pid)).toBe(false);
    expect(readFileSync(join(stateDir(), 'pods', `${ns.name}_stubborn`, 'app.log'), 'utf8')).toContain('SIGTERM ignored');
  });

  test('node agent: Deployment pods run and a killed container is restarted', async () => {
    await kubectl(['create', 'deployment', 'web', `--image=${IMAGE}`, '--replicas=2', '-n', ns.name]);
    const pods = await waitFor(
      async () => {
        const list = await client.list<Pod>(PODS, ns.name, { labelSelector: 'app=web' });
        return list.items.filter((p) => p.status?.phase === 'Running').length === 2 && list.items;
      },
      { description: 'two running pods of Deployment web' },
    );
    const victim = pods[0].metadata.name;
    const pid = await containerPid(ns.name, victim, 'spawner-test-app');
    process.kill(pid, 'SIGKILL');
    const pod = await waitPod(
      victim,
      'restarted',
      (p) => p.status?.containerStatuses?.[0].restartCount === 1 && p.status.containerStatuses[0].state.running !== undefined,
    );
    expect(pod.status?.containerStatuses?.[0].lastState.terminated).toMatchObject({ exitCode: 137, reason: 'Error' });
    await kubectl(['rollout', 'status', 'deployment/web', '-n', ns.name, '--timeout=60s']);
  });

  test('node agent: deleting a namespace stops its pods and the namespace goes away', async () => {
    const other = await createNamespace('gone');
    await kubectl(['run', 'p', `--image=${IMAGE}`, '-n', other]);
    const pid = await containerPid(other, 'p', 'p');
    await kubectl(['delete', 'namespace', other, '--timeout=60s']);
    expect(pidAlive(pid)).toBe(false);
    expect((await kubectl(['get', 'namespace', other], { allowFail: true })).code).not.toBe(0);
  });
});
