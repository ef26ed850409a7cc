/**
 * Ended backends stay answerable: once a backend has ended and its resource is deleted, the
 * routes that follow one backend answer its terminal phase and reason for
 * --ended-retention-seconds, then 404 as for any unknown name.
 */
import { readEvents } from '../../common/src/sse';
import { DELETED_WHILE_LIVE_MESSAGE } from './ended-backends';
import { responseValidator } from './schemas';
import { jsonOf, json, startHarness, type Harness } from './test-harness';

const T0 = Date.parse('2026-03-01T12:00:00Z');
let now: number;
let h: Harness;
beforeEach(async () => {
  now = T0;
  h = await startHarness({ endedRetentionSeconds: 60 }, { now: () => new Date(now) });
});
afterEach(() => h.close());

const conforms = (definition: string, body: unknown): void => {
  expect(responseValidator(definition)(body)).toEqual([]);
};

async function events(path: string, headers: Record<string, string> = {}): Promise<Array<Record<string, unknown>>> {
  const res = await h.api(path, { headers });
  expect(res.status).toBe(200);
  const out: Array<Record<string, unknown>> = [];
  for await (const e of readEvents(res.body!)) out.push(JSON.parse(e.data));
  return out;
}

/** What every route that follows one backend answers for `name`. */
async function answers(name: string) {
  const legacyStatus = await h.api(`/backend/${name}/status`);
  const legacyReady = await h.api(`/backend/${name}/ready`, { redirect: 'manual' });
  const v1 = await h.api(`/v1/backends/${name}`);
  const wait = await h.api(`/v1/backends/${name}/wait?timeoutSeconds=1`);
  return {
    legacyStatus: { status: legacyStatus.status, body: await jsonOf(legacyStatus) },
    legacyReady: { status: legacyReady.status, body: await jsonOf(legacyReady) },
    v1: { status: v1.status, body: await jsonOf(v1) },
    wait: { status: wait.status, body: await jsonOf(wait) },
  };
}

describe('a backend that ended and was deleted', () => {
  it('deleted through the API: every route answers Swept, DeletedByClient; 404 after the retention', async () => {
    const spawned = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    const { name } = spawned;
    h.store.advance(name, 'Ready', { podIP: '10.0.0.1' });
    now = T0 + 5_000;
    expect((await h.api(`/v1/backends/${name}`, { method: 'DELETE' })).status).toBe(202);
    expect(h.store.peek(name)).toBeUndefined();

    now = T0 + 64_000;
    const a = await answers(name);
    expect(a.legacyStatus).toEqual({ status: 200, body: { state: 'Swept', time: new Date(T0 + 5_000).toISOString() } });
    conforms('LegacyStatus', a.legacyStatus.body);
    expect(a.legacyReady.status).toBe(410);
    expect(a.legacyReady.body.error).toMatchObject({
      code: 'backend_terminal',
      details: { phase: 'Swept', reason: 'DeletedByClient' },
    });
    expect(a.v1.status).toBe(200);
    conforms('Backend', a.v1.body);
    expect(a.v1.body).toMatchObject({ name, phase: 'Swept', reason: 'DeletedByClient', message: 'deleted through the API' });
    expect(a.v1.body.url).toBe(spawned.url);
    expect(a.wait.status).toBe(409);
    expect(a.wait.body.error).toMatchObject({ code: 'backend_terminal', details: { phase: 'Swept', reason: 'DeletedByClient' } });

    // The streams replay the history and end; a reconnect after the end gets 204.
    const v1Events = await events(`/v1/backends/${name}/events`);
    expect(v1Events.map((e) => e.phase)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept']);
    expect(v1Events[5]).toMatchObject({ reason: 'DeletedByClient', message: 'deleted through the API' });
    for (const e of v1Events) conforms('StatusEvent', e);
    const legacyEvents = await events(`/backend/${name}/status/stream`);
    expect(legacyEvents.map((e) => e.state)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept']);
    expect((await h.api(`/v1/backends/${name}/events`, { headers: { 'last-event-id': '5' } })).status).toBe(204);
    expect((await h.api(`/v1/backends/${name}/events`, { headers: { 'last-event-id': '4' } })).status).toBe(200);

    // Not a backend any more: not listed, not deletable.
    expect((await jsonOf(await h.api('/v1/backends'))).items).toEqual([]);
    expect((await h.api(`/v1/backends/${name}`, { method: 'DELETE' })).status).toBe(404);
    expect(h.store.countLive()).toBe(0);

    // The retention runs from the deletion.
    now = T0 + 65_000;
    const b = await answers(name);
    expect([b.legacyStatus, b.legacyReady, b.v1, b.wait].map((x) => [x.status, x.body.error?.code])).toEqual(
      Array(4).fill([404, 'not_found']),
    );
    expect((await h.api(`/v1/backends/${name}/events`)).status).toBe(404);
    expect((await h.api(`/backend/${name}/status/stream`)).status).toBe(404);
  });

  it('deleted outright while live (kubectl delete): recorded as Swept, DeletedByClient', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.advance(name, 'Running', { podIP: '10.0.0.1' });
    now = T0 + 1_000;
    h.store.remove(name);
    const a = await answers(name);
    expect(a.legacyStatus.body).toEqual({ state: 'Swept', time: new Date(T0 + 1_000).toISOString() });
    expect(a.v1.body).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient', message: DELETED_WHILE_LIVE_MESSAGE });
    expect(a.legacyReady.status).toBe(410);
    expect(a.wait.status).toBe(409);
  });

  it('deleted after it ended (the operator, after a Failed retention): its own ending, not another', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.transition(name, { phase: 'Failed', reason: 'ImagePullError', message: 'no such image' });
    h.store.remove(name);
    const a = await answers(name);
    expect(a.legacyStatus.body.state).toBe('Failed');
    expect(a.v1.body).toMatchObject({ phase: 'Failed', reason: 'ImagePullError', message: 'no such image' });
    expect(a.legacyReady.body.error.details).toEqual({ phase: 'Failed', reason: 'ImagePullError' });
    expect((await events(`/backend/${name}/status/stream`)).map((e) => e.state)).toEqual(['Submitted', 'Failed']);
  });

  it('its URLs keep working with their own token (status, ready, stream; the entry point answers 410)', async () => {
    const { name, url, readyUrl, statusUrl } = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    const other = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    h.store.remove(name);
    expect(await jsonOf(await fetch(statusUrl))).toMatchObject({ state: 'Swept' });
    expect((await fetch(readyUrl, { redirect: 'manual' })).status).toBe(410);
    const stream = new URL(statusUrl);
    stream.pathname += '/stream';
    expect((await fetch(stream)).status).toBe(200);
    const entry = await fetch(url, { redirect: 'manual' });
    expect(entry.status).toBe(410);
    expect((await jsonOf(entry)).error.details).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient' });
    // Another backend's token still opens nothing of it.
    const foreign = new URL(other.statusUrl).searchParams.get('spawner_token');
    expect((await fetch(`${h.base}/backend/${name}/status?spawner_token=${foreign}`)).status).toBe(401);
  });

  it('a stream or long poll open while it is deleted ends with how it ended', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const waiting = h.api(`/v1/backends/${name}/wait?timeoutSeconds=5`);
    const streaming = events(`/backend/${name}/status/stream`);
    await new Promise((r) => setTimeout(r, 50));
    h.store.remove(name);
    const wait = await waiting;
    expect(wait.status).toBe(409);
    expect((await jsonOf(wait)).error.details).toMatchObject({ phase: 'Swept', reason: 'DeletedByClient' });
    expect((await streaming).map((e) => e.state)).toEqual(['Submitted', 'Swept']);
  });

  it('a new backend under the same name replaces the record', async () => {
    const first = await jsonOf(await h.api('/v1/backends', json({ image: 'x', key: 'doc-7' })));
    h.store.transition(first.name, { phase: 'Swept', reason: 'IdleTimeout' });
    h.store.remove(first.name);
    expect((await jsonOf(await h.api(`/v1/backends/${first.name}`))).reason).toBe('IdleTimeout');
    const second = await h.api('/v1/backends', json({ image: 'x', key: 'doc-7' }));
    expect(second.status).toBe(201);
    expect((await jsonOf(second)).name).toBe(first.name);
    expect(h.store.ended(first.name)).toBeUndefined();
    expect(await jsonOf(await h.api(`/backend/${first.name}/status`))).toMatchObject({ state: 'Submitted' });
    const got = await jsonOf(await h.api(`/v1/backends/${first.name}`));
    expect(got.phase).toBe('Submitted');
    expect(got.reason).toBeUndefined();
    // When that one goes too, it is the one remembered.
    h.store.remove(first.name);
    expect((await jsonOf(await h.api(`/v1/backends/${first.name}`))).reason).toBe('DeletedByClient');
  });

  it('is 404 at once with --ended-retention-seconds=0', async () => {
    const off = await startHarness({ endedRetentionSeconds: 0 });
    try {
      const { name } = await jsonOf(await off.api('/spawn', json({ image: 'x' })));
      expect((await off.api(`/v1/backends/${name}`, { method: 'DELETE' })).status).toBe(202);
      expect((await off.api(`/backend/${name}/status`)).status).toBe(404);
      expect((await off.api(`/v1/backends/${name}`)).status).toBe(404);
      expect((await off.api(`/backend/${name}/ready`)).status).toBe(404);
    } finally {
      await off.close();
    }
  });
});

describe('--ended-retention-seconds', () => {
  it('defaults to 600 and is validated', async () => {
    const { loadApiConfig } = await import('./config');
    expect(loadApiConfig([], {}).endedRetentionSeconds).toBe(600);
    expect(loadApiConfig(['--ended-retention-seconds=3'], {}).endedRetentionSeconds).toBe(3);
    expect(loadApiConfig([], { SPAWNER_API_ENDED_RETENTION_SECONDS: '30' }).endedRetentionSeconds).toBe(30);
    expect(() => loadApiConfig(['--ended-retention-seconds=-1'], {})).toThrow(/ended-retention-seconds|endedRetentionSeconds/);
    expect(() => loadApiConfig(['--ended-retention-seconds=soon'], {})).toThrow();
    expect(() => loadApiConfig(['--ended-retention-seconds=86401'], {})).toThrow();
  });
});
