/**
 * The SessionLivedBackend as the rest of the code sees it. The rules of its life (phases,
 * transitions, reasons, conditions, the status write) live in ./lifecycle.ts.
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type {
  SessionBackendPoolSpec,
  SessionBackendPoolStatus,
  SessionLivedBackendSpec,
  SessionLivedBackendStatus,
} from '../../crd-schemas/generated/types';
import { API_VERSION, KIND } from './constants';

export type { Condition, Phase, PhaseTransition } from '../../crd-schemas/generated/types';
export type { SessionBackendPoolSpec, SessionBackendPoolStatus, SessionLivedBackendSpec, SessionLivedBackendStatus };

export interface SessionLivedBackend {
  apiVersion: string;
  kind: string;
  metadata: V1ObjectMeta;
  spec: SessionLivedBackendSpec;
  status?: SessionLivedBackendStatus;
  [key: string]: unknown;
}

export function newBackend(
  name: string,
  namespace: string,
  spec: SessionLivedBackendSpec,
  extra: Partial<V1ObjectMeta> = {},
): SessionLivedBackend {
  return { apiVersion: API_VERSION, kind: KIND, metadata: { ...extra, name, namespace }, spec };
}

/** A warm pool (SPEC section 12): started, unassigned Pods of one backend template. */
export interface SessionBackendPool {
  apiVersion: string;
  kind: string;
  metadata: V1ObjectMeta;
  spec: SessionBackendPoolSpec;
  status?: SessionBackendPoolStatus;
  [key: string]: unknown;
}

/** What a create from a pool does when the pool has no ready Pod: start cold, or answer 429. */
export type WhenEmpty = 'ColdStart' | 'Reject';

/** A pool's defaults, in one place for the operator, the API and local mode. */
export const whenEmptyOf = (pool: Pick<SessionBackendPool, 'spec'>): WhenEmpty => pool.spec.whenEmpty ?? 'ColdStart';
export const replicasOf = (pool: Pick<SessionBackendPool, 'spec'>): number => pool.spec.replicas ?? 1;
