/**
 * The one seam between the API (routes, use cases, entry point) and the world. Two worlds exist:
 * Kubernetes (kube-backend-store.ts: SessionLivedBackend resources, routed by Pod IP) and local
 * mode (backends are child processes on this machine, routed to a local sidecar port). The API
 * code only ever talks to this interface, so both run the very same HTTP surface.
 *
 * Consistency the API relies on:
 * - `create` is the arbiter for names: exactly one of several concurrent creates of a name wins,
 *   the others get BackendAlreadyExistsError (get-or-create by key is built on this).
 * - `get` may be served from a cache, but reads the store's own writes: a backend this process
 *   just created is visible, one it just deleted is not. `{fresh: true}` asks the source of truth.
 * - `watch` delivers the current object first, then every change, then `undefined` once the
 *   backend is gone. Listeners must tolerate repeated deliveries of the same state.
 * - `ended` answers for a deleted backend, for a while, with its last state: a store records it
 *   (ended-backends.ts) before its watchers hear `undefined`, so they can ask why it went.
 * - `endpoint` is an address verified to belong to that backend now, as far as the store's view
 *   goes (Kubernetes: the Pod its status names, controlled by it, Running, Ready, not
 *   terminating); `routesStale` says when that view is too old to open new connections on. A
 *   change that makes a backend routable or not is delivered to its watchers (the backend again).
 */
import type { SessionLivedBackend } from '../../common/src/backend';
import type { Requirement } from '../../common/src/kube/selectors';

export type { SessionLivedBackend };

/** Where the entry point sends a backend's traffic: its sidecar's serve port. */
export interface Endpoint {
  host: string;
  port: number;
}

export interface GetOptions {
  /** Read from the source of truth instead of a cache (for arbitration). */
  fresh?: boolean;
}

export interface DeleteBackendOptions {
  /** Delete only this incarnation; a same-named successor is left alone. */
  uid?: string;
  /**
   * Record this terminal reason (phase Swept) in the status before deleting, so that status
   * streams and the operator see why the backend ended. Ignored when it is already terminal.
   */
  reason?: string;
  message?: string;
}

export type BackendListener = (backend: SessionLivedBackend | undefined) => void;

export interface BackendStore {
  /** The namespace backends live in (part of connection-token and key derivations). */
  readonly namespace: string;

  /** Creates the backend as given; returns it as stored (defaults, uid, creationTimestamp set). */
  create(backend: SessionLivedBackend): Promise<SessionLivedBackend>;

  get(name: string, opts?: GetOptions): Promise<SessionLivedBackend | undefined>;

  /**
   * `get` without the wait, for the entry point's hot path: the cached backend when the cache can
   * answer now, else undefined (then `get` decides). Optional: a store without a synchronous
   * cache leaves it out.
   */
  getCached?(name: string): SessionLivedBackend | undefined;

  /** Backends matching every requirement (an empty list matches all). */
  list(selector?: Requirement[]): Promise<SessionLivedBackend[]>;

  /**
   * Ends and removes a backend. Returns its last state (with the recorded terminal status), or
   * undefined when there was nothing to delete (unknown name, or another incarnation under `uid`).
   */
  delete(name: string, opts?: DeleteBackendOptions): Promise<SessionLivedBackend | undefined>;

  /**
   * Follows one backend: `listener` gets the current object (or undefined) on a later tick, then
   * every change, then undefined when it is deleted. Returns the unsubscribe function.
   */
  watch(name: string, listener: BackendListener): () => void;

  /**
   * The last state of the backend of that name that was deleted within the last
   * --ended-retention-seconds, always terminal (one deleted while live reads Swept,
   * DeletedByClient); undefined for a live or unknown name. `get` never returns these: they are
   * for answering "it ended, and why" once the resource is gone. Stores implement it with one
   * EndedBackends (record when a backend disappears, `revived` when one appears).
   */
  ended(name: string): SessionLivedBackend | undefined;

  /**
   * Where to proxy the backend's traffic, or undefined while no address is verified to be its:
   * Kubernetes answers only with the IP of the Pod whose uid `status.podUID` names, whose
   * controller ownerReference is this backend (uid), and which is Running, Ready and has no
   * deletionTimestamp (a Failed/Succeeded Pod's leftover podIP, or `status.podIP` alone, never).
   * It answers from the store's view as it is: check `routesStale()` before opening a new
   * connection. Cheap (a map lookup): call it per request.
   */
  endpoint(backend: SessionLivedBackend): Endpoint | undefined;

  /**
   * True while the routing view may be older than its bound (Kubernetes: --routes-freshness-seconds,
   * default 15; also before its first full list). The view proves its age with a periodic cheap
   * read of the API server's current resourceVersion that its watch must then catch up to, or a
   * relist. While it is true the entry point refuses NEW connections and requests (503
   * `routes_stale`) rather than route on stale data; connections already open stay (the
   * sidecar's connection-token check is the second guard against a misroute). Stores with no
   * remote view (memory, local mode) always answer false. Cheap: call it per request.
   */
  routesStale(): boolean;

  /** Backends not yet in a terminal phase (for the max-live limit). */
  countLive(): number;

  /** Whether reads are trustworthy yet (the cache has synced); /readyz reports it. */
  ready(): boolean;

  start(): Promise<void>;
  stop(): Promise<void>;
}

/** `create` lost the race for a name (or the name was simply taken). */
export class BackendAlreadyExistsError extends Error {
  override name = 'BackendAlreadyExistsError';
  constructor(readonly backendName: string) {
    super(`a backend named "${backendName}" already exists`);
  }
}

/** The store cannot be reached (API server down, local supervisor gone); worth retrying later. */
export class BackendStoreUnavailableError extends Error {
  override name = 'BackendStoreUnavailableError';
}
