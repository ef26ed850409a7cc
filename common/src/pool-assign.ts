/**
 * The claim-time handover of a warm pool Pod to its backend (SPEC section 12). A pool Pod's
 * sidecar starts unassigned and refuses all traffic. Right after the claim (the one Pod patch),
 * the operator POSTs the assignment (backend name, uid, key, connection-token hash) to the
 * sidecar's admin port; from then on the sidecar checks that token and tells the app whom it
 * serves (common/src/backend-identity.ts). A sidecar is assigned once: the same assignment again
 * is accepted (a retried call), another one is refused, so a Pod never serves two backends.
 *
 * Authentication, with nothing but the operator able to assign: the operator holds a key (a file
 * the chart mounts from a Secret, ADR 0011); each pool Pod's secret is HMAC-SHA256(key, namespace and
 * Pod name), and only its SHA-256 goes into the sidecar's environment when the Pod is built.
 * Whoever reads the Pod spec (or the app, were it to read its neighbour's environment) learns a
 * hash, not the secret, and no Secret object per pool is needed (the operator has no RBAC to read
 * Secrets). The key's fingerprint is part of a pool Pod's template hash, so Pods built under
 * another key are replaced like Pods of an older template.
 */
import { createHash, createHmac } from 'node:crypto';

export const ASSIGN_PATH = '/assign';

export interface Assignment {
  name: string;
  uid: string;
  key?: string;
  tokenSha256?: string;
}

/**
 * The secret the operator presents to the sidecar of a pool Pod (Bearer, hex). Pool Pod names
 * carry a random suffix and are unique in their namespace while the Pod exists.
 */
export function assignSecret(key: Buffer, namespace: string, podName: string): string {
  return createHmac('sha256', key).update(`${namespace}/${podName}`).digest('hex');
}

/** Names the key without revealing it (part of the pool Pods' template hash). */
export const keyFingerprint = (key: Buffer): string => createHash('sha256').update(key).digest('hex').slice(0, 12);

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** The assignment in a request body, or what is wrong with it. */
export function parseAssignment(body: unknown): Assignment | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be a JSON object';
  const b = body as Record<string, unknown>;
  for (const field of Object.keys(b)) {
    if (!['name', 'uid', 'key', 'tokenSha256'].includes(field)) return `unknown field "${field}"`;
  }
  if (typeof b.name !== 'string' || b.name === '') return '"name" must be a non-empty string';
  if (typeof b.uid !== 'string' || b.uid === '') return '"uid" must be a non-empty string';
  if (b.key !== undefined && typeof b.key !== 'string') return '"key" must be a string';
  if (b.tokenSha256 !== undefined && (typeof b.tokenSha256 !== 'string' || !HEX64.test(b.tokenSha256))) {
    return '"tokenSha256" must be 64 hex digits';
  }
  const out: Assignment = { name: b.name, uid: b.uid };
  if (b.key !== undefined) out.key = b.key as string;
  if (b.tokenSha256 !== undefined) out.tokenSha256 = (b.tokenSha256 as string).toLowerCase();
  return out;
}

export const sameAssignment = (a: Assignment, b: Assignment): boolean =>
  a.name === b.name && a.uid === b.uid && a.key === b.key && a.tokenSha256 === b.tokenSha256;
