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
/** For the routes that still answer a backend that ended and was deleted, for a while. */
export const NOT_FOUND_OR_FORGOTTEN = err(
  'No such backend: there never was one of that name, or it was deleted more than --ended-retention-seconds (default 600) ago.',
);
/** How the routes that follow one backend answer it once it has ended and is deleted. */
export const ENDED_NOTE =
  'A backend that ended and was then deleted is answered from its last state (terminal: Swept or Failed, with its reason; Swept/DeletedByClient if it was deleted while live) for --ended-retention-seconds (default 600) after the deletion, then 404.';

export const SSE_DESCRIPTION =
  'A Server-Sent Events stream: phases reached so far first, then each new one; it ends after a terminal phase (Swept, Failed) or when the backend is deleted. A backend deleted before or while it is followed (within --ended-retention-seconds) still ends the stream with its terminal phase. Event ids are phase ranks, so a reconnecting EventSource is not sent the same phases again; reconnecting after the end gets 204. The server also closes a stream after its --stream-max-seconds; reconnect with Last-Event-ID to go on.';
