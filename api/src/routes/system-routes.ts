/** Health, readiness, metrics and the API description: open to anyone who can reach the port. */
import type { RouteContext } from './context';
import type { RouteDef } from './route-def';

export function systemRoutes(ctx: RouteContext): RouteDef[] {
  return [
    {
      method: 'get',
      path: '/healthz',
      operationId: 'healthz',
      summary: 'Liveness',
      tags: ['system'],
      auth: 'open',
      query: 'EmptyQuery',
      responses: { 200: { description: 'The process is alive.', schema: 'Health' } },
      handler: (_req, res) => {
        res.json({ status: 'ok' });
      },
    },
    {
      method: 'get',
      path: '/readyz',
      operationId: 'readyz',
      summary: 'Readiness: 503 until the backend cache has synced, and again once the process drains (SIGTERM)',
      tags: ['system'],
      auth: 'open',
      query: 'EmptyQuery',
      responses: {
        200: { description: 'Ready to serve.', schema: 'Health' },
        503: { description: 'Not ready yet.', schema: 'Health' },
      },
      handler: (_req, res) => {
        const ok = ctx.store.ready() && !ctx.draining();
        res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not ready' });
      },
    },
    {
      method: 'get',
      path: '/metrics',
      operationId: 'metrics',
      summary: 'Prometheus metrics',
      tags: ['system'],
      auth: 'open',
      query: 'EmptyQuery',
      responses: { 200: { description: 'Prometheus text format.', contentType: 'text/plain' } },
      handler: async (_req, res) => {
        const text = await ctx.registry.metrics();
        res.status(200).type(ctx.registry.contentType).send(text);
      },
    },
    {
      method: 'get',
      path: '/openapi.json',
      operationId: 'openapi',
      summary: 'This API, described in OpenAPI 3.1',
      tags: ['system'],
      auth: 'open',
      query: 'EmptyQuery',
      responses: { 200: { description: 'The OpenAPI document.', contentType: 'application/json' } },
      handler: (_req, res) => {
        res.json(ctx.openapi());
      },
    },
  ];
}
