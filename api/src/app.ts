/**
 * The express app factory. It takes its collaborators (store, config, auth, tokens, metrics) and
 * does no I/O of its own, so tests, the Kubernetes build (main.ts) and local mode all build the
 * same app around a different store.
 *
 * Every route runs the same pipeline, wired from its declaration: auth → path parameters →
 * query → body (content type, size, JSON, schema) → handler; errors go to one handler.
 */
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from '../../common/src/logger';
import { bearerToken } from '../../common/src/connection-token';
import type { BackendStore } from './backend-store';
import type { TokenVerifier } from './bearer-auth';
import { BackendUrls } from './backend-view';
import type { ApiConfig } from './config';
import { backendTokenValid, TOKEN_HEADER, TOKEN_PARAM, type ConnectionTokens } from './connection-tokens';
import { ApiError, backendNotFound, methodNotAllowed, unauthorized, validationFailed } from './errors';
import { errorHandler, notFoundHandler } from './error-handler';
import { methodLabel, type ApiMetrics } from './metrics';
import { isDnsLabel } from './names';
import { buildOpenApi } from './openapi';
import { TokenBucket } from './rate-limit';
import type { RouteContext } from './routes/context';
import { legacyRoutes } from './routes/legacy-routes';
import type { AuthMode, RouteDef } from './routes/route-def';
import { systemRoutes } from './routes/system-routes';
import { v1Routes } from './routes/v1-routes';
import { bodyValidator, queryValidator } from './schemas';
import type { PoolReader, UseCaseDeps } from './use-cases/deps';

export interface AppOptions {
  store: BackendStore;
  /** Warm pools (Kubernetes mode); without it a create from a pool is refused. */
  pools?: PoolReader;
  config: ApiConfig;
  auth: TokenVerifier;
  tokens: ConnectionTokens;
  metrics: ApiMetrics;
  logger: Logger;
  version?: string;
  /** Clock for the rate limiter (tests). */
  now?: () => number;
  /** Whether the process is draining (readiness fails); default never. */
  draining?: () => boolean;
}

function firstString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return undefined;
}

function authorize(mode: AuthMode, auth: TokenVerifier, store: BackendStore): RequestHandler {
  if (mode === 'open') return (_req, _res, next) => next();
  return async (req, _res, next) => {
    const bearer = bearerToken(req.headers.authorization);
    if (auth.verify(bearer)) return next();
    if (mode === 'bearer-or-backend-token' && req.method !== 'POST') {
      const name = req.params.id ?? req.params.name;
      // An empty value is no token (`||`): the document describes the token as a credential only.
      const presented = firstString(req.query[TOKEN_PARAM]) || firstString(req.headers[TOKEN_HEADER]) || bearer;
      // Only a possible name is looked up: garbage must not reach the API server before the cache syncs.
      if (typeof name === 'string' && isDnsLabel(name) && presented) {
        // One that ended and is gone still opens its own status routes, while the store remembers it.
        const backend = (await store.get(name)) ?? store.ended(name);
        // An unknown name gets the same 401 as a wrong token: the token holder learns nothing.
        if (backend && backendTokenValid(backend, presented)) return next();
      }
    }
    next(unauthorized());
  };
}

function validateParams(params: Record<string, string> | undefined): RequestHandler {
  if (!params) return (_req, _res, next) => next();
  const checks = Object.entries(params).map(([name, def]) => [name, queryValidator(def)] as const);
  return (req, _res, next) => {
    for (const [name, check] of checks) {
      const value = req.params[name];
      // No backend can have an invalid name, so it is simply not found.
      if (typeof value !== 'string' || check(value).length > 0) return next(backendNotFound(String(value ?? '')));
    }
    next();
  };
}

function validateQuery(definition: string | undefined): RequestHandler {
  return (req, res, next) => {
    const query: Record<string, unknown> = { ...(req.query as Record<string, unknown>) };
    // The connection token is a credential (the backendToken security scheme), checked by
    // `authorize`; an empty one is no token rather than an invalid parameter.
    if (query[TOKEN_PARAM] === '') delete query[TOKEN_PARAM];
    if (definition) {
      const problems = queryValidator(definition)(query);
      if (problems.length > 0) return next(validationFailed('query', problems));
    }
    res.locals.query = query;
    next();
  };
}

function isJsonContentType(header: string | undefined): boolean {
  const type = (header ?? '').split(';')[0].trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]*\+json$/.test(type);
}

function jsonBody(limitBytes: number): RequestHandler {
  const parse = express.json({ limit: limitBytes, strict: true, type: () => true });
  return (req, res, next) => {
    const length = req.headers['content-length'];
    const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
    if (!hasBody) {
      req.body = undefined;
      return next();
    }
    if (!isJsonContentType(req.headers['content-type'])) {
      return next(new ApiError(415, 'unsupported_media_type', 'send the body as application/json'));
    }
    parse(req, res, next);
  };
}

function validateBody(definition: string): RequestHandler {
  const check = bodyValidator(definition);
  return (req, res, next) => {
    const problems = check(req.body);
    if (problems.length > 0) return next(validationFailed('body', problems));
    res.locals.body = req.body;
    next();
  };
}

function countRequests(metrics: ApiMetrics): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('close', () => {
      const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : 'unmatched';
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.requests.inc({ route, method: methodLabel(req.method), code: String(res.statusCode) });
      metrics.duration.observe({ route }, seconds);
    });
    next();
  };
}

export function buildRoutes(ctx: RouteContext): RouteDef[] {
  return [...legacyRoutes(ctx), ...v1Routes(ctx), ...systemRoutes(ctx)];
}

export function createApp(opts: AppOptions): express.Express {
  const { store, config, auth, tokens, metrics, logger } = opts;
  const deps: UseCaseDeps = {
    store,
    pools: opts.pools,
    tokens,
    metrics,
    logger,
    limits: {
      bucket: new TokenBucket(config.spawnRatePerSecond, config.spawnBurst, opts.now),
      maxLive: config.maxLiveBackends,
      liveRetryAfterSeconds: config.liveLimitRetryAfterSeconds,
    },
  };
  let openapi: unknown;
  const ctx: RouteContext = {
    deps,
    store,
    urls: new BackendUrls(config, tokens),
    config,
    registry: metrics.registry,
    draining: opts.draining ?? (() => false),
    openapi: () =>
      (openapi ??= buildOpenApi(routes, { version: opts.version ?? '0.1.0', waitMaxSeconds: config.waitMaxSeconds })),
  };
  const routes = buildRoutes(ctx);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(countRequests(metrics));

  const byPath = new Map<string, string[]>();
  for (const route of routes) {
    const chain: RequestHandler[] = [
      authorize(route.auth, auth, store),
      validateParams(route.pathParams),
      validateQuery(route.query),
    ];
    if (route.body) chain.push(jsonBody(config.bodyLimitBytes), validateBody(route.body));
    const handler = route.handler;
    chain.push(async (req: Request, res: Response, next: NextFunction) => {
      try {
        await handler(req, res);
      } catch (err) {
        next(err);
      }
    });
    app[route.method](route.path, ...chain);
    const methods = byPath.get(route.path) ?? [];
    methods.push(route.method.toUpperCase());
    if (route.method === 'get') methods.push('HEAD');
    byPath.set(route.path, methods);
  }
  const ORDER = ['GET', 'HEAD', 'POST', 'DELETE'];
  for (const [path, methods] of byPath) {
    methods.sort((a, b) => ORDER.indexOf(a) - ORDER.indexOf(b));
    app.all(path, (_req, _res, next) => next(methodNotAllowed(methods)));
  }
  app.use(notFoundHandler);
  app.use(errorHandler(logger));
  return app;
}
