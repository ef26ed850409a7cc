#!/usr/bin/env node
/**
 * The sidecar as one self-contained CommonJS file, for its image and for whatever starts it as a
 * process (bench, e2e): `node scripts/bundle-sidecar.mjs [out]` writes dist/bundle/sidecar.js (and
 * its source map) from sidecar/src/main.ts. It runs with plain `node <file>`, no node_modules.
 *
 * Why: the sidecar runs once per backend, so its idle memory is multiplied by the number of
 * sessions. Anonymous memory per process, 10 sidecars, 3 s after start, Node 20: 11.6 MB from tsc's
 * dist/ and node_modules, 12.1 MB as a plain esbuild ESM bundle, 9.2 MB as this file (7.7 MB once
 * settled: `npm run bench -- sidecar-memory`):
 *   - CommonJS, not ESM: Node's ES module loader costs the process about 1.3 MB more;
 *   - prom-client's index loads every metric type, the Pushgateway and cluster aggregation: the
 *     sidecar gets the registry, Counter, Gauge and the default metrics, each from its own file;
 *   - @opentelemetry/api is loaded by prom-client's process-CPU metric for exemplars, which are off:
 *     it is replaced by what the API answers when no OpenTelemetry SDK is registered (no span);
 *   - ajv stays out: the sidecar's configuration schema is checked without it (isPlainSchema in
 *     common/src/config.ts); sidecar/src/bundle.test.ts starts the bundle where no node_modules is;
 *   - whitespace and comments go; identifiers are kept, so stack traces in the logs stay readable.
 * `SIDECAR_BUILD` is exported for a build script that bundles every component.
 */
import { build } from 'esbuild';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const SHIMS = {
  'prom-client': `module.exports = {
    Registry: require('prom-client/lib/registry'),
    Counter: require('prom-client/lib/counter'),
    Gauge: require('prom-client/lib/gauge'),
    collectDefaultMetrics: require('prom-client/lib/defaultMetrics'),
  };`,
  '@opentelemetry/api': `module.exports = {
    trace: { getSpan: () => undefined },
    context: { active: () => undefined },
  };`,
};

/** esbuild options for the sidecar (add `outfile`). */
export const SIDECAR_BUILD = {
  absWorkingDir: ROOT,
  entryPoints: ['sidecar/src/main.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  external: ['ajv'],
  logLevel: 'warning',
  banner: { js: '// The Spawner sidecar, bundled by scripts/bundle-sidecar.mjs from sidecar/src/main.ts.' },
  plugins: [
    {
      name: 'sidecar-shims',
      setup(b) {
        b.onResolve({ filter: /^(prom-client|@opentelemetry\/api)$/ }, (args) => ({ path: args.path, namespace: 'shim' }));
        b.onLoad({ filter: /.*/, namespace: 'shim' }, (args) => ({ contents: SHIMS[args.path], loader: 'js', resolveDir: ROOT }));
      },
    },
  ],
};

export async function bundleSidecar(outfile = resolve(ROOT, 'dist/bundle/sidecar.js')) {
  const result = await build({ ...SIDECAR_BUILD, outfile });
  if (result.warnings.length) throw new Error('esbuild warnings (see above): a bundle must not depend on luck');
  return outfile;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  bundleSidecar(process.argv[2] ? resolve(process.argv[2]) : undefined)
    .then((file) => process.stdout.write(`bundled the sidecar: ${file}\n`))
    .catch((err) => {
      process.stderr.write(`bundle-sidecar: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}
