/**
 * API bearer tokens: from a file (one per line, `#` comments; a mounted Secret) and/or from the
 * environment for local use. The file is re-read when it changes, so a rotated Secret takes effect
 * without a restart; a file that cannot be read keeps the tokens already loaded.
 *
 * Only SHA-256 digests are kept, and a presented token is compared with every one of them in
 * constant time (hashing first makes lengths equal, so timingSafeEqual applies and the length of a
 * valid token leaks nothing).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, stat, statSync, type Stats } from 'node:fs';
import type { Logger } from '../../common/src/logger';

export interface TokenVerifier {
  verify(presented: string | undefined): boolean;
  /** No tokens configured and anonymous access allowed: every request is the API's client. */
  readonly open: boolean;
}

const signature = (st: Stats): string => `${st.ino}:${st.size}:${st.mtimeMs}`;

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

export function parseTokenFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

export interface BearerAuthOptions {
  tokens?: string[];
  tokenFile?: string;
  allowAnonymous?: boolean;
  logger: Logger;
  /** How often the token file is checked for changes. */
  pollIntervalMs?: number;
}

export class BearerAuth implements TokenVerifier {
  private digests: Buffer[] = [];
  private fromEnv: string[];
  private timer?: NodeJS.Timeout;
  /** The token file's identity when last read (a Secret update swaps a symlink: new inode). */
  private seen = '';
  readonly open: boolean;

  constructor(private readonly opts: BearerAuthOptions) {
    this.fromEnv = (opts.tokens ?? []).map((t) => t.trim()).filter((t) => t !== '');
    if (opts.tokenFile) {
      this.reload(true);
      const path = opts.tokenFile;
      this.timer = setInterval(() => {
        stat(path, (err, st) => {
          if (!err && signature(st) !== this.seen) this.reload(false);
        });
      }, opts.pollIntervalMs ?? 5_000);
      this.timer.unref();
    } else {
      this.set([]);
    }
    this.open = this.digests.length === 0 && !!opts.allowAnonymous;
    if (this.digests.length === 0 && !opts.allowAnonymous) {
      throw new Error('no API tokens configured: set --token-file or SPAWNER_API_TOKENS (or --allow-anonymous for local use)');
    }
    if (this.open) opts.logger.warn('API authentication is off (allowAnonymous): anyone who reaches the API can use it');
  }

  get count(): number {
    return this.digests.length;
  }

  verify(presented: string | undefined): boolean {
    if (this.open) return true;
    if (!presented) return false;
    const d = digest(presented);
    let ok = false;
    // Every digest is compared, so timing does not tell which (or whether one) matched.
    for (const known of this.digests) ok = timingSafeEqual(known, d) || ok;
    return ok;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private set(fileTokens: string[]): void {
    const all = [...new Set([...this.fromEnv, ...fileTokens])];
    for (const t of all) {
      if (t.length < 16) this.opts.logger.warn('an API token is shorter than 16 characters; use long random tokens');
    }
    this.digests = all.map(digest);
  }

  private reload(initial: boolean): void {
    const path = this.opts.tokenFile as string;
    try {
      // Stat first: a change between stat and read is then seen again on the next poll.
      this.seen = signature(statSync(path));
      this.set(parseTokenFile(readFileSync(path, 'utf8')));
      if (!initial) this.opts.logger.info('API tokens reloaded', { count: this.digests.length });
    } catch (err) {
      if (initial && this.fromEnv.length === 0) throw new Error(`cannot read the token file ${path}: ${(err as Error).message}`);
      if (initial) this.set([]);
      this.opts.logger.warn('cannot read the token file; keeping the tokens loaded before', { path, error: err });
    }
  }
}

/** A verifier over a fixed list, for tests and embedding. */
export function staticTokens(tokens: string[]): TokenVerifier {
  const digests = tokens.map(digest);
  return {
    open: tokens.length === 0,
    verify(presented) {
      if (tokens.length === 0) return true;
      if (!presented) return false;
      const d = digest(presented);
      let ok = false;
      for (const known of digests) ok = timingSafeEqual(known, d) || ok;
      return ok;
    },
  };
}
