/**
 * Backends without a Service (operator `--service-mode=None`, SPEC section 12): the operator
 * creates only the Pod, the backend reaches Ready, and the entry point reaches it by its Pod's IP,
 * HTTP and WebSocket alike; only through the Pod the backend's status names, so a Pod IP handed to
 * another backend's Pod gets none of the first one's traffic; and a routing view that cannot
 * prove it is fresh refuses new connections.
 */
import { readFileSync } from 'node:fs';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import WebSocket from 'ws';
import type { SessionLivedBackend } from '../common/src/backend';
import { BACKENDS, PODS, SERVICES } from '../common/src/kube/resources';
import { TEST_IMAGE } from './support/backends';
import {
  adminClient,
  agentInfo,
  agentPod,
  createNamespace,
  deleteNamespace,
  describeWithAgent,
  setAgentIpReuse,
  useNamespace,
  waitFor,
} from './support/cluster';
import { E2E_API_TOKEN, startApi, startComponent, stopAll, type Component } from './support/components';
import { apiServerAddress, FreezableProxy, kubeconfigVia, sleep, undoAfterEach, writeFigures } from './support/faults';

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

  const undo = undoAfterEach();

  /** POST /v1/backends on `apiBase` and wait for Ready there; the backend as the API server has it. */
  async function spawnReady(
    apiBase: string,
    namespace: string,
  ): Promise<{ name: string; url: string; backend: SessionLivedBackend }> {
    const res = await fetch(`${apiBase}/v1/backends`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 600 }),
    });
    expect(res.status).toBe(201);
    const { name, url } = (await res.json()) as { name: string; url: string };
    const waited = await fetch(`${apiBase}/v1/backends/${name}/wait?timeoutSeconds=60`, { headers: auth });
    expect(((await waited.json()) as { phase: string }).phase).toBe('Ready');
    const backend = (await adminClient().get<SessionLivedBackend>(BACKENDS, namespace, name))!;
    return { name, url, backend };
  }

  /** What the app at `podIP` counted, by tag (e2e/test-app: `?for=`, WebSocket JSON `for`). */
  async function appCounts(podIP: string): Promise<Counts> {
    return (await (await fetch(`http://${podIP}:8080/counts`, { signal: AbortSignal.timeout(5000) })).json()) as Counts;
  }

  /** The counts in an app's exit log line (it logs them on SIGTERM), read once its Pod is gone. */
  function exitCounts(logPath: string): Counts | undefined {
    const lines = readFileSync(logPath, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"exiting"'));
    return lines.length ? (JSON.parse(lines[lines.length - 1]) as { counts: Counts }).counts : undefined;
  }

  async function appLogPath(namespace: string, pod: string): Promise<string> {
    const p = await agentPod(namespace, pod);
    return p!.containers.find((c) => c.name === 'app')!.logPath;
  }

  const podGone = (namespace: string, name: string): Promise<boolean> =>
    waitFor(async () => (await adminClient().get<V1Pod>(PODS, namespace, name)) === undefined, {
      description: `pod ${namespace}/${name} to be gone`,
      timeoutMs: 60_000,
      intervalMs: 50,
    });

  test('service-less: reused pod IP gets no stray traffic', async () => {
    // B's side: its own namespace, operator and API (the entry point its clients use).
    const nsB = await createNamespace('svcless-b');
    undo(() => deleteNamespace(nsB));
    const operatorB = await startComponent('operator', [`--namespaces=${nsB}`, '--service-mode=None'], { logName: 'operator-b' });
    undo(() => operatorB.stop());
    const apiB = await startApi(nsB, [], { logName: 'api-b' });
    undo(() => apiB.stop());
    const baseB = `http://127.0.0.1:${apiB.port}`;
    // A's clients go through an API whose view of the cluster can be frozen. Its freshness bound
    // is longer than the freeze below, so what stops a misroute then is the sidecar's token check.
    const proxy = await new FreezableProxy(apiServerAddress()).start();
    undo(() => proxy.stop());
    undo(() => proxy.thaw());
    const apiA = await startApi(ns.name, ['--hold-timeout-ms=1000', '--routes-freshness-seconds=60'], {
      kubeconfig: kubeconfigVia(proxy),
      logName: 'api-a-freezable',
    });
    undo(() => apiA.stop());
    const baseA = `http://127.0.0.1:${apiA.port}`;
    const previous = await setAgentIpReuse('immediate');
    undo(() => setAgentIpReuse(previous as 'round-robin'));

    const phases: Record<string, unknown> = {};
    const clients: Traffic[] = [];
    undo(() => Promise.all(clients.map((c) => c.stop())));
    const started = (t: Traffic): Traffic => (clients.push(t.start()), t);

    // ---- 1: A's Pod goes, its IP goes to B's Pod, A's status still says Ready at that IP (its
    // operator is stopped); A's API watches Pods live.
    const a1 = await spawnReady(baseA, ns.name);
    const ip1 = a1.backend.status!.podIP!;
    const trafficA1 = started(new Traffic('A1', a1.url));
    await sleep(1000);
    const a1Log = await appLogPath(ns.name, a1.name);
    process.kill(operator.pid, 'SIGSTOP');
    undo(() => process.kill(operator.pid, 'SIGCONT'));
    const deleted1 = Date.now();
    await adminClient().delete(PODS, ns.name, a1.name);
    await podGone(ns.name, a1.name);
    const gone1 = Date.now();
    trafficA1.mark('podGone');
    const b1 = await spawnReady(baseB, nsB);
    const reused1 = Date.now();
    expect({ b1: b1.backend.status?.podIP }).toEqual({ b1: ip1 });
    const staleA1 = await adminClient().get<SessionLivedBackend>(BACKENDS, ns.name, a1.name);
    // What an entry point routing by status.podIP would have used: Ready, at B's address.
    expect(staleA1?.status).toMatchObject({ phase: 'Ready', podIP: ip1 });
    const trafficB1 = started(new Traffic('B1', b1.url));
    trafficA1.mark('reused');
    await sleep(4000);
    process.kill(operator.pid, 'SIGCONT');
    await waitFor(
      async () => (await adminClient().get<SessionLivedBackend>(BACKENDS, ns.name, a1.name))?.status?.phase === 'Failed',
      {
        description: 'A1 Failed (PodDeleted) once its operator runs again',
        timeoutMs: 30_000,
      },
    );
    await sleep(1000);
    await trafficA1.stop();
    phases.operatorStopped = {
      podDeletedToGoneMs: gone1 - deleted1,
      goneToBReadyAtSameIpMs: reused1 - gone1,
      aClients: trafficA1.summary(),
    };

    // ---- 2: A's API is frozen (its view stands still: A's Pod Running and Ready at that IP),
    // A is deleted, its IP goes to B's Pod, A's clients keep coming; then the view thaws.
    const a2 = await spawnReady(baseA, ns.name);
    const ip2 = a2.backend.status!.podIP!;
    const trafficA2 = started(new Traffic('A2', a2.url));
    await sleep(1000);
    const a2Log = await appLogPath(ns.name, a2.name);
    proxy.freeze();
    const frozenAt = Date.now();
    await adminClient().delete(BACKENDS, ns.name, a2.name, { propagationPolicy: 'Background' });
    await podGone(ns.name, a2.name);
    trafficA2.mark('podGone');
    const b2 = await spawnReady(baseB, nsB);
    expect({ b2: b2.backend.status?.podIP }).toEqual({ b2: ip2 });
    const reused2 = Date.now();
    const trafficB2 = started(new Traffic('B2', b2.url));
    trafficA2.mark('reused');
    // A's clients keep sending at B's Pod through the frozen view for a while.
    await sleep(Math.max(3000, 12_000 - (Date.now() - frozenAt)));
    proxy.thaw();
    const thawedAt = Date.now();
    trafficA2.mark('thawed');
    await sleep(3000);
    await Promise.all([trafficA2.stop(), trafficB1.stop(), trafficB2.stop()]);

    // Both sides' apps count what reached them, by the client's tag.
    const countsB1 = await appCounts(ip1);
    const countsB2 = await appCounts(ip2);
    const countsA1 = await waitFor(() => exitCounts(a1Log), { description: 'A1 app exit counts', timeoutMs: 10_000 });
    const countsA2 = await waitFor(() => exitCounts(a2Log), { description: 'A2 app exit counts', timeoutMs: 10_000 });
    phases.apiFrozen = {
      frozenMs: thawedAt - frozenAt,
      frozenBeforeBReadyMs: reused2 - frozenAt,
      aClients: trafficA2.summary(),
    };
    const figures = {
      ...phases,
      apiA: { staleLogged: logged(apiA, 'routing view is stale'), relistsLogged: logged(apiA, 'relisting') },
      bClients: { B1: trafficB1.summary(), B2: trafficB2.summary() },
      apps: { A1: countsA1, A2: countsA2, B1: countsB1, B2: countsB2 },
    };
    writeFigures('service-less-reused-ip', figures);

    // Nothing of A's reached B's apps; nothing of B's reached A's.
    const stray = {
      'A1 → B1': total(countsB1, 'A1'),
      'A2 → B2': total(countsB2, 'A2'),
      'B → A1': total(countsA1, 'B1') + total(countsA1, 'B2'),
      'B → A2': total(countsA2, 'B1') + total(countsA2, 'B2'),
      'A clients: echoes of their messages after the reuse':
        trafficA1.after('reused').wsEchoed + trafficA2.after('reused').wsEchoed,
      'A clients: 200s after the reuse': trafficA1.after('reused').ok + trafficA2.after('reused').ok,
    };
    expect(stray).toEqual({
      'A1 → B1': 0,
      'A2 → B2': 0,
      'B → A1': 0,
      'B → A2': 0,
      'A clients: echoes of their messages after the reuse': 0,
      'A clients: 200s after the reuse': 0,
    });
    // The test did what it says: both sides talked, A's clients kept trying after the reuse.
    for (const [tag, c] of [
      ['A1', countsA1],
      ['A2', countsA2],
      ['B1', countsB1],
      ['B2', countsB2],
    ] as const) {
      expect({ tag, http: (c.http[tag] ?? 0) > 0, ws: (c.ws[tag] ?? 0) > 0 }).toEqual({ tag, http: true, ws: true });
    }
    expect(trafficA1.after('reused').requests).toBeGreaterThan(0);
    expect(trafficA2.after('reused').requests).toBeGreaterThan(0);
    // Phase 1 is the routing view's doing: A's clients never reached B's sidecar (a 401 from it)
    // once A's Pod was gone, though A's status named B's address all along.
    const fromBSidecar = trafficA1.after('podGone');
    expect({
      requests: Object.entries(fromBSidecar.statuses).filter(([k]) => k.startsWith('401')),
      upgrades: Object.entries(fromBSidecar.wsRefused).filter(([k]) => k.startsWith('401')),
    }).toEqual({ requests: [], upgrades: [] });
  });

  test('service-less: stale watch refuses new connections', async () => {
    const BOUND_S = 4;
    const proxy = await new FreezableProxy(apiServerAddress()).start();
    undo(() => proxy.stop());
    undo(() => proxy.thaw());
    const apiS = await startApi(ns.name, [`--routes-freshness-seconds=${BOUND_S}`], {
      kubeconfig: kubeconfigVia(proxy),
      logName: 'api-stale',
    });
    undo(() => apiS.stop());
    const baseS = `http://127.0.0.1:${apiS.port}`;
    const c = await spawnReady(baseS, ns.name);
    const get = async (): Promise<{ status: number; code?: string }> => {
      const res = await fetch(c.url, { signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      let code: string | undefined;
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
      } catch {
        code = undefined;
      }
      return { status: res.status, code };
    };
    expect(await get()).toEqual({ status: 200, code: undefined });
    // A WebSocket opened before: connections already open are not cut.
    const ws = new WebSocket(c.url.replace(/^http/, 'ws'));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    undo(() => ws.terminate());
    const echo = async (text: string): Promise<string> => {
      const got = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
      ws.send(text);
      return Promise.race([got, sleep(5000).then(() => 'no echo')]);
    };

    // Unfrozen, the view kept itself fresh (probes proven by bookmarks) all along.
    expect(logged(apiS, 'routing view is stale')).toBe(0);
    proxy.freeze();
    const frozenAt = Date.now();
    // The store says so in its log once the view is older than the bound.
    const staleLogged = await waitFor(() => logged(apiS, 'routing view is stale') > 0 && Date.now(), {
      description: 'the API to log that its routing view is stale',
      timeoutMs: (BOUND_S + 5) * 1000,
      intervalMs: 100,
    });
    const answers: Array<{ status: number; code?: string }> = [];
    while (Date.now() - staleLogged < 2000) {
      answers.push(await get());
      await sleep(200);
    }
    const upgrade = await new Promise<number>((resolve) => {
      const fresh = new WebSocket(c.url.replace(/^http/, 'ws'));
      fresh.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      fresh.once('open', () => (fresh.close(), resolve(101)));
      fresh.once('error', () => resolve(-1));
    });
    const openEcho = await echo('still here');

    proxy.thaw();
    const thawedAt = Date.now();
    const recovered = await waitFor(async () => (await get()).status === 200 && Date.now(), {
      description: 'requests to succeed again after the view thaws',
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    writeFigures('service-less-stale-watch', {
      boundSeconds: BOUND_S,
      staleLoggedAfterFreezeMs: staleLogged - frozenAt,
      answersWhileStale: tally(answers.map((a) => `${a.status}${a.code ? ` ${a.code}` : ''}`)),
      newUpgradeWhileStale: upgrade,
      openWebSocketEchoWhileStale: openEcho.includes('still here'),
      recoveredAfterThawMs: recovered - thawedAt,
      relistsLogged: logged(apiS, 'relisting'),
    });
    expect(staleLogged - frozenAt).toBeLessThanOrEqual((BOUND_S + 2) * 1000);
    expect(openEcho).toContain('still here');
    expect(recovered - thawedAt).toBeLessThan(2 * BOUND_S * 1000);
    // The entry point's part: new requests and upgrades are refused while the view is stale.
    expect(tally(answers.map((a) => `${a.status} ${a.code}`))).toEqual({ [`503 routes_stale`]: answers.length });
    expect(upgrade).toBe(503);
  });
});

interface Counts {
  http: Record<string, number>;
  ws: Record<string, number>;
}

const total = (c: Counts, tag: string): number => (c.http[tag] ?? 0) + (c.ws[tag] ?? 0);

/** How many lines of the component's log contain `text`. */
const logged = (c: Component, text: string): number =>
  readFileSync(c.logPath, 'utf8')
    .split('\n')
    .filter((l) => l.includes(text)).length;

function tally(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

interface Tally {
  requests: number;
  ok: number;
  statuses: Record<string, number>;
  wsOpened: number;
  wsRefused: Record<string, number>;
  wsSent: number;
  wsEchoed: number;
}

const emptyTally = (): Tally => ({ requests: 0, ok: 0, statuses: {}, wsOpened: 0, wsRefused: {}, wsSent: 0, wsEchoed: 0 });

/**
 * One client of a backend through the entry point, tagged: a request every 25 ms (GET /echo?for=
 * <tag>) and a WebSocket sending a tagged message every 25 ms, reopened whenever it closes. What it
 * sees is tallied per period (`mark` starts the next one).
 */
class Traffic {
  private readonly periods: Array<{ name: string; tally: Tally }> = [{ name: 'start', tally: emptyTally() }];
  private running = false;
  private loops: Array<Promise<void>> = [];
  private ws?: WebSocket;

  constructor(
    readonly tag: string,
    private readonly url: string,
  ) {}

  private get now(): Tally {
    return this.periods[this.periods.length - 1].tally;
  }

  mark(name: string): void {
    this.periods.push({ name, tally: emptyTally() });
  }

  /** Everything seen from period `name` on. */
  after(name: string): Tally {
    const i = this.periods.findIndex((p) => p.name === name);
    const sum = emptyTally();
    for (const { tally } of this.periods.slice(i < 0 ? this.periods.length : i)) {
      sum.requests += tally.requests;
      sum.ok += tally.ok;
      sum.wsOpened += tally.wsOpened;
      sum.wsSent += tally.wsSent;
      sum.wsEchoed += tally.wsEchoed;
      for (const [k, v] of Object.entries(tally.statuses)) sum.statuses[k] = (sum.statuses[k] ?? 0) + v;
      for (const [k, v] of Object.entries(tally.wsRefused)) sum.wsRefused[k] = (sum.wsRefused[k] ?? 0) + v;
    }
    return sum;
  }

  summary(): Record<string, Tally> {
    return Object.fromEntries(this.periods.map((p) => [p.name, p.tally]));
  }

  start(): this {
    this.running = true;
    this.loops = [this.httpLoop(), this.wsLoop()];
    return this;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.ws?.terminate();
    await Promise.all(this.loops);
  }

  private async httpLoop(): Promise<void> {
    const u = new URL(this.url);
    u.pathname = `${u.pathname.replace(/\/?$/, '/')}echo`;
    u.searchParams.set('for', this.tag);
    while (this.running) {
      const t = this.now;
      t.requests++;
      let key: string;
      try {
        const res = await fetch(u, { signal: AbortSignal.timeout(5000) });
        const body = await res.text();
        key = String(res.status);
        if (res.status === 200 && (JSON.parse(body) as { query?: { for?: string } }).query?.for === this.tag) t.ok++;
        else if (res.status !== 200) {
          const code = /"code":"([^"]+)"/.exec(body)?.[1];
          if (code) key += ` ${code}`;
        }
      } catch (err) {
        key = `error ${(err as Error).name}`;
      }
      t.statuses[key] = (t.statuses[key] ?? 0) + 1;
      await sleep(25);
    }
  }

  private async wsLoop(): Promise<void> {
    const wsUrl = this.url.replace(/^http/, 'ws');
    let n = 0;
    while (this.running) {
      const outcome = await new Promise<string>((resolve) => {
        const ws = new WebSocket(wsUrl, { handshakeTimeout: 5000 });
        this.ws = ws;
        let timer: NodeJS.Timeout | undefined;
        ws.once('unexpected-response', (_req, res) => {
          resolve(String(res.statusCode));
          ws.terminate();
        });
        ws.once('open', () => {
          this.now.wsOpened++;
          timer = setInterval(() => {
            if (!this.running || ws.readyState !== WebSocket.OPEN) return;
            ws.send(JSON.stringify({ for: this.tag, n: n++ }));
            this.now.wsSent++;
          }, 25);
        });
        ws.on('message', (d) => {
          if ((JSON.parse(String(d)) as { for?: string }).for === this.tag) this.now.wsEchoed++;
        });
        ws.once('close', () => {
          if (timer) clearInterval(timer);
          resolve('closed');
        });
        ws.once('error', () => undefined);
      });
      if (outcome !== 'closed') this.now.wsRefused[outcome] = (this.now.wsRefused[outcome] ?? 0) + 1;
      if (this.running) await sleep(100);
    }
  }
}
