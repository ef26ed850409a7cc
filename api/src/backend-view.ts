/**
 * How a backend looks on the wire, and the URLs handed out for it. The URLs carry the backend's
 * connection token: the backend URL so a browser can open it, readyUrl and statusUrl so the same
 * browser can poll them without the API's bearer token.
 */
import type { IncomingMessage } from 'node:http';
import { type SessionLivedBackend } from '../../common/src/backend';
import { phaseOf } from '../../common/src/lifecycle';
import { ANNOTATION_KEY } from '../../common/src/constants';
import type { Backend, SpawnResponse } from '../client/types';
import type { ApiConfig } from './config';
import { TOKEN_PARAM, type ConnectionTokens } from './connection-tokens';

export interface PublicBases {
  api: string;
  entryPoint: string;
}

const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;
const trimSlash = (s: string): string => s.replace(/\/+$/, '');

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The public bases: configured, or (development, local mode) derived from the request's Host. */
export function publicBases(config: ApiConfig, req: IncomingMessage): PublicBases {
  if (config.apiBaseUrl && (config.entryPointBaseUrl || config.urlTemplate)) {
    return { api: trimSlash(config.apiBaseUrl), entryPoint: trimSlash(config.entryPointBaseUrl ?? '') };
  }
  const forwardedHost = config.trustProxy ? header(req, 'x-forwarded-host')?.split(',')[0].trim() : undefined;
  let host = forwardedHost ?? header(req, 'host') ?? '';
  if (!HOST.test(host)) host = 'localhost';
  const forwardedProto = config.trustProxy ? header(req, 'x-forwarded-proto')?.split(',')[0].trim() : undefined;
  const proto = forwardedProto === 'https' || (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  const hostname = host.replace(/:\d{1,5}$/, '');
  return {
    api: trimSlash(config.apiBaseUrl ?? `${proto}://${host}`),
    entryPoint: trimSlash(config.entryPointBaseUrl ?? `${proto}://${hostname}:${config.entryPointPort}`),
  };
}

export function withToken(url: string, token: string | undefined): string {
  if (!token) return url;
  const hash = url.indexOf('#');
  const base = hash < 0 ? url : url.slice(0, hash);
  const frag = hash < 0 ? '' : url.slice(hash);
  return `${base}${base.includes('?') ? '&' : '?'}${TOKEN_PARAM}=${encodeURIComponent(token)}${frag}`;
}

export class BackendUrls {
  constructor(
    private readonly config: ApiConfig,
    private readonly tokens: ConnectionTokens,
  ) {}

  /** The URL a browser opens (without token). */
  backendUrl(name: string, bases: PublicBases): string {
    const template = this.config.urlTemplate ?? `${bases.entryPoint}/p/{}/`;
    return template.split('{}').join(name);
  }

  forBackend(backend: SessionLivedBackend, bases: PublicBases): { url: string; readyUrl: string; statusUrl: string } {
    const name = backend.metadata.name ?? '';
    const token = this.tokens.tokenFor(backend);
    return {
      url: withToken(this.backendUrl(name, bases), token),
      readyUrl: withToken(`${bases.api}/backend/${name}/ready`, token),
      statusUrl: withToken(`${bases.api}/backend/${name}/status`, token),
    };
  }

  view(backend: SessionLivedBackend, bases: PublicBases): Backend {
    const m = backend.metadata;
    const s = backend.status ?? {};
    const out: Backend = {
      name: m.name ?? '',
      namespace: m.namespace ?? '',
      phase: phaseOf(backend),
      ...this.forBackend(backend, bases),
      labels: { ...(m.labels ?? {}) },
      createdAt: isoTime(m.creationTimestamp),
      spec: backend.spec,
    };
    const key = m.annotations?.[ANNOTATION_KEY];
    if (key !== undefined) out.key = key;
    if (s.reason) out.reason = s.reason;
    if (s.message) out.message = s.message;
    if (s.nodeName) out.nodeName = s.nodeName;
    if (s.podIP) out.podIP = s.podIP;
    if (s.podName) out.podName = s.podName;
    if (s.launch) out.launch = s.launch;
    if (s.launchReason) out.launchReason = s.launchReason;
    return out;
  }

  spawnResponse(backend: SessionLivedBackend, bases: PublicBases): SpawnResponse {
    return { name: backend.metadata.name ?? '', ...this.forBackend(backend, bases) };
  }
}

export function isoTime(value: unknown): string {
  if (value !== undefined && value !== null) {
    const d = new Date(value as string);
    if (!Number.isNaN(d.getTime())) return d.toISOString();
  }
  return new Date(0).toISOString();
}
