/**
 * The sidecar process, as the operator injects it: `--serve-port=9090 --upstream-port=<httpPort>`,
 * plus SPAWNER_TOKEN_SHA256 when the backend has a connection token.
 */
import { ConfigError } from '../../common/src/config';
import { createLogger } from '../../common/src/logger';
import { onShutdown } from '../../common/src/shutdown';
import { loadSidecarConfig } from './config';
import { createSidecar } from './sidecar';

async function main(): Promise<void> {
  let config;
  try {
    config = loadSidecarConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  const logger = createLogger('sidecar', config.logLevel);
  const sidecar = createSidecar(config, { logger });
  // Registered before listening so a SIGTERM during start-up still shuts down cleanly.
  onShutdown(logger, () => sidecar.stop(), config.shutdownGraceMs + 5000);
  await sidecar.start();
}

main().catch((err: unknown) => {
  process.stderr.write(`sidecar failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
