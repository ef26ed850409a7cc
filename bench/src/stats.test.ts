import { Histogram, Registry } from 'prom-client';
import { fmtSpread, histogramQuantile, latencySummary, quantile, spread } from './stats';

describe('benchmark statistics', () => {
  it('interpolates quantiles between samples', () => {
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantile([10], 0.99)).toBe(10);
    expect(quantile([], 0.5)).toBeNaN();
    const s = latencySummary(Array.from({ length: 101 }, (_, i) => i));
    expect([s.p50, s.p90, s.p99, s.max]).toEqual([50, 90, 99, 100]);
  });

  it('reports a median with its range, ignoring rounds that measured nothing', () => {
    expect(spread([3, NaN, 1, 2])).toEqual({ median: 2, min: 1, max: 3, n: 3 });
    expect(fmtSpread(spread([40100, 35200, 44000]), (v) => `${(v / 1000).toFixed(1)}k`)).toBe('40.1k (35.2k–44.0k)');
    expect(fmtSpread(spread([]))).toBe('–');
  });

  it("reads a quantile from a real prom-client histogram as PromQL's histogram_quantile would", async () => {
    const registry = new Registry();
    const h = new Histogram({ name: 'x_seconds', help: 'x', buckets: [0.01, 0.1, 1], labelNames: ['k'], registers: [registry] });
    for (let i = 0; i < 90; i++) h.observe({ k: 'a' }, 0.005);
    for (let i = 0; i < 10; i++) h.observe({ k: 'b' }, 0.5);
    const text = await registry.metrics();
    expect(histogramQuantile(text, 'x_seconds', 0.5)).toBeCloseTo((0.01 * 50) / 90, 6);
    expect(histogramQuantile(text, 'x_seconds', 0.99)).toBeCloseTo(0.1 + (0.9 * 9) / 10, 6);
    expect(histogramQuantile(text, 'missing_seconds', 0.5)).toBeNaN();
  });
});
