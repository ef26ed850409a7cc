/**
 * Backends without a Service (operator `--service-mode=None`, SPEC section 12): the operator
 * creates only the Pod, the backend reaches Ready, and the entry point reaches it by its Pod's IP,
 * HTTP and WebSocket alike.
 */
import type { V1Service } from '@kubernetes/client-node';
import WebSocket from 'ws';
import type { SessionLivedBackend } from '../common/src/backend';
import { BACKENDS, SERVICES } from '../common/src/kube/resources';
import { TEST_IMAGE } from './support/backends';
import { adminClient, agentInfo, describeWithAgent, useNamespace } from './support/cluster';
import { E2E_API_TOKEN, startApi, startComponent, stopAll, type Component } from './support/components';

jest.setTimeout(180_000);

describeWithAgent('service-less', () => {
  const ns = useNamespace('svcless');
  let operator: Component;
  let sweeper: Component;
  let api: Component;
  let base: string;
  const auth = { authorization: `Bearer ${E2E_API_TOKEN}` };

  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`, '--service-mode=None']);
    sweeper = await startComponent('sweeper', [`--namespaces=${ns.name}`, `--node-name=${agentInfo()!.nodeName}`]);
    api = await startApi(ns.name);
    base = `http://127.0.0.1:${api.port}`;
  });
  afterAll(() => stopAll([api, sweeper, operator]));

  test('service-less: backend reaches Ready without a Service, and serves HTTP and WebSocket through the entry point', async () => {
    const res = await fetch(`${base}/v1/backends`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 60 }),
    });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { name: string; url: string };
    const waited = await fetch(`${base}/v1/backends/${created.name}/wait?timeoutSeconds=60`, { headers: auth });
    expect(((await waited.json()) as { phase: string }).phase).toBe('Ready');

    const kube = adminClient();
    const backend = (await kube.get<SessionLivedBackend>(BACKENDS, ns.name, created.name))!;
    // No Service, ever: the Pod is the address.
    expect(await kube.get<V1Service>(SERVICES, ns.name, created.name)).toBeUndefined();
    const services = await kube.list<V1Service>(SERVICES, ns.name, {});
    expect(services.items).toHaveLength(0);
    const podIP = backend.status!.podIP!;
    expect(backend.status).toMatchObject({ ip: podIP, url: `http://${podIP}:9090/`, port: 9090 });
    expect(backend.status?.podUID).toMatch(/^[0-9a-f-]{36}$/);
    // The API keeps handing out entry-point URLs.
    expect(created.url).toContain(`/p/${created.name}/`);

    const http = await fetch(created.url);
    expect(http.status).toBe(200);
    expect(await http.text()).toContain('spawner-test-app');

    const ws = new WebSocket(created.url.replace(/^http/, 'ws'));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const echoed = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    ws.send('hello without a Service');
    expect(await echoed).toContain('hello without a Service');
    ws.close();
  });
});
