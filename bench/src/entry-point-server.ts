/**
 * The entry point as the API process runs it (api/src/entry-point.ts, the same class), over a
 * store that holds fixed Ready backends whose endpoints are sidecar processes on this machine.
 * This mirrors the Kubernetes topology (API Pod → backend Pod's sidecar, two processes) without
 * a cluster; local mode would instead run the sidecar inside the API process.
 *
 * The store answers `get` from a map without copying, as the Kubernetes store answers from its
 * informer cache. Each backend carries a connection-token hash, as the API's backends do, so the
 * entry point checks the token and hands it on to the sidecar, which checks it again.
 *
 *   node entry-point-server.js --port=P --backend=<name>:<sidecar port> [...] --token-sha256=<hex>
 */
import { Registry } from 'prom-client';
import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import { ANNOTATION_TOKEN_HASH } from '../../common/src/constants';
import { silentLogger } from '../../common/src/logger';
import { EntryPoint } from '../../api/src/entry-point';
import { MemoryBackendStore } from '../../api/src/memory-backend-store';
import { ApiMetrics } from '../../api/src/metrics';

class CachedStore extends MemoryBackendStore {
  readonly cache = new Map<string, SessionLivedBackend>();
  override async get(name: string): Promise<SessionLivedBackend | undefined> {
    return this.cache.get(name);
  }
  override getCached(name: string): SessionLivedBackend | undefined {
    return this.cache.get(name);
  }
}

async function main(): Promise<void> {
  let port = 0;
  let tokenHash: string | undefined;
  const ports = new Map<string, number>();
  for (const arg of process.argv.slice(2)) {
    const [k, v] = arg.replace(/^--/, '').split('=');
    if (k === 'port') port = Number(v);
    else if (k === 'token-sha256') tokenHash = v;
    else if (k === 'backend') {
      const [name, p] = v.split(':');
      ports.set(name, Number(p));
    } else throw new Error(`unknown argument ${arg}`);
  }
  const store = new CachedStore({
    namespace: 'bench',
    endpointOf: (b) => ({ host: '127.0.0.1', port: ports.get(b.metadata.name as string) as number }),
  });
  for (const name of ports.keys()) {
    const annotations = tokenHash ? { [ANNOTATION_TOKEN_HASH]: tokenHash } : undefined;
    await store.create(
      newBackend(name, 'bench', { template: { containers: [{ name: 'app', image: 'bench' }] } }, { annotations }),
    );
    store.advance(name, 'Ready', { podIP: '127.0.0.1' });
    store.cache.set(name, store.peek(name) as SessionLivedBackend);
  }
  const entryPoint = new EntryPoint({
    store,
    config: { holdTimeoutMs: 30_000, holdMaxRequests: 1000, trustProxy: false },
    metrics: new ApiMetrics(new Registry()),
    logger: silentLogger,
  });
  const bound = await entryPoint.listen(port, '127.0.0.1');
  process.stdout.write(`entry point listening on ${bound}\n`);
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`entry-point-server: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
