import type { Logger } from './logger';

/**
 * Runs `cleanup` once on SIGTERM or SIGINT, then exits. A second signal, or a cleanup that
 * outlives `timeoutMs`, exits at once: Kubernetes kills us after terminationGracePeriodSeconds
 * anyway, and Ctrl-C twice should always work.
 */
export function onShutdown(logger: Logger, cleanup: () => Promise<void>, timeoutMs = 20_000): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn('second signal; exiting now', { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info('shutting down', { signal });
    const timer = setTimeout(() => {
      logger.error('shutdown timed out; exiting', { timeoutMs });
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    cleanup()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error('shutdown failed', { error: err });
        process.exit(1);
      });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
