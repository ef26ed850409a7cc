/**
 * The local store's phase machine with real processes and the real sidecar: what a backend goes
 * through on this machine, and that each terminal phase leaves nothing running.
 */
import * as net from 'node:net';
import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf } from '../../common/src/lifecycle';
import { ANNOTATION_TOKEN_HASH, LABEL_SPAWNER_GROUP } from '../../common/src/constants';
import { memoryLogger } from '../../common/src/logger';
import { waitFor } from '../../common/src/testing/wait-for';
import { BackendAlreadyExistsError } from '../../api/src/backend-store';
import { sha256Hex } from '../../api/src/connection-tokens';
import { ImageCatalog } from '../src/images';
import { LocalBackendStore } from '../src/local-backend-store';
import { DEMO_BACKEND_BUILD, isAlive, requireBuild } from './support';

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
    expect(s.conditions?.map((c) => c.type)).toEqual(['Constructed', 'Scheduled', 'Running', 'Ready']);
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
    expect(last?.status).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient', swept: true });
    expect(await current(created.metadata.name!)).toBeUndefined();
    expect(store.endpoint(ready)).toBeUndefined();
    await waitFor(() => !isAlive(pid), { timeoutMs: 10_000, description: 'the app to stop' });
  });

  it('an app that exits non-zero fails the backend: ContainerExited with its exit code; removed after the retention', async () => {
    const b = await store.create(backend({ command: ['sh', '-c', 'echo going; exit 7'] }));
    const failed = await until(b.metadata.name!, 'Failed');
    expect(failed.status).toMatchObject({
      phase: 'Failed',
      failed: true,
      reason: 'ContainerExited',
      exitCode: 7,
      message: 'the application exited with code 7',
    });
    expect(appLines()).toContain('going');
    expect(store.countLive()).toBe(0);
    expect(store.endpoint(failed)).toBeUndefined();
    // Kept for failedRetentionSeconds (2 here) so people can look, then removed.
    await waitFor(async () => (await current(b.metadata.name!)) === undefined, { timeoutMs: 15_000, description: 'removal' });
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
      await until(b.metadata.name!, 'Failed');
      const running = logger.lines.find((l) => l.msg === 'backend Running' && l.backend === b.metadata.name);
      expect(running?.appPort).toEqual(expect.any(Number));
      const line = appLines().find((l) => l.startsWith('env '));
      expect(line).toBe(`env FOO=bar PORT=${String(running?.appPort)} HOST=127.0.0.1 ARGS=first,second TOKENS=none`);
    } finally {
      delete process.env.SPAWNER_LOCAL_TOKENS;
    }
  });

  it('StartupTimeout when the app never accepts connections; its process is stopped', async () => {
    const b = await store.create(backend({ image: 'sleeper' }, { startupTimeoutSeconds: 2 }));
    const running = await until(b.metadata.name!, 'Running');
    expect(running.status?.running).toBe(true);
    const pid = store.runInfo(b.metadata.name!)!.pid!;
    const failed = await until(b.metadata.name!, 'Failed');
    expect(failed.status).toMatchObject({ reason: 'StartupTimeout', message: 'not Ready within startupTimeoutSeconds (2)' });
    await waitFor(() => !isAlive(pid), { timeoutMs: 10_000, description: 'the app to stop' });
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
