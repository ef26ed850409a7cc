#!/usr/bin/env node
/**
 * One bundle per image (docs/adr/0008-images.md): each component's entry points and everything they
 * import, its production dependencies included, compiled from the TypeScript sources by esbuild
 * into platform-independent JavaScript, laid out as the image holds it under /app:
 *
 *   dist/images/<component>/dist/<component>/src/main.js   the entry point (the path `npm run build` gives
 *                                                          it; dist/examples/demo-backend/src/main.js)
 *   dist/images/<component>/dist/*-<HASH>.js               code loaded only on demand (ES modules)
 *   dist/images/<component>/dist/package.json              "type": "module" or "commonjs"
 *   dist/images/<component>/THIRD-PARTY-NOTICES.txt        the bundled packages and their licenses
 *
 * The operator, the API (with the helm test's dist/api/client/smoke-test.js) and the sweeper are ES
 * modules split into chunks, so what they import lazily stays out of their start-up: the sweeper and
 * the API load client-node (8 MB of JavaScript) only for kubeconfigs the light credentials reader
 * cannot handle (ADR 0006); one CommonJS file with it inside costs the sweeper 18 MB more RSS
 * (93 against 75 MB, idle, Node 24). The sidecar is the one CommonJS file scripts/bundle-sidecar.mjs
 * makes (SIDECAR_BUILD: trimmed dependencies, smallest idle memory), so its image runs exactly that.
 *
 *   node scripts/bundle.mjs [component...] [--out DIR]     (default: all four, into dist/images)
 *
 * It fails on any esbuild warning, and on an ES module bundle that names __dirname or __filename
 * (which ES modules lack), rather than ship an image that breaks later at run time.
 */
import { build } from 'esbuild';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SIDECAR_BUILD } from './bundle-sidecar.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Each component's entry points (repository paths). The API's image also runs the helm test. */
export const COMPONENTS = {
  operator: ['operator/src/main.ts'],
  api: ['api/src/main.ts', 'api/client/smoke-test.ts'],
  sweeper: ['sweeper/src/main.ts'],
  sidecar: SIDECAR_BUILD.entryPoints,
  // The example backend the chart's helm test spawns (tests.backendImage).
  'demo-backend': ['examples/demo-backend/src/main.ts'],
};

// ES modules have no `require`; bundled CommonJS packages still call it for Node's built-ins.
const BANNER =
  "import { createRequire as __spawnerCreateRequire } from 'node:module';\n" +
  'const require = __spawnerCreateRequire(import.meta.url);';

function parseArgs(argv) {
  const names = [];
  let out = join(ROOT, 'dist', 'images');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') out = resolve(argv[++i]);
    else if (a.startsWith('--out=')) out = resolve(a.slice(6));
    else if (a === '-h' || a === '--help') {
      process.stdout.write('node scripts/bundle.mjs [operator|api|sweeper|sidecar ...] [--out DIR]\n');
      process.exit(0);
    } else if (a in COMPONENTS) names.push(a);
    else throw new Error(`unknown component or option '${a}' (components: ${Object.keys(COMPONENTS).join(', ')})`);
  }
  return { names: names.length ? names : Object.keys(COMPONENTS), out };
}

/** name@version, license and license text of every package a bundle took code from. */
function notices(inputs) {
  const pkgs = new Map();
  for (const file of inputs) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(file);
    if (!m || pkgs.has(m[1])) continue;
    const dir = join(ROOT, m[1]);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const licenseFile = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
    pkgs.set(m[1], {
      id: `${pkg.name}@${pkg.version}`,
      license: typeof pkg.license === 'string' ? pkg.license : JSON.stringify(pkg.license ?? 'UNKNOWN'),
      text: licenseFile ? readFileSync(join(dir, licenseFile), 'utf8').trim() : '(no license file in the package)',
    });
  }
  const list = [...pkgs.values()].sort((a, b) => a.id.localeCompare(b.id));
  const head =
    'Third-party packages bundled into this image (scripts/bundle.mjs), with their licenses.\n\n' +
    list.map((p) => `  ${p.id}  ${p.license}`).join('\n');
  return { count: list.length, text: [head, ...list.map((p) => `==== ${p.id} (${p.license})\n\n${p.text}`)].join('\n\n') + '\n' };
}

/** esbuild options for a component's bundle into `dir`. */
function options(name, dir) {
  if (name === 'sidecar') return { ...SIDECAR_BUILD, outfile: join(dir, 'dist', 'sidecar', 'src', 'main.js'), metafile: true };
  return {
    absWorkingDir: ROOT,
    entryPoints: COMPONENTS[name],
    outdir: join(dir, 'dist'),
    outbase: '.',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    banner: { js: BANNER },
    legalComments: 'none', // the notices file carries the licenses
    metafile: true,
    logLevel: 'silent',
  };
}

export async function bundle(name, out) {
  const dir = join(out, name);
  rmSync(dir, { recursive: true, force: true });
  const opts = options(name, dir);
  const result = await build(opts);
  if (result.warnings.length) {
    const text = result.warnings.map((w) => `${w.location?.file ?? ''}:${w.location?.line ?? ''} ${w.text}`).join('\n');
    throw new Error(`${name}: esbuild warnings (fix them, a bundle must not depend on luck):\n${text}`);
  }
  let bytes = 0;
  for (const [file, meta] of Object.entries(result.metafile.outputs)) {
    bytes += meta.bytes;
    if (opts.format !== 'esm' || !file.endsWith('.js')) continue;
    const code = readFileSync(join(ROOT, file), 'utf8');
    if (/\b__(dirname|filename)\b/.test(code))
      throw new Error(`${name}: ${file} names __dirname or __filename, which ES modules lack`);
  }
  const type = opts.format === 'esm' ? 'module' : 'commonjs';
  writeFileSync(join(dir, 'dist', 'package.json'), `{ "type": "${type}" }\n`);
  const n = notices(Object.keys(result.metafile.inputs));
  writeFileSync(join(dir, 'THIRD-PARTY-NOTICES.txt'), n.text);
  return { name, files: Object.keys(result.metafile.outputs).length, bytes, packages: n.count };
}

async function main() {
  const { names, out } = parseArgs(process.argv.slice(2));
  mkdirSync(out, { recursive: true });
  for (const name of names) {
    const t0 = Date.now();
    const r = await bundle(name, out);
    process.stderr.write(
      `[bundle] ${name}: ${r.files} files, ${(r.bytes / 1048576).toFixed(1)} MiB, ${r.packages} packages` +
        ` -> ${relative(process.cwd(), join(out, name)) || '.'} (${Date.now() - t0} ms)\n`,
    );
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`[bundle] ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
