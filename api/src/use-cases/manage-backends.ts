/** Reading and deleting backends. */
import { type SessionLivedBackend } from '../../../common/src/backend';
import { phaseOf, Reasons } from '../../../common/src/lifecycle';
import { LABEL_KEY_HASH } from '../../../common/src/constants';
import { parseLabelSelector, SelectorError, type Requirement } from '../../../common/src/kube/selectors';
import type { Phase } from '../../../crd-schemas/generated/types';
import type { BackendStore } from '../backend-store';
import { backendNotFound, validationFailed } from '../errors';
import { keyHash } from '../names';

/**
 * The backend, or the last state of one that ended and was deleted within the retention (always
 * terminal, so every route answers it as it answers a terminal backend); 404 for any other name.
 */
export async function getBackend(store: BackendStore, name: string): Promise<SessionLivedBackend> {
  const backend = (await store.get(name)) ?? store.ended(name);
  if (!backend) throw backendNotFound(name);
  return backend;
}

export interface ListFilter {
  labelSelector?: string;
  phase?: Phase;
  key?: string;
}

export async function listBackends(store: BackendStore, filter: ListFilter): Promise<SessionLivedBackend[]> {
  let selector: Requirement[];
  try {
    selector = parseLabelSelector(filter.labelSelector);
  } catch (err) {
    if (err instanceof SelectorError)
      throw validationFailed('query', [{ in: 'query', path: '/labelSelector', message: err.message }]);
    throw err;
  }
  if (filter.key !== undefined) selector.push({ key: LABEL_KEY_HASH, op: 'in', values: [keyHash(store.namespace, filter.key)] });
  const items = await store.list(selector);
  return items
    .filter((b) => !filter.phase || phaseOf(b) === filter.phase)
    .sort(
      (a, b) =>
        String(a.metadata.creationTimestamp ?? '').localeCompare(String(b.metadata.creationTimestamp ?? '')) ||
        (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''),
    );
}

/** Ends a backend on a client's request: recorded as Swept/DeletedByClient, then deleted. */
export async function deleteBackend(store: BackendStore, name: string): Promise<SessionLivedBackend> {
  const last = await store.delete(name, { reason: Reasons.DeletedByClient, message: 'deleted through the API' });
  if (!last) throw backendNotFound(name);
  return last;
}
