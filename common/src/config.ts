/**
 * Configuration from one validated schema per component (flags > environment > defaults).
 *
 * Each property of the schema is settable as `--kebab-case-name=value` and as
 * `<ENV_PREFIX>_UPPER_SNAKE_NAME`. Values are coerced to the schema's types and validated by ajv at
 * start-up, so a bad value stops the process at once with a message naming the flag, the env var
 * and the rule it broke, instead of failing later in a confusing way.
 */
import { parseArgs } from 'node:util';
import Ajv, { type ErrorObject } from 'ajv';

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

function describeError(spec: ConfigSpec, err: ErrorObject): string {
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

  const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false });
  const validate = ajv.compile({ ...spec.schema, additionalProperties: false });
  if (!validate(raw)) {
    for (const err of validate.errors ?? []) problems.push(describeError(spec, err));
  }
  if (problems.length > 0) {
    throw new ConfigError(`invalid ${spec.component} configuration:\n  ${problems.join('\n  ')}`);
  }
  return raw as T;
}
