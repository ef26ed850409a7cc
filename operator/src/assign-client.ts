/**
 * The operator's half of the claim-time handover (common/src/pool-assign.ts): tell a claimed
 * pool Pod's sidecar, on its admin port, which backend it now serves and which token to take.
 * Called after the claim patch and before the status write that makes the backend Ready, so an
 * entry point never routes to a sidecar that does not know its backend yet; called again after
 * an operator restart between the two (the sidecar answers a repeated assignment alike).
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { SessionLivedBackend } from '../../common/src/backend';
import { identityOf } from '../../common/src/backend-identity';
import {
  ANNOTATION_TOKEN_HASH,
  ENV_SIDECAR_ASSIGN_HASH,
  SIDECAR_ADMIN_PORT,
  SIDECAR_CONTAINER,
} from '../../common/src/constants';
import { PermanentError, TransientError } from '../../common/src/errors';
import { ASSIGN_PATH, assignSecret, type Assignment } from '../../common/src/pool-assign';

const ASSIGN_TIMEOUT_MS = 3000;

/** Whether the Pod was built by a pool: its sidecar waits for an assignment. */
export const waitsForAssignment = (pod: V1Pod): boolean =>
  pod.spec?.containers.some((c) => c.name === SIDECAR_CONTAINER && c.env?.some((e) => e.name === ENV_SIDECAR_ASSIGN_HASH)) ??
  false;

export type AssignFn = (backend: SessionLivedBackend, pod: V1Pod) => Promise<void>;

export function assignmentOf(backend: SessionLivedBackend): Assignment {
  const out: Assignment = { ...identityOf(backend), uid: backend.metadata.uid as string };
  const tokenSha256 = backend.metadata.annotations?.[ANNOTATION_TOKEN_HASH];
  if (tokenSha256 !== undefined) out.tokenSha256 = tokenSha256;
  return out;
}

/** POSTs the assignment over HTTP; a network error or 5xx is transient, a refusal permanent. */
export function httpAssign(key: Buffer, port = SIDECAR_ADMIN_PORT): AssignFn {
  return async (backend, pod) => {
    const ip = pod.status?.podIP;
    const podName = pod.metadata?.name as string;
    if (!ip) throw new TransientError(`pool Pod ${podName} has no IP yet`);
    const host = ip.includes(':') ? `[${ip}]` : ip;
    let res: Response;
    try {
      res = await fetch(`http://${host}:${port}${ASSIGN_PATH}`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Authorization: `Bearer ${assignSecret(key, pod.metadata?.namespace as string, podName)}`,
        },
        body: JSON.stringify(assignmentOf(backend)),
        signal: AbortSignal.timeout(ASSIGN_TIMEOUT_MS),
      });
    } catch (err) {
      throw new TransientError(`assigning pool Pod ${podName}: ${(err as Error).message}`);
    }
    const text = await res.text().catch(() => '');
    if (res.ok) return;
    const message = `assigning pool Pod ${podName} to ${backend.metadata.name}: ${res.status} ${text.trim()}`;
    throw res.status >= 500 ? new TransientError(message) : new PermanentError(message);
  };
}
