/**
 * A small typed client for application servers that spawn backends for their users.
 *
 *   const spawner = new SpawnerClient({ baseUrl: 'http://spawner-api.spawner:8080', token });
 *   const { backend } = await spawner.getOrCreate('doc-42', { image: 'my-editor:1.4' });
 *   await spawner.waitForReady(backend.name);
 *   // hand backend.url to the browser
 *
 * Node's fetch; no dependencies (the SSE reader is common/src/sse.ts, which imports nothing). Errors
 * are SpawnerError with the API's status, code and details.
 */
import type {
  Backend,
  BackendList,
  CreateBackendRequest,
  ErrorBody,
  LegacyStatus,
  Phase,
  SpawnRequest,
  SpawnResponse,
  StatusEvent,
} from './types';
import { readEvents, SSE_MEDIA_TYPE } from '../../common/src/sse';

export * from './types';

export class SpawnerError extends Error {
  override name = 'SpawnerError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    /** Seconds, from Retry-After on 429/503. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

export interface SpawnerClientOptions {
  baseUrl: string;
  /** The API bearer token. */
  token?: string;
  fetch?: typeof fetch;
  /** Per-request timeout for non-streaming calls (ms). */
  timeoutMs?: number;
}

export interface ListOptions {
  labelSelector?: string;
  phase?: Phase;
  key?: string;
}

export interface CreateResult {
  backend: Backend;
  /** False when a live backend for the key already existed. */
  created: boolean;
}

export class SpawnerClient {
  private readonly base: string;
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: SpawnerClientOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.doFetch = opts.fetch ?? fetch;
  }

  private async request(path: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.opts.token) headers.set('authorization', `Bearer ${this.opts.token}`);
    const timeoutMs = init.timeoutMs ?? this.opts.timeoutMs;
    const signals = [init.signal, timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined].filter((s): s is AbortSignal => !!s);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    const res = await this.doFetch(this.base + path, { ...init, headers, signal, redirect: 'manual' });
    if (res.status >= 400) throw await toError(res);
    return res;
  }

  private async json<T>(path: string, init?: RequestInit & { timeoutMs?: number }): Promise<T> {
    return (await (await this.request(path, init)).json()) as T;
  }

  private post(path: string, body: unknown): Promise<Response> {
    return this.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }

  /** The original API's spawn. */
  async spawn(req: SpawnRequest): Promise<SpawnResponse> {
    return (await (await this.post('/spawn', req)).json()) as SpawnResponse;
  }

  async create(req: CreateBackendRequest): Promise<CreateResult> {
    const res = await this.post('/v1/backends', req);
    return { backend: (await res.json()) as Backend, created: res.status === 201 };
  }

  /** The live backend for `key`, created if there is none (safe under concurrent calls). */
  getOrCreate(key: string, req: CreateBackendRequest): Promise<CreateResult> {
    return this.create({ ...req, key } as CreateBackendRequest);
  }

  /** The backend, or undefined when it does not exist. */
  async get(name: string): Promise<Backend | undefined> {
    try {
      return await this.json<Backend>(`/v1/backends/${encodeURIComponent(name)}`);
    } catch (err) {
      if (err instanceof SpawnerError && err.status === 404) return undefined;
      throw err;
    }
  }

  async list(opts: ListOptions = {}): Promise<Backend[]> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts)) if (v !== undefined) q.set(k, v);
    const qs = q.toString();
    return (await this.json<BackendList>(`/v1/backends${qs ? `?${qs}` : ''}`)).items;
  }

  /** Deletes the backend; its last state, or undefined when it did not exist. */
  async delete(name: string): Promise<Backend | undefined> {
    try {
      return await this.json<Backend>(`/v1/backends/${encodeURIComponent(name)}`, { method: 'DELETE' });
    } catch (err) {
      if (err instanceof SpawnerError && err.status === 404) return undefined;
      throw err;
    }
  }

  async status(name: string): Promise<LegacyStatus> {
    return this.json<LegacyStatus>(`/backend/${encodeURIComponent(name)}/status`);
  }

  /**
   * Resolves with the backend once it is Ready; rejects with SpawnerError 409 (code
   * backend_terminal) if it ends first, or 408 (code timeout) after `timeoutMs`.
   */
  async waitForReady(name: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Backend> {
    const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
    for (;;) {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0) throw new SpawnerError(408, 'timeout', `backend ${name} was not Ready in time`);
      const poll = Math.min(left, 60);
      const backend = await this.json<Backend>(`/v1/backends/${encodeURIComponent(name)}/wait?timeoutSeconds=${poll}`, {
        signal: opts.signal,
        timeoutMs: (poll + 30) * 1000,
      });
      if (backend.phase === 'Ready') return backend;
    }
  }

  /**
   * The status stream: past phases, then live ones; ends after a terminal phase or deletion.
   * When the server closes a stream early (its --stream-max-seconds), it is resumed with
   * Last-Event-ID, so no phase is missed or repeated.
   */
  async *streamStatus(name: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<StatusEvent> {
    let lastId: string | undefined;
    for (;;) {
      const headers: Record<string, string> = { accept: SSE_MEDIA_TYPE };
      if (lastId !== undefined) headers['last-event-id'] = lastId;
      let res: Response;
      try {
        res = await this.request(`/v1/backends/${encodeURIComponent(name)}/events`, {
          signal: opts.signal,
          headers,
          timeoutMs: 0,
        });
      } catch (err) {
        // Deleted while we were reconnecting: the stream is over.
        if (lastId !== undefined && err instanceof SpawnerError && err.status === 404) return;
        throw err;
      }
      if (res.status === 204 || !res.body) return;
      let terminal = false;
      for await (const e of readEvents(res.body, opts.signal)) {
        // As EventSource does: an empty last event ID is not sent back.
        lastId = e.id === '' ? undefined : e.id;
        const event = JSON.parse(e.data) as StatusEvent;
        terminal = event.phase === 'Swept' || event.phase === 'Failed';
        yield event;
      }
      if (terminal || opts.signal?.aborted) return;
      // Ended without a terminal phase: deleted (the next request says 404) or closed early.
    }
  }
}

async function toError(res: Response): Promise<SpawnerError> {
  const retry = Number(res.headers.get('retry-after'));
  const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : undefined;
  try {
    const body = (await res.json()) as ErrorBody;
    return new SpawnerError(res.status, body.error.code, body.error.message, body.error.details, retryAfter);
  } catch {
    return new SpawnerError(res.status, 'http_error', `HTTP ${res.status}`, undefined, retryAfter);
  }
}
