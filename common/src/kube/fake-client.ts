/**
 * An in-memory Kubernetes API with the behaviours Spawner relies on, for unit tests of the layers
 * above it (the real API server is tested in e2e/):
 *
 * - resourceVersion, uid, generation (bumped by spec changes only), creationTimestamp;
 * - create fails with AlreadyExists; merge patches honour a `metadata.resourceVersion` precondition
 *   (409 Conflict); the status subresource changes status only, the main resource everything else;
 * - delete with a uid precondition; controller ownerReferences are garbage-collected when the owner
 *   goes (asynchronously, as in a real cluster, unless `gcDelayMs` is 0);
 * - list and watch with label and field selectors; a watch replays what happened after its
 *   resourceVersion, and one from before the last `compact()` gets 410 Gone;
 * - fault injection: `failNext` makes the next matching call throw.
 */
import { randomUUID } from 'node:crypto';
import { KubeApiError } from '../errors';
import { matchesFieldSelector, matchesSelector, parseLabelSelector } from './selectors';
import type {
  DeleteOptions,
  KubeClient,
  KubeObject,
  ListOptions,
  ListResult,
  PatchType,
  ResourceType,
  WatchEvent,
  WatchHandle,
  WatchOptions,
  WriteOptions,
} from './types';

type Verb = 'get' | 'list' | 'create' | 'patch' | 'delete' | 'watch';

interface Watcher {
  type: ResourceType;
  namespace?: string;
  opts: WatchOptions;
  onEvent: (e: WatchEvent<KubeObject>) => void;
  end: (err?: Error) => void;
}

interface Fault {
  verb: Verb;
  plural?: string;
  error: Error;
  /** Apply the write, then throw (the client never learns it succeeded). */
  afterApply?: boolean;
}

export interface RequestRecord {
  verb: Verb;
  plural: string;
  namespace?: string;
  name?: string;
  subresource?: string;
}

const clone = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T));

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> =
    target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const typeKey = (t: ResourceType): string => `${t.group}/${t.plural}`;

export class FakeKubeClient implements KubeClient {
  private readonly store = new Map<string, Map<string, KubeObject>>();
  private readonly types = new Map<string, ResourceType>();
  private readonly watchers = new Set<Watcher>();
  private readonly faults: Fault[] = [];
  private rv = 1;
  private oldestRv = 1;
  private readonly history: Array<{
    rv: number;
    type: ResourceType;
    eventType: WatchEvent<KubeObject>['type'];
    obj: KubeObject;
  }> = [];
  readonly requests: RequestRecord[] = [];
  /** Delay before dependents of a deleted owner are collected; 0 = synchronously. */
  gcDelayMs = 0;

  constructor(private readonly now: () => Date = () => new Date()) {}

  failNext(verb: Verb, error: Error, opts: { plural?: string; afterApply?: boolean } = {}): void {
    this.faults.push({ verb, error, plural: opts.plural, afterApply: opts.afterApply });
  }

  /** Forget history so that watches from older resourceVersions get 410 Gone. */
  compact(): void {
    this.oldestRv = this.rv;
    this.history.length = 0;
  }

  /** Open watches on a resource (tests wait for an informer to be watching). */
  watchCount(plural: string): number {
    return [...this.watchers].filter((w) => w.type.plural === plural).length;
  }

  /** End every open watch, as an API server restart would. */
  dropWatches(err?: Error): void {
    for (const w of [...this.watchers]) w.end(err);
  }

  writes(plural?: string): RequestRecord[] {
    return this.requests.filter(
      (r) => r.verb !== 'get' && r.verb !== 'list' && r.verb !== 'watch' && (!plural || r.plural === plural),
    );
  }

  private takeFault(verb: Verb, type: ResourceType, phase: 'before' | 'after'): Error | undefined {
    const i = this.faults.findIndex(
      (f) => f.verb === verb && (!f.plural || f.plural === type.plural) && (phase === 'after') === !!f.afterApply,
    );
    if (i < 0) return undefined;
    return this.faults.splice(i, 1)[0].error;
  }

  private bucket(type: ResourceType): Map<string, KubeObject> {
    const k = typeKey(type);
    this.types.set(k, type);
    let b = this.store.get(k);
    if (!b) this.store.set(k, (b = new Map()));
    return b;
  }

  private key(type: ResourceType, namespace: string | undefined, name: string): string {
    return type.namespaced ? `${namespace ?? ''}/${name}` : name;
  }

  private notFound(type: ResourceType, name: string): KubeApiError {
    return new KubeApiError(404, 'NotFound', `${type.plural} "${name}" not found`);
  }

  private matches(w: Watcher, type: ResourceType, obj: KubeObject): boolean {
    if (typeKey(w.type) !== typeKey(type)) return false;
    if (w.namespace && obj.metadata?.namespace !== w.namespace) return false;
    const labelsMatch = matchesSelector(obj.metadata?.labels, parseLabelSelector(w.opts.labelSelector));
    return labelsMatch && matchesFieldSelector(obj, w.opts.fieldSelector);
  }

  private emit(type: ResourceType, eventType: WatchEvent<KubeObject>['type'], obj: KubeObject): void {
    const copy = clone(obj);
    if (eventType === 'DELETED') copy.metadata = { ...copy.metadata, resourceVersion: String(this.rv) };
    this.history.push({ rv: this.rv, type, eventType, obj: copy });
    for (const w of this.watchers) {
      if (!this.matches(w, type, copy)) continue;
      queueMicrotask(() => w.onEvent({ type: eventType, object: clone(copy) }));
    }
  }

  private record(verb: Verb, type: ResourceType, namespace?: string, name?: string, subresource?: string): void {
    this.requests.push({ verb, plural: type.plural, namespace, name, subresource });
  }

  async get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T | undefined> {
    this.record('get', type, namespace, name);
    const fault = this.takeFault('get', type, 'before');
    if (fault) throw fault;
    return clone(this.bucket(type).get(this.key(type, namespace, name)) as T | undefined);
  }

  async list<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: ListOptions = {},
  ): Promise<ListResult<T>> {
    this.record('list', type, namespace);
    const fault = this.takeFault('list', type, 'before');
    if (fault) throw fault;
    const reqs = parseLabelSelector(opts.labelSelector);
    const items = [...this.bucket(type).values()].filter(
      (o) =>
        (!type.namespaced || !namespace || o.metadata?.namespace === namespace) &&
        matchesSelector(o.metadata?.labels, reqs) &&
        matchesFieldSelector(o, opts.fieldSelector),
    );
    return { items: clone(items) as T[], resourceVersion: String(this.rv) };
  }

  async create<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    obj: T,
    _opts?: WriteOptions,
  ): Promise<T> {
    const fault = this.takeFault('create', type, 'before');
    if (fault) throw fault;
    const copy = clone(obj);
    copy.metadata ??= {};
    if (!copy.metadata.name && copy.metadata.generateName) {
      copy.metadata.name = `${copy.metadata.generateName}${randomUUID().slice(0, 5)}`;
    }
    const name = copy.metadata.name;
    if (!name) throw new KubeApiError(422, 'Invalid', 'metadata.name: Required value');
    this.record('create', type, namespace, name);
    const b = this.bucket(type);
    const k = this.key(type, namespace, name);
    if (b.has(k)) throw new KubeApiError(409, 'AlreadyExists', `${type.plural} "${name}" already exists`);
    if (type.namespaced) copy.metadata.namespace = namespace;
    copy.metadata.uid = randomUUID();
    copy.metadata.resourceVersion = String(++this.rv);
    copy.metadata.generation = 1;
    copy.metadata.creationTimestamp = this.now().toISOString() as unknown as Date;
    copy.apiVersion ??= type.group ? `${type.group}/${type.version}` : type.version;
    copy.kind ??= type.kind;
    b.set(k, copy);
    this.emit(type, 'ADDED', copy);
    const after = this.takeFault('create', type, 'after');
    if (after) throw after;
    return clone(copy);
  }

  async patch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    patchType: PatchType,
    opts: WriteOptions = {},
  ): Promise<T> {
    this.record('patch', type, namespace, name, opts.subresource);
    const fault = this.takeFault('patch', type, 'before');
    if (fault) throw fault;
    if (patchType === 'json') throw new KubeApiError(415, 'UnsupportedMediaType', 'the fake client takes merge patches only');
    const b = this.bucket(type);
    const k = this.key(type, namespace, name);
    const current = b.get(k);
    if (!current) throw this.notFound(type, name);
    const p = clone(patch) as KubeObject;
    const precondition = p.metadata?.resourceVersion;
    if (precondition && precondition !== current.metadata?.resourceVersion) {
      throw new KubeApiError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${type.plural} "${name}": the object has been modified`,
      );
    }
    const cur = current as KubeObject & { status?: unknown; spec?: unknown };
    let next: KubeObject & { status?: unknown; spec?: unknown };
    if (opts.subresource === 'status') {
      next = { ...cur, status: mergePatch(cur.status, (p as { status?: unknown }).status) };
    } else {
      const { status: _ignored, ...rest } = p as KubeObject & { status?: unknown };
      next = mergePatch(cur, rest) as typeof next;
      next.status = cur.status;
      next.metadata = { ...next.metadata, uid: current.metadata?.uid, name, namespace: current.metadata?.namespace };
      if (JSON.stringify(next.spec) !== JSON.stringify(cur.spec)) {
        next.metadata.generation = (current.metadata?.generation ?? 1) + 1;
      }
    }
    if (JSON.stringify(next) === JSON.stringify(current)) return clone(current as T);
    next.metadata = { ...next.metadata, resourceVersion: String(++this.rv) };
    b.set(k, next);
    this.emit(type, 'MODIFIED', next);
    const after = this.takeFault('patch', type, 'after');
    if (after) throw after;
    return clone(next as T);
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<boolean> {
    this.record('delete', type, namespace, name);
    const fault = this.takeFault('delete', type, 'before');
    if (fault) throw fault;
    const b = this.bucket(type);
    const k = this.key(type, namespace, name);
    const current = b.get(k);
    if (!current) return false;
    if (opts.uid && current.metadata?.uid !== opts.uid) return false;
    if (opts.resourceVersion && current.metadata?.resourceVersion !== opts.resourceVersion) return false;
    b.delete(k);
    this.rv++;
    this.emit(type, 'DELETED', current);
    const uid = current.metadata?.uid;
    if (uid) {
      if (this.gcDelayMs > 0) setTimeout(() => this.collect(uid), this.gcDelayMs).unref?.();
      else this.collect(uid);
    }
    return true;
  }

  /** The garbage collector: delete everything whose controller owner is `uid`. */
  private collect(uid: string): void {
    for (const [tk, bucket] of this.store) {
      const type = this.types.get(tk) as ResourceType;
      for (const [k, obj] of [...bucket]) {
        if (obj.metadata?.ownerReferences?.some((r) => r.uid === uid)) {
          bucket.delete(k);
          this.rv++;
          this.emit(type, 'DELETED', obj);
          if (obj.metadata?.uid) this.collect(obj.metadata.uid);
        }
      }
    }
  }

  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (event: WatchEvent<T>) => void,
  ): WatchHandle {
    this.record('watch', type, namespace);
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const fault = this.takeFault('watch', type, 'before');
    const watcher: Watcher = {
      type,
      namespace,
      opts,
      onEvent: onEvent as (e: WatchEvent<KubeObject>) => void,
      end: (err?: Error) => {
        this.watchers.delete(watcher);
        if (err) reject(err);
        else resolve();
      },
    };
    if (fault) queueMicrotask(() => watcher.end(fault));
    else if (opts.resourceVersion && opts.resourceVersion !== '0' && Number(opts.resourceVersion) < this.oldestRv) {
      queueMicrotask(() => watcher.end(new KubeApiError(410, 'Expired', 'too old resource version')));
    } else {
      this.watchers.add(watcher);
      const from = Number(opts.resourceVersion) || this.rv;
      for (const h of this.history) {
        if (h.rv > from && this.matches(watcher, h.type, h.obj)) {
          const copy = clone(h.obj);
          queueMicrotask(() => watcher.onEvent({ type: h.eventType, object: copy }));
        }
      }
    }
    return { done, abort: () => watcher.end() };
  }

  /** Test helper: set an object's status directly (as a kubelet or another controller would). */
  async setStatus(type: ResourceType, namespace: string | undefined, name: string, status: unknown): Promise<void> {
    await this.patch(type, namespace, name, { status }, 'merge', { subresource: 'status' });
  }

  /** Test helper: the stored object (no request recorded). */
  peek<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): T | undefined {
    return clone(this.bucket(type).get(this.key(type, namespace, name)) as T | undefined);
  }

  all<T extends KubeObject>(type: ResourceType): T[] {
    return clone([...this.bucket(type).values()] as T[]);
  }
}
