/**
 * Local mode's stand-in for a container registry: an image name maps to a command on this
 * machine. The map comes from a small JSON file (`spawner.local.json` by default, see
 * local/README.md) on top of built-in entries for the bundled demo backend, so `npm start` needs
 * no configuration for the demo.
 *
 * Lookup: the exact image reference first, then its last path segment without tag or digest
 * (`ghcr.io/x/spawner-demo-backend:0.1.0` → `spawner-demo-backend`), so the manifests written for
 * a cluster run unchanged. Entries from the file win over the built-in ones.
 *
 * An entry's `command` is the image's entrypoint and `args` its default arguments, and a
 * container's `command`/`args` override them as a container runtime would: `command` replaces the
 * entrypoint (and drops the default args), `args` replace the default args.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import { projectRoot } from '../../common/src/paths';

export interface ImageEntry {
  command: string[];
  args?: string[];
  env?: Record<string, string>;
  /** Where the command runs; relative paths are relative to the file that defines the entry. */
  workingDir?: string;
}

/** An entry with every path made absolute, and where it came from (for messages). */
export interface ResolvedImage {
  /** The key of the entry that matched. */
  key: string;
  command: string[];
  args: string[];
  env: Record<string, string>;
  workingDir: string;
  source: string;
}

export const DEFAULT_IMAGES_FILE = 'spawner.local.json';
export const BUILTIN_SOURCE = 'built-in';

export class ImagesFileError extends Error {
  override name = 'ImagesFileError';
}

const ENTRY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['command'],
  properties: {
    command: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
    args: { type: 'array', items: { type: 'string' } },
    env: {
      type: 'object',
      propertyNames: { type: 'string', pattern: '^[^=\\u0000]+$' },
      additionalProperties: { type: 'string' },
    },
    workingDir: { type: 'string', minLength: 1 },
  },
};

export const IMAGES_FILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['images'],
  properties: {
    $schema: { type: 'string' },
    images: {
      type: 'object',
      propertyNames: { type: 'string', minLength: 1, pattern: '^\\S+$' },
      additionalProperties: ENTRY_SCHEMA,
    },
  },
};

let compiled: ReturnType<Ajv['compile']> | undefined;

function describe(err: ErrorObject): string {
  // ajv reports propertyNames failures on the object, naming the bad key in params.
  const path = err.instancePath === '' ? '(top level)' : err.instancePath.slice(1).split('/').join('.');
  const params = err.params as Record<string, unknown>;
  if (err.keyword === 'additionalProperties') return `${path}: unknown field "${String(params.additionalProperty)}"`;
  if (err.keyword === 'required') return `${path}: missing field "${String(params.missingProperty)}"`;
  if (err.keyword === 'propertyNames') return `${path}: invalid name "${String(params.propertyName)}"`;
  return `${path}: ${err.message ?? 'is invalid'}`;
}

/** `ghcr.io/x/spawner-demo-backend:0.1.0@sha256:…` → `spawner-demo-backend`. */
export function shortImageName(image: string): string {
  const withoutDigest = image.split('@')[0];
  const last = withoutDigest.slice(withoutDigest.lastIndexOf('/') + 1);
  const colon = last.indexOf(':');
  return colon < 0 ? last : last.slice(0, colon);
}

/** Validates the parsed file; throws ImagesFileError naming the file and every bad field. */
export function parseImagesFile(text: string, file: string): Record<string, ImageEntry> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ImagesFileError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  compiled ??= new Ajv({ allErrors: true, strict: true }).compile(IMAGES_FILE_SCHEMA);
  if (!compiled(data)) {
    const problems = (compiled.errors ?? []).map(describe);
    throw new ImagesFileError(`${file}: invalid images file:\n  ${problems.join('\n  ')}`);
  }
  return (data as { images: Record<string, ImageEntry> }).images;
}

function resolveEntry(key: string, entry: ImageEntry, baseDir: string, source: string): ResolvedImage {
  const dir = entry.workingDir ? (isAbsolute(entry.workingDir) ? entry.workingDir : resolve(baseDir, entry.workingDir)) : baseDir;
  return {
    key,
    command: [...entry.command],
    args: [...(entry.args ?? [])],
    env: { ...(entry.env ?? {}) },
    workingDir: dir,
    source,
  };
}

/** The bundled demo backend, run with the Node.js that runs local mode (from the build output). */
export function builtinImages(root = projectRoot()): Map<string, ResolvedImage> {
  const demo = (key: string): ResolvedImage => ({
    key,
    command: [process.execPath, join(root, 'dist', 'examples', 'demo-backend', 'src', 'main.js')],
    args: [],
    env: {},
    workingDir: root,
    source: BUILTIN_SOURCE,
  });
  return new Map([
    ['spawner-demo-backend', demo('spawner-demo-backend')],
    ['demo', demo('demo')],
  ]);
}

export class ImageCatalog {
  constructor(
    private readonly fromFile: Map<string, ResolvedImage>,
    private readonly builtin: Map<string, ResolvedImage>,
    /** The file the entries came from, if any (for messages). */
    readonly file?: string,
  ) {}

  /**
   * The catalog from `file` (which must exist), or from `spawner.local.json` in `cwd` when there
   * is one, on top of the built-in entries.
   */
  static load(opts: { file?: string; cwd?: string; root?: string } = {}): ImageCatalog {
    const cwd = opts.cwd ?? process.cwd();
    const builtin = builtinImages(opts.root);
    let file = opts.file ? resolve(cwd, opts.file) : undefined;
    if (file && !existsSync(file)) throw new ImagesFileError(`${file}: images file not found`);
    if (!file && existsSync(join(cwd, DEFAULT_IMAGES_FILE))) file = join(cwd, DEFAULT_IMAGES_FILE);
    if (!file) return new ImageCatalog(new Map(), builtin);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ImagesFileError(`${file}: cannot read (${(err as Error).message})`);
    }
    const entries = parseImagesFile(text, file);
    const map = new Map(Object.entries(entries).map(([k, e]) => [k, resolveEntry(k, e, dirname(file), file)]));
    return new ImageCatalog(map, builtin, file);
  }

  static of(entries: Record<string, ImageEntry>, baseDir = process.cwd(), root?: string): ImageCatalog {
    const map = new Map(Object.entries(entries).map(([k, e]) => [k, resolveEntry(k, e, baseDir, 'inline')]));
    return new ImageCatalog(map, builtinImages(root));
  }

  resolve(image: string): ResolvedImage | undefined {
    const short = shortImageName(image);
    return this.fromFile.get(image) ?? this.fromFile.get(short) ?? this.builtin.get(image) ?? this.builtin.get(short);
  }

  /** Every name that resolves, for error messages. */
  names(): string[] {
    return [...new Set([...this.fromFile.keys(), ...this.builtin.keys()])].sort();
  }
}

/** The argv to run for a container, with the runtime's override rules (see the file comment). */
export function commandLine(image: ResolvedImage, command?: string[], args?: string[]): string[] {
  const entrypoint = command && command.length > 0 ? command : image.command;
  const rest = args && args.length > 0 ? args : command && command.length > 0 ? [] : image.args;
  return [...entrypoint, ...rest];
}
