/**
 * The Kubernetes access every component goes through. Two implementations: `HttpKubeClient`
 * (the real API server) and `FakeKubeClient` (in memory, for unit tests of the layers above).
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
}

/** Where a resource type lives: `/api/v1/...` for the core group, `/apis/<group>/<version>/...`. */
export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
  continue?: string;
}

export type PatchType = 'merge' | 'strategic' | 'json';

export interface WriteOptions {
  subresource?: 'status';
  fieldManager?: string;
}

export interface DeleteOptions {
  /** Delete only this incarnation of the object (a same-named successor is left alone). */
  uid?: string;
  /** Delete only if unchanged since this version (a Pod claimed meanwhile is left alone). */
  resourceVersion?: string;
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
  gracePeriodSeconds?: number;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchEvent<T> {
  type: WatchEventType;
  object: T;
}

export interface WatchOptions extends ListOptions {
  resourceVersion: string;
  allowWatchBookmarks?: boolean;
  timeoutSeconds?: number;
}

export interface WatchHandle {
  /** Resolves when the stream ends; rejects with a KubeApiError (410 Gone, ...) or a network error. */
  done: Promise<void>;
  abort(): void;
}

export interface KubeClient {
  get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T | undefined>;
  list<T extends KubeObject>(type: ResourceType, namespace: string | undefined, opts?: ListOptions): Promise<ListResult<T>>;
  create<T extends KubeObject>(type: ResourceType, namespace: string | undefined, obj: T, opts?: WriteOptions): Promise<T>;
  patch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    patchType: PatchType,
    opts?: WriteOptions,
  ): Promise<T>;
  /** True when something was deleted, false when it was already gone (or another incarnation). */
  delete(type: ResourceType, namespace: string | undefined, name: string, opts?: DeleteOptions): Promise<boolean>;
  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (event: WatchEvent<T>) => void,
  ): WatchHandle;
}

export const resourcePath = (type: ResourceType, namespace?: string, name?: string, subresource?: string): string => {
  const base = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  const ns = type.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const tail = name ? `/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}` : '';
  return `${base}${ns}/${type.plural}${tail}`;
};
