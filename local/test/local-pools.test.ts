/**
 * Warm pools in local mode, over HTTP with real processes: a claim is Ready at once with launch
 * Warm on a process started before the create, which nothing reaches before the claim; the pool
 * refills, replaces exited and aged processes; an empty pool starts cold or answers 429 as it
 * says; concurrent claims never share a process; nothing is left running after shutdown.
 */
import { ConfigError } from '../../common/src/config';
import { createLogger } from '../../common/src/logger';
import { waitFor } from '../../common/src/testing/wait-for';
import { localConfig } from '../src/config';
import { poolFromConfig, type LocalPoolConfig } from '../src/local-pools';
import { startLocalMode, type LocalMode } from '../src/local-mode';
import { ASSIGN_PATH as DEMO_ASSIGN_PATH } from '../../examples/demo-backend/src/server';
import { DEMO_BACKEND_BUILD, isAlive, requireBuild } from './support';

jest.setTimeout(120_000);

const IMAGE = 'spawner-demo-backend';
const quiet = createLogger('local-test', 'error', () => undefined);

const POOLS: LocalPoolConfig[] = [
  { name: 'single', image: IMAGE, replicas: 1 },
  { name: 'none-cold', image: IMAGE, replicas: 0 },
  { name: 'none-reject', image: IMAGE, replicas: 0, whenEmpty: 'Reject' },
  { name: 'one-reject', image: IMAGE, replicas: 1, whenEmpty: 'Reject' },
  { name: 'aging', image: IMAGE, replicas: 1, maxIdleAgeSeconds: 1 },
  { name: 'told', image: IMAGE, replicas: 1, assignPath: DEMO_ASSIGN_PATH },
];

let local: LocalMode;

function start(pools: LocalPoolConfig[]): Promise<LocalMode> {
  return startLocalMode(localConfig({ port: 0, entryPointPort: 0, sidecarHeartbeatSeconds: 1, pools }), {
    logger: quiet,
    sidecarLogger: quiet,
  });
}

beforeAll(async () => {
  requireBuild(DEMO_BACKEND_BUILD);
  local = await start(POOLS);
});

afterAll(() => local?.close());

interface Created {
  name: string;
  url: string;
}

async function create(l: LocalMode, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${l.apiUrl}/v1/backends`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function waitReady(l: LocalMode, name: string): Promise<void> {
  const res = await fetch(`${l.apiUrl}/v1/backends/${name}/wait?timeoutSeconds=60`);
  expect(((await res.json()) as { phase: string }).phase).toBe('Ready');
}

/** What the demo backend says about itself, through the entry point. */
async function served(url: string): Promise<{ pid: number; startedAt: string }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return (await res.json()) as { pid: number; startedAt: string };
}

const readyMembers = (l: LocalMode, pool: string) => l.store.pools.members(pool).filter((m) => m.state === 'ready');

async function poolReady(l: LocalMode, pool: string, count: number): Promise<Array<{ name: string; pid?: number }>> {
  return waitFor(
    () => {
      const ready = readyMembers(l, pool);
      return ready.length === count ? ready : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, description: `${count} ready processes in pool ${pool}` },
  );
}

test('local pools: a claim is Ready at once with launch Warm, on a process nothing could reach before; the pool refills', async () => {
  const [member] = await poolReady(local, 'single', 1);
  expect(isAlive(member.pid!)).toBe(true);
  expect((await local.store.pools.get('single'))?.status).toEqual({ replicas: 1, readyReplicas: 1 });

  // Before the claim nothing routes to it, whatever token is shown: the entry point knows backends only.
  const other = (await (await create(local, { image: IMAGE })).json()) as Created;
  const otherToken = new URL(other.url).searchParams.get('spawner_token');
  const probe = await fetch(`${local.entryPointUrl}/p/${member.name}/?spawner_token=${otherToken}`);
  expect(probe.status).toBe(404);
  expect((await fetch(`${local.entryPointUrl}/p/${member.name}/`)).status).toBe(404);

  const t0 = Date.now();
  const res = await create(local, { pool: 'single', gracePeriodSeconds: 30 });
  expect(res.status).toBe(201);
  const created = (await res.json()) as Created & { spec: { poolRef?: { name: string } } };
  expect(created.spec.poolRef).toEqual({ name: 'single' });
  await waitReady(local, created.name);
  const readyAfterMs = Date.now() - t0;

  const backend = (await local.store.get(created.name))!;
  expect(backend.status).toMatchObject({ phase: 'Ready', launch: 'Warm', podName: member.name });
  expect(backend.status?.launchReason).toBeUndefined();
  // One status write from Submitted to Ready, as a claimed Pod's backend on a cluster.
  const times = new Map(backend.status?.transitions?.map((t) => [t.phase, t.time]));
  expect(times.get('Constructed')).toBe(times.get('Ready'));
  expect(readyAfterMs).toBeLessThan(2000);
  expect(local.store.runInfo(created.name)?.pid).toBe(member.pid);

  // It serves through the entry point with the backend's token, and only with it.
  const app = await served(created.url);
  expect(app.pid).toBe(member.pid);
  expect(Date.parse(app.startedAt)).toBeLessThan(Date.parse(String(backend.metadata.creationTimestamp)));
  const withoutToken = new URL(created.url);
  withoutToken.search = '';
  expect((await fetch(withoutToken)).status).toBe(401);

  // The pool refills at once, with a new process; the claimed one is no longer the pool's.
  const [refill] = await poolReady(local, 'single', 1);
  expect(refill.name).not.toBe(member.name);
  expect(refill.pid).not.toBe(member.pid);
  expect(local.store.pools.pids()).not.toContain(member.pid);

  // Ending the session stops the claimed process; it never goes back to the pool.
  expect((await fetch(`${local.apiUrl}/v1/backends/${created.name}`, { method: 'DELETE' })).status).toBe(202);
  await waitFor(() => !isAlive(member.pid!), { timeoutMs: 15_000, intervalMs: 50, description: 'the claimed process to stop' });
  expect(local.store.pools.members('single').map((m) => m.name)).not.toContain(member.name);
  await fetch(`${local.apiUrl}/v1/backends/${other.name}`, { method: 'DELETE' });
});

test('local pools: with an assignPath the claimed app learns its backend before it is Ready', async () => {
  const [member] = await poolReady(local, 'told', 1);
  const res = await create(local, { pool: 'told', key: 'doc/7' });
  expect(res.status).toBe(201);
  const created = (await res.json()) as Created;
  await waitReady(local, created.name);
  const backend = (await local.store.get(created.name))!;
  expect(backend.status).toMatchObject({ launch: 'Warm', podName: member.name });
  // The first request through the entry point finds the app told already, before Ready.
  const app = (await served(created.url)) as unknown as {
    pid: number;
    backend?: { name: string; uid: string; key: string; at: string };
  };
  expect(app.pid).toBe(member.pid);
  expect(app.backend).toMatchObject({ name: created.name, uid: backend.metadata.uid, key: 'doc/7' });
  const ready = new Map(backend.status?.transitions?.map((t) => [t.phase, Date.parse(t.time)])).get('Ready')!;
  expect(Date.parse(app.backend!.at)).toBeLessThanOrEqual(ready);
  await fetch(`${local.apiUrl}/v1/backends/${created.name}`, { method: 'DELETE' });
});

test('local pools: the idle countdown of a warm backend starts at the claim', async () => {
  await poolReady(local, 'single', 1);
  // The process was started well before; a 2 s grace counted from its start would sweep at once.
  await new Promise((r) => setTimeout(r, 2500));
  const created = (await (await create(local, { pool: 'single', gracePeriodSeconds: 2 })).json()) as Created;
  await waitReady(local, created.name);
  await new Promise((r) => setTimeout(r, 1000));
  expect((await local.store.get(created.name))?.status?.phase).toBe('Ready');
  await waitFor(async () => (await local.store.get(created.name)) === undefined, {
    timeoutMs: 20_000,
    intervalMs: 100,
    description: 'the idle warm backend to be swept',
  });
  expect(local.store.ended(created.name)?.status).toMatchObject({ phase: 'Swept', reason: 'IdleTimeout', launch: 'Warm' });
});

test('local pools: an empty ColdStart pool starts cold (PoolEmpty); an empty Reject pool answers 429; an unknown pool 404', async () => {
  const liveBefore = local.store.countLive();
  const res = await create(local, { pool: 'none-cold' });
  expect(res.status).toBe(201);
  const cold = (await res.json()) as Created;
  await waitReady(local, cold.name);
  expect((await local.store.get(cold.name))?.status).toMatchObject({
    phase: 'Ready',
    launch: 'Cold',
    launchReason: 'PoolEmpty',
    podName: cold.name,
  });
  await served(cold.url);

  const rejected = await create(local, { pool: 'none-reject' });
  expect(rejected.status).toBe(429);
  expect(Number(rejected.headers.get('retry-after'))).toBeGreaterThan(0);
  expect(((await rejected.json()) as { error: { message: string } }).error.message).toContain('none-reject');

  const missing = await create(local, { pool: 'no-such-pool' });
  expect(missing.status).toBe(404);
  expect(local.store.countLive()).toBe(liveBefore + 1);
  await fetch(`${local.apiUrl}/v1/backends/${cold.name}`, { method: 'DELETE' });
});

test('local pools: a Reject pool answers from its live count (its one process claimed: 429 until refilled)', async () => {
  await poolReady(local, 'one-reject', 1);
  const first = await create(local, { pool: 'one-reject' });
  expect(first.status).toBe(201);
  const warm = (await first.json()) as Created;
  // The refill is still starting (a Node.js process takes far longer than this round trip).
  const second = await create(local, { pool: 'one-reject' });
  expect(second.status).toBe(429);
  expect(second.headers.get('retry-after')).toBeTruthy();
  await poolReady(local, 'one-reject', 1);
  const third = await create(local, { pool: 'one-reject' });
  expect(third.status).toBe(201);
  const again = (await third.json()) as Created;
  await waitReady(local, warm.name);
  await waitReady(local, again.name);
  for (const name of [warm.name, again.name]) expect((await local.store.get(name))?.status?.launch).toBe('Warm');
  for (const name of [warm.name, again.name]) await fetch(`${local.apiUrl}/v1/backends/${name}`, { method: 'DELETE' });
});

test('local pools: a process that exits is replaced, and one older than maxIdleAgeSeconds too', async () => {
  const [before] = await poolReady(local, 'single', 1);
  process.kill(before.pid!, 'SIGKILL');
  const [after] = await waitFor(
    () => {
      const ready = readyMembers(local, 'single');
      return ready.length === 1 && ready[0].name !== before.name ? ready : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, description: 'the killed pool process to be replaced' },
  );
  expect(isAlive(after.pid!)).toBe(true);

  const [young] = await poolReady(local, 'aging', 1);
  const [next] = await waitFor(
    () => {
      const ready = readyMembers(local, 'aging');
      return ready.length === 1 && ready[0].name !== young.name ? ready : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, description: 'the aged pool process to be replaced' },
  );
  expect(next.pid).not.toBe(young.pid);
  await waitFor(() => !isAlive(young.pid!), { timeoutMs: 15_000, intervalMs: 50, description: 'the aged process to stop' });
});

test('local pools: 10 concurrent claims on a pool of 4: one process per backend, one backend per process, no orphan after shutdown', async () => {
  const own = await start([{ name: 'four', image: IMAGE, replicas: 4 }]);
  let closed = false;
  try {
    const initial = await poolReady(own, 'four', 4);
    const responses = await Promise.all(Array.from({ length: 10 }, () => create(own, { pool: 'four' })));
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(201));
    const created = (await Promise.all(responses.map((r) => r.json()))) as Created[];
    await Promise.all(created.map((c) => waitReady(own, c.name)));

    const backends = await Promise.all(created.map(async (c) => ({ c, b: (await own.store.get(c.name))! })));
    const warm = backends.filter(({ b }) => b.status?.launch === 'Warm');
    const cold = backends.filter(({ b }) => b.status?.launch === 'Cold');
    expect(warm.length + cold.length).toBe(10);
    // The four that were ready went to four different backends.
    const initialNames = initial.map((m) => m.name);
    expect(warm.length).toBeGreaterThanOrEqual(4);
    for (const name of initialNames) expect(warm.filter(({ b }) => b.status?.podName === name)).toHaveLength(1);
    for (const { c, b } of cold) expect(b.status).toMatchObject({ podName: c.name, launchReason: 'PoolEmpty' });
    expect(new Set(backends.map(({ b }) => b.status?.podName)).size).toBe(10);

    // Each backend is served by exactly the process its run has, and no process serves two.
    const pids = await Promise.all(
      backends.map(async ({ c }) => {
        const app = await served(c.url);
        expect(app.pid).toBe(own.store.runInfo(c.name)?.pid);
        return app.pid;
      }),
    );
    expect(new Set(pids).size).toBe(10);
    for (const m of initial) expect(pids).toContain(m.pid);
    const pooled = own.store.pools.pids();
    for (const pid of pids) expect(pooled).not.toContain(pid);

    const everything = [...new Set([...own.store.appPids(), ...own.store.pools.pids()])];
    expect(everything.length).toBeGreaterThanOrEqual(10);
    await own.close();
    closed = true;
    for (const pid of everything) expect({ pid, alive: isAlive(pid) }).toEqual({ pid, alive: false });
    expect(own.store.appPids()).toEqual([]);
    expect(own.store.pools.pids()).toEqual([]);
  } finally {
    if (!closed) await own.close();
  }
});

test('local pools: configuration mistakes stop local mode at start', async () => {
  expect(() =>
    poolFromConfig({ name: 'both', image: IMAGE, template: { containers: [{ name: 'app', image: IMAGE }] } }, 'local'),
  ).toThrow(ConfigError);
  expect(() => poolFromConfig({ name: 'neither' }, 'local')).toThrow('give either "image" or "template"');
  expect(() => poolFromConfig({ name: 'bad', image: IMAGE, whenEmpty: 'Later' as never }, 'local')).toThrow(/whenEmpty/);
  expect(() => poolFromConfig({ name: 'bad', image: IMAGE, replicas: -1 }, 'local')).toThrow(/replicas/);
  await expect(start([{ name: 'nowhere', image: 'ghcr.io/acme/unknown:1' }])).rejects.toThrow(/no command for image/);
  await expect(
    start([
      { name: 'twice', image: IMAGE },
      { name: 'twice', image: IMAGE },
    ]),
  ).rejects.toThrow(/configured twice/);
});
