/** The status streams: replay of past phases, then live ones, ending at a terminal phase. */
import { readEvents, type ServerSentEvent } from '../../common/src/sse';
import { responseValidator } from './schemas';
import { jsonOf, json, startHarness, type Harness } from './test-harness';

let h: Harness;
beforeEach(async () => {
  h = await startHarness({ sseHeartbeatSeconds: 1 });
});
afterEach(() => h.close());

async function collect(res: Response, onEvent?: (e: ServerSentEvent, i: number) => void): Promise<ServerSentEvent[]> {
  const out: ServerSentEvent[] = [];
  for await (const e of readEvents(res.body!)) {
    out.push(e);
    onEvent?.(e, out.length - 1);
  }
  return out;
}

describe('GET /v1/backends/:name/events', () => {
  it('replays the past phases, follows live ones and ends after the terminal one', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.advance(name, 'Constructed');
    h.store.advance(name, 'Running', { podIP: '10.1.0.1', nodeName: 'n1' });
    const res = await h.api(`/v1/backends/${name}/events`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = await collect(res, (_e, i) => {
      // After the replay (Submitted, Constructed, Scheduled, Running): drive it live.
      if (i === 3) setTimeout(() => h.store.advance(name, 'Ready'), 10);
      if (i === 4)
        setTimeout(() => h.store.transition(name, { phase: 'Swept', reason: 'IdleTimeout', message: 'idle for 300s' }), 10);
    });
    const data = events.map((e) => JSON.parse(e.data));
    for (const d of data) expect(responseValidator('StatusEvent')(d)).toEqual([]);
    expect(data.map((d) => d.phase)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept']);
    expect(data[5]).toMatchObject({ reason: 'IdleTimeout', message: 'idle for 300s' });
    expect(events.map((e) => e.id)).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(h.store.listenerCount()).toBe(0);
  });

  it('a terminal backend: the whole history, then the end at once; a reconnect after it gets 204', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.transition(name, { phase: 'Failed', reason: 'ImagePullError' });
    const events = await collect(await h.api(`/v1/backends/${name}/events`));
    expect(events.map((e) => JSON.parse(e.data).phase)).toEqual(['Submitted', 'Failed']);
    const again = await h.api(`/v1/backends/${name}/events`, { headers: { 'last-event-id': '5' } });
    expect(again.status).toBe(204);
  });

  it('Last-Event-ID skips phases already seen', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    h.store.advance(name, 'Running', { podIP: '10.0.0.1' });
    const res = await h.api(`/v1/backends/${name}/events`, { headers: { 'last-event-id': '2' } });
    const events = await collect(res, () =>
      setTimeout(() => h.store.transition(name, { phase: 'Swept', reason: 'IdleTimeout' }), 10),
    );
    expect(events.map((e) => JSON.parse(e.data).phase)).toEqual(['Running', 'Swept']);
  });

  it('ends when the backend is deleted (with the ending recorded for it), and stops watching when the client goes away', async () => {
    const { name } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    // Deleted outright (kubectl delete), without an ending written: the store records Swept, DeletedByClient.
    const events = await collect(await h.api(`/v1/backends/${name}/events`), () => setTimeout(() => h.store.remove(name), 10));
    expect(events.map((e) => JSON.parse(e.data).phase)).toEqual(['Submitted', 'Swept']);
    expect(JSON.parse(events[1].data)).toMatchObject({ reason: 'DeletedByClient' });

    const { name: other } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const abort = new AbortController();
    const res = await h.api(`/v1/backends/${other}/events`, { signal: abort.signal });
    const reader = res.body!.getReader();
    await reader.read();
    expect(h.store.listenerCount(other)).toBe(1);
    abort.abort();
    await new Promise((r) => setTimeout(r, 50));
    expect(h.store.listenerCount(other)).toBe(0);
  });

  it('is open to the backend token from its URLs', async () => {
    const { name, statusUrl } = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
    const token = new URL(statusUrl).searchParams.get('spawner_token');
    h.store.transition(name, { phase: 'Swept', reason: 'IdleTimeout' });
    const res = await fetch(`${h.base}/v1/backends/${name}/events?spawner_token=${token}`);
    expect(res.status).toBe(200);
    await collect(res);
    expect((await fetch(`${h.base}/v1/backends/${name}/events?spawner_token=nope`)).status).toBe(401);
  });

  it('404 for an unknown backend', async () => {
    expect((await h.api('/v1/backends/spawner-none/events')).status).toBe(404);
  });
});

describe('GET /backend/:id/status/stream (original)', () => {
  it('sends {state, time}, past first, then live, and ends at the terminal state', async () => {
    const { name } = await jsonOf(await h.api('/spawn', json({ image: 'x' })));
    const res = await h.api(`/backend/${name}/status/stream`);
    const events = await collect(res, (_e, i) => {
      if (i === 0) setTimeout(() => h.store.advance(name, 'Ready', { podIP: '10.0.0.3' }), 10);
      if (i === 4) setTimeout(() => h.store.transition(name, { phase: 'Swept', reason: 'IdleTimeout' }), 10);
    });
    const data = events.map((e) => JSON.parse(e.data));
    for (const d of data) expect(responseValidator('LegacyStatus')(d)).toEqual([]);
    expect(data.map((d) => d.state)).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready', 'Swept']);
  });
});
