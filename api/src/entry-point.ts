/**
 * The entry point: one stable listener through which browsers reach every backend
 * (`/p/<name>/…`, or Host `<name>.<domain>`), HTTP and WebSocket, without a per-backend Ingress.
 * docs/adr/0004-entry-point.md says why it lives in the API process on its own port; it runs the
 * same relay core as the sidecar (common/src/relay, docs/adr/0010) with this admission policy.
 *
 * Per request (one client connection, a browser's or an Ingress's, carries requests for many
 * backends): find the backend (store cache), check its connection token with the same gate as
 * the sidecar (common/src/connection-token.ts), hold the request while the backend is not Ready
 * yet (bounded in time and number), then relay to its sidecar by Pod IP over a kept-alive
 * connection from the pool of that address, with the prefix and every copy of the token
 * stripped, the token in X-Spawner-Token (the sidecar checks it again), and the backend's name
 * uid and key in X-Spawner-Backend[-Uid] and X-Spawner-Key (common/src/backend-identity.ts;
 * inbound copies dropped).
 */
import { STATUS_CODES } from 'node:http';
import type * as net from 'node:net';
import { type SessionLivedBackend } from '../../common/src/backend';
import { identityHeaderLines, identityOf, inboundIdentityLines } from '../../common/src/backend-identity';
import { ANNOTATION_TOKEN_HASH } from '../../common/src/constants';
import { forwardedHttps, takeTokens, TokenGate, tokenCookie } from '../../common/src/connection-token';
import { isTerminal, phaseOf } from '../../common/src/lifecycle';
import type { Logger } from '../../common/src/logger';
import type { Answer, RelayAnswers } from '../../common/src/relay/answers';
import { rewriteRequestHead, type LineRange, type RequestHead } from '../../common/src/relay/http1';
import {
  upstreamAddress,
  type Decision,
  type RelayPolicy,
  type RequestView,
  type Ticket,
  type UpstreamAddress,
} from '../../common/src/relay/policy';
import { Relay } from '../../common/src/relay/relay';
import { TunnelTracker } from '../../common/src/relay/tunnel-tracker';
import type { BackendStore, Endpoint } from './backend-store';
import type { ApiConfig } from './config';
import { ApiError } from './errors';
import { toApiError } from './error-handler';
import { codeClass, type ApiMetrics } from './metrics';
import { isDnsLabel } from './names';
import { isReady, waitFor } from './use-cases/follow-backend';

export type EntryPointConfig = Pick<
  ApiConfig,
  'entryPointDomain' | 'entryPointBaseUrl' | 'holdTimeoutMs' | 'holdMaxRequests' | 'trustProxy'
>;

export interface EntryPointOptions {
  store: BackendStore;
  config: EntryPointConfig;
  metrics: ApiMetrics;
  logger: Logger;
  /** Length of the relay's tick (tests shorten it). */
  tickMs?: number;
}

/** Idle kept-alive connections per sidecar (nginx's `keepalive` for an upstream). */
const KEEP_ALIVE_PER_SIDECAR = 32;
/** Token gates by token hash; a gate is cheap, the map is cleared when it grows past this. */
const MAX_GATES = 10_000;
const PREFIX = '/p/';
/** Pause before routing a refused request again. */
const REFUSED_RETRY_MS = 200;

/** Where a request goes, once its target and Host are understood. */
interface Route {
  name: string;
  /** Path and query as the backend sees them (prefix stripped; the token still in). */
  target: string;
  /** The prefix the backend is mounted under, for X-Forwarded-Prefix ('' for host routing). */
  prefix: string;
  cookiePath: string;
}

type Parsed = { kind: 'route'; route: Route } | { kind: 'redirect'; location: string } | { kind: 'health' } | { kind: 'none' };

function errorBody(code: string, message: string, details?: unknown): string {
  const error: Record<string, unknown> = { code, message };
  if (details !== undefined) error.details = details;
  return JSON.stringify({ error });
}

const json = (status: number, body: string, headers?: Record<string, string>): Answer => ({
  status,
  body,
  contentType: 'application/json; charset=utf-8',
  headers,
});

/** An error in the API's JSON shape, as the relay writes it. */
function errorAnswer(err: unknown): Answer {
  const e = toApiError(err);
  return json(e.status, errorBody(e.code, e.message, e.details), e.headers);
}

const unreachable = (): Answer => json(502, errorBody('backend_unreachable', 'the backend could not be reached'));

/** The relay core's own answers, in the API's JSON error shape. */
const entryPointAnswers: RelayAnswers = {
  badRequest: () => json(400, errorBody('bad_request', 'malformed request')),
  badUpgrade: () => json(400, errorBody('bad_request', 'only WebSocket upgrades are supported')),
  headTooLarge: () => json(431, errorBody('bad_request', STATUS_CODES[431]!)),
  badVersion: () => json(505, errorBody('bad_request', 'only HTTP/1.0 and HTTP/1.1 are supported')),
  noConnect: () => json(405, errorBody('method_not_allowed', 'CONNECT is not supported')),
  headersTimeout: () => json(408, errorBody('request_timeout', 'the request head did not arrive in time')),
  refused: unreachable,
  upstreamFailed: unreachable,
  timedOut: () => json(504, errorBody('backend_unreachable', 'the backend did not accept a connection in time')),
};

function terminalError(backend: SessionLivedBackend): ApiError {
  const phase = phaseOf(backend);
  return new ApiError(410, 'backend_terminal', `the backend is ${phase}`, { phase, reason: backend.status?.reason });
}

export class EntryPoint implements RelayPolicy {
  readonly relay: Relay;
  private readonly tracker: TunnelTracker;
  private readonly gates = new Map<string, TokenGate>();
  /** When a request's sidecar first refused it (requests being routed again). */
  private readonly refusedSince = new WeakMap<Ticket, number>();
  private readonly byClass = new Map<string, { inc(): void }>();
  private readonly ownHost: string | undefined;
  private held = 0;
  private liveWebsockets = 0;

  constructor(private readonly opts: EntryPointOptions) {
    try {
      this.ownHost = opts.config.entryPointBaseUrl ? new URL(opts.config.entryPointBaseUrl).hostname.toLowerCase() : undefined;
    } catch {
      this.ownHost = undefined;
    }
    const { metrics } = opts;
    this.tracker = new TunnelTracker(
      () => {
        this.count(101);
        this.liveWebsockets++;
        metrics.liveWebsockets.inc();
      },
      () => {
        this.liveWebsockets--;
        metrics.liveWebsockets.dec();
      },
    );
    this.relay = new Relay({
      policy: this,
      logger: opts.logger,
      answers: entryPointAnswers,
      keepAlivePerUpstream: KEEP_ALIVE_PER_SIDECAR,
      tickMs: opts.tickMs,
    });
  }

  /** WebSockets open through the entry point right now. */
  get openWebsockets(): number {
    return this.liveWebsockets;
  }

  get heldRequests(): number {
    return this.held;
  }

  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    await this.relay.listen(port, host);
    return this.relay.port!;
  }

  /**
   * Stops accepting; idle connections close now, busy ones after their last answer; open
   * WebSockets stay. Resolves once every client connection is gone.
   */
  drain(): Promise<void> {
    return this.relay.drain();
  }

  async close(): Promise<void> {
    const closed = this.relay.drain();
    this.relay.destroyAll();
    this.tracker.destroyAll();
    await closed;
  }

  // ---- the policy ----

  admit(request: RequestView, ticket: Ticket): Decision | undefined {
    const parsed = this.route(request.parsed, request.upgrade);
    switch (parsed.kind) {
      case 'health':
        return { kind: 'answer', answer: json(200, '{"status":"ok"}') };
      case 'redirect':
        return {
          kind: 'answer',
          answer: { status: 308, body: '', contentType: 'text/plain', headers: { Location: parsed.location } },
        };
      case 'none':
        return { kind: 'answer', answer: errorAnswer(new ApiError(404, 'not_found', 'no backend here: use /p/<name>/')) };
    }
    const { route } = parsed;
    // Past the freshness bound of the routing view, a route may point at a reused Pod IP: new
    // requests are refused rather than routed on stale data (SPEC §12).
    if (this.opts.store.routesStale()) {
      return {
        kind: 'answer',
        answer: errorAnswer(
          new ApiError(503, 'routes_stale', 'the routing view is out of date; try again shortly', undefined, {
            'retry-after': '1',
          }),
        ),
      };
    }
    // The hot path: a Ready backend in the store's cache is routed now, without a promise.
    const cached = this.opts.store.getCached?.(route.name);
    if (cached !== undefined && isReady(cached)) {
      const endpoint = this.opts.store.endpoint(cached);
      if (endpoint !== undefined) {
        try {
          return this.forward(request, route, cached, endpoint, this.admitToken(request.parsed, route, cached));
        } catch (err) {
          return { kind: 'answer', answer: errorAnswer(err) };
        }
      }
    }
    this.decideLater(request, route, ticket);
    return undefined;
  }

  finished(status: number): void {
    this.count(status);
  }

  tunnel(client: net.Socket, upstream: net.Socket): void {
    this.tracker.track(client, upstream);
  }

  /**
   * A sidecar refused the connection (restarting, or not listening yet): the request is routed
   * again after a short pause, from a fresh look at the backend, until the hold budget
   * (holdTimeoutMs from the first refusal) is spent; then 502.
   */
  refused(request: RequestView, ticket: Ticket, upstream: UpstreamAddress): Decision | undefined {
    const { metrics, config } = this.opts;
    metrics.upstreamErrors.inc({ kind: request.upgrade ? 'websocket' : 'http' });
    this.relay.forgetUpstream(upstream.key);
    const now = Date.now();
    let since = this.refusedSince.get(ticket);
    if (since === undefined) this.refusedSince.set(ticket, (since = now));
    const parsed = this.route(request.parsed, request.upgrade);
    if (parsed.kind !== 'route' || now - since >= config.holdTimeoutMs) return { kind: 'answer', answer: unreachable() };
    const timer = setTimeout(() => {
      this.decideLater(request, parsed.route, ticket);
    }, REFUSED_RETRY_MS);
    ticket.onAbandon(() => clearTimeout(timer));
    return undefined;
  }

  upstreamFailed(upstream: UpstreamAddress, error: NodeJS.ErrnoException | undefined, upgrade: boolean): void {
    this.opts.metrics.upstreamErrors.inc({ kind: upgrade ? 'websocket' : 'http' });
    this.opts.logger.debug('sidecar unreachable', { upstream: upstream.key, error });
    // Kept-alive connections to an address that does not answer are not worth keeping.
    this.relay.forgetUpstream(upstream.key);
  }

  // ---- routing ----

  private route(parsed: RequestHead, upgrade: boolean): Parsed {
    const raw = parsed.target;
    if (!raw.startsWith('/')) return { kind: 'none' };
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const query = q < 0 ? '' : raw.slice(q);
    const domain = this.opts.config.entryPointDomain;
    if (domain) {
      const host = (parsed.host ?? '').toLowerCase().replace(/:\d+$/, '');
      // The entry point's own host may sit under the same domain; it keeps path routing.
      if (host.endsWith(`.${domain}`) && host !== this.ownHost) {
        const name = host.slice(0, -(domain.length + 1));
        if (!isDnsLabel(name)) return { kind: 'none' };
        return { kind: 'route', route: { name, target: raw, prefix: '', cookiePath: '/' } };
      }
    }
    if (path.startsWith(PREFIX)) {
      const rest = path.slice(PREFIX.length);
      const slash = rest.indexOf('/');
      const name = slash < 0 ? rest : rest.slice(0, slash);
      if (!isDnsLabel(name)) return { kind: 'none' };
      const sub = slash < 0 ? '' : rest.slice(slash);
      // Relative links in the app only resolve under the trailing slash.
      if (sub === '' && !upgrade) return { kind: 'redirect', location: `${PREFIX}${name}/${query}` };
      return {
        kind: 'route',
        route: { name, target: (sub === '' ? '/' : sub) + query, prefix: `${PREFIX}${name}`, cookiePath: `${PREFIX}${name}/` },
      };
    }
    if (path === '/healthz' && !upgrade) return { kind: 'health' };
    return { kind: 'none' };
  }

  /** Resolves the request off the hot path; an error becomes its answer. */
  private decideLater(request: RequestView, route: Route, ticket: Ticket): void {
    this.resolve(request, route, ticket).then(
      (decision) => ticket.decide(decision),
      (err: unknown) => {
        const e = toApiError(err);
        if (e.status === 500) this.opts.logger.error('entry point failure', { error: err });
        ticket.decide({ kind: 'answer', answer: errorAnswer(e) });
      },
    );
  }

  /** The backend's sidecar and the head to send it; holds while the backend is not Ready. */
  private async resolve(request: RequestView, route: Route, ticket: Ticket): Promise<Decision> {
    const { store } = this.opts;
    // One that ended and is gone answers 410 as a terminal one does, while the store remembers it.
    let backend = (await store.get(route.name)) ?? store.ended(route.name);
    if (!backend) throw new ApiError(404, 'not_found', `no backend named "${route.name}"`);
    const tokens = this.admitToken(request.parsed, route, backend);
    let endpoint = isReady(backend) ? store.endpoint(backend) : undefined;
    if (!endpoint) {
      const ready = await this.hold(route.name, backend, ticket);
      if (ready === undefined) return { kind: 'answer', answer: json(499, '') }; // nobody reads it: the client left
      [backend, endpoint] = ready;
    }
    return this.forward(request, route, backend, endpoint, tokens);
  }

  /** Waits until the backend is Ready with an address; undefined when the client went away. */
  private async hold(
    name: string,
    backend: SessionLivedBackend,
    ticket: Ticket,
  ): Promise<[SessionLivedBackend, Endpoint] | undefined> {
    const { store, config, metrics } = this.opts;
    if (isTerminal(phaseOf(backend))) throw terminalError(backend);
    if (this.held >= config.holdMaxRequests) {
      throw new ApiError(503, 'busy', 'too many requests are waiting for backends', undefined, { 'retry-after': '1' });
    }
    this.held++;
    metrics.heldRequests.inc();
    // Only held requests pay for an AbortController; the hot path stays lean.
    const abort = new AbortController();
    ticket.onAbandon(() => abort.abort());
    try {
      const outcome = await waitFor(
        store,
        name,
        (b) => isReady(b) && store.endpoint(b) !== undefined,
        config.holdTimeoutMs,
        abort.signal,
      );
      switch (outcome.kind) {
        case 'aborted':
          return undefined;
        case 'match':
          return [outcome.backend, store.endpoint(outcome.backend)!];
        case 'timeout':
          throw new ApiError(504, 'backend_not_ready', `the backend is ${phaseOf(outcome.backend)}, not Ready yet`, {
            phase: phaseOf(outcome.backend),
          });
        case 'terminal':
          throw terminalError(outcome.backend);
        case 'gone':
          throw new ApiError(404, 'not_found', `no backend named "${name}"`);
      }
    } finally {
      this.held--;
      metrics.heldRequests.dec();
    }
  }

  /**
   * Every copy of the token taken out of the request; the one that opens the backend kept for
   * the sidecar. Throws 401 when the backend demands a token and none opens it.
   */
  private admitToken(
    parsed: RequestHead,
    route: Route,
    backend: SessionLivedBackend,
  ): { target: string; drop: LineRange[]; extra: string; token?: string; setCookie: boolean } {
    const hash = backend.metadata.annotations?.[ANNOTATION_TOKEN_HASH];
    if (!hash) return { ...takeTokens(parsed, route.target), setCookie: false };
    const admission = this.gate(hash).admit(parsed, route.target);
    if (!admission.ok) {
      throw new ApiError(401, 'unauthorized', "a valid connection token for this backend is required (the URL's spawner_token)");
    }
    return admission;
  }

  private gate(hash: string): TokenGate {
    let gate = this.gates.get(hash);
    if (gate === undefined) {
      if (this.gates.size >= MAX_GATES) this.gates.clear();
      this.gates.set(hash, (gate = new TokenGate(hash)));
    }
    return gate;
  }

  private forward(
    request: RequestView,
    route: Route,
    backend: SessionLivedBackend,
    endpoint: Endpoint,
    tokens: { target: string; drop: LineRange[]; extra: string; token?: string; setCookie: boolean },
  ): Decision {
    const { parsed } = request;
    const lines = parsed.tokenLines ?? {};
    // Names the entry point sets itself: whatever the client sent under them goes.
    const drop = [...tokens.drop, ...(lines['x-forwarded-prefix'] ?? []), ...inboundIdentityLines(parsed)];
    let extra = tokens.extra;
    if (tokens.token !== undefined) extra += `X-Spawner-Token: ${tokens.token}\r\n`;
    if (route.prefix) extra += `X-Forwarded-Prefix: ${route.prefix}\r\n`;
    // The backend looked up by route.name: its own name is that.
    extra += identityHeaderLines(identityOf(backend));
    return {
      kind: 'forward',
      upstream: upstreamAddress(endpoint.host, endpoint.port),
      head: rewriteRequestHead(request.head, parsed, { target: tokens.target, drop, extra, remote: request.remote }),
      setCookie:
        tokens.setCookie && tokens.token !== undefined
          ? tokenCookie(tokens.token, route.cookiePath, this.isSecure(parsed))
          : undefined,
    };
  }

  private isSecure(parsed: RequestHead): boolean {
    if (this.opts.config.trustProxy && forwardedHttps(parsed.tokenHeaders?.['x-forwarded-proto'])) return true;
    return (this.opts.config.entryPointBaseUrl ?? '').startsWith('https:');
  }

  /** Counts a request by status class (children bound once: this runs for every request). */
  private count(status: number): void {
    const cls = codeClass(status);
    let child = this.byClass.get(cls);
    if (!child) this.byClass.set(cls, (child = this.opts.metrics.entryRequests.labels(cls)));
    child.inc();
  }
}
