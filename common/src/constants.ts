/**
 * Names shared by every component: the resource's identity, the labels and annotations Spawner
 * reads and writes, and the ports of the injected sidecar. Anything that two components must agree
 * on lives here and nowhere else.
 */

export const GROUP = 'spawner.dev';
export const VERSION = 'v1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'SessionLivedBackend';
export const PLURAL = 'sessionlivedbackends';
export const SINGULAR = 'sessionlivedbackend';
export const SHORT_NAME = 'slab';
export const CATEGORY = 'spawner';
export const CRD_NAME = `${PLURAL}.${GROUP}`;

/** Warm pools (SPEC section 12): same group, their own (alpha) version. */
export const POOL_VERSION = 'v1alpha1';
export const POOL_API_VERSION = `${GROUP}/${POOL_VERSION}`;
export const POOL_KIND = 'SessionBackendPool';
export const POOL_PLURAL = 'sessionbackendpools';
export const POOL_SHORT_NAME = 'sbpool';
/** Label on a pool's Pods: the pool's name (kept after a claim, for the record). */
export const LABEL_POOL = `${GROUP}/pool`;
/** Label on a pool's Pods: the hash of the pool template they were built from. */
export const LABEL_POOL_TEMPLATE_HASH = `${GROUP}/pool-template-hash`;

/** Label selecting a backend's Pod from its Service (the original's `run=<name>`). */
export const LABEL_RUN = 'run';
/** Label the operator sets on a backend once its Pod is bound to a node (the original's name). */
export const LABEL_SPAWNER_GROUP = 'spawnerGroup';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'spawner';
/** Hash of a backend's get-or-create key, so backends can be listed by key without exposing it. */
export const LABEL_KEY_HASH = `${GROUP}/key-hash`;

/** The get-or-create key as the client gave it. */
export const ANNOTATION_KEY = `${GROUP}/key`;
/** Random per-backend input of its connection token (the token is an HMAC of it; see api/). */
export const ANNOTATION_TOKEN_NONCE = `${GROUP}/token-nonce`;
/** SHA-256 (hex) of the backend's connection token; the token itself is never stored. */
export const ANNOTATION_TOKEN_HASH = `${GROUP}/token-sha256`;

export const APP_CONTAINER_PORT_NAME = 'http';
export const SIDECAR_CONTAINER = 'spawner-sidecar';
/** Service port name, as in the original. */
export const SERVICE_PORT_NAME = 'spawner-app';
export const SIDECAR_SERVE_PORT = 9090;
export const SIDECAR_ADMIN_PORT = 9091;

export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_GRACE_PERIOD_SECONDS = 300;
export const DEFAULT_STARTUP_TIMEOUT_SECONDS = 300;
/** How long a Failed backend is kept for users to look at before it is deleted (operator and local mode). */
export const DEFAULT_FAILED_RETENTION_SECONDS = 600;

/** Env var carrying the sidecar's connection-token hash into the sidecar container. */
export const ENV_SIDECAR_TOKEN_HASH = 'SPAWNER_TOKEN_SHA256';
/** A warm pool Pod's sidecar: the hash of its assign secret (sidecar config assignSha256). */
export const ENV_SIDECAR_ASSIGN_HASH = 'SPAWNER_SIDECAR_ASSIGN_SHA256';
/** A warm pool Pod's sidecar: the pool's assignPath, where it tells the app its backend (sidecar config appAssignPath). */
export const ENV_SIDECAR_APP_ASSIGN_PATH = 'SPAWNER_SIDECAR_APP_ASSIGN_PATH';

/** The field manager Spawner's components use for server-side bookkeeping. */
export const FIELD_MANAGER = 'spawner';
export const EVENT_REPORTING_COMPONENT = `${GROUP}/operator`;
