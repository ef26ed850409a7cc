/**
 * Who a backend's app serves, as the app learns it from every request (SPEC section 12): the
 * backend's name, uid and key in `X-Spawner-Backend`, `X-Spawner-Backend-Uid` and
 * `X-Spawner-Key`. Both hops set them, the entry point from the backend it routed to and the
 * sidecar of a claimed warm Pod from its assignment, and both drop whatever a client sent under
 * those names first, so an app can trust them. The key is percent-encoded (it is the caller's
 * free-form string; a header value must not carry CR, LF or non-ASCII).
 *
 * A warm pool may also name an `assignPath`: then the app is told once, before its first request,
 * with a POST of `{"name", "uid", "key"}` there (`tellApp`), which it can use to load the
 * session's document before anyone connects.
 */
import type { SessionLivedBackend } from './backend';
import { ANNOTATION_KEY } from './constants';
import type { LineRange, RequestHead } from './relay/http1';

export const BACKEND_HEADER = 'X-Spawner-Backend';
export const BACKEND_UID_HEADER = 'X-Spawner-Backend-Uid';
export const BACKEND_KEY_HEADER = 'X-Spawner-Key';

export interface BackendIdentity {
  name: string;
  uid?: string;
  key?: string;
}

/** Whom a backend's app serves: its name, uid and key (the annotation the API sets from the create's key). */
export function identityOf(backend: SessionLivedBackend): BackendIdentity {
  const id: BackendIdentity = { name: backend.metadata.name as string };
  if (backend.metadata.uid !== undefined) id.uid = backend.metadata.uid;
  const key = backend.metadata.annotations?.[ANNOTATION_KEY];
  if (key !== undefined) id.key = key;
  return id;
}

/** The header lines that state an identity, to append to a request head. */
export function identityHeaderLines(id: BackendIdentity): string {
  let lines = `${BACKEND_HEADER}: ${id.name}\r\n`;
  if (id.uid) lines += `${BACKEND_UID_HEADER}: ${id.uid}\r\n`;
  if (id.key !== undefined) lines += `${BACKEND_KEY_HEADER}: ${encodeURIComponent(id.key)}\r\n`;
  return lines;
}

/** Where a request head carries identity headers of its own (the parser collects them), to drop. */
export function inboundIdentityLines(parsed: RequestHead): LineRange[] {
  const lines = parsed.tokenLines;
  if (lines === undefined) return [];
  return [...(lines['x-spawner-backend'] ?? []), ...(lines['x-spawner-backend-uid'] ?? []), ...(lines['x-spawner-key'] ?? [])];
}

/** How long the app may take to answer its assignment before the handover counts as failed. */
export const APP_ASSIGN_TIMEOUT_MS = 2000;

/**
 * POSTs the identity to the app's `path` on host:port as JSON `{"name", "uid", "key"}` and
 * resolves on a 2xx answer; anything else (a refusal, no answer in time) rejects, with why.
 * The assigned sidecar calls it before its data path lets a request through, local mode when a
 * warm process is claimed.
 */
export async function tellApp(target: { host: string; port: number; path: string }, id: BackendIdentity): Promise<void> {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  const body: Record<string, string> = { name: id.name };
  if (id.uid !== undefined) body.uid = id.uid;
  if (id.key !== undefined) body.key = id.key;
  const res = await fetch(`http://${host}:${target.port}${target.path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(APP_ASSIGN_TIMEOUT_MS),
  });
  const text = await res.text().catch(() => '');
  if (!res.ok) throw new Error(`the app answered its assignment with ${res.status} ${text.slice(0, 200).trim()}`.trim());
}
