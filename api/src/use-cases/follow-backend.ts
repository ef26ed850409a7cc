/**
 * Following a backend through its phases: the status stream (past phases replayed, then live,
 * ending at a terminal phase or deletion) and waiting for a condition (Ready, for the long poll
 * and for the entry point's held requests).
 */
import { type SessionLivedBackend } from '../../../common/src/backend';
import { isTerminal, phaseHistory, phaseOf, phaseRank } from '../../../common/src/lifecycle';
import type { Phase } from '../../../crd-schemas/generated/types';
import type { BackendStore } from '../backend-store';
import { isoTime } from '../backend-view';

export interface PhaseEvent {
  phase: Phase;
  time: string;
  reason?: string;
  message?: string;
  /** Position in the phase order (terminal phases share the last); the SSE event id. */
  rank: number;
}

/** Every phase the backend has reached, oldest first, with its time (and reason, if terminal). */
export function phaseEvents(backend: SessionLivedBackend): PhaseEvent[] {
  const current = phaseOf(backend);
  const history = phaseHistory(backend).map((h) => ({ phase: h.phase, time: isoTime(h.time) }));
  // Resources written by the original operator have flags but no conditions: still report where they are.
  if (!history.some((h) => h.phase === current)) {
    history.push({ phase: current, time: isoTime(backend.metadata.creationTimestamp) });
  }
  const out: PhaseEvent[] = [];
  for (const h of history) {
    const e: PhaseEvent = { ...h, rank: phaseRank(h.phase) };
    if (isTerminal(h.phase)) {
      if (backend.status?.reason) e.reason = backend.status.reason;
      if (backend.status?.message) e.message = backend.status.message;
    }
    if (out.length === 0 || e.rank > out[out.length - 1].rank) out.push(e);
  }
  return out;
}

export type FollowEnd = 'terminal' | 'gone';

/**
 * The store's record of how the backend that was just deleted ended, if it is the incarnation
 * `seen` (or none was seen: the name was already gone when following started).
 */
function endOf(store: BackendStore, name: string, seen: SessionLivedBackend | undefined): SessionLivedBackend | undefined {
  const last = store.ended(name);
  if (!last) return undefined;
  return !seen || last.metadata.uid === seen.metadata.uid ? last : undefined;
}

/**
 * Calls `onEvent` for each phase with a rank above `afterRank` (past ones first), then for each
 * new one, then `onEnd` once. A backend deleted before it was seen ending (or already deleted,
 * within the store's retention) still ends with its terminal phase, from the store's record.
 * Returns a function that stops following.
 */
export function followPhases(
  store: BackendStore,
  name: string,
  afterRank: number,
  onEvent: (e: PhaseEvent) => void,
  onEnd: (why: FollowEnd) => void,
): () => void {
  let last = afterRank;
  let seen: SessionLivedBackend | undefined;
  let done = false;
  // The store calls listeners on a later tick, so `unsubscribe` is always set when they run.
  const finish = (why: FollowEnd): void => {
    if (done) return;
    done = true;
    unsubscribe();
    onEnd(why);
  };
  const unsubscribe = store.watch(name, (current) => {
    if (done) return;
    const backend = current ?? endOf(store, name, seen);
    if (!backend) return finish('gone');
    seen = backend;
    for (const e of phaseEvents(backend)) {
      if (e.rank > last) {
        last = e.rank;
        onEvent(e);
      }
    }
    if (isTerminal(phaseOf(backend))) finish('terminal');
  });
  return () => {
    done = true;
    unsubscribe();
  };
}

export type WaitOutcome =
  | { kind: 'match'; backend: SessionLivedBackend }
  | { kind: 'timeout'; backend: SessionLivedBackend }
  | { kind: 'terminal'; backend: SessionLivedBackend }
  | { kind: 'gone'; backend?: SessionLivedBackend }
  | { kind: 'aborted' };

/**
 * Waits until `predicate(backend)` holds, the backend ends (terminal or deleted), `timeoutMs`
 * passes or `signal` aborts. Never rejects.
 */
export function waitFor(
  store: BackendStore,
  name: string,
  predicate: (b: SessionLivedBackend) => boolean,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<WaitOutcome> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ kind: 'aborted' });
    let last: SessionLivedBackend | undefined;
    let settled = false;
    // Everything below that can settle runs on a later tick, after these are all initialised.
    const settle = (o: WaitOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
      resolve(o);
    };
    const onAbort = (): void => settle({ kind: 'aborted' });
    const unsubscribe = store.watch(name, (current) => {
      // Deleted: how it ended, if the store remembers (a terminal outcome, then), or just gone.
      const b = current ?? endOf(store, name, last);
      if (!b) return settle({ kind: 'gone', backend: last });
      last = b;
      if (predicate(b)) return settle({ kind: 'match', backend: b });
      if (isTerminal(phaseOf(b))) return settle({ kind: 'terminal', backend: b });
    });
    const timer = setTimeout(() => {
      if (last) settle({ kind: 'timeout', backend: last });
      else settle({ kind: 'gone' });
    }, timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export const isReady = (b: SessionLivedBackend): boolean => phaseOf(b) === 'Ready';
