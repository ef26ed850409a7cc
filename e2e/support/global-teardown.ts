/** Stops the cluster the global set-up started (not one it found running, nor one named by KUBECONFIG). */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

export default async function globalTeardown(): Promise<void> {
  if (process.env.SPAWNER_E2E_STOP_CLUSTER !== '1' || process.env.SPAWNER_E2E_KEEP_CLUSTER === '1') return;
  spawnSync('bash', [join(resolve(__dirname, '..', '..'), 'e2e', 'cluster.sh'), 'down'], { stdio: 'inherit' });
  delete process.env.SPAWNER_E2E_STOP_CLUSTER;
}
