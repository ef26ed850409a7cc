/**
 * Configuration from one validated schema per component (flags > environment > defaults).
 *
 * Each property of the schema is settable as `--kebab-case-name=value` and as
 * `<ENV_PREFIX>_UPPER_SNAKE_NAME`. Values are coerced to the schema's types and validated at
 * start-up, so a bad value stops the process at once with a message naming the flag, the env var
 * and the rule it broke, instead of failing later in a confusing way.
 *
 * A schema of scalar properties with the common keywords only (a "plain" schema, the sidecar's) is
 * checked by `plainProblems`, which gives ajv's verdicts and messages (a test compares the two);
 * any other schema is checked by ajv, loaded only then: ajv and a compiled validator cost a process
 * about 5 MB of heap that the sidecar, started once per backend, would keep for nothing.
 */
import { parseArgs } from 'node:util';
import type { ErrorObject, ValidateFunction } from 'ajv';

export interface PropertySchema {
  type: 'string' | 'integer' | 'number' | 'boolean' | 'array' | 'object';
  description: string;
  default?: unknown;
  [keyword: string]: unknown;
}

export interface ConfigSchema {
  type: 'object';
  properties: Record<string, PropertySchema>;
  required?: string[];
}

export interface ConfigSpec {
  component: string;
  envPrefix: string;
  schema: ConfigSchema;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
export const envName = (prefix: string, name: string): string =>
  `${prefix}_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

function coerce(prop: PropertySchema, raw: string): unknown {
  switch (prop.type) {
    case 'integer':
    case 'number':
      return raw.trim() === '' ? raw : Number(raw);
    case 'boolean':
      if (/^(true|1|yes)$/i.test(raw)) return true;
      if (/^(false|0|no)$/i.test(raw)) return false;
      return raw;
    case 'array':
      if (raw.trim().startsWith('[')) return JSON.parse(raw) as unknown;
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    case 'object':
      return JSON.parse(raw) as unknown;
    default:
      return raw;
  }
}

export function helpText(spec: ConfigSpec): string {
  const lines = [`${spec.component} options (flag, environment variable, default):`];
  for (const [name, prop] of Object.entries(spec.schema.properties)) {
    const def = prop.default === undefined ? '' : ` [default: ${JSON.stringify(prop.default)}]`;
    lines.push(`  --${kebab(name)}  ${envName(spec.envPrefix, name)}${def}\n      ${prop.description}`);
  }
  return lines.join('\n');
}

/** What a validation problem says: the property (`/name`) and ajv's message. */
export type Problem = Pick<ErrorObject, 'instancePath' | 'message'> & { params?: ErrorObject['params'] };

function describeError(spec: ConfigSpec, err: Problem): string {
  const name = err.instancePath.split('/')[1] ?? (err.params as { missingProperty?: string }).missingProperty;
  if (!name) return err.message ?? 'invalid';
  const where = `--${kebab(name)} (${envName(spec.envPrefix, name)})`;
  return `${where} ${err.message ?? 'is invalid'}`;
}

export function loadConfig<T>(spec: ConfigSpec, argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): T {
  const props = spec.schema.properties;
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const name of Object.keys(props)) options[kebab(name)] = { type: 'string' };

  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${helpText(spec)}`);
  }
  if (values.help) {
    process.stdout.write(`${helpText(spec)}\n`);
    process.exit(0);
  }

  const raw: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, prop] of Object.entries(props)) {
    const fromFlag = values[kebab(name)];
    const fromEnv = env[envName(spec.envPrefix, name)];
    const text = typeof fromFlag === 'string' ? fromFlag : fromEnv;
    if (text === undefined) continue;
    try {
      raw[name] = coerce(prop, text);
    } catch {
      problems.push(`--${kebab(name)} (${envName(spec.envPrefix, name)}) must be valid JSON or a comma-separated list`);
    }
  }

  const found = isPlainSchema(spec.schema) ? plainProblems(spec.schema, raw) : ajvProblems(spec.schema, raw);
  for (const err of found) problems.push(describeError(spec, err));
  if (problems.length > 0) {
    throw new ConfigError(`invalid ${spec.component} configuration:\n  ${problems.join('\n  ')}`);
  }
  return raw as T;
}

/**
 * Validates `raw` with ajv as loadConfig always has (defaults filled in, every error, no unknown
 * properties); ajv is required here, on first use, so that plain schemas never load it.
 */
export function ajvProblems(schema: ConfigSchema, raw: Record<string, unknown>): Problem[] {
  let validate = compiled.get(schema);
  if (!validate) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded lazily on purpose (see the file's comment)
    const { default: Ajv } = require('ajv') as typeof import('ajv');
    const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false });
    validate = ajv.compile({ ...schema, additionalProperties: false });
    compiled.set(schema, validate);
  }
  return validate(raw) ? [] : (validate.errors ?? []);
}
const compiled = new WeakMap<ConfigSchema, ValidateFunction>();

/** The keywords plainProblems implements (as ajv does with strict: false); `required` is not among them. */
const PLAIN_KEYWORDS = new Set([
  'type',
  'description',
  'default',
  'maximum',
  'minimum',
  'exclusiveMaximum',
  'exclusiveMinimum',
  'maxLength',
  'minLength',
  'pattern',
  'enum',
]);
const NUMBER_KEYWORDS = ['maximum', 'minimum', 'exclusiveMaximum', 'exclusiveMinimum'] as const;
const COMPARISON = { maximum: '<=', minimum: '>=', exclusiveMaximum: '<', exclusiveMinimum: '>' } as const;
const STRING_KEYWORDS = ['maxLength', 'minLength', 'pattern'] as const;
const isScalar = (v: unknown): boolean => v === null || ['string', 'number', 'boolean'].includes(typeof v);

/** Whether plainProblems can check this schema: scalar properties, the keywords above, literal values. */
export function isPlainSchema(schema: ConfigSchema): boolean {
  if (schema.required !== undefined) return false;
  return Object.values(schema.properties).every(
    (prop) =>
      ['string', 'integer', 'number', 'boolean'].includes(prop.type) &&
      Object.keys(prop).every((k) => PLAIN_KEYWORDS.has(k)) &&
      NUMBER_KEYWORDS.every((k) => prop[k] === undefined || typeof prop[k] === 'number') &&
      ['maxLength', 'minLength'].every((k) => prop[k] === undefined || Number.isInteger(prop[k])) &&
      (prop.pattern === undefined || typeof prop.pattern === 'string') &&
      (prop.enum === undefined || (Array.isArray(prop.enum) && prop.enum.every(isScalar))) &&
      isScalar(prop.default ?? null),
  );
}

function isType(type: PropertySchema['type'], v: unknown): boolean {
  if (type === 'integer') return typeof v === 'number' && !(v % 1) && !Number.isNaN(v);
  return typeof v === type;
}

/**
 * ajv's verdicts on a plain schema, in ajv's order and words: the defaults of missing properties
 * filled in, then per property (in schema order) a type error unless the type's own keywords are
 * present, `enum`, the number keywords (NaN fails them), the string keywords (lengths in code points,
 * patterns with the u flag); a value of the wrong type fails its type's keywords as one type error.
 */
export function plainProblems(schema: ConfigSchema, raw: Record<string, unknown>): Problem[] {
  const problems: Problem[] = [];
  for (const [name, prop] of Object.entries(schema.properties)) {
    if (raw[name] === undefined) {
      if (prop.default === undefined) continue;
      raw[name] = prop.default;
    }
    const v = raw[name];
    const fail = (message: string): number => problems.push({ instancePath: `/${name}`, message });
    const has = (keywords: readonly string[]): boolean => keywords.some((k) => prop[k] !== undefined);
    const typeInGroup = (prop.type === 'number' && has(NUMBER_KEYWORDS)) || (prop.type === 'string' && has(STRING_KEYWORDS));
    if (!typeInGroup && !isType(prop.type, v)) fail(`must be ${prop.type}`);
    if (Array.isArray(prop.enum) && !prop.enum.includes(v)) fail('must be equal to one of the allowed values');
    if (has(NUMBER_KEYWORDS)) {
      if (typeof v === 'number') {
        for (const k of NUMBER_KEYWORDS) {
          const limit = prop[k] as number | undefined;
          if (limit === undefined) continue;
          const ok = { maximum: v <= limit, minimum: v >= limit, exclusiveMaximum: v < limit, exclusiveMinimum: v > limit }[k];
          if (!ok) fail(`must be ${COMPARISON[k]} ${limit}`);
        }
      } else if (typeInGroup) fail(`must be ${prop.type}`);
    }
    if (has(STRING_KEYWORDS)) {
      if (typeof v === 'string') {
        const length = [...v].length;
        if (prop.maxLength !== undefined && length > (prop.maxLength as number)) {
          fail(`must NOT have more than ${prop.maxLength as number} characters`);
        }
        if (prop.minLength !== undefined && length < (prop.minLength as number)) {
          fail(`must NOT have fewer than ${prop.minLength as number} characters`);
        }
        if (prop.pattern !== undefined && !new RegExp(prop.pattern as string, 'u').test(v)) {
          fail(`must match pattern "${prop.pattern as string}"`);
        }
      } else if (typeInGroup) fail(`must be ${prop.type}`);
    }
  }
  return problems;
}
