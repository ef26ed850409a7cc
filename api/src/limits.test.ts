import { TokenBucket } from './rate-limit';
import { jsonOf, json, startHarness } from './test-harness';

describe('TokenBucket', () => {
  it('allows the burst, then the rate, and says when the next token comes', () => {
    let now = 0;
    const b = new TokenBucket(2, 3, () => now);
    expect([b.tryTake().ok, b.tryTake().ok, b.tryTake().ok]).toEqual([true, true, true]);
    const denied = b.tryTake();
    expect(denied.ok).toBe(false);
    expect(denied.retryAfterSeconds).toBeCloseTo(0.5);
    now += 500;
    expect(b.tryTake().ok).toBe(true);
    expect(b.tryTake().ok).toBe(false);
    now += 10_000;
    expect([b.tryTake().ok, b.tryTake().ok, b.tryTake().ok, b.tryTake().ok]).toEqual([true, true, true, false]);
  });

  it('rate 0 means no limit', () => {
    const b = new TokenBucket(0, 1);
    for (let i = 0; i < 1000; i++) expect(b.tryTake().ok).toBe(true);
  });
});

describe('limits on the API', () => {
  it('429 with Retry-After and the limit when the create rate is exceeded', async () => {
    const h = await startHarness({ spawnRatePerSecond: 0.5, spawnBurst: 2 });
    try {
      expect((await h.api('/v1/backends', json({ image: 'x' }))).status).toBe(201);
      expect((await h.api('/spawn', json({ image: 'x' }))).status).toBe(200);
      const res = await h.api('/v1/backends', json({ image: 'x' }));
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const body = await jsonOf(res);
      expect(body.error).toMatchObject({ code: 'rate_limited', details: { limit: 'rate' } });
      expect((await h.api('/spawn', json({ image: 'x' }))).status).toBe(429);
      const metrics = await (await fetch(`${h.base}/metrics`)).text();
      expect(metrics).toMatch(/spawner_api_rate_limited_total\{limit="rate"[^}]*\} 2/);
    } finally {
      await h.close();
    }
  });

  it('429 when the live-backend limit is reached; terminal backends do not count', async () => {
    const h = await startHarness({ maxLiveBackends: 2, liveLimitRetryAfterSeconds: 7 });
    try {
      const a = await jsonOf(await h.api('/v1/backends', json({ image: 'x' })));
      await h.api('/v1/backends', json({ image: 'x' }));
      const res = await h.api('/v1/backends', json({ image: 'x' }));
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('7');
      expect((await jsonOf(res)).error.details.limit).toBe('live');
      h.store.transition(a.name, { phase: 'Swept', reason: 'IdleTimeout' });
      expect((await h.api('/v1/backends', json({ image: 'x' }))).status).toBe(201);
    } finally {
      await h.close();
    }
  });
});
