/**
 * Routes are declared as data: method, path, auth, the schemas of their inputs and the responses
 * they give, plus a handler. The app factory wires validation and auth from the declaration, and
 * /openapi.json is generated from the same list, so every route is documented as it behaves.
 */
import type { Request, Response } from 'express';
import type { SSE_MEDIA_TYPE } from '../../../common/src/sse';

/**
 * - open: health, readiness, metrics, the OpenAPI document.
 * - bearer: the API's bearer token.
 * - bearer-or-backend-token: the bearer token, or the connection token of the backend named in
 *   the path (so the readyUrl/statusUrl handed to a browser work there).
 */
export type AuthMode = 'open' | 'bearer' | 'bearer-or-backend-token';

export interface HeaderDoc {
  description: string;
  schema: Record<string, unknown>;
}

export interface ResponseDoc {
  description: string;
  /** An API schema definition name (crd-schemas/api/spawner-api.schema.json). */
  schema?: string;
  /** Default application/json when `schema` is set. */
  contentType?: 'application/json' | typeof SSE_MEDIA_TYPE | 'text/plain';
  headers?: Record<string, HeaderDoc>;
}

export interface RouteDef {
  method: 'get' | 'post' | 'delete';
  /** Express pattern (`/v1/backends/:name`). */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  auth: AuthMode;
  /** Path parameter → schema definition; an invalid value is a 404 (no such backend can exist). */
  pathParams?: Record<string, string>;
  /** Query schema definition (properties become query parameters). */
  query?: string;
  /** Request body schema definition (JSON). */
  body?: string;
  /** Optional request headers the route reads. */
  headers?: Record<string, HeaderDoc>;
  responses: Record<number, ResponseDoc>;
  handler: (req: Request, res: Response) => void | Promise<void>;
}

/** Validated inputs, stored on res.locals (express 5 recomputes req.query on every access). */
export interface ValidatedInputs {
  query: Record<string, unknown>;
  body: unknown;
}

export const inputs = (res: Response): ValidatedInputs => res.locals as ValidatedInputs;
