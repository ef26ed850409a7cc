/**
 * /openapi.json, generated from the route declarations and the same JSON schemas the validators
 * compile. The CRD's definitions and the API's become `components.schemas` (the `$ref`s rewritten
 * to point there), so the document is self-contained.
 */
import { SSE_MEDIA_TYPE } from '../../common/src/sse';
import { apiSchema, crdJsonSchema, queryValidator, type JsonSchema } from './schemas';
import type { RouteDef, ResponseDoc } from './routes/route-def';

const CRD_REF = 'session-lived-backend.json#/definitions/';
const LOCAL_REF = '#/definitions/';
const COMPONENT_REF = '#/components/schemas/';

function rewriteRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref' && typeof v === 'string') {
      const full = v.replace(/^https:\/\/spawner\.dev\/schemas\//, '');
      if (full.startsWith(CRD_REF)) out[k] = COMPONENT_REF + full.slice(CRD_REF.length);
      else if (full.startsWith(LOCAL_REF)) out[k] = COMPONENT_REF + full.slice(LOCAL_REF.length);
      else throw new Error(`cannot place $ref ${v} in the OpenAPI document`);
    } else {
      out[k] = rewriteRefs(v);
    }
  }
  return out;
}

export function componentSchemas(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(crdJsonSchema.definitions)) out[name] = rewriteRefs(def);
  for (const [name, def] of Object.entries(apiSchema.definitions)) {
    if (out[name]) throw new Error(`schema name ${name} is defined by both the CRD and the API`);
    out[name] = rewriteRefs(def);
  }
  return out;
}

export const openApiPath = (expressPath: string): string => expressPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

const ref = (name: string): JsonSchema => ({ $ref: COMPONENT_REF + name });

function errorResponse(description: string, headers?: ResponseDoc['headers']): ResponseDoc {
  return { description, schema: 'Error', headers };
}

/** The error answers every route of a kind can give, besides the ones it declares. */
function standardResponses(route: RouteDef): Record<number, ResponseDoc> {
  const out: Record<number, ResponseDoc> = {};
  if (route.query || route.body || route.pathParams) out[400] = errorResponse('Invalid input; details lists each problem.');
  if (route.auth !== 'open') {
    out[401] = errorResponse('Missing or wrong token.', {
      'WWW-Authenticate': { description: 'The scheme to use.', schema: { type: 'string' } },
    });
  }
  if (route.pathParams) out[404] = errorResponse('No such backend.');
  if (route.body) {
    out[413] = errorResponse('The request body is too large.');
    out[415] = errorResponse('The request body is not JSON.');
  }
  return out;
}

function sseEventSchema(dataSchema: string | undefined): JsonSchema {
  const data: JsonSchema = { type: 'string', description: 'JSON' };
  if (dataSchema) {
    data.contentMediaType = 'application/json';
    data.contentSchema = ref(dataSchema);
  }
  return {
    type: 'object',
    description: 'One Server-Sent Event.',
    required: ['data'],
    properties: {
      data,
      id: { type: 'string', description: 'The phase rank; send it back as Last-Event-ID.' },
      event: { type: 'string' },
      retry: { type: 'integer', minimum: 0 },
    },
  };
}

function responseObject(doc: ResponseDoc): Record<string, unknown> {
  const out: Record<string, unknown> = { description: doc.description };
  if (doc.headers) {
    out.headers = Object.fromEntries(
      Object.entries(doc.headers).map(([name, h]) => [name, { description: h.description, schema: h.schema }]),
    );
  }
  if (doc.contentType === SSE_MEDIA_TYPE) {
    // The schema of an event stream describes each event (as OpenAPI 3.2's itemSchema does, and
    // as tools read `schema` of a sequential media type before 3.2): its fields, `data` being JSON.
    out.content = { [doc.contentType]: { schema: sseEventSchema(doc.schema) } };
  } else if (doc.contentType === 'text/plain') {
    out.content = { [doc.contentType]: { schema: { type: 'string' } } };
  } else if (doc.schema) {
    out.content = { 'application/json': { schema: ref(doc.schema) } };
  } else if (doc.contentType === 'application/json') {
    out.content = { 'application/json': { schema: { type: 'object' } } };
  }
  return out;
}

function queryParameters(definition: string, schemas: Record<string, unknown>): unknown[] {
  queryValidator(definition); // fails at build time for an unknown definition
  const schema = schemas[definition] as { properties?: Record<string, JsonSchema> };
  return Object.entries(schema.properties ?? {})
    .filter(([name]) => name !== 'spawner_token') // documented as the backendToken security scheme
    .map(([name, prop]) => ({
      name,
      in: 'query',
      required: false,
      ...(typeof prop.description === 'string' ? { description: prop.description } : {}),
      schema: prop,
    }));
}

export interface OpenApiInfo {
  title?: string;
  version: string;
  /** The configured long-poll cap, documented as timeoutSeconds' maximum. */
  waitMaxSeconds?: number;
}

export const DEFAULT_WAIT_SECONDS = 30;

export function buildOpenApi(routes: RouteDef[], info: OpenApiInfo): Record<string, unknown> {
  const schemas = componentSchemas();
  if (info.waitMaxSeconds !== undefined) {
    const prop = (schemas.WaitQuery as { properties: Record<string, Record<string, unknown>> }).properties.timeoutSeconds;
    prop.maximum = info.waitMaxSeconds;
    prop.default = Math.min(DEFAULT_WAIT_SECONDS, info.waitMaxSeconds);
  }
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters: unknown[] = [];
    for (const [name, def] of Object.entries(route.pathParams ?? {})) {
      parameters.push({ name, in: 'path', required: true, schema: ref(def) });
    }
    if (route.query) parameters.push(...queryParameters(route.query, schemas));
    for (const [name, h] of Object.entries(route.headers ?? {})) {
      parameters.push({ name, in: 'header', required: false, description: h.description, schema: h.schema });
    }
    const responses: Record<string, unknown> = {};
    const all = { ...standardResponses(route), ...route.responses };
    for (const code of Object.keys(all)
      .map(Number)
      .sort((a, b) => a - b))
      responses[String(code)] = responseObject(all[code]);
    responses.default = responseObject(errorResponse('Any other error, in the same shape.'));
    const op: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description ? { description: route.description } : {}),
      tags: route.tags,
      security:
        route.auth === 'open' ? [] : route.auth === 'bearer' ? [{ bearerAuth: [] }] : [{ bearerAuth: [] }, { backendToken: [] }],
      ...(parameters.length ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { 'application/json': { schema: ref(route.body) } } } } : {}),
      responses,
    };
    const path = openApiPath(route.path);
    paths[path] ??= {};
    paths[path][route.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: info.title ?? 'Spawner API',
      version: info.version,
      description:
        'Session-lived backends: create one server process per user, document or room, reach it through the entry point, and let it be swept when idle.',
    },
    tags: [
      { name: 'backends', description: 'The v1 API.' },
      { name: 'original', description: "The original Spawner's endpoints (2022), kept compatible." },
      { name: 'system', description: 'Health, readiness, metrics, this document.' },
    ],
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API token (--token-file).' },
        backendToken: {
          type: 'apiKey',
          in: 'query',
          name: 'spawner_token',
          description: "The backend's own connection token, as carried by its URLs (also accepted as X-Spawner-Token).",
        },
      },
      schemas,
    },
  };
}
