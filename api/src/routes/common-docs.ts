import type { HeaderDoc, ResponseDoc } from './route-def';

export const RETRY_AFTER: Record<string, HeaderDoc> = {
  'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer', minimum: 0 } },
};

export const LAST_EVENT_ID: Record<string, HeaderDoc> = {
  'Last-Event-ID': {
    description:
      'Sent by a reconnecting EventSource: events up to this id are not replayed. A value that is not an event id of this stream is ignored (everything is replayed).',
    schema: { type: 'string' },
  },
};

export const err = (description: string, headers?: Record<string, HeaderDoc>): ResponseDoc => ({
  description,
  schema: 'Error',
  headers,
});

export const LIMITED = err('A configured limit (live backends, create rate) is reached.', RETRY_AFTER);
export const UNAVAILABLE = err('The Kubernetes API server cannot be reached.', RETRY_AFTER);
export const NOT_FOUND = err('No such backend.');

export const SSE_DESCRIPTION =
  'A Server-Sent Events stream: phases reached so far first, then each new one; it ends after a terminal phase (Swept, Failed) or when the backend is deleted. Event ids are phase ranks, so a reconnecting EventSource is not sent the same phases again; reconnecting after the end gets 204. The server also closes a stream after its --stream-max-seconds; reconnect with Last-Event-ID to go on.';
