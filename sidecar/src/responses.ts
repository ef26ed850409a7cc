/**
 * The answers of the sidecar's policy (token, holding, stopping); the relay core's own (400, 431,
 * 502...) are common/src/relay/answers.ts.
 */
import { text, type Answer } from '../../common/src/relay/answers';

export type { Answer };

export const UNAUTHORIZED_BODY = `${JSON.stringify({
  error: {
    code: 'unauthorized',
    message: 'this backend needs its connection token (X-Spawner-Token header, spawner_token cookie or query parameter)',
  },
})}\n`;

const UNASSIGNED_BODY = `${JSON.stringify({
  error: { code: 'unassigned', message: 'this is an unclaimed warm pool Pod; it serves no backend yet' },
})}\n`;

export const answers = {
  unauthorized: (): Answer => ({
    status: 401,
    body: UNAUTHORIZED_BODY,
    contentType: 'application/json',
    headers: { 'WWW-Authenticate': 'Bearer realm="spawner"' },
  }),
  holdTimeout: (): Answer => text(504, 'the backend did not start accepting connections in time\n'),
  holdFull: (): Answer => text(503, 'too many requests are waiting for the backend to start\n'),
  stopping: (): Answer => text(503, 'the backend is shutting down\n'),
  unassigned: (): Answer => ({
    status: 503,
    body: UNASSIGNED_BODY,
    contentType: 'application/json',
  }),
};
