import type { SessionBackendPool } from '../../../common/src/backend';
import type { Logger } from '../../../common/src/logger';
import type { BackendStore } from '../backend-store';
import type { ConnectionTokens } from '../connection-tokens';
import type { ApiMetrics } from '../metrics';
import type { TokenBucket } from '../rate-limit';

/** Reads the backend namespace's warm pools (absent: pools are not available; local mode has its own, local/src/local-pools.ts). */
export interface PoolReader {
  get(name: string): Promise<SessionBackendPool | undefined>;
}

/** What the use cases need; built once by the app factory. */
export interface UseCaseDeps {
  store: BackendStore;
  pools?: PoolReader;
  tokens: ConnectionTokens;
  metrics: ApiMetrics;
  logger: Logger;
  limits: {
    bucket: TokenBucket;
    /** 0: no limit. */
    maxLive: number;
    liveRetryAfterSeconds: number;
  };
}
