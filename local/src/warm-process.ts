/**
 * One pre-started process of a local warm pool (local-pools.ts): the app of the pool's template,
 * started on an app port of its own and probed until it accepts connections, assigned to no
 * backend. It has no sidecar and no route: the entry point reaches only backends, so no
 * connection token opens it. The sidecar, with the claiming backend's token, is started at the
 * claim (BackendRun.adopt), as the token reaches a claimed Pod's sidecar on a cluster. Once
 * claimed, the process belongs to the backend's run and never comes back to the pool.
 */
import { randomBytes } from 'node:crypto';
import { errorMessage } from '../../common/src/errors';
import type { ResolvedImage } from '../../common/src/image-catalog';
import type { Logger } from '../../common/src/logger';
import type { BackendContainer } from '../../crd-schemas/generated/types';
import { probeUntilReady, type ReadinessProbe } from '../../sidecar/src/readiness';
import type { AppExit, AppProcess } from './app-process';
import { spawnApp } from './backend-run';
import type { PortAllocator } from './ports';
import type { Watchdog } from './watchdog';

/** What a claim hands to the backend's run. */
export interface ClaimedProcess {
  /** The process's "Pod" name, which the backend's status.podName then shows. */
  name: string;
  app: AppProcess;
  appPort: number;
  pid: number;
  command: string[];
  startedAt: Date;
  /** From now on the app's output is logged as the backend's. */
  logTo(logger: Logger): void;
  /** The pool's assignPath: the app is told its backend there before the backend is Ready. */
  assignPath?: string;
}

export interface WarmProcessDeps {
  ports: PortAllocator;
  watchdog?: Watchdog;
  logger: Logger;
  host: string;
  stopGraceMs: number;
  /** It became ready, or it ended before a claim (then the pool replaces it). */
  onChange(p: WarmProcess): void;
}

export type WarmState = 'starting' | 'ready' | 'claimed' | 'ended';

/** Like a Pod's generateName: `<pool>-` and five random characters. */
const suffix = (): string => randomBytes(4).toString('hex').slice(0, 5);

export class WarmProcess {
  readonly name: string;
  readonly createdAt = Date.now();
  private current: WarmState = 'starting';
  private everReady = false;
  private app?: AppProcess;
  private argv: string[] = [];
  private appPort?: number;
  private startedAt?: Date;
  private probe?: ReadinessProbe;
  private stopping?: Promise<void>;
  private logger: Logger;

  constructor(
    readonly pool: string,
    private readonly image: ResolvedImage,
    private readonly container: BackendContainer,
    private readonly deps: WarmProcessDeps,
  ) {
    this.name = `${pool}-${suffix()}`;
    this.logger = deps.logger.child({ pool, process: this.name });
  }

  get state(): WarmState {
    return this.current;
  }

  /** Whether it ever accepted connections (one that never did is a failing start). */
  get wasReady(): boolean {
    return this.everReady;
  }

  get pid(): number | undefined {
    return this.app?.running ? this.app.pid : undefined;
  }

  start(): void {
    this.run().catch((err: unknown) => {
      this.logger.warn('a pool process could not be started', { error: errorMessage(err) });
      this.end();
    });
  }

  private async run(): Promise<void> {
    const { deps } = this;
    const port = await deps.ports.allocate();
    if (this.current !== 'starting' || this.stopping) {
      deps.ports.release(port);
      return;
    }
    this.appPort = port;
    const { app, argv } = spawnApp(this.image, this.container, port, deps.host, this.logger, (line, stream) =>
      this.logger.info(line, { source: 'app', stream, pid: app.pid }),
    );
    this.app = app;
    this.argv = argv;
    const pid = await app.started;
    this.startedAt = new Date();
    if (this.stopping) return;
    deps.watchdog?.add(pid);
    void app.exited.then((exit) => this.onExit(exit));
    this.probe = probeUntilReady(deps.host, port, () => {
      if (this.current !== 'starting') return;
      this.current = 'ready';
      this.everReady = true;
      this.logger.debug('pool process ready', { pid, afterMs: Date.now() - this.createdAt });
      deps.onChange(this);
    });
  }

  /** Hands the process to a backend (only a ready one); it leaves the pool for good. */
  claim(): ClaimedProcess | undefined {
    const { app, appPort, startedAt } = this;
    if (this.current !== 'ready' || this.stopping || !app?.running || appPort === undefined || !startedAt) return undefined;
    this.current = 'claimed';
    this.probe?.stop();
    return {
      name: this.name,
      app,
      appPort,
      pid: app.pid as number,
      command: this.argv,
      startedAt,
      logTo: (logger) => {
        this.logger = logger;
      },
    };
  }

  /** Stops an unclaimed process (SIGTERM, SIGKILL after the grace); a claimed one is its backend's. */
  stop(): Promise<void> {
    if (this.current === 'claimed') return Promise.resolve();
    this.stopping ??= (async () => {
      this.probe?.stop();
      const app = this.app;
      if (app?.pid !== undefined) {
        await app.stop(this.deps.stopGraceMs);
        this.deps.watchdog?.remove(app.pid);
      }
      this.current = 'ended';
      this.releasePort();
    })();
    return this.stopping;
  }

  private onExit(exit: AppExit): void {
    if (this.current === 'claimed' || this.stopping) return;
    if (this.app?.pid !== undefined) this.deps.watchdog?.remove(this.app.pid);
    this.logger.warn('a pool process exited before it was claimed; replacing it', { exitCode: exit.exitCode });
    this.end();
  }

  private end(): void {
    if (this.current === 'ended' || this.current === 'claimed') return;
    this.probe?.stop();
    this.current = 'ended';
    this.releasePort();
    this.deps.onChange(this);
  }

  private releasePort(): void {
    if (this.appPort === undefined) return;
    this.deps.ports.release(this.appPort);
    this.appPort = undefined;
  }
}
