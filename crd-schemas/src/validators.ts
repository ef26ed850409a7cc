/**
 * ajv validators compiled from the generated JSON Schema, so the API and local mode accept exactly
 * what the API server's CRD accepts (and apply the same defaults).
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import schema from '../generated/session-lived-backend.schema.json';
import { SCHEMA_ID } from './schema-id';

export { SCHEMA_ID };

/** An ajv instance that knows the SessionLivedBackend schema under SCHEMA_ID (for `$ref`s). */
export function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, strictRequired: false, allowUnionTypes: true });
  addFormats(ajv);
  ajv.addSchema(schema as object, SCHEMA_ID);
  return ajv;
}

let shared: Ajv | undefined;
const cache = new Map<string, ValidateFunction>();

function validator(pointer: string): ValidateFunction {
  shared ??= createAjv();
  let v = cache.get(pointer);
  if (!v) {
    v = shared.getSchema(`${SCHEMA_ID}${pointer}`) as ValidateFunction;
    cache.set(pointer, v);
  }
  return v;
}

export interface ValidationProblem {
  path: string;
  message: string;
}

export function describeErrors(errors: ErrorObject[] | null | undefined, prefix = ''): ValidationProblem[] {
  return (errors ?? []).map((e) => {
    const extra =
      e.keyword === 'additionalProperties'
        ? ` (${(e.params as { additionalProperty: string }).additionalProperty})`
        : e.keyword === 'enum'
          ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')})`
          : '';
    return { path: `${prefix}${e.instancePath}` || '/', message: `${e.message ?? 'is invalid'}${extra}` };
  });
}

/** Validates (and defaults, in place) a SessionLivedBackend spec. */
export function validateSpec(spec: unknown): ValidationProblem[] {
  const v = validator('#/definitions/SessionLivedBackendSpec');
  return v(spec) ? [] : describeErrors(v.errors, '/spec');
}
