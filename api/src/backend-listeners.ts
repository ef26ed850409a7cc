/**
 * The listeners of `BackendStore.watch`, by backend name, for every store implementation: each
 * listener first gets the current object on a later tick (never synchronously, so the caller
 * holds its unsubscribe function first), then whatever the store emits.
 */
import type { BackendListener, SessionLivedBackend } from './backend-store';

export class BackendListeners {
  private readonly byName = new Map<string, Set<BackendListener>>();

  constructor(private readonly onListenerError: (name: string, err: unknown) => void = () => undefined) {}

  /**
   * Adds `listener` for `name`; `first` (awaited, then called) gives what it hears first.
   * Returns the unsubscribe function.
   */
  add(
    name: string,
    listener: BackendListener,
    first: () => SessionLivedBackend | undefined,
    ready: Promise<void> = Promise.resolve(),
  ): () => void {
    let set = this.byName.get(name);
    if (!set) this.byName.set(name, (set = new Set()));
    set.add(listener);
    let active = true;
    void ready.then(() => {
      if (active) this.call(name, listener, first());
    });
    return () => {
      active = false;
      set.delete(listener);
      if (set.size === 0) this.byName.delete(name);
    };
  }

  emit(name: string, backend: SessionLivedBackend | undefined): void {
    const set = this.byName.get(name);
    if (!set) return;
    for (const l of [...set]) this.call(name, l, backend);
  }

  /** Listeners of one backend, or of all. */
  count(name?: string): number {
    if (name) return this.byName.get(name)?.size ?? 0;
    let n = 0;
    for (const s of this.byName.values()) n += s.size;
    return n;
  }

  private call(name: string, listener: BackendListener, backend: SessionLivedBackend | undefined): void {
    try {
      listener(backend);
    } catch (err) {
      this.onListenerError(name, err);
    }
  }
}
