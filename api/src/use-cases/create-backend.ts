/**
 * Creating backends: from an image shortcut or a full pod template, with or without a key.
 *
 * With a key, the backend's name is derived from it, so the API server's uniqueness of names is
 * the lock: of N concurrent creators one wins, the others get AlreadyExists and return the
 * winner. A terminal backend under the key is deleted (by uid, so a fresh successor created by
 * someone else meanwhile is never hit) and the create is retried, a bounded number of times.
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { newBackend, whenEmptyOf, type SessionBackendPool, type SessionLivedBackend } from '../../../common/src/backend';
import { isTerminal, phaseOf } from '../../../common/src/lifecycle';
import { sleep } from '../../../common/src/backoff';
import { ANNOTATION_KEY, ANNOTATION_TOKEN_HASH, LABEL_KEY_HASH } from '../../../common/src/constants';
import type { SessionLivedBackendSpec, EnvVar } from '../../../crd-schemas/generated/types';
import { validateSpec } from '../../../crd-schemas/src/validators';
import type { CreateBackendRequest, CreateFromImage, CreateFromTemplate } from '../../client/types';
import { BackendAlreadyExistsError } from '../backend-store';
import { ANNOTATION_TOKEN_NONCE } from '../connection-tokens';
import { ApiError, badRequest, conflict, notFound, tooManyRequests, validationFailed } from '../errors';
import { keyHash, keyName, normalizeKey, randomName } from '../names';
import type { UseCaseDeps } from './deps';

export interface CreateResult {
  backend: SessionLivedBackend;
  /** False when get-or-create returned a live backend that already existed. */
  created: boolean;
}

/** The container the image shortcut builds; its name is what the operator sees as the app. */
export const APP_CONTAINER_NAME = 'app';
const KEYED_ATTEMPTS = 5;
const RANDOM_NAME_ATTEMPTS = 3;

export function toEnvList(env: CreateFromImage['env']): EnvVar[] | undefined {
  if (env === undefined) return undefined;
  if (Array.isArray(env)) return env;
  return Object.entries(env).map(([name, value]) => ({ name, value }));
}

function templateOf(req: CreateFromImage | CreateFromTemplate): SessionLivedBackendSpec['template'] {
  if (req.template) return structuredClone(req.template);
  return {
    containers: [
      {
        name: APP_CONTAINER_NAME,
        image: req.image,
        ...(req.env !== undefined ? { env: toEnvList(req.env) } : {}),
        ...(req.command !== undefined ? { command: req.command } : {}),
        ...(req.args !== undefined ? { args: req.args } : {}),
        ...(req.resources !== undefined ? { resources: req.resources } : {}),
      },
    ],
  };
}

/** The backend's spec; from a pool (`req.pool`, resolved by the caller), the pool's template. */
export function buildSpec(req: CreateBackendRequest, pool?: SessionBackendPool): SessionLivedBackendSpec {
  const template = pool ? structuredClone(pool.spec.template) : templateOf(req as CreateFromImage | CreateFromTemplate);
  const spec: SessionLivedBackendSpec = { template };
  if (pool) {
    // The pool's template, so a cold start is always possible; the operator claims a warm Pod.
    spec.poolRef = { name: pool.metadata.name as string };
    if (pool.spec.httpPort !== undefined) spec.httpPort = pool.spec.httpPort;
  }
  if (req.httpPort !== undefined) spec.httpPort = req.httpPort;
  if (req.gracePeriodSeconds !== undefined) spec.gracePeriodSeconds = req.gracePeriodSeconds;
  if (req.maxLifetimeSeconds !== undefined) spec.maxLifetimeSeconds = req.maxLifetimeSeconds;
  if (req.startupTimeoutSeconds !== undefined) spec.startupTimeoutSeconds = req.startupTimeoutSeconds;
  // The CRD's schema, defaults included: what the API server would store, in every mode.
  const problems = validateSpec(spec);
  if (problems.length > 0) {
    throw validationFailed(
      'body',
      problems.map((p) => ({ in: 'body' as const, path: p.path, message: p.message })),
    );
  }
  return spec;
}

export function buildBackend(
  deps: UseCaseDeps,
  name: string,
  req: CreateBackendRequest,
  pool?: SessionBackendPool,
): SessionLivedBackend {
  const namespace = deps.store.namespace;
  const labels: Record<string, string> = { ...(req.labels ?? {}) };
  const issued = deps.tokens.issue(namespace, name);
  const annotations: Record<string, string> = {
    [ANNOTATION_TOKEN_NONCE]: issued.nonce,
    [ANNOTATION_TOKEN_HASH]: issued.hash,
  };
  if (req.key !== undefined) {
    labels[LABEL_KEY_HASH] = keyHash(namespace, req.key);
    annotations[ANNOTATION_KEY] = normalizeKey(req.key);
  }
  const meta: Partial<V1ObjectMeta> = { labels, annotations };
  return newBackend(name, namespace, buildSpec(req, pool), meta);
}

const isLive = (b: SessionLivedBackend): boolean => !isTerminal(phaseOf(b)) && !b.metadata.deletionTimestamp;

/** The configured limits; throws 429 with Retry-After when one is hit. */
function admit(deps: UseCaseDeps): void {
  const { limits, metrics, store } = deps;
  if (limits.maxLive > 0 && store.countLive() >= limits.maxLive) {
    metrics.rateLimited.inc({ limit: 'live' });
    throw tooManyRequests('live', limits.liveRetryAfterSeconds, `the limit of ${limits.maxLive} live backends is reached`);
  }
  const taken = limits.bucket.tryTake();
  if (!taken.ok) {
    metrics.rateLimited.inc({ limit: 'rate' });
    throw tooManyRequests('rate', taken.retryAfterSeconds, 'too many backends created recently');
  }
}

function checkKey(existing: SessionLivedBackend, key: string): void {
  const stored = existing.metadata.annotations?.[ANNOTATION_KEY];
  if (stored !== normalizeKey(key)) {
    // 128 bits of hash make this practically impossible; refuse rather than hand out a stranger's backend.
    throw conflict('key_conflict', 'another key already maps to this backend name', { name: existing.metadata.name });
  }
}

/**
 * The pool a create names, read fresh (one GET): 400 without a PoolReader, 404 when missing,
 * and 429 with Retry-After when its whenEmpty is Reject and its status shows no ready Pod. That
 * status is the operator's last count: a create it lets through can still find the pool empty
 * (concurrent claims), and the backend is then Failed with reason PoolEmpty by the operator.
 */
async function resolvePool(deps: UseCaseDeps, req: CreateBackendRequest): Promise<SessionBackendPool | undefined> {
  if (req.pool === undefined) return undefined;
  if (!deps.pools) throw badRequest('warm pools are not available in this mode', { pool: req.pool });
  const pool = await deps.pools.get(req.pool);
  if (!pool) throw notFound(`pool "${req.pool}"`);
  if (whenEmptyOf(pool) === 'Reject' && (pool.status?.readyReplicas ?? 0) === 0) {
    deps.metrics.rateLimited.inc({ limit: 'pool' });
    throw tooManyRequests('pool', POOL_EMPTY_RETRY_AFTER_SECONDS, `pool "${req.pool}" has no ready Pod (whenEmpty: Reject)`);
  }
  return pool;
}

/** Retry-After for a Reject pool with no ready Pod: about how long a refill takes. */
const POOL_EMPTY_RETRY_AFTER_SECONDS = 2;

async function createWithRandomName(deps: UseCaseDeps, req: CreateBackendRequest): Promise<CreateResult> {
  admit(deps);
  const pool = await resolvePool(deps, req);
  for (let attempt = 0; ; attempt++) {
    try {
      const backend = await deps.store.create(buildBackend(deps, randomName(), req, pool));
      deps.metrics.backendsCreated.inc();
      return { backend, created: true };
    } catch (err) {
      // 62 random bits colliding means something else is wrong; do not loop on it.
      if (!(err instanceof BackendAlreadyExistsError) || attempt + 1 >= RANDOM_NAME_ATTEMPTS) throw err;
    }
  }
}

async function getOrCreate(deps: UseCaseDeps, req: CreateBackendRequest & { key: string }): Promise<CreateResult> {
  const { store } = deps;
  const name = keyName(store.namespace, req.key);
  // The common case for a popular key: it is live, and the cache knows it.
  const cached = await store.get(name);
  if (cached && isLive(cached)) {
    checkKey(cached, req.key);
    return { backend: cached, created: false };
  }
  let admitted = false;
  let pool: SessionBackendPool | undefined;
  for (let attempt = 0; attempt < KEYED_ATTEMPTS; attempt++) {
    if (!admitted) {
      try {
        admit(deps);
        admitted = true;
      } catch (err) {
        // Over a limit, a caller may still join a backend someone else has just created.
        const fresh = await store.get(name, { fresh: true });
        if (fresh && isLive(fresh)) {
          checkKey(fresh, req.key);
          return { backend: fresh, created: false };
        }
        throw err;
      }
      try {
        pool = await resolvePool(deps, req);
      } catch (err) {
        deps.limits.bucket.refund();
        throw err;
      }
    }
    try {
      const backend = await store.create(buildBackend(deps, name, req, pool));
      deps.metrics.backendsCreated.inc();
      return { backend, created: true };
    } catch (err) {
      if (!(err instanceof BackendAlreadyExistsError)) throw err;
    }
    const existing = await store.get(name, { fresh: true });
    if (!existing) continue; // deleted between our create and get: try again
    checkKey(existing, req.key);
    if (isLive(existing)) {
      deps.limits.bucket.refund();
      return { backend: existing, created: false };
    }
    if (!existing.metadata.deletionTimestamp) {
      deps.logger.info('replacing a terminal backend for its key', { name, phase: phaseOf(existing) });
      await store.delete(name, { uid: existing.metadata.uid });
    }
    await sleep(25 * 2 ** attempt);
  }
  if (admitted) deps.limits.bucket.refund();
  throw new ApiError(
    409,
    'key_busy',
    'the backend for this key is being replaced; retry shortly',
    { name },
    { 'retry-after': '1' },
  );
}

export function createBackend(deps: UseCaseDeps, req: CreateBackendRequest): Promise<CreateResult> {
  if (req.key !== undefined) return getOrCreate(deps, req as CreateBackendRequest & { key: string });
  return createWithRandomName(deps, req);
}
