import { Histogram, Registry } from 'prom-client';
import { Activity } from './activity';
import { createSidecarMetrics, PlainHistogram } from './metrics';

describe('PlainHistogram', () => {
  it("is exposed exactly as prom-client's own Histogram", async () => {
    const theirs = new Registry();
    const ours = new Registry();
    for (const r of [theirs, ours]) r.setDefaultLabels({ component: 'sidecar' });
    const reference = new Histogram({ name: 'x_seconds', help: 'h', buckets: [0.005, 0.025, 0.1], registers: [theirs] });
    const plain = new PlainHistogram('x_seconds', 'h', [0.005, 0.025, 0.1], ours);
    for (const v of [0.001, 0.005, 0.02, 0.5, 0.3, 0.0251, 0]) {
      reference.observe(v);
      plain.observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    plain.reset();
    reference.reset();
    reference.zero({});
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
});

describe('createSidecarMetrics', () => {
  it('hands the per-request counts to prom-client when scraped', async () => {
    const registry = new Registry();
    const metrics = createSidecarMetrics(registry, new Activity());
    metrics.request(200, 0.01);
    metrics.request(204, 0.02);
    metrics.request(502, 1);
    metrics.request(499, 0.5);
    metrics.unauthorized(true);
    metrics.unauthorized(false);
    const text = await registry.metrics();
    expect(text).toContain('spawner_sidecar_requests_total{code_class="2xx"} 2');
    expect(text).toContain('spawner_sidecar_requests_total{code_class="4xx"} 2');
    expect(text).toContain('spawner_sidecar_requests_total{code_class="5xx"} 1');
    expect(text).toContain('spawner_sidecar_request_duration_seconds_count 4');
    expect(text).toContain('spawner_sidecar_unauthorized_total 2');
    metrics.request(201, 0.01);
    expect(await registry.metrics()).toContain('spawner_sidecar_requests_total{code_class="2xx"} 3');
  });
});
