/**
 * The image catalog: Spawner's stand-in for a container registry wherever no container runtime
 * runs. An image name maps to a command on this machine. Local mode (local/) and the e2e test node
 * agent (e2e/node-agent/) both read it; this is its only definition.
 *
 * The file, `{ "images": { "<name>": { "command": [...], "args"?: [...], "env"?: {...},
 * "workingDir"?: "..." } } }`, is validated with ajv; a mistake is an ImagesFileError naming the
 * file and every bad field. In every string `{root}` stands for the repository root. A relative
 * `workingDir` is relative to the file's directory, which is also the default.
 *
 * Lookup: the exact image reference first, then its last path segment without tag or digest
 * (`ghcr.io/x/spawner-demo-backend:0.1.0` → `spawner-demo-backend`), so the manifests written for
 * a cluster run unchanged. Entries from the file win over the built-in ones (the bundled demo
 * backend, which local mode needs with no file at all; the agent leaves them out).
 *
 * An entry's `command` is the image's entrypoint and `args` its default arguments, and a
 * container's `command`/`args` override them as Kubernetes says: `command` replaces the
 * entrypoint (and drops the default args), `args` replace the default args.
 *
 * With `reload`, the file is read again when it changes (a test adds an image without restarting
 * the agent); a file that does not parse keeps the previous entries until it does.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import { projectRoot } from './paths';

export interface ImageEntry {
  /** The image's entrypoint. */
  command: string[];
  /** The image's default arguments, used when the container gives neither command nor args. */
  args?: string[];
  /** Environment the image sets (the container's env wins). */
  env?: Record<string, string>;
  /** Where the command runs; relative paths are relative to the file that defines the entry. */
  workingDir?: string;
}

/** An entry with `{root}` substituted and every path made absolute, and where it came from. */
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
/** Stands for the repository root in every string of an entry. */
export const ROOT_PLACEHOLDER = '{root}';

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

function resolveEntry(key: string, entry: ImageEntry, baseDir: string, root: string, source: string): ResolvedImage {
  const sub = (s: string): string => s.split(ROOT_PLACEHOLDER).join(root);
  const workingDir = entry.workingDir === undefined ? baseDir : sub(entry.workingDir);
  return {
    key,
    command: entry.command.map(sub),
    args: (entry.args ?? []).map(sub),
    env: Object.fromEntries(Object.entries(entry.env ?? {}).map(([k, v]) => [k, sub(v)])),
    workingDir: isAbsolute(workingDir) ? workingDir : resolve(baseDir, workingDir),
    source,
  };
}

function resolveAll(
  entries: Record<string, ImageEntry>,
  baseDir: string,
  root: string,
  source: string,
): Map<string, ResolvedImage> {
  return new Map(Object.entries(entries).map(([k, e]) => [k, resolveEntry(k, e, baseDir, root, source)]));
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

export interface LoadOptions {
  /** The images file (relative to `cwd`); it must exist. Default: `spawner.local.json` in `cwd`, if any. */
  file?: string;
  cwd?: string;
  /** What `{root}` stands for, and where the built-in entries are. Default: the repository root. */
  root?: string;
  /** Include the built-in demo entries (default true). */
  builtins?: boolean;
  /** Read the file again whenever it changed (checked on each lookup). */
  reload?: boolean;
}

function readImagesFile(file: string, root: string): Map<string, ResolvedImage> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ImagesFileError(`${file}: cannot read (${(err as Error).message})`);
  }
  return resolveAll(parseImagesFile(text, file), dirname(file), root, file);
}

function mtimeOf(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

export class ImageCatalog {
  private fromFile: Map<string, ResolvedImage>;
  private loadedMtimeMs?: number;

  private constructor(
    fromFile: Map<string, ResolvedImage>,
    private readonly builtin: Map<string, ResolvedImage>,
    /** The file the entries came from, if any (for messages). */
    readonly file?: string,
    private readonly reloadRoot?: string,
  ) {
    this.fromFile = fromFile;
  }

  /**
   * The catalog from `file` (which must exist), or from `spawner.local.json` in `cwd` when there
   * is one, on top of the built-in entries.
   */
  static load(opts: LoadOptions = {}): ImageCatalog {
    const cwd = opts.cwd ?? process.cwd();
    const root = opts.root ?? projectRoot();
    const builtin = opts.builtins === false ? new Map<string, ResolvedImage>() : builtinImages(root);
    let file = opts.file ? resolve(cwd, opts.file) : undefined;
    if (file && !existsSync(file)) throw new ImagesFileError(`${file}: images file not found`);
    if (!file && existsSync(join(cwd, DEFAULT_IMAGES_FILE))) file = join(cwd, DEFAULT_IMAGES_FILE);
    if (!file) return new ImageCatalog(new Map(), builtin);
    const mtimeMs = mtimeOf(file);
    const catalog = new ImageCatalog(readImagesFile(file, root), builtin, file, opts.reload ? root : undefined);
    catalog.loadedMtimeMs = mtimeMs;
    return catalog;
  }

  /** A catalog of the given entries (relative paths from `baseDir`) on top of the built-in ones. */
  static of(entries: Record<string, ImageEntry>, baseDir = process.cwd(), root = projectRoot()): ImageCatalog {
    return new ImageCatalog(resolveAll(entries, baseDir, root, 'inline'), builtinImages(root));
  }

  private refresh(): void {
    if (this.reloadRoot === undefined || this.file === undefined) return;
    const mtimeMs = mtimeOf(this.file);
    if (mtimeMs === undefined || mtimeMs === this.loadedMtimeMs) return;
    try {
      this.fromFile = readImagesFile(this.file, this.reloadRoot);
      this.loadedMtimeMs = mtimeMs;
    } catch {
      // A half-written file keeps the previous entries; the next lookup reads it again.
    }
  }

  resolve(image: string): ResolvedImage | undefined {
    this.refresh();
    const short = shortImageName(image);
    return this.fromFile.get(image) ?? this.fromFile.get(short) ?? this.builtin.get(image) ?? this.builtin.get(short);
  }

  /** Every name that resolves, for error messages. */
  names(): string[] {
    this.refresh();
    return [...new Set([...this.fromFile.keys(), ...this.builtin.keys()])].sort();
  }
}

/** The argv to run for a container, with Kubernetes' override rules (see the file comment). */
export function commandLine(image: Pick<ImageEntry, 'command' | 'args'>, command?: string[], args?: string[]): string[] {
  const entrypoint = command && command.length > 0 ? command : image.command;
  const rest = args && args.length > 0 ? args : command && command.length > 0 ? [] : (image.args ?? []);
  return [...entrypoint, ...rest];
}
