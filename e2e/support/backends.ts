/** Backend manifests and waits shared by the e2e tests. */
import { type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf, phaseTime } from '../../common/src/lifecycle';
import { BACKENDS } from '../../common/src/kube/resources';
import { adminClient, httpGet, waitFor } from './cluster';

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

/** When the sidecar at `podIP` last saw activity, on this clock, from its own state. */
export async function lastActive(podIP: string): Promise<number> {
  const { body } = await httpGet(`http://${podIP}:9091/state`);
  const state = JSON.parse(body) as { secondsSinceActive: number };
  return Date.now() - state.secondsSinceActive * 1000;
}

/**
 * When the sweeper should sweep an idle Ready backend, by the idle rule: a grace after the last
 * activity its sidecar reports, and never before a grace after it was first Ready.
 */
export async function idleDeadline(b: SessionLivedBackend, grace: number): Promise<number> {
  const fromActivity = (await lastActive(b.status!.podIP!)) + grace * 1000;
  return Math.max(fromActivity, (phaseTime(b, 'Ready') ?? 0) + grace * 1000);
}
