import type { Logger } from './logger';

/**
 * A second signal within this time of the first is the same request: a signal sent both to a
 * process and to its group (or to every process of a container) arrives twice within
 * milliseconds, and must not turn a graceful drain into an abrupt exit.
 */
export const REPEATED_SIGNAL_MS = 1000;

/** The process, as far as shutting down goes (tests pass a fake). */
export interface ShutdownHost {
  on(signal: 'SIGTERM' | 'SIGINT', handler: (signal: NodeJS.Signals) => void): void;
  exit(code: number): void;
  now(): number;
}

const realProcess: ShutdownHost = {
  on: (signal, handler) => process.on(signal, handler),
  exit: (code) => process.exit(code),
  now: () => Date.now(),
};

/**
 * Runs `cleanup` once on SIGTERM or SIGINT, then exits. A second signal (later than
 * REPEATED_SIGNAL_MS after the first), or a cleanup that outlives `timeoutMs`, exits at once:
 * Kubernetes kills us after terminationGracePeriodSeconds anyway, and Ctrl-C twice should always
 * work.
 */
export function onShutdown(
  logger: Logger,
  cleanup: () => Promise<void>,
  timeoutMs = 20_000,
  host: ShutdownHost = realProcess,
): void {
  let stoppingSince: number | undefined;
  const handler = (signal: NodeJS.Signals): void => {
    if (stoppingSince !== undefined) {
      if (host.now() - stoppingSince < REPEATED_SIGNAL_MS) {
        logger.debug('repeated signal; still shutting down', { signal });
        return;
      }
      logger.warn('second signal; exiting now', { signal });
      host.exit(1);
      return;
    }
    stoppingSince = host.now();
    logger.info('shutting down', { signal });
    const timer = setTimeout(() => {
      logger.error('shutdown timed out; exiting', { timeoutMs });
      host.exit(1);
    }, timeoutMs);
    timer.unref();
    cleanup()
      .then(() => host.exit(0))
      .catch((err: unknown) => {
        logger.error('shutdown failed', { error: err });
        host.exit(1);
      });
  };
  host.on('SIGTERM', handler);
  host.on('SIGINT', handler);
}
