/**
 * Per-backend connection tokens: what makes a backend's URL a capability, so that knowing (or
 * guessing) a backend's name is not enough to reach it, and one backend's token opens no other.
 *
 *   token = base64url(HMAC-SHA256(secret, `${namespace}/${name}/${nonce}`))
 *
 * The nonce is random per backend and kept in an annotation; so is SHA-256(token), which is all a
 * verifier (the entry point, the sidecar) needs. The token itself is never stored: the API
 * re-derives it from the nonce whenever it hands out a URL again (get, list, get-or-create), which
 * is why the signing secret must be stable across restarts and replicas.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { SessionLivedBackend } from '../../common/src/backend';
import { sha256Hex, verifyTokenHash } from '../../common/src/connection-token';
import { ANNOTATION_TOKEN_HASH, ANNOTATION_TOKEN_NONCE } from '../../common/src/constants';

/** The per-backend nonce the token is derived from. TODO(common): move to constants.ts. */
export { ANNOTATION_TOKEN_NONCE };
// Wire names and verification: common/src/connection-token.ts, shared with the sidecar.
export { TOKEN_HEADER, TOKEN_PARAM, sha256Hex, verifyTokenHash } from '../../common/src/connection-token';

export interface IssuedToken {
  nonce: string;
  token: string;
  hash: string;
}

export class ConnectionTokens {
  constructor(private readonly secret: Buffer) {
    if (secret.length < 16) throw new Error('the signing secret must be at least 16 bytes');
  }

  static random(): ConnectionTokens {
    return new ConnectionTokens(randomBytes(32));
  }

  derive(namespace: string, name: string, nonce: string): string {
    return createHmac('sha256', this.secret).update(`${namespace}/${name}/${nonce}`, 'utf8').digest('base64url');
  }

  issue(namespace: string, name: string): IssuedToken {
    const nonce = randomBytes(16).toString('base64url');
    const token = this.derive(namespace, name, nonce);
    return { nonce, token, hash: sha256Hex(token) };
  }

  /**
   * The backend's token, re-derived; undefined when it has none, or when it was issued under
   * another secret (then it cannot be recovered and its URL goes out without one).
   */
  tokenFor(backend: SessionLivedBackend): string | undefined {
    const annotations = backend.metadata.annotations ?? {};
    const nonce = annotations[ANNOTATION_TOKEN_NONCE];
    const hash = annotations[ANNOTATION_TOKEN_HASH];
    if (!nonce || !hash) return undefined;
    const token = this.derive(backend.metadata.namespace ?? '', backend.metadata.name ?? '', nonce);
    return verifyTokenHash(hash, token) ? token : undefined;
  }
}

/** Whether the backend demands a connection token (it has a token hash). */
export const requiresToken = (backend: SessionLivedBackend): boolean => !!backend.metadata.annotations?.[ANNOTATION_TOKEN_HASH];

/** Whether `presented` opens `backend` (false for backends without a token: bearer only). */
export function backendTokenValid(backend: SessionLivedBackend, presented: string | undefined): boolean {
  const hash = backend.metadata.annotations?.[ANNOTATION_TOKEN_HASH];
  return hash ? verifyTokenHash(hash, presented) : false;
}
