/**
 * The sidecar as a process, started from the artefact its image runs: the one-file bundle of
 * scripts/bundle-sidecar.mjs, built into dist/bundle/ once per benchmark run. With
 * SPAWNER_BENCH_DIST (another build, measured side by side) that build's bundle/sidecar.js is used,
 * or its tsc output when it has none.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { dist, httpGet, ROOT, startChild, waitForPort, waitUntil, type Child } from './processes';

/** The tsc build's entry point (what `npm run build` writes), for comparison with the bundle. */
export const SIDECAR_TSC_MAIN = 'sidecar/src/main.js';

let bundled: string | undefined;

/** The sidecar's bundle, built on first use (from the sources, unless SPAWNER_BENCH_DIST names a build). */
export function sidecarMain(): string {
  if (bundled) return bundled;
  const file = dist('bundle/sidecar.js');
  if (process.env.SPAWNER_BENCH_DIST) {
    bundled = existsSync(file) ? file : dist(SIDECAR_TSC_MAIN);
  } else {
    execFileSync(process.execPath, [join(ROOT, 'scripts/bundle-sidecar.mjs'), file], { cwd: ROOT, stdio: 'ignore' });
    bundled = file;
  }
  return bundled;
}

export interface SidecarProcess {
  child: Child;
  serve: number;
  admin: number;
}

/** Starts a sidecar in front of 127.0.0.1:`upstream` on the given ports; does not wait for it. */
export function launchSidecar(
  name: string,
  upstream: number,
  ports: { serve: number; admin: number },
  opts: { env?: NodeJS.ProcessEnv; main?: string } = {},
): SidecarProcess {
  const child = startChild(
    name,
    process.execPath,
    [
      opts.main ?? sidecarMain(),
      `--serve-port=${ports.serve}`,
      `--upstream-port=${upstream}`,
      `--admin-port=${ports.admin}`,
      '--listen-host=127.0.0.1',
      '--log-level=warn',
    ],
    { env: { ...process.env, ...opts.env } },
  );
  return { child, ...ports };
}

/** Resolves once the sidecar listens and its app accepts connections (`/ready` answers 200). */
export async function sidecarReady(s: SidecarProcess): Promise<void> {
  await waitForPort(s.serve, s.child);
  await waitUntil(
    async () => (await httpGet(`http://127.0.0.1:${s.admin}/ready`).catch(() => ({ status: 0 }))).status === 200,
    `${s.child.name} to be ready`,
    20_000,
    100,
  );
}
