/**
 * Jest global set-up of the e2e project. With KUBECONFIG set, the suite uses that cluster as it is
 * (e2e/run.sh sets it after starting one; or point it at kind). Otherwise it starts the local
 * control plane with e2e/cluster.sh (which needs a built dist/) and the teardown stops it again.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..');

export default async function globalSetup(): Promise<void> {
  if (process.env.KUBECONFIG) {
    process.stderr.write(`[e2e] using the cluster of KUBECONFIG=${process.env.KUBECONFIG}\n`);
    return;
  }
  if (!existsSync(join(ROOT, 'dist', 'e2e', 'node-agent', 'main.js'))) {
    throw new Error('dist/ is not built: run `npm run build` first, or run the suite with `npm run e2e`');
  }
  const cluster = join(ROOT, 'e2e', 'cluster.sh');
  // A cluster someone started by hand is reused and left running.
  const running = spawnSync('bash', [cluster, 'status'], { stdio: 'ignore' }).status === 0;
  const up = spawnSync('bash', [cluster, 'up'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (up.status !== 0)
    throw new Error(
      `e2e/cluster.sh up failed (exit ${up.status}); component logs are in ${process.env.SPAWNER_E2E_DIR ?? '/tmp/spawner-e2e'}/logs`,
    );
  const kubeconfig = up.stdout.trim().split('\n').pop() ?? '';
  process.env.KUBECONFIG = kubeconfig;
  process.env.SPAWNER_E2E_DIR ??= '/tmp/spawner-e2e';
  if (!running) process.env.SPAWNER_E2E_STOP_CLUSTER = '1';
}
