/** The v1 API: create (optionally get-or-create by key), get, list, delete, wait, events. */
import { phaseOf } from '../../../common/src/lifecycle';
import { SSE_MEDIA_TYPE } from '../../../common/src/sse';
import type { CreateBackendRequest } from '../../client/types';
import { publicBases } from '../backend-view';
import { ApiError, validationFailed } from '../errors';
import { DEFAULT_WAIT_SECONDS } from '../openapi';
import { createBackend } from '../use-cases/create-backend';
import { isReady, waitFor } from '../use-cases/follow-backend';
import { deleteBackend, getBackend, listBackends, type ListFilter } from '../use-cases/manage-backends';
import { ENDED_NOTE, LAST_EVENT_ID, LIMITED, NOT_FOUND_OR_FORGOTTEN, SSE_DESCRIPTION, UNAVAILABLE, err } from './common-docs';
import type { RouteContext } from './context';
import { streamPhases } from './phase-stream';
import { inputs, type RouteDef } from './route-def';

const NAME = { name: 'BackendName' };

export function v1Routes(ctx: RouteContext): RouteDef[] {
  const { deps, store, urls, config } = ctx;
  return [
    {
      method: 'post',
      path: '/v1/backends',
      operationId: 'createBackend',
      summary: 'Create a backend, or with `key` get the live backend for that key (or create it)',
      description:
        'With `key`, at most one live backend exists per key, even under concurrent calls: 201 when this call created it, 200 when it returns the existing one. A Swept or Failed backend under the key is replaced.',
      tags: ['backends'],
      auth: 'bearer',
      body: 'CreateBackendRequest',
      responses: {
        200: { description: 'An existing live backend for the key.', schema: 'Backend' },
        201: {
          description: 'Created.',
          schema: 'Backend',
          headers: { Location: { description: 'The backend resource.', schema: { type: 'string' } } },
        },
        409: err('The key is busy (its old backend is being replaced): retry.', {
          'Retry-After': { description: 'Seconds to wait.', schema: { type: 'integer', minimum: 0 } },
        }),
        429: LIMITED,
        503: UNAVAILABLE,
      },
      handler: async (req, res) => {
        const body = inputs(res).body as CreateBackendRequest;
        const { backend, created } = await createBackend(deps, body);
        const view = urls.view(backend, publicBases(config, req));
        if (created) res.status(201).location(`/v1/backends/${view.name}`);
        res.json(view);
      },
    },
    {
      method: 'get',
      path: '/v1/backends',
      operationId: 'listBackends',
      summary: 'List backends, filtered by label selector, phase or key',
      tags: ['backends'],
      auth: 'bearer',
      query: 'ListBackendsQuery',
      responses: { 200: { description: 'Backends, oldest first.', schema: 'BackendList' } },
      handler: async (req, res) => {
        const items = await listBackends(store, inputs(res).query as ListFilter);
        const bases = publicBases(config, req);
        res.json({ items: items.map((b) => urls.view(b, bases)) });
      },
    },
    {
      method: 'get',
      path: '/v1/backends/:name',
      operationId: 'getBackend',
      summary: 'Get a backend',
      description: ENDED_NOTE,
      tags: ['backends'],
      auth: 'bearer',
      pathParams: NAME,
      responses: {
        200: { description: 'The backend (its last state, if it ended and was deleted).', schema: 'Backend' },
        404: NOT_FOUND_OR_FORGOTTEN,
      },
      handler: async (req, res) => {
        const backend = await getBackend(store, req.params.name as string);
        res.json(urls.view(backend, publicBases(config, req)));
      },
    },
    {
      method: 'delete',
      path: '/v1/backends/:name',
      operationId: 'deleteBackend',
      summary: 'End a backend (recorded as Swept, reason DeletedByClient) and delete it',
      tags: ['backends'],
      auth: 'bearer',
      pathParams: NAME,
      responses: {
        202: { description: 'Deleted; its Pod and Service are being removed. The body is its last state.', schema: 'Backend' },
        404: err('No such backend (also one already deleted, whose last state GET still answers for a while).'),
        503: UNAVAILABLE,
      },
      handler: async (req, res) => {
        const last = await deleteBackend(store, req.params.name as string);
        res.status(202).json(urls.view(last, publicBases(config, req)));
      },
    },
    {
      method: 'get',
      path: '/v1/backends/:name/wait',
      operationId: 'waitForBackend',
      summary: 'Long-poll until the backend is Ready',
      description:
        "Answers 200 with the backend as soon as it is Ready, or when `timeoutSeconds` passes (then `phase` tells it is not Ready yet: call again); 409 when it ended (Swept, Failed, deleted) and will never be Ready. The longest wait is the server's --wait-max-seconds (the documented maximum). " +
        ENDED_NOTE,
      tags: ['backends'],
      auth: 'bearer-or-backend-token',
      pathParams: NAME,
      query: 'WaitQuery',
      responses: {
        200: { description: 'Ready, or not yet at the timeout (see `phase`).', schema: 'Backend' },
        404: NOT_FOUND_OR_FORGOTTEN,
        409: err('The backend ended and will never be Ready; details has phase and reason.'),
      },
      handler: async (req, res) => {
        const name = req.params.name as string;
        await getBackend(store, name);
        const requested = req.query.timeoutSeconds === undefined ? undefined : (inputs(res).query.timeoutSeconds as number);
        if (requested !== undefined && requested > config.waitMaxSeconds) {
          throw validationFailed('query', [
            { in: 'query', path: '/timeoutSeconds', message: `must be <= ${config.waitMaxSeconds}` },
          ]);
        }
        const timeoutMs = (requested ?? Math.min(DEFAULT_WAIT_SECONDS, config.waitMaxSeconds)) * 1000;
        const abort = new AbortController();
        res.on('close', () => abort.abort());
        const outcome = await waitFor(store, name, isReady, timeoutMs, abort.signal);
        const bases = publicBases(config, req);
        switch (outcome.kind) {
          case 'aborted':
            return;
          case 'match':
          case 'timeout':
            res.json(urls.view(outcome.backend, bases));
            return;
          case 'terminal': {
            const s = outcome.backend.status ?? {};
            throw new ApiError(409, 'backend_terminal', `the backend is ${phaseOf(outcome.backend)} and will never be Ready`, {
              phase: phaseOf(outcome.backend),
              reason: s.reason,
              message: s.message,
            });
          }
          case 'gone':
            throw new ApiError(409, 'backend_terminal', 'the backend was deleted and will never be Ready', {
              phase: outcome.backend ? phaseOf(outcome.backend) : undefined,
              reason: 'Deleted',
            });
        }
      },
    },
    {
      method: 'get',
      path: '/v1/backends/:name/events',
      operationId: 'backendEvents',
      summary: 'Status stream of the backend (Server-Sent Events of StatusEvent)',
      description: SSE_DESCRIPTION,
      tags: ['backends'],
      auth: 'bearer-or-backend-token',
      pathParams: NAME,
      query: 'TokenQuery',
      headers: LAST_EVENT_ID,
      responses: {
        200: {
          description: 'Events whose data is a StatusEvent object.',
          contentType: SSE_MEDIA_TYPE,
          schema: 'StatusEvent',
        },
        204: { description: 'The stream already ended (a reconnect after the terminal event).' },
        404: NOT_FOUND_OR_FORGOTTEN,
      },
      handler: async (req, res) => {
        await streamPhases(ctx, req, res, req.params.name as string, ({ rank: _rank, ...event }) => event);
      },
    },
  ];
}
