/**
 * The body of both status-stream routes (the original `/backend/:id/status/stream` and
 * `/v1/backends/:name/events`): they differ only in the shape of each event's data.
 */
import type { Request, Response } from 'express';
import { isTerminal, phaseOf, phaseRank } from '../../../common/src/lifecycle';
import { lastEventId, openEventStream } from '../sse';
import { followPhases, type PhaseEvent } from '../use-cases/follow-backend';
import { getBackend } from '../use-cases/manage-backends';
import type { RouteContext } from './context';

export async function streamPhases(
  { store, config }: RouteContext,
  req: Request,
  res: Response,
  name: string,
  data: (event: PhaseEvent) => unknown,
): Promise<void> {
  const backend = await getBackend(store, name);
  const after = lastEventId(req);
  if (isTerminal(phaseOf(backend)) && after >= phaseRank('Swept')) {
    // A reconnect after the terminal event: nothing more will come.
    res.status(204).end();
    return;
  }
  const stream = openEventStream(req, res, {
    heartbeatMs: config.sseHeartbeatSeconds * 1000,
    maxMs: config.streamMaxSeconds * 1000,
  });
  if (stream.closed) return;
  const stop = followPhases(
    store,
    name,
    after,
    (e) => stream.send(data(e), e.rank),
    () => stream.end(),
  );
  stream.onClose(stop);
}
