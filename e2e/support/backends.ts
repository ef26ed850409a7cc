/** Backend manifests and waits shared by the e2e tests. */
import { type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf } from '../../common/src/lifecycle';
import { BACKENDS } from '../../common/src/kube/resources';
import { adminClient, waitFor } from './cluster';

export const TEST_IMAGE = 'ghcr.io/spawner-dev/spawner-test-app:e2e';

export function backendManifest(
  name: string,
  namespace: string,
  opts: { env?: Record<string, string>; image?: string; spec?: Record<string, unknown> } = {},
): SessionLivedBackend {
  return {
    apiVersion: 'spawner.dev/v1',
    kind: 'SessionLivedBackend',
    metadata: { name, namespace, labels: { 'e2e.spawner.dev/test': 'operator' } },
    spec: {
      template: {
        containers: [
          {
            name: 'app',
            image: opts.image ?? TEST_IMAGE,
            env: Object.entries(opts.env ?? {}).map(([n, value]) => ({ name: n, value })),
          },
        ],
      },
      ...opts.spec,
    },
  };
}

/** Polls the backend until `ok`; returns it. Fails naming the phase it was stuck in. */
export async function waitBackend(
  namespace: string,
  name: string,
  what: string,
  ok: (b: SessionLivedBackend) => boolean,
  timeoutMs = 60_000,
): Promise<SessionLivedBackend> {
  return waitFor(
    async () => {
      const b = await adminClient().get<SessionLivedBackend>(BACKENDS, namespace, name);
      return b && ok(b) ? b : undefined;
    },
    { description: `backend ${namespace}/${name} ${what}`, timeoutMs, intervalMs: 100 },
  );
}

export const phaseIs =
  (...phases: string[]) =>
  (b: SessionLivedBackend): boolean =>
    phases.includes(phaseOf(b));
