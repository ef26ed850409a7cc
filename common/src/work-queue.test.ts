import { PermanentError } from './errors';
import { WorkQueue } from './work-queue';

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('coalesces a key added many times while it waits', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(async (k) => void seen.push(k), { concurrency: 1 });
    q.add('a');
    q.add('b');
    q.add('b');
    q.add('b');
    await q.whenIdle();
    expect(seen).toEqual(['a', 'b']);
  });

  it('never runs one key twice at once, and runs it again if it changed meanwhile', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    let release!: () => void;
    const q = new WorkQueue(
      async () => {
        running++;
        runs++;
        maxRunning = Math.max(maxRunning, running);
        if (runs === 1) await new Promise<void>((r) => (release = r));
        running--;
      },
      { concurrency: 4 },
    );
    q.add('k');
    await tick();
    q.add('k');
    q.add('k');
    release();
    await tick(5);
    await q.whenIdle();
    expect(maxRunning).toBe(1);
    expect(runs).toBe(2);
  });

  it('bounds concurrency across keys', async () => {
    let running = 0;
    let maxRunning = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await tick(2);
        running--;
      },
      { concurrency: 3 },
    );
    for (let i = 0; i < 20; i++) q.add(`k${i}`);
    await q.whenIdle();
    expect(maxRunning).toBe(3);
  });

  it('reports how long each key waited for a slot, from its first add', async () => {
    let release!: () => void;
    const waited = new Map<string, number>();
    const q = new WorkQueue(
      async (k) => {
        if (k === 'first') await new Promise<void>((r) => (release = r));
      },
      { concurrency: 1, onStart: (k, s) => waited.set(k, s) },
    );
    q.add('first');
    q.add('second');
    await tick(30);
    q.add('second'); // coalesced: its wait still counts from the first add
    await tick(30);
    release();
    await q.whenIdle();
    expect(waited.get('first')).toBeLessThan(0.02);
    expect(waited.get('second')).toBeGreaterThanOrEqual(0.05);
  });

  it('retries a failing key with growing backoff, then forgets the failures on success', async () => {
    const times: number[] = [];
    const attempts: number[] = [];
    const q = new WorkQueue(
      async () => {
        times.push(Date.now());
        if (times.length < 4) throw new Error('boom');
      },
      { baseBackoffMs: 20, onError: (_k, _e, attempt) => attempts.push(attempt) },
    );
    q.add('k');
    for (let i = 0; i < 100 && times.length < 4; i++) await tick(20);
    expect(times).toHaveLength(4);
    expect(attempts).toEqual([0, 1, 2]);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    // Full jitter keeps each wait within [ceiling/2, ceiling]: 10–20, 20–40, 40–80 ms.
    expect(gaps[0]).toBeGreaterThanOrEqual(9);
    expect(gaps[2]).toBeGreaterThanOrEqual(39);
    await q.stop();
  });

  it('backs off slowly from permanent errors', async () => {
    let runs = 0;
    const q = new WorkQueue(
      async () => {
        runs++;
        throw new PermanentError('bad spec');
      },
      { permanentBackoffMs: 60_000 },
    );
    q.add('k');
    await tick(30);
    expect(runs).toBe(1);
    expect(q.scheduled).toBe(1);
    await q.stop();
  });

  it('honours requeueAfter, keeping the earlier of two schedules', async () => {
    let runs = 0;
    const q = new WorkQueue(async () => {
      runs++;
      return runs === 1 ? { requeueAfterMs: 30 } : undefined;
    });
    q.add('k');
    await tick(5);
    q.addAfter('k', 60_000);
    expect(runs).toBe(1);
    await tick(80);
    expect(runs).toBe(2);
    await q.stop();
  });
});
