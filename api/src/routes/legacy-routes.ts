/**
 * The original Spawner's endpoints: same paths, bodies and status codes, so its clients work.
 * A terminal backend's /ready answers 410 Gone (the original had no terminal phases): it will
 * never be ready, and a polling client should stop and spawn again. As in the original, a backend
 * that ended stays answerable after its resource is deleted (--ended-retention-seconds): /status
 * gives its terminal state, /ready 410 with the reason, the stream replays it and ends.
 */
import { isTerminal, phaseOf } from '../../../common/src/lifecycle';
import { SSE_MEDIA_TYPE } from '../../../common/src/sse';
import type { SpawnRequest } from '../../client/types';
import { publicBases } from '../backend-view';
import { ApiError } from '../errors';
import { createBackend } from '../use-cases/create-backend';
import { phaseEvents } from '../use-cases/follow-backend';
import { getBackend } from '../use-cases/manage-backends';
import { ENDED_NOTE, LAST_EVENT_ID, LIMITED, NOT_FOUND_OR_FORGOTTEN, SSE_DESCRIPTION, UNAVAILABLE, err } from './common-docs';
import type { RouteContext } from './context';
import { streamPhases } from './phase-stream';
import { inputs, type RouteDef } from './route-def';

const ID = { id: 'BackendName' };

export function legacyRoutes(ctx: RouteContext): RouteDef[] {
  const { deps, store, urls, config } = ctx;
  return [
    {
      method: 'post',
      path: '/spawn',
      operationId: 'spawn',
      summary: 'Spawn a backend (original API)',
      tags: ['original'],
      auth: 'bearer',
      body: 'SpawnRequest',
      responses: {
        200: { description: 'The backend was created; its URL carries its connection token.', schema: 'SpawnResponse' },
        429: LIMITED,
        503: UNAVAILABLE,
      },
      handler: async (req, res) => {
        const body = inputs(res).body as SpawnRequest;
        const { backend } = await createBackend(deps, {
          image: body.image,
          env: body.env,
          httpPort: body.port,
          gracePeriodSeconds: body.gracePeriodSeconds,
        });
        res.status(200).json(urls.spawnResponse(backend, publicBases(config, req)));
      },
    },
    {
      method: 'get',
      path: '/backend/:id/ready',
      operationId: 'legacyReady',
      summary: 'Redirect to the backend once it is Ready (original API)',
      description: ENDED_NOTE,
      tags: ['original'],
      auth: 'bearer-or-backend-token',
      pathParams: ID,
      query: 'TokenQuery',
      responses: {
        302: {
          description: 'Ready: Location is the backend URL.',
          schema: 'ReadyRedirect',
          headers: { Location: { description: 'The backend URL.', schema: { type: 'string' } } },
        },
        404: NOT_FOUND_OR_FORGOTTEN,
        409: err('Not Ready yet; poll again.'),
        410: err(
          'The backend ended (Swept or Failed, maybe deleted since) and will never be Ready; details has phase and reason.',
        ),
      },
      handler: async (req, res) => {
        const backend = await getBackend(store, req.params.id as string);
        const phase = phaseOf(backend);
        if (phase === 'Ready') {
          const { url } = urls.forBackend(backend, publicBases(config, req));
          res.status(302).location(url).json({ url });
          return;
        }
        if (isTerminal(phase)) {
          throw new ApiError(410, 'backend_terminal', `the backend is ${phase}`, { phase, reason: backend.status?.reason });
        }
        throw new ApiError(409, 'not_ready', `the backend is ${phase}, not Ready yet`, { phase });
      },
    },
    {
      method: 'get',
      path: '/backend/:id/status',
      operationId: 'legacyStatus',
      summary: "The backend's current phase and when it was reached (original API)",
      description: ENDED_NOTE,
      tags: ['original'],
      auth: 'bearer-or-backend-token',
      pathParams: ID,
      query: 'TokenQuery',
      responses: {
        200: { description: 'The current phase (`state`); the terminal one for a backend that ended.', schema: 'LegacyStatus' },
        404: NOT_FOUND_OR_FORGOTTEN,
      },
      handler: async (req, res) => {
        const events = phaseEvents(await getBackend(store, req.params.id as string));
        const last = events[events.length - 1];
        res.json({ state: last.phase, time: last.time });
      },
    },
    {
      method: 'get',
      path: '/backend/:id/status/stream',
      operationId: 'legacyStatusStream',
      summary: 'Stream of `{state, time}` events (original API)',
      description: SSE_DESCRIPTION,
      tags: ['original'],
      auth: 'bearer-or-backend-token',
      pathParams: ID,
      query: 'TokenQuery',
      headers: LAST_EVENT_ID,
      responses: {
        200: {
          description: 'Events whose data is a LegacyStatus object.',
          contentType: SSE_MEDIA_TYPE,
          schema: 'LegacyStatus',
        },
        204: { description: 'The stream already ended (a reconnect after the terminal event).' },
        404: NOT_FOUND_OR_FORGOTTEN,
      },
      handler: async (req, res) => {
        await streamPhases(ctx, req, res, req.params.id as string, (e) => ({ state: e.phase, time: e.time }));
      },
    },
  ];
}
