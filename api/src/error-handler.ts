/**
 * The one place errors become HTTP answers: `{error: {code, message, details}}` with the status
 * the error carries. Known failure types map to 4xx/503; only a bug is a 500 (and is logged).
 */
import * as http from 'node:http';
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { KubeApiError, KubeUnavailableError } from '../../common/src/errors';
import type { Logger } from '../../common/src/logger';
import { BackendAlreadyExistsError, BackendStoreUnavailableError } from './backend-store';
import { ApiError, unavailable } from './errors';

/** body-parser's error types. */
const BODY_ERRORS: Record<string, [number, string, string]> = {
  'entity.parse.failed': [400, 'malformed_json', 'the request body is not valid JSON'],
  'entity.too.large': [413, 'payload_too_large', 'the request body is too large'],
  'encoding.unsupported': [415, 'unsupported_media_type', 'unsupported content encoding'],
  'charset.unsupported': [415, 'unsupported_media_type', 'unsupported charset; send UTF-8 JSON'],
  'request.aborted': [400, 'bad_request', 'the request was aborted'],
  'request.size.invalid': [400, 'bad_request', 'the request body does not match its Content-Length'],
  'entity.verify.failed': [400, 'bad_request', 'the request body was rejected'],
};

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof BackendAlreadyExistsError) return new ApiError(409, 'already_exists', err.message);
  if (err instanceof KubeUnavailableError || err instanceof BackendStoreUnavailableError) {
    return unavailable('the Kubernetes API server cannot be reached; retry later');
  }
  if (err instanceof KubeApiError) {
    if (err.status === 400 || err.status === 422)
      return new ApiError(400, 'rejected_by_cluster', err.message, { reason: err.reason });
    if (err.status === 404) return new ApiError(404, 'not_found', err.message);
    if (err.status === 409) return new ApiError(409, 'conflict', err.message, { reason: err.reason });
    if (err.status === 429)
      return new ApiError(429, 'rate_limited', 'the Kubernetes API server is throttling', undefined, { 'retry-after': '1' });
    if (err.status >= 500) return unavailable(`the Kubernetes API server failed: ${err.message}`);
    // 401/403 from the API server: our own credentials or RBAC are wrong, nothing the client did.
    return new ApiError(502, 'cluster_error', `the Kubernetes API server refused: ${err.reason}`);
  }
  const e = err as { type?: unknown; status?: unknown; statusCode?: unknown; message?: unknown };
  if (e && typeof e.type === 'string' && BODY_ERRORS[e.type]) {
    const [status, code, message] = BODY_ERRORS[e.type];
    return new ApiError(status, code, message);
  }
  const status = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  if (status !== undefined && status >= 400 && status < 500) {
    // URIError from decoding a path parameter, and the like.
    return new ApiError(status, status === 400 ? 'bad_request' : 'client_error', http.STATUS_CODES[status] ?? 'bad request');
  }
  return new ApiError(500, 'internal', 'internal error');
}

export function sendError(res: Response | http.ServerResponse, err: ApiError): void {
  const body: { error: { code: string; message: string; details?: unknown } } = {
    error: { code: err.code, message: err.message },
  };
  if (err.details !== undefined) body.error.details = err.details;
  const text = JSON.stringify(body);
  res.statusCode = err.status;
  for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const apiErr = toApiError(err);
    if (apiErr.status >= 500 && apiErr.status !== 503) {
      logger.error('request failed', { method: req.method, route: req.route?.path, error: err, stack: (err as Error)?.stack });
    } else if (apiErr.status === 503) {
      logger.warn('request failed: unavailable', { method: req.method, route: req.route?.path, error: err });
    }
    if (res.headersSent) {
      // Mid-stream (SSE): nothing sensible can be written any more.
      res.destroy();
      return;
    }
    sendError(res, apiErr);
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new ApiError(404, 'not_found', `no route for ${req.method} ${req.path.slice(0, 200)}`));
};
