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
