/**
 * The agent's stand-in for a container registry: an image name maps to a local command line.
 * An image's command is its ENTRYPOINT and its args its CMD, so a Pod's `command`/`args` override
 * them the way a container runtime would.
 */
import { readFileSync, statSync } from 'node:fs';

export interface ImageEntry {
  /** The image's entrypoint; `{root}` stands for the repository root. */
  command: string[];
  /** The image's default arguments (CMD), used when the Pod gives neither command nor args. */
  args?: string[];
  /** Environment the image sets (the Pod's env wins). */
  env?: Record<string, string>;
  workingDir?: string;
}

export type ImageMap = Record<string, ImageEntry>;

/** `ghcr.io/x/spawner-sidecar:0.1.0@sha256:…` → `spawner-sidecar`. */
export function imageKey(image: string): string {
  const withoutDigest = image.split('@')[0];
  const last = withoutDigest.slice(withoutDigest.lastIndexOf('/') + 1);
  const colon = last.indexOf(':');
  return colon < 0 ? last : last.slice(0, colon);
}

/** Kubernetes semantics: `command` replaces the entrypoint (and drops CMD); `args` replace CMD. */
export function commandLine(entry: ImageEntry, command?: string[], args?: string[]): string[] {
  const entrypoint = command?.length ? command : entry.command;
  const cmd = args?.length ? args : command?.length ? [] : (entry.args ?? []);
  return [...entrypoint, ...cmd];
}

function substitute(entry: ImageEntry, root: string): ImageEntry {
  const sub = (s: string): string => s.split('{root}').join(root);
  return {
    command: entry.command.map(sub),
    args: entry.args?.map(sub),
    env: entry.env && Object.fromEntries(Object.entries(entry.env).map(([k, v]) => [k, sub(v)])),
    workingDir: entry.workingDir && sub(entry.workingDir),
  };
}

export function parseImageMap(text: string, root: string): ImageMap {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const map: ImageMap = {};
  for (const [name, value] of Object.entries(raw)) {
    const entry = value as ImageEntry;
    if (!Array.isArray(entry?.command) || entry.command.length === 0 || !entry.command.every((s) => typeof s === 'string')) {
      throw new Error(`image map entry "${name}" needs a non-empty "command" array of strings`);
    }
    map[name] = substitute(entry, root);
  }
  return map;
}

/** Re-reads the file when it changes, so a test can add an image without restarting the agent. */
export class ImageCatalog {
  private map: ImageMap = {};
  private mtimeMs = -1;

  constructor(
    readonly path: string,
    private readonly root: string,
  ) {
    this.refresh();
  }

  private refresh(): void {
    const mtimeMs = statSync(this.path).mtimeMs;
    if (mtimeMs === this.mtimeMs) return;
    this.map = parseImageMap(readFileSync(this.path, 'utf8'), this.root);
    this.mtimeMs = mtimeMs;
  }

  lookup(image: string): ImageEntry | undefined {
    try {
      this.refresh();
    } catch {
      // A half-written file keeps the previous map; the next pull attempt reads it again.
    }
    return Object.prototype.hasOwnProperty.call(this.map, imageKey(image)) ? this.map[imageKey(image)] : undefined;
  }
}
