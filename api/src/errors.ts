/**
 * Errors that carry their HTTP answer. Use cases throw them; the one error handler
 * (error-handler.ts) turns them into `{error: {code, message, details}}` without knowing where
 * they came from.
 */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ValidationDetail {
  in: 'body' | 'query' | 'path';
  path: string;
  message: string;
}

export const badRequest = (message: string, details?: unknown): ApiError => new ApiError(400, 'bad_request', message, details);

export const validationFailed = (where: ValidationDetail['in'], details: ValidationDetail[]): ApiError =>
  new ApiError(400, 'validation_failed', `the request ${where === 'body' ? 'body' : where} is invalid`, details);

export const unauthorized = (message = 'a valid bearer token is required'): ApiError =>
  new ApiError(401, 'unauthorized', message, undefined, { 'www-authenticate': 'Bearer realm="spawner"' });

export const notFound = (what: string): ApiError => new ApiError(404, 'not_found', `${what} not found`);

export const backendNotFound = (name: string): ApiError => new ApiError(404, 'not_found', `no backend named "${name}"`);

export const methodNotAllowed = (allowed: string[]): ApiError =>
  new ApiError(405, 'method_not_allowed', `allowed methods: ${allowed.join(', ')}`, undefined, { allow: allowed.join(', ') });

export const conflict = (code: string, message: string, details?: unknown): ApiError => new ApiError(409, code, message, details);

export const tooManyRequests = (limit: string, retryAfterSeconds: number, message: string): ApiError =>
  new ApiError(
    429,
    'rate_limited',
    message,
    { limit, retryAfterSeconds },
    { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
  );

export const unavailable = (message: string, retryAfterSeconds = 5): ApiError =>
  new ApiError(503, 'unavailable', message, undefined, { 'retry-after': String(retryAfterSeconds) });
