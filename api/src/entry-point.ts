/**
 * The entry point: one stable listener through which browsers reach every backend
 * (`/p/<name>/…`, or Host `<name>.<domain>`), HTTP and WebSocket, without a per-backend Ingress.
 * See docs/adr/0004-entry-point.md for why it lives in the API process on its own port.
 *
 * Per request: find the backend (store cache), check its connection token (query, header or
 * cookie; the query copy is stripped and turned into a cookie scoped to the backend's path), hold
 * the request while the backend is not Ready yet (bounded in time and number), then proxy to its
 * sidecar by Pod IP with the prefix stripped and the token in X-Spawner-Token, which the sidecar
 * checks again. Plain node:http on the hot path; http-proxy (under http-proxy-middleware) does
 * the forwarding over a keep-alive agent.
 */
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { type SessionLivedBackend } from '../../common/src/backend';
import { isTerminal, phaseOf } from '../../common/src/lifecycle';
import type { Logger } from '../../common/src/logger';
import type { BackendStore, Endpoint } from './backend-store';
import type { ApiConfig } from './config';
import { requiresToken, TOKEN_HEADER, TOKEN_PARAM, verifyTokenHash } from './connection-tokens';
import { ANNOTATION_TOKEN_HASH } from '../../common/src/constants';
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
}

/** Where a request goes, once its URL and Host are understood. */
interface Route {
  name: string;
  /** Path and query as the backend sees them (prefix and token stripped). */
  upstreamUrl: string;
  /** The prefix the backend is mounted under, for X-Forwarded-Prefix ('' for host routing). */
  prefix: string;
  cookiePath: string;
  queryToken?: string;
}

type Parsed = { kind: 'route'; route: Route } | { kind: 'redirect'; location: string } | { kind: 'health' } | { kind: 'none' };

const PREFIX = '/p/';

function stripTokenParam(query: string): { query: string; token?: string } {
  if (!query.includes(TOKEN_PARAM)) return { query };
  let token: string | undefined;
  const keep: string[] = [];
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (key === TOKEN_PARAM) {
      if (token === undefined) {
        const raw = eq < 0 ? '' : part.slice(eq + 1);
        try {
          token = decodeURIComponent(raw.replace(/\+/g, ' '));
        } catch {
          token = raw;
        }
      }
    } else if (part !== '') {
      keep.push(part);
    }
  }
  return { query: keep.join('&'), token };
}

/** Splits the cookie header into our token cookies and everything else (forwarded as is). */
function splitCookies(header: string | undefined): { tokens: string[]; rest?: string } {
  if (!header || !header.includes(TOKEN_PARAM)) return { tokens: [], rest: header };
  const tokens: string[] = [];
  const rest: string[] = [];
  for (const pair of header.split(';')) {
    const trimmed = pair.trim();
    if (trimmed === '') continue;
    const eq = trimmed.indexOf('=');
    if (eq > 0 && trimmed.slice(0, eq).trim() === TOKEN_PARAM) tokens.push(trimmed.slice(eq + 1).trim());
    else rest.push(trimmed);
  }
  return { tokens, rest: rest.length ? rest.join('; ') : undefined };
}

const firstHeader = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

function errorBody(code: string, message: string, details?: unknown): string {
  const error: Record<string, unknown> = { code, message };
  if (details !== undefined) error.details = details;
  return JSON.stringify({ error });
}

export class EntryPoint {
  readonly server: http.Server;
  private readonly proxy: httpProxy;
  private readonly agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' });
  private readonly setCookie = new WeakMap<http.IncomingMessage, string>();
  private readonly websockets = new Set<Duplex>();
  /** Client sockets past the 101: an error there must not be answered with an HTTP response. */
  private readonly upgraded = new WeakSet<Duplex>();
  private readonly byClass = new Map<string, { inc(): void }>();
  private held = 0;
  private readonly ownHost: string | undefined;
  private liveWebsockets = 0;

  constructor(private readonly opts: EntryPointOptions) {
    try {
      this.ownHost = opts.config.entryPointBaseUrl ? new URL(opts.config.entryPointBaseUrl).hostname.toLowerCase() : undefined;
    } catch {
      this.ownHost = undefined;
    }
    this.proxy = httpProxy.createProxyServer({ xfwd: true, ws: true });
    this.proxy.on('proxyRes', (proxyRes, req) => {
      const cookie = this.setCookie.get(req);
      if (!cookie) return;
      const existing = proxyRes.headers['set-cookie'];
      proxyRes.headers['set-cookie'] = existing ? [...existing, cookie] : [cookie];
    });
    this.proxy.on('proxyReqWs', (proxyReq, _req, socket) => this.trackWebsocket(proxyReq, socket));
    // Errors come through the per-call callbacks; this keeps an unhandled 'error' from crashing.
    this.proxy.on('error', (err) => this.opts.logger.debug('proxy error', { error: err }));
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      this.upgrade(req, socket, head).catch((err: unknown) => this.failSocket(socket, err));
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      if (socket.writable) this.writeRaw(socket, status, 'bad_request', http.STATUS_CODES[status] ?? 'bad request');
      else socket.destroy();
    });
    this.server.keepAliveTimeout = 65_000;
  }

  /** Counts a request by status class (children bound once: this runs for every request). */
  private count(status: number): void {
    const cls = codeClass(status);
    let child = this.byClass.get(cls);
    if (!child) this.byClass.set(cls, (child = this.opts.metrics.entryRequests.labels(cls)));
    child.inc();
  }

  /** WebSockets open through the entry point right now. */
  get openWebsockets(): number {
    return this.liveWebsockets;
  }

  get heldRequests(): number {
    return this.held;
  }

  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.websockets) s.destroy();
    this.server.closeAllConnections();
    this.agent.destroy();
    this.proxy.close();
    await closed;
  }

  // ---- routing ----

  private parse(req: http.IncomingMessage): Parsed {
    const raw = req.url ?? '/';
    if (!raw.startsWith('/')) return { kind: 'none' };
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const query = q < 0 ? '' : raw.slice(q + 1);
    const domain = this.opts.config.entryPointDomain;
    if (domain) {
      const host = (firstHeader(req.headers.host) ?? '').toLowerCase().replace(/:\d+$/, '');
      // The entry point's own host may sit under the same domain; it keeps path routing.
      if (host.endsWith(`.${domain}`) && host !== this.ownHost) {
        const name = host.slice(0, -(domain.length + 1));
        if (!isDnsLabel(name)) return { kind: 'none' };
        const stripped = stripTokenParam(query);
        const upstreamUrl = stripped.query ? `${path}?${stripped.query}` : path;
        return { kind: 'route', route: { name, upstreamUrl, prefix: '', cookiePath: '/', queryToken: stripped.token } };
      }
    }
    if (path.startsWith(PREFIX)) {
      const rest = path.slice(PREFIX.length);
      const slash = rest.indexOf('/');
      const name = slash < 0 ? rest : rest.slice(0, slash);
      if (!isDnsLabel(name)) return { kind: 'none' };
      const sub = slash < 0 ? '' : rest.slice(slash);
      const isUpgrade = req.headers.upgrade !== undefined;
      // Relative links in the app only resolve under the trailing slash.
      if (sub === '' && !isUpgrade) return { kind: 'redirect', location: `${PREFIX}${name}/${q < 0 ? '' : raw.slice(q)}` };
      const stripped = stripTokenParam(query);
      const upstreamPath = sub === '' ? '/' : sub;
      const upstreamUrl = stripped.query ? `${upstreamPath}?${stripped.query}` : upstreamPath;
      return {
        kind: 'route',
        route: { name, upstreamUrl, prefix: `${PREFIX}${name}`, cookiePath: `${PREFIX}${name}/`, queryToken: stripped.token },
      };
    }
    if (path === '/healthz') return { kind: 'health' };
    return { kind: 'none' };
  }

  /** The backend, ready to proxy to, or an ApiError; holds while it is not Ready. */
  private async resolve(
    req: http.IncomingMessage,
    route: Route,
    /** Emits 'close' when the client goes away (the response, or the upgraded socket). */
    closer: NodeJS.EventEmitter,
  ): Promise<{ backend: SessionLivedBackend; endpoint: Endpoint; token?: string } | undefined> {
    const { store, config, metrics } = this.opts;
    // One that ended and is gone answers 410 as a terminal one does, while the store remembers it.
    let backend = (await store.get(route.name)) ?? store.ended(route.name);
    if (!backend) throw new ApiError(404, 'not_found', `no backend named "${route.name}"`);
    const token = this.checkToken(req, route, backend);
    let endpoint = isReady(backend) ? store.endpoint(backend) : undefined;
    if (!endpoint) {
      if (isTerminal(phaseOf(backend))) throw terminalError(backend);
      if (this.held >= config.holdMaxRequests) {
        throw new ApiError(503, 'busy', 'too many requests are waiting for backends', undefined, { 'retry-after': '1' });
      }
      this.held++;
      metrics.heldRequests.inc();
      // Only held requests pay for an AbortController; the hot path stays lean.
      const abort = new AbortController();
      const onClose = (): void => abort.abort();
      closer.once('close', onClose);
      try {
        const outcome = await waitFor(
          store,
          route.name,
          (b) => isReady(b) && store.endpoint(b) !== undefined,
          config.holdTimeoutMs,
          abort.signal,
        );
        switch (outcome.kind) {
          case 'aborted':
            return undefined;
          case 'match':
            backend = outcome.backend;
            endpoint = store.endpoint(backend) as Endpoint;
            break;
          case 'timeout':
            throw new ApiError(504, 'backend_not_ready', `the backend is ${phaseOf(outcome.backend)}, not Ready yet`, {
              phase: phaseOf(outcome.backend),
            });
          case 'terminal':
            throw terminalError(outcome.backend);
          case 'gone':
            throw new ApiError(404, 'not_found', `no backend named "${route.name}"`);
        }
      } finally {
        closer.off('close', onClose);
        this.held--;
        metrics.heldRequests.dec();
      }
    }
    return { backend, endpoint, token };
  }

  /** The presented token that opens the backend; throws 401 when it demands one and none does. */
  private checkToken(req: http.IncomingMessage, route: Route, backend: SessionLivedBackend): string | undefined {
    if (!requiresToken(backend)) return undefined;
    const hash = backend.metadata.annotations?.[ANNOTATION_TOKEN_HASH] as string;
    const candidates = [
      route.queryToken,
      firstHeader(req.headers[TOKEN_HEADER]),
      ...splitCookies(firstHeader(req.headers.cookie)).tokens,
    ];
    for (const c of candidates) if (c !== undefined && verifyTokenHash(hash, c)) return c;
    throw new ApiError(401, 'unauthorized', "a valid connection token for this backend is required (the URL's spawner_token)");
  }

  /** Rewrites the request for the sidecar: path without prefix and token, token as a header. */
  private rewrite(req: http.IncomingMessage, route: Route, token: string | undefined): void {
    req.url = route.upstreamUrl;
    const cookies = splitCookies(firstHeader(req.headers.cookie));
    if (cookies.rest === undefined) delete req.headers.cookie;
    else req.headers.cookie = cookies.rest;
    if (token !== undefined) req.headers[TOKEN_HEADER] = token;
    else delete req.headers[TOKEN_HEADER];
    if (route.prefix) req.headers['x-forwarded-prefix'] = route.prefix;
  }

  private isSecure(req: http.IncomingMessage): boolean {
    if ((req.socket as { encrypted?: boolean }).encrypted) return true;
    if (this.opts.config.trustProxy && firstHeader(req.headers['x-forwarded-proto']) === 'https') return true;
    return (this.opts.config.entryPointBaseUrl ?? '').startsWith('https:');
  }

  // ---- HTTP ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.once('close', () => this.count(res.statusCode));
    const parsed = this.parse(req);
    if (parsed.kind === 'health') return this.sendJson(res, 200, '{"status":"ok"}');
    if (parsed.kind === 'redirect') {
      res.writeHead(308, { location: parsed.location, 'content-length': 0 });
      res.end();
      return;
    }
    if (parsed.kind === 'none') throw new ApiError(404, 'not_found', 'no backend here: use /p/<name>/');
    const { route } = parsed;
    const target = await this.resolve(req, route, res);
    if (!target || res.destroyed) return;
    if (route.queryToken !== undefined && target.token === route.queryToken) {
      const secure = this.isSecure(req) ? '; Secure' : '';
      this.setCookie.set(req, `${TOKEN_PARAM}=${target.token}; Path=${route.cookiePath}; HttpOnly; SameSite=Lax${secure}`);
    }
    this.rewrite(req, route, target.token);
    this.proxy.web(
      req,
      res,
      {
        target: { protocol: 'http:', host: target.endpoint.host, hostname: target.endpoint.host, port: target.endpoint.port },
        agent: this.agent,
      },
      (err) => {
        this.opts.metrics.upstreamErrors.inc({ kind: 'http' });
        this.opts.logger.debug('sidecar unreachable', { name: route.name, error: err });
        this.fail(res, new ApiError(502, 'backend_unreachable', 'the backend could not be reached'));
      },
    );
  }

  private sendJson(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, {
      ...headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  private fail(res: http.ServerResponse, err: unknown): void {
    const e = toApiError(err);
    if (e.status === 500) this.opts.logger.error('entry point failure', { error: err });
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    this.sendJson(res, e.status, errorBody(e.code, e.message, e.details), e.headers);
  }

  // ---- WebSocket ----

  private async upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Until http-proxy takes over, a reset from the client must not become an uncaught error.
    socket.on('error', () => socket.destroy());
    const parsed = this.parse(req);
    if (parsed.kind !== 'route') throw new ApiError(404, 'not_found', 'no backend here: use /p/<name>/');
    const { route } = parsed;
    const target = await this.resolve(req, route, socket);
    if (!target || socket.destroyed) return;
    this.rewrite(req, route, target.token);
    this.proxy.ws(
      req,
      socket,
      head,
      { target: { protocol: 'http:', host: target.endpoint.host, hostname: target.endpoint.host, port: target.endpoint.port } },
      (err) => {
        if (this.upgraded.has(socket)) {
          socket.destroy();
          return;
        }
        this.opts.metrics.upstreamErrors.inc({ kind: 'websocket' });
        this.opts.logger.debug('sidecar unreachable (websocket)', { name: route.name, error: err });
        this.failSocket(socket, new ApiError(502, 'backend_unreachable', 'the backend could not be reached'));
      },
    );
  }

  /** Counts a proxied WebSocket from the upstream's 101 until either side closes, exactly once. */
  private trackWebsocket(proxyReq: http.ClientRequest, socket: Duplex): void {
    proxyReq.once('upgrade', (_res: http.IncomingMessage, proxySocket: Socket) => {
      const { metrics } = this.opts;
      this.count(101);
      this.liveWebsockets++;
      metrics.liveWebsockets.inc();
      this.websockets.add(socket);
      this.upgraded.add(socket);
      let open = true;
      const done = (fromUpstream: boolean): void => {
        if (!open) return;
        open = false;
        this.liveWebsockets--;
        metrics.liveWebsockets.dec();
        this.websockets.delete(socket);
        if (fromUpstream) {
          // Let what the upstream sent last (its close frame) drain to the client, within reason.
          socket.end();
          setTimeout(() => socket.destroy(), 5_000).unref();
        } else {
          proxySocket.destroy();
        }
      };
      if (socket.destroyed) return done(false);
      socket.once('close', () => done(false));
      proxySocket.once('close', () => done(true));
    });
  }

  private writeRaw(
    socket: Duplex,
    status: number,
    code: string,
    message: string,
    headers: Record<string, string> = {},
    details?: unknown,
  ): void {
    const body = errorBody(code, message, details);
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`,
    );
  }

  private failSocket(socket: Duplex, err: unknown): void {
    const e = toApiError(err);
    if (e.status === 500) this.opts.logger.error('entry point failure (websocket)', { error: err });
    this.count(e.status);
    if (!socket.writable || socket.destroyed) {
      socket.destroy();
      return;
    }
    this.writeRaw(socket, e.status, e.code, e.message, e.headers, e.details);
  }
}

function terminalError(backend: SessionLivedBackend): ApiError {
  const phase = phaseOf(backend);
  return new ApiError(410, 'backend_terminal', `the backend is ${phase}`, { phase, reason: backend.status?.reason });
}
