/**
 * `npm start`: local mode's composition root. Config → logger → local mode (API, entry point,
 * demo page, local store) → banner; Ctrl-C or SIGTERM (and SIGHUP, a closed terminal) stop every
 * backend's app before exiting.
 */
import { ConfigError } from '../../common/src/config';
import { errorMessage } from '../../common/src/errors';
import { ImagesFileError } from '../../common/src/image-catalog';
import { createLogger, type LogSink } from '../../common/src/logger';
import { onShutdown } from '../../common/src/shutdown';
import { loadLocalConfig } from './config';
import { startLocalMode } from './local-mode';
import { textSink } from './log-format';

async function main(): Promise<void> {
  const config = loadLocalConfig();
  const sink: LogSink | undefined = config.logFormat === 'text' ? textSink() : undefined;
  const logger = createLogger('local', config.logLevel, sink);
  const sidecarLogger = createLogger('sidecar', config.logLevel === 'debug' ? 'debug' : 'warn', sink);

  let local;
  try {
    local = await startLocalMode(config, { logger, sidecarLogger });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES') {
      const { address, port } = err as { address?: string; port?: number };
      throw new ConfigError(
        `cannot listen on ${address ?? config.host}:${port ?? '?'} (${code}); choose other ports with --port and --entry-point-port (SPAWNER_LOCAL_PORT, SPAWNER_LOCAL_ENTRY_POINT_PORT)`,
      );
    }
    throw err;
  }

  const auth = config.tokens?.length ? 'API tokens required' : 'no API token needed (listening on ' + config.host + ')';
  process.stdout.write(
    `\nSpawner (local mode) — demo: ${local.demoUrl}  API: ${local.apiUrl}/v1/backends  entry point: ${local.entryPointUrl}/p/<name>/\n` +
      `  ${auth}; OpenAPI: ${local.apiUrl}/openapi.json; Ctrl-C stops every backend.\n\n`,
  );

  // Generous: every app gets its SIGTERM grace, then SIGKILL, in parallel.
  onShutdown(logger, () => local.close(), config.stopGraceSeconds * 1000 + 15_000);
  // A closed terminal is a stop request too (the default would kill us without stopping the apps).
  process.on('SIGHUP', () => process.kill(process.pid, 'SIGTERM'));
}

main().catch((err: unknown) => {
  const known = err instanceof ConfigError || err instanceof ImagesFileError;
  process.stderr.write(`${known ? errorMessage(err) : `spawner local mode failed to start: ${errorMessage(err)}`}\n`);
  process.exit(known ? 2 : 1);
});
