import { startHarness, API_TOKEN, type Harness } from '../src/test-harness';
import { SpawnerClient, SpawnerError, type StatusEvent } from './index';

let h: Harness;
let client: SpawnerClient;
beforeEach(async () => {
  h = await startHarness({ spawnRatePerSecond: 1, spawnBurst: 5 });
  client = new SpawnerClient({ baseUrl: `${h.base}/`, token: API_TOKEN, timeoutMs: 5000 });
});
afterEach(() => h.close());

describe('SpawnerClient', () => {
  it('spawns (original API), creates, gets, lists and deletes', async () => {
    const spawned = await client.spawn({ image: 'demo' });
    expect(spawned.url).toContain(`/p/${spawned.name}/`);
    const { backend, created } = await client.create({ image: 'demo', labels: { team: 'a' } });
    expect(created).toBe(true);
    expect((await client.get(backend.name))?.name).toBe(backend.name);
    expect(await client.get('spawner-missing')).toBeUndefined();
    expect((await client.list({ labelSelector: 'team=a' })).map((b) => b.name)).toEqual([backend.name]);
    expect((await client.status(backend.name)).state).toBe('Submitted');
    expect((await client.delete(backend.name))?.reason).toBe('DeletedByClient');
    expect(await client.delete(backend.name)).toBeUndefined();
  });

  it('getOrCreate returns the same backend for the same key', async () => {
    const a = await client.getOrCreate('doc-1', { image: 'demo' });
    const b = await client.getOrCreate('doc-1', { image: 'demo' });
    expect(a.created).toBe(true);
    expect(b.created).toBe(false);
    expect(b.backend.name).toBe(a.backend.name);
    expect((await client.list({ key: 'doc-1' })).length).toBe(1);
  });

  it('waitForReady resolves once Ready and rejects once terminal', async () => {
    const { backend } = await client.create({ image: 'demo' });
    setTimeout(() => h.store.advance(backend.name, 'Ready', { podIP: '10.0.0.1' }), 50);
    expect((await client.waitForReady(backend.name)).phase).toBe('Ready');
    const other = (await client.create({ image: 'demo' })).backend;
    setTimeout(() => h.store.transition(other.name, { phase: 'Failed', reason: 'OOMKilled' }), 50);
    await expect(client.waitForReady(other.name)).rejects.toMatchObject({ status: 409, code: 'backend_terminal' });
    await expect(client.waitForReady(other.name, { timeoutMs: 1 })).rejects.toBeInstanceOf(SpawnerError);
  });

  it('streamStatus yields the phases and ends at the terminal one', async () => {
    const { backend } = await client.create({ image: 'demo' });
    const seen: StatusEvent[] = [];
    setTimeout(() => h.store.advance(backend.name, 'Ready', { podIP: '10.0.0.1' }), 30);
    setTimeout(() => h.store.transition(backend.name, { phase: 'Swept', reason: 'IdleTimeout' }), 80);
    for await (const e of client.streamStatus(backend.name)) seen.push(e);
    expect(seen.map((e) => e.phase)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept']);
    expect(seen[5].reason).toBe('IdleTimeout');
  });

  it('turns API errors into SpawnerError with code, details and Retry-After', async () => {
    await expect(client.create({ image: '' } as never)).rejects.toMatchObject({ status: 400, code: 'validation_failed' });
    const bad = new SpawnerClient({ baseUrl: h.base, token: 'wrong' });
    await expect(bad.list()).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
    for (let i = 0; i < 5; i++) await client.create({ image: 'demo' }).catch(() => undefined);
    const err = (await client.create({ image: 'demo' }).catch((e: unknown) => e)) as SpawnerError;
    expect(err).toBeInstanceOf(SpawnerError);
    expect(err.status).toBe(429);
    expect(err.retryAfter).toBeGreaterThanOrEqual(1);
  });
});

describe('SpawnerClient against a server that closes streams early', () => {
  it('resumes the status stream with Last-Event-ID, missing and repeating nothing', async () => {
    const short = await startHarness({ streamMaxSeconds: 1 });
    try {
      const c = new SpawnerClient({ baseUrl: short.base, token: API_TOKEN });
      const { backend } = await c.create({ image: 'demo' });
      setTimeout(() => short.store.advance(backend.name, 'Running', { podIP: '10.0.0.1' }), 1300);
      setTimeout(() => short.store.transition(backend.name, { phase: 'Failed', reason: 'ContainerExited' }), 2600);
      const seen: string[] = [];
      for await (const e of c.streamStatus(backend.name)) seen.push(e.phase);
      expect(seen).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Failed']);
    } finally {
      await short.close();
    }
  });

  it('ends when the backend is deleted between reconnects', async () => {
    const short = await startHarness({ streamMaxSeconds: 1 });
    try {
      const c = new SpawnerClient({ baseUrl: short.base, token: API_TOKEN });
      const { backend } = await c.create({ image: 'demo' });
      setTimeout(() => short.store.remove(backend.name), 1200);
      const seen: string[] = [];
      for await (const e of c.streamStatus(backend.name)) seen.push(e.phase);
      // The reconnect after the deletion replays how it ended (the API remembers it), then ends.
      expect(seen).toEqual(['Submitted', 'Swept']);
    } finally {
      await short.close();
    }
  });
});
