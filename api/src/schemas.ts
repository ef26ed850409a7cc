/**
 * The ajv validators of the API, compiled from crd-schemas/api/spawner-api.schema.json (which
 * `$ref`s the CRD's generated schema for the pod template and spec fields). Bodies are checked
 * as sent (no coercion; CRD defaults applied); query strings arrive as text, so their validator
 * coerces to the schema's types.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import crdSchema from '../../crd-schemas/generated/session-lived-backend.schema.json';
import apiSchemaJson from '../../crd-schemas/api/spawner-api.schema.json';
import { createAjv, SCHEMA_ID } from '../../crd-schemas/src/validators';
import type { ValidationDetail } from './errors';

export const API_SCHEMA_ID = 'https://spawner.dev/schemas/api.json';
export { SCHEMA_ID as CRD_SCHEMA_ID };

export type JsonSchema = Record<string, unknown>;
export const apiSchema = apiSchemaJson as unknown as { definitions: Record<string, JsonSchema> } & JsonSchema;
export const crdJsonSchema = crdSchema as unknown as { definitions: Record<string, JsonSchema> } & JsonSchema;

let bodyAjv: Ajv | undefined;
let queryAjv: Ajv | undefined;
let responseAjv: Ajv | undefined;

function plainAjv(opts: { coerceTypes: boolean; useDefaults: boolean }): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true, ...opts });
  addFormats(ajv);
  ajv.addSchema(crdJsonSchema as object, SCHEMA_ID);
  ajv.addSchema(apiSchema as object);
  return ajv;
}

function bodies(): Ajv {
  if (!bodyAjv) {
    // The CRD's own validator options, so a body is judged exactly as a spec would be.
    bodyAjv = createAjv();
    bodyAjv.addSchema(apiSchema as object);
  }
  return bodyAjv;
}

const queries = (): Ajv => (queryAjv ??= plainAjv({ coerceTypes: true, useDefaults: true }));
const responses = (): Ajv => (responseAjv ??= plainAjv({ coerceTypes: false, useDefaults: false }));

/** Friendlier words for a failed top-level oneOf, per definition. */
const ONE_OF_MESSAGES: Record<string, string> = {
  CreateBackendRequest:
    'give exactly one of "image", "template" or "pool"; "env", "command", "args" and "resources" go with "image" only, "httpPort" not with "pool"',
};

function describe(
  errors: ErrorObject[] | null | undefined,
  where: ValidationDetail['in'],
  definition: string,
): ValidationDetail[] {
  const all = errors ?? [];
  const out: ValidationDetail[] = [];
  const rootOneOf = all.some((e) => e.instancePath === '' && e.schemaPath.startsWith('#/oneOf'));
  for (const e of all) {
    if (rootOneOf && e.instancePath === '' && e.schemaPath.startsWith('#/oneOf')) continue;
    // ajv reports each bad property name twice: the reason, then "property name must be valid".
    if (e.keyword === 'propertyNames') continue;
    const params = e.params as Record<string, unknown>;
    const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') message = `has an unknown property "${String(params.additionalProperty)}"`;
    else if (e.keyword === 'enum') message = `${message}: ${(params.allowedValues as unknown[]).map(String).join(', ')}`;
    if (propertyName !== undefined) message = `property name "${propertyName}" ${message}`;
    out.push({ in: where, path: e.instancePath || '/', message });
  }
  if (rootOneOf)
    out.unshift({ in: where, path: '/', message: ONE_OF_MESSAGES[definition] ?? 'must match exactly one schema in oneOf' });
  return out;
}

export type Validator = (data: unknown) => ValidationDetail[];

function validator(ajv: Ajv, definition: string, where: ValidationDetail['in']): Validator {
  if (!apiSchema.definitions[definition]) throw new Error(`no API schema definition ${definition}`);
  const v = ajv.getSchema(`${API_SCHEMA_ID}#/definitions/${definition}`) as ValidateFunction;
  return (data) => (v(data) ? [] : describe(v.errors, where, definition));
}

const cache = new Map<string, Validator>();

/** Validates a request body (in place: defaults are applied). */
export function bodyValidator(definition: string): Validator {
  const k = `body:${definition}`;
  let v = cache.get(k);
  if (!v) cache.set(k, (v = validator(bodies(), definition, 'body')));
  return v;
}

/** Validates (and coerces, in place) a parsed query object. */
export function queryValidator(definition: string): Validator {
  const k = `query:${definition}`;
  let v = cache.get(k);
  if (!v) cache.set(k, (v = validator(queries(), definition, 'query')));
  return v;
}

/** Validates a response body; for tests, which check that the API returns what it documents. */
export function responseValidator(definition: string): Validator {
  return validator(responses(), definition, 'body');
}
