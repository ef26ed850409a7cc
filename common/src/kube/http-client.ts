/**
 * The real Kubernetes client: credentials from ./credentials (or client-node's KubeConfig, which
 * has the same shape), and Node's own http(s) with a keep-alive agent for the requests
 * themselves, so that every failure arrives here as a typed error (see
 * docs/adr/0002-kubernetes-access.md).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { KubeApiError, KubeUnavailableError, type KubeStatusBody } from '../errors';
import type { KubeCredentials } from './credentials';
import {
  resourcePath,
  type DeleteOptions,
  type KubeClient,
  type KubeObject,
  type ListOptions,
  type ListResult,
  type PatchType,
  type ResourceType,
  type WatchEvent,
  type WatchHandle,
  type WatchOptions,
  type WriteOptions,
} from './types';

const CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
};

export interface HttpKubeClientOptions {
  /** Per-request timeout (not for watches). */
  requestTimeoutMs?: number;
  /** Called for every request, for metrics. */
  onRequest?: (verb: string, code: number | 'error', seconds: number) => void;
}

interface Prepared {
  base: URL;
  options: https.RequestOptions;
  agent: http.Agent;
  expires: number;
}

/** Credentials may rotate (projected service-account tokens); re-read them this often. */
const CREDENTIAL_TTL_MS = 60_000;

function query(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

function toApiError(status: number, text: string): KubeApiError {
  let body: KubeStatusBody | undefined;
  try {
    body = JSON.parse(text) as KubeStatusBody;
  } catch {
    body = undefined;
  }
  const reason = body?.reason ?? http.STATUS_CODES[status] ?? 'Unknown';
  return new KubeApiError(status, reason, body?.message ?? `${status} ${text.slice(0, 200)}`, body);
}

export class HttpKubeClient implements KubeClient {
  private prepared?: Prepared;
  private readonly timeoutMs: number;

  constructor(
    readonly kubeConfig: KubeCredentials,
    private readonly opts: HttpKubeClientOptions = {},
  ) {
    this.timeoutMs = opts.requestTimeoutMs ?? 15_000;
  }

  private async prepare(): Promise<Prepared> {
    if (this.prepared && this.prepared.expires > Date.now()) return this.prepared;
    const cluster = this.kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeUnavailableError('no current cluster in the kubeconfig');
    const options: https.RequestOptions = {};
    await this.kubeConfig.applyToHTTPSOptions(options);
    const base = new URL(cluster.server);
    const old = this.prepared?.agent;
    const agentOptions = {
      keepAlive: true,
      maxSockets: 64,
      ca: options.ca,
      cert: options.cert,
      key: options.key,
      rejectUnauthorized: options.rejectUnauthorized,
    };
    const agent = old ?? (base.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent({ keepAlive: true }));
    this.prepared = { base, options, agent, expires: Date.now() + CREDENTIAL_TTL_MS };
    return this.prepared;
  }

  private async send(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
    timeoutMs = this.timeoutMs,
  ): Promise<{ status: number; text: string }> {
    const p = await this.prepare();
    const url = new URL(path, p.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: http.OutgoingHttpHeaders = { ...(p.options.headers as http.OutgoingHttpHeaders), accept: 'application/json' };
    if (payload) {
      headers['content-type'] = contentType;
      headers['content-length'] = payload.length;
    }
    const started = process.hrtime.bigint();
    const verb = method;
    return new Promise((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method, headers, agent: p.agent, auth: p.options.auth, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new KubeUnavailableError(`${method} ${path}: ${err.message}`)));
        res.on('end', () => {
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          this.opts.onRequest?.(verb, res.statusCode ?? 0, seconds);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
      req.on('error', (err) => {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        this.opts.onRequest?.(verb, 'error', seconds);
        reject(new KubeUnavailableError(`${method} ${url.pathname}: ${err.message}`));
      });
      req.end(payload);
    });
  }

  private async json<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const { status, text } = await this.send(method, path, body, contentType);
    if (status >= 200 && status < 300) return JSON.parse(text) as T;
    throw toApiError(status, text);
  }

  async get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T | undefined> {
    const { status, text } = await this.send('GET', resourcePath(type, namespace, name));
    if (status === 404) return undefined;
    if (status >= 200 && status < 300) return JSON.parse(text) as T;
    throw toApiError(status, text);
  }

  async list<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: ListOptions = {},
  ): Promise<ListResult<T>> {
    const path = resourcePath(type, namespace) + query({ ...opts });
    const body = await this.json<{ items: T[]; metadata: { resourceVersion: string; continue?: string } }>('GET', path);
    const apiVersion = type.group ? `${type.group}/${type.version}` : type.version;
    for (const item of body.items) {
      // Lists omit these on items; callers treat listed and watched objects alike.
      item.apiVersion ??= apiVersion;
      item.kind ??= type.kind;
    }
    return { items: body.items, resourceVersion: body.metadata.resourceVersion, continue: body.metadata.continue || undefined };
  }

  create<T extends KubeObject>(type: ResourceType, namespace: string | undefined, obj: T, opts: WriteOptions = {}): Promise<T> {
    const path = resourcePath(type, namespace) + query({ fieldManager: opts.fieldManager });
    return this.json<T>('POST', path, obj);
  }

  patch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    patchType: PatchType,
    opts: WriteOptions = {},
  ): Promise<T> {
    const path = resourcePath(type, namespace, name, opts.subresource) + query({ fieldManager: opts.fieldManager });
    return this.json<T>('PATCH', path, patch, CONTENT_TYPES[patchType]);
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<boolean> {
    const body: Record<string, unknown> = { kind: 'DeleteOptions', apiVersion: 'v1' };
    if (opts.uid || opts.resourceVersion) {
      body.preconditions = {
        ...(opts.uid ? { uid: opts.uid } : {}),
        ...(opts.resourceVersion ? { resourceVersion: opts.resourceVersion } : {}),
      };
    }
    if (opts.propagationPolicy) body.propagationPolicy = opts.propagationPolicy;
    if (opts.gracePeriodSeconds !== undefined) body.gracePeriodSeconds = opts.gracePeriodSeconds;
    const { status, text } = await this.send('DELETE', resourcePath(type, namespace, name), body);
    if (status >= 200 && status < 300) return true;
    if (status === 404) return false;
    // A failed uid precondition means a newer object of that name exists: ours is gone.
    // A failed resourceVersion precondition: it changed meanwhile; left alone.
    if (status === 409 && (opts.uid || opts.resourceVersion) && /precondition/i.test(text)) return false;
    throw toApiError(status, text);
  }

  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (event: WatchEvent<T>) => void,
  ): WatchHandle {
    let req: http.ClientRequest | undefined;
    let aborted = false;
    const done = (async () => {
      const p = await this.prepare();
      const path =
        resourcePath(type, namespace) +
        query({
          watch: true,
          resourceVersion: opts.resourceVersion,
          allowWatchBookmarks: opts.allowWatchBookmarks ?? true,
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
          timeoutSeconds: opts.timeoutSeconds ?? 300,
        });
      const url = new URL(path, p.base);
      const mod = url.protocol === 'https:' ? https : http;
      await new Promise<void>((resolve, reject) => {
        if (aborted) return resolve();
        // Watches get their own connection so a long stream never blocks pooled requests.
        req = mod.request(url, {
          method: 'GET',
          headers: { ...(p.options.headers as http.OutgoingHttpHeaders), accept: 'application/json' },
          ca: p.options.ca,
          cert: p.options.cert,
          key: p.options.key,
          rejectUnauthorized: p.options.rejectUnauthorized,
          auth: p.options.auth,
          agent: false,
        });
        req.setTimeout(((opts.timeoutSeconds ?? 300) + 30) * 1000, () => req?.destroy(new Error('watch stalled')));
        req.on('error', (err) =>
          aborted ? resolve() : reject(new KubeUnavailableError(`watch ${type.plural}: ${err.message}`)),
        );
        req.on('response', (res) => {
          if ((res.statusCode ?? 0) >= 300) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => reject(toApiError(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
            return;
          }
          let buffered = '';
          let failed: Error | undefined;
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buffered += chunk;
            let nl: number;
            while ((nl = buffered.indexOf('\n')) >= 0) {
              const line = buffered.slice(0, nl).trim();
              buffered = buffered.slice(nl + 1);
              if (!line) continue;
              const event = JSON.parse(line) as { type: string; object: T & KubeStatusBody };
              if (event.type === 'ERROR') {
                const status = event.object as KubeStatusBody;
                failed = new KubeApiError(status.code ?? 500, status.reason ?? 'Error', status.message ?? 'watch error', status);
                req?.destroy();
                return;
              }
              onEvent(event as WatchEvent<T>);
            }
          });
          res.on('error', (err) => (aborted ? resolve() : reject(failed ?? new KubeUnavailableError(err.message))));
          res.on('close', () => (failed && !aborted ? reject(failed) : resolve()));
        });
        req.end();
      });
    })();
    return {
      done,
      abort: () => {
        aborted = true;
        req?.destroy();
      },
    };
  }
}
