/**
 * The local store's phase machine with real processes and the real sidecar: what a backend goes
 * through on this machine (the operator's planner and the sweeper's idle rule, as on a cluster), and
 * that each terminal phase leaves nothing running.
 */
import * as net from 'node:net';
import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf } from '../../common/src/lifecycle';
import { ANNOTATION_TOKEN_HASH, DEFAULT_FAILED_RETENTION_SECONDS, LABEL_SPAWNER_GROUP } from '../../common/src/constants';
import { memoryLogger } from '../../common/src/logger';
import { ImageCatalog } from '../../common/src/image-catalog';
import { waitFor } from '../../common/src/testing/wait-for';
import { BackendAlreadyExistsError } from '../../api/src/backend-store';
import { sha256Hex } from '../../api/src/connection-tokens';
import { localConfig } from '../src/config';
import { LocalBackendStore } from '../src/local-backend-store';
import { PortAllocator } from '../src/ports';
import { DEMO_BACKEND_BUILD, isAlive, requireBuild, sleep } from './support';

jest.setTimeout(60_000);

let store: LocalBackendStore;
let logger: ReturnType<typeof memoryLogger>;
let seq = 0;

beforeAll(() => requireBuild(DEMO_BACKEND_BUILD));

beforeEach(async () => {
  logger = memoryLogger('local-test');
  store = new LocalBackendStore({
    images: ImageCatalog.of({ sleeper: { command: ['sleep', '600'] } }),
    logger,
    failedRetentionSeconds: 2,
    stopGraceMs: 2000,
    sidecar: { heartbeatSeconds: 1 },
  });
  await store.start();
});

afterEach(async () => {
  const pids = store.appPids();
  await store.stop();
  for (const pid of pids) expect(isAlive(pid)).toBe(false);
});

type Container = SessionLivedBackend['spec']['template']['containers'][0];

function backend(container: Partial<Container> = {}, spec: Partial<SessionLivedBackend['spec']> = {}): SessionLivedBackend {
  return newBackend(`b-${++seq}`, 'ignored', {
    template: { containers: [{ name: 'app', image: 'demo', ...container }] },
    ...spec,
  });
}

const current = (name: string) => store.get(name);
async function until(name: string, phase: string, timeoutMs = 30_000): Promise<SessionLivedBackend> {
  return waitFor(
    async () => {
      const b = await current(name);
      return b && phaseOf(b) === phase ? b : undefined;
    },
    { timeoutMs, intervalMs: 25, description: `${name} to be ${phase}` },
  );
}

const appLines = () => logger.lines.filter((l) => l.source === 'app').map((l) => String(l.msg));

describe('local store phases', () => {
  it('walks Submitted → Constructed → Scheduled → Running → Ready with the status a cluster would write', async () => {
    const created = await store.create(backend());
    const seen: string[] = [];
    const stop = store.watch(created.metadata.name!, (b) => {
      const p = b ? phaseOf(b) : 'gone';
      if (seen[seen.length - 1] !== p) seen.push(p);
    });
    expect(created.metadata).toMatchObject({ namespace: 'local', generation: 1, resourceVersion: expect.any(String) });
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(phaseOf(created)).toBe('Submitted');
    // Defaults from the CRD schema.
    expect(created.spec).toMatchObject({ httpPort: 8080, gracePeriodSeconds: 300, startupTimeoutSeconds: 300 });
    await expect(store.create(backend())).resolves.toBeDefined();
    await expect(store.create({ ...created, status: undefined })).rejects.toBeInstanceOf(BackendAlreadyExistsError);

    const ready = await until(created.metadata.name!, 'Ready');
    stop();
    expect(seen).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready']);
    const s = ready.status!;
    expect(s).toMatchObject({
      submitted: true,
      constructed: true,
      scheduled: true,
      running: true,
      ready: true,
      nodeName: 'local',
      podIP: '127.0.0.1',
      ip: '127.0.0.1',
      observedGeneration: 1,
    });
    expect(s.url).toBe(`http://127.0.0.1:${s.port}/`);
    // Conditions say what is true now; the history is in the flags and the transitions list.
    expect(s.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'True', reason: 'Ready' }),
      expect.objectContaining({ type: 'Terminated', status: 'False', reason: 'Live' }),
    ]);
    expect(s.transitions?.map((t) => t.phase)).toEqual(['Constructed', 'Scheduled', 'Running', 'Ready']);
    const times = s.transitions!.map((t) => Date.parse(t.time));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(ready.metadata.labels?.[LABEL_SPAWNER_GROUP]).toBe('local');
    expect(store.endpoint(ready)).toEqual({ host: '127.0.0.1', port: s.port });
    expect(store.countLive()).toBe(2);

    // The endpoint is the real sidecar in front of the real app.
    const res = await fetch(`http://127.0.0.1:${s.port}/hello`);
    expect(await res.json()).toMatchObject({ app: 'spawner-demo-backend', path: '/hello' });
    const pid = store.runInfo(created.metadata.name!)!.pid!;
    expect(isAlive(pid)).toBe(true);

    // Deleting with a reason records it (Swept), removes the backend and stops its process.
    const last = await store.delete(created.metadata.name!, { reason: 'DeletedByClient' });
    expect(last?.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient', swept: true, ready: true });
    expect(last?.status?.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'DeletedByClient' }),
      expect.objectContaining({ type: 'Terminated', status: 'True', reason: 'DeletedByClient' }),
    ]);
    expect(await current(created.metadata.name!)).toBeUndefined();
    expect(store.endpoint(ready)).toBeUndefined();
    await waitFor(() => !isAlive(pid), { timeoutMs: 10_000, description: 'the app to stop' });
  });

  it('an image without a local command fails the backend with ImagePullError naming the known images', async () => {
    const b = await store.create(backend({ image: 'registry.example/unknown:1' }));
    const failed = await until(b.metadata.name!, 'Failed');
    expect(failed.status?.reason).toBe('ImagePullError');
    expect(failed.status?.message).toContain('no command for image "registry.example/unknown:1"');
    expect(failed.status?.message).toContain('known images: demo, sleeper, spawner-demo-backend');
  });

  it('a command that cannot be run fails the backend like a runtime StartError (exit code 128)', async () => {
    const b = await store.create(backend({ command: ['/nonexistent/spawner-test-binary'] }));
    const failed = await until(b.metadata.name!, 'Failed');
    expect(failed.status).toMatchObject({ reason: 'ContainerExited', exitCode: 128 });
    expect(failed.status?.message).toContain('the application exited with code 128: cannot run /nonexistent/spawner-test-binary');
    expect(failed.status?.message).toContain('ENOENT');
  });

  it('honours command, args and env; sets PORT to the allocated port and HOST to 127.0.0.1; hides SPAWNER_ variables', async () => {
    process.env.SPAWNER_LOCAL_TOKENS = 'secret-not-for-apps';
    try {
      const b = await store.create(
        backend({
          command: [
            'sh',
            '-c',
            'echo "env FOO=$FOO PORT=$PORT HOST=$HOST ARGS=$0,$1 TOKENS=${SPAWNER_LOCAL_TOKENS:-none}"; exit 0',
          ],
          args: ['first', 'second'],
          env: [{ name: 'FOO', value: 'bar' }],
        }),
      );
      const line = await waitFor(() => appLines().find((l) => l.startsWith('env ')), {
        timeoutMs: 10_000,
        description: 'the line',
      });
      const running = logger.lines.find((l) => l.msg === 'backend Running' && l.backend === b.metadata.name);
      expect(running?.appPort).toEqual(expect.any(Number));
      expect(line).toBe(`env FOO=bar PORT=${String(running?.appPort)} HOST=127.0.0.1 ARGS=first,second TOKENS=none`);
    } finally {
      delete process.env.SPAWNER_LOCAL_TOKENS;
    }
  });

  it('no free app port: the Pod is unschedulable, and the backend fails Unschedulable at its startup timeout', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    const full = new LocalBackendStore({
      images: ImageCatalog.of({}),
      logger,
      ports: new PortAllocator({ host: '127.0.0.1', min: port, max: port }),
      watchdog: false,
    });
    await full.start();
    try {
      const b = await full.create(backend({}, { startupTimeoutSeconds: 1 }));
      const failed = await waitFor(
        async () => {
          const x = await full.get(b.metadata.name!);
          return x && phaseOf(x) === 'Failed' ? x : undefined;
        },
        { timeoutMs: 10_000, description: 'Failed' },
      );
      expect(failed.status).toMatchObject({ reason: 'Unschedulable', constructed: true });
      expect(failed.status?.scheduled).toBeUndefined();
      expect(failed.status?.message).toContain(`local mode has no free app port: no free port in ${port}-${port}`);
    } finally {
      await full.stop();
      taken.close();
    }
  });

  it('LifetimeExceeded at maxLifetimeSeconds, even while in use; the backend is removed', async () => {
    const b = await store.create(backend({}, { maxLifetimeSeconds: 3, gracePeriodSeconds: 600 }));
    const name = b.metadata.name!;
    const ready = await until(name, 'Ready');
    const pid = store.runInfo(name)!.pid!;
    // An open connection keeps it from being idle, not from its lifetime cap.
    const socket = net.connect(ready.status!.port!, '127.0.0.1');
    socket.on('error', () => undefined);
    const events: string[] = [];
    const stop = store.watch(name, (x) => events.push(x ? `${phaseOf(x)}/${x.status?.reason ?? ''}` : 'gone'));
    await waitFor(() => events.includes('gone'), { timeoutMs: 20_000, description: 'removal' });
    stop();
    socket.destroy();
    expect(events).toContain('Swept/LifetimeExceeded');
    await waitFor(() => !isAlive(pid), { timeoutMs: 10_000, description: 'the app to stop' });
  });

  it('IdleTimeout by the sweeper rule once nobody is connected for gracePeriodSeconds', async () => {
    const b = await store.create(backend({}, { gracePeriodSeconds: 2 }));
    const name = b.metadata.name!;
    await until(name, 'Ready');
    const reasons: string[] = [];
    const stop = store.watch(name, (x) => reasons.push(x ? (x.status?.reason ?? phaseOf(x)) : 'gone'));
    await waitFor(() => reasons.includes('gone'), { timeoutMs: 20_000, description: 'the sweep' });
    stop();
    expect(reasons).toContain('IdleTimeout');
  });

  it('local: ended backend still reports its end — after removal its ending stays answerable; a new one of the name replaces it', async () => {
    const b = await store.create(backend());
    const name = b.metadata.name!;
    await until(name, 'Ready');
    expect(store.ended(name)).toBeUndefined();
    await store.delete(name, { reason: 'DeletedByClient', message: 'test' });
    expect(await current(name)).toBeUndefined();
    expect(store.ended(name)?.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient' });
    const again = await store.create({ ...backend(), metadata: { name, namespace: 'ignored' } });
    expect(again.metadata.uid).not.toBe(b.metadata.uid);
    expect(store.ended(name)).toBeUndefined();
  });

  it('hands the sidecar the backend token hash: without the token, 401', async () => {
    const token = 'local-test-token';
    const b = backend();
    b.metadata.annotations = { [ANNOTATION_TOKEN_HASH]: sha256Hex(token) };
    await store.create(b);
    const ready = await until(b.metadata.name!, 'Ready');
    const base = `http://127.0.0.1:${ready.status!.port}/`;
    expect((await fetch(base)).status).toBe(401);
    expect((await fetch(base, { headers: { 'x-spawner-token': token } })).status).toBe(200);
  });

  it('stop() stops every app and refuses new backends', async () => {
    const names = [];
    for (let i = 0; i < 3; i++) names.push((await store.create(backend())).metadata.name!);
    for (const n of names) await until(n, 'Ready');
    const pids = store.appPids();
    expect(pids).toHaveLength(3);
    await store.stop();
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    await expect(store.create(backend())).rejects.toThrow('local mode is stopping');
  });
});

// ---- the operator's and the sweeper's rules, in local mode (issue 13) ----

/** A node app: `listenAfterMs` before it listens on PORT, then `exitAfterMs` (if given) before exiting 0. */
function nodeApp(listenAfterMs: number, exitAfterMs?: number): Partial<Container> {
  const exit = exitAfterMs === undefined ? '' : `setTimeout(() => process.exit(0), ${exitAfterMs});`;
  const script =
    `setTimeout(() => require('http').createServer((q, s) => s.end('ok'))` +
    `.listen(Number(process.env.PORT), process.env.HOST, () => { ${exit} }), ${listenAfterMs});`;
  return { command: [process.execPath, '-e', script] };
}

interface Seen {
  phase: string;
  reason?: string;
  at: number;
  backend?: SessionLivedBackend;
}

/** Every state the watch delivers, with the time it arrived ('gone' once removed). */
function record(name: string): { seen: Seen[]; stop: () => void } {
  const seen: Seen[] = [];
  const stop = store.watch(name, (b) =>
    seen.push(
      b ? { phase: phaseOf(b), reason: b.status?.reason, at: Date.now(), backend: b } : { phase: 'gone', at: Date.now() },
    ),
  );
  return { seen, stop };
}

const gone = (seen: Seen[]) => waitFor(() => seen.some((s) => s.phase === 'gone'), { timeoutMs: 30_000, description: 'removal' });
const lastOf = (seen: Seen[], phase: string) => [...seen].reverse().find((s) => s.phase === phase)?.backend;
const at = (b: SessionLivedBackend | undefined, phase: string) => b?.status?.transitions?.find((t) => t.phase === phase)?.time;

test('local: slow starter is not swept before Ready', async () => {
  // Idle grace 1 s; the app needs ~3 s to listen. The idle countdown starts at Ready, not before.
  const b = await store.create(backend(nodeApp(3000), { gracePeriodSeconds: 1 }));
  const name = b.metadata.name!;
  const created = Date.parse(b.metadata.creationTimestamp as unknown as string);
  const { seen, stop } = record(name);
  await gone(seen);
  stop();
  const phases = seen.map((s) => s.phase).filter((p, i, all) => all[i - 1] !== p);
  expect(phases).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept', 'gone']);
  const swept = lastOf(seen, 'Swept')!;
  expect(swept.status).toMatchObject({ reason: 'IdleTimeout', message: 'idle for gracePeriodSeconds (1)' });
  const readyAt = Date.parse(at(swept, 'Ready')!);
  const sweptAt = Date.parse(at(swept, 'Swept')!);
  // Ready only once the app listens (~3 s), swept ~1 s (the grace) after Ready.
  expect(readyAt - created).toBeGreaterThanOrEqual(2800);
  expect(sweptAt - readyAt).toBeGreaterThanOrEqual(950);
  expect(sweptAt - readyAt).toBeLessThan(2500);
});

test('local: app exit 0 completes the session', async () => {
  const b = await store.create(backend(nodeApp(0, 1500), { gracePeriodSeconds: 600 }));
  const name = b.metadata.name!;
  const { seen, stop } = record(name);
  await until(name, 'Ready');
  const pid = store.runInfo(name)!.pid!;
  await gone(seen);
  stop();
  const swept = lastOf(seen, 'Swept')!;
  expect(swept.status).toMatchObject({
    phase: 'Swept',
    swept: true,
    reason: 'Completed',
    exitCode: 0,
    message: 'the application exited with code 0',
  });
  expect(swept.status?.failed).toBeUndefined();
  expect(seen.some((s) => s.phase === 'Failed')).toBe(false);
  expect(isAlive(pid)).toBe(false);
  expect(store.countLive()).toBe(0);
});

test('local: app exit non-zero fails it', async () => {
  const exits = await store.create(backend({ command: ['sh', '-c', 'echo going; exit 7'] }));
  const killed = await store.create(backend({ command: ['sh', '-c', 'kill -9 $$'] }));
  const failed = await until(exits.metadata.name!, 'Failed');
  expect(failed.status).toMatchObject({
    phase: 'Failed',
    failed: true,
    reason: 'ContainerExited',
    exitCode: 7,
    message: 'the application exited with code 7',
  });
  expect(failed.status?.conditions).toEqual([
    expect.objectContaining({ type: 'Ready', status: 'False', reason: 'ContainerExited' }),
    expect.objectContaining({ type: 'Terminated', status: 'True', reason: 'ContainerExited' }),
  ]);
  expect(appLines()).toContain('going');
  expect(store.endpoint(failed)).toBeUndefined();
  const signalled = await until(killed.metadata.name!, 'Failed');
  expect(signalled.status).toMatchObject({
    reason: 'ContainerExited',
    exitCode: 137,
    message: 'the application exited with code 137: killed by SIGKILL',
  });
  expect(store.countLive()).toBe(0);
});

test('local: failed backend kept for the retention, then removed', async () => {
  // One default for both modes.
  expect(localConfig().failedRetentionSeconds).toBe(DEFAULT_FAILED_RETENTION_SECONDS);
  // This store keeps Failed backends 2 s. A startup timeout fails a backend whose app still runs.
  const b = await store.create(backend({ image: 'sleeper' }, { startupTimeoutSeconds: 1 }));
  const name = b.metadata.name!;
  const { seen, stop } = record(name);
  await until(name, 'Running');
  const pid = store.runInfo(name)!.pid!;
  const failed = await until(name, 'Failed');
  expect(failed.status?.reason).toBe('StartupTimeout');
  // Its app is stopped at once; the resource stays for people to look at.
  await waitFor(() => !isAlive(pid), { timeoutMs: 5_000, description: 'the app to stop' });
  // The run is forgotten once its sidecar has stopped too (later than the app on a busy machine).
  await waitFor(() => !store.appPids().includes(pid), { timeoutMs: 5_000, description: 'the run to be forgotten' });
  expect(store.endpoint(failed)).toBeUndefined();
  expect(await current(name)).toMatchObject({ status: { phase: 'Failed' } });
  await gone(seen);
  stop();
  const kept = seen.find((s) => s.phase === 'gone')!.at - Date.parse(at(failed, 'Failed')!);
  expect(kept).toBeGreaterThanOrEqual(1950);
  expect(kept).toBeLessThan(8000); // not the 600 s default; slack for a busy machine
});

test('local: startup timeout only before Ready', async () => {
  const never = await store.create(backend({ image: 'sleeper' }, { startupTimeoutSeconds: 2 }));
  const quick = await store.create(backend({}, { startupTimeoutSeconds: 2, gracePeriodSeconds: 600 }));
  const { seen, stop } = record(quick.metadata.name!);
  const failed = await until(never.metadata.name!, 'Failed');
  expect(failed.status).toMatchObject({ reason: 'StartupTimeout', message: 'not Ready within startupTimeoutSeconds (2)' });
  expect(failed.status?.ready).toBeUndefined();
  // Ready within the timeout, then well past it: still Ready, never failed.
  await until(quick.metadata.name!, 'Ready');
  const created = Date.parse(quick.metadata.creationTimestamp as unknown as string);
  await sleep(Math.max(0, created + 3500 - Date.now()));
  stop();
  const now = await current(quick.metadata.name!);
  expect(now?.status).toMatchObject({ phase: 'Ready', ready: true });
  expect(now?.status?.failed).toBeUndefined();
  expect(seen.map((s) => s.phase)).not.toContain('Failed');
});
