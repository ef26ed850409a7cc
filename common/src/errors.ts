/**
 * Errors as types. Reconcilers and use cases throw these; the work queue and the HTTP error
 * handler decide what to do from the type alone:
 *
 * - `TransientError`: worth retrying with backoff (API server unreachable, conflict, 5xx).
 * - `PermanentError`: retrying cannot help (invalid object, forbidden); logged, not hot-looped.
 * - `KubeApiError`: what the API server answered, carrying its HTTP status and reason; it is
 *   transient or not by status.
 */
export class TransientError extends Error {
  override name = 'TransientError';
}

export class PermanentError extends Error {
  override name = 'PermanentError';
}

export interface KubeStatusBody {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: unknown;
}

export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly body?: KubeStatusBody,
  ) {
    super(message);
  }

  get transient(): boolean {
    return this.status === 409 || this.status === 429 || this.status >= 500;
  }
}

/** The API server (or the network to it) did not answer at all. */
export class KubeUnavailableError extends TransientError {
  override name = 'KubeUnavailableError';
}

export const isNotFound = (e: unknown): boolean => e instanceof KubeApiError && e.status === 404;
export const isConflict = (e: unknown): boolean => e instanceof KubeApiError && e.status === 409 && e.reason !== 'AlreadyExists';
export const isAlreadyExists = (e: unknown): boolean =>
  e instanceof KubeApiError && e.status === 409 && e.reason === 'AlreadyExists';

export function isTransient(e: unknown): boolean {
  if (e instanceof TransientError) return true;
  if (e instanceof PermanentError) return false;
  if (e instanceof KubeApiError) return e.transient;
  return true;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
