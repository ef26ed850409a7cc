/**
 * What a Pod is on Kubernetes, for one backend in local mode: the app as a child process, the
 * real sidecar in front of it (in process, on ports the OS picks), the sweeper's own Tracker on
 * the sidecar's `/events` stream, and the startup and lifetime deadlines the operator enforces.
 *
 * The run observes and reports; the store decides. Every fact goes out as a phase transition
 * through `report`, which applies common's forward-only phase machine and answers false when the
 * backend has moved past (or away) meanwhile. Stopping is the store's call (`stop`), made when
 * the backend reaches a terminal phase or is deleted.
 */
import { resolve } from 'node:path';
import { type SessionLivedBackend } from '../../common/src/backend';
import { Reasons, type Transition } from '../../common/src/lifecycle';
import { ANNOTATION_TOKEN_HASH, DEFAULT_GRACE_PERIOD_SECONDS, DEFAULT_STARTUP_TIMEOUT_SECONDS } from '../../common/src/constants';
import { errorMessage } from '../../common/src/errors';
import type { Logger } from '../../common/src/logger';
import { createSidecar, sidecarConfig, type Sidecar, type SidecarConfig } from '../../sidecar/src/index';
import { Tracker } from '../../sweeper/src/tracker';
import type { BackendContainer } from '../../crd-schemas/generated/types';
import { AppProcess, type AppExit } from './app-process';
import { commandLine, type ImageCatalog, type ResolvedImage } from './images';
import type { PortAllocator } from './ports';
import type { Watchdog } from './watchdog';

export type SidecarSettings = Pick<SidecarConfig, 'heartbeatSeconds' | 'holdTimeoutMs' | 'holdMaxQueued' | 'shutdownGraceMs'>;

export interface RunDeps {
  images: ImageCatalog;
  ports: PortAllocator;
  watchdog?: Watchdog;
  logger: Logger;
  /** For the embedded sidecars (quieter than local mode's own log by default). */
  sidecarLogger: Logger;
  /** Where apps and sidecars listen. */
  host: string;
  nodeName: string;
  /** SIGTERM → SIGKILL. */
  stopGraceMs: number;
  sidecar: SidecarSettings;
  /** How long the sidecar's stream may be down before it is reported (it is in process: a bug). */
  unreachableAfterMs: number;
  /** Applies a transition to this incarnation; false when it is no longer possible. */
  report(t: Transition): boolean;
}

/** What runs, for logs and for the store's endpoint. */
export interface RunInfo {
  image: string;
  command?: string[];
  pid?: number;
  appPort?: number;
  servePort?: number;
  adminPort?: number;
}

/** setTimeout caps delays at 2^31-1 ms (~24.8 days); maxLifetimeSeconds may be a year. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function longTimeout(fn: () => void, delayMs: number): { clear(): void } {
  let timer: NodeJS.Timeout;
  const arm = (remaining: number): void => {
    timer = setTimeout(
      () => (remaining > MAX_TIMER_MS ? arm(remaining - MAX_TIMER_MS) : fn()),
      Math.min(remaining, MAX_TIMER_MS),
    );
    timer.unref();
  };
  arm(Math.max(0, delayMs));
  return { clear: () => clearTimeout(timer) };
}

/**
 * The app's environment. Local commands need the machine's PATH, HOME and so on, so it starts from
 * local mode's own environment, minus SPAWNER_* (local mode's settings, API tokens among them).
 */
export function appEnvironment(
  image: ResolvedImage,
  container: BackendContainer,
  port: number,
  host: string,
  base: NodeJS.ProcessEnv = process.env,
): { env: Record<string, string>; skipped: string[] } {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined && !k.startsWith('SPAWNER_')) env[k] = v;
  Object.assign(env, image.env);
  const skipped: string[] = [];
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom) skipped.push(e.name);
    else env[e.name] = '';
  }
  // The sidecar proxies to this address and port, whatever the spec's httpPort says.
  env.PORT = String(port);
  env.HOST = host;
  return { env, skipped };
}

export class BackendRun {
  readonly name: string;
  readonly uid: string;
  readonly info: RunInfo;
  private sidecar?: Sidecar;
  private app?: AppProcess;
  private tracker?: Tracker;
  private unsubscribe?: () => void;
  private readonly timers: Array<{ clear(): void }> = [];
  private started?: Promise<void>;
  private stopping?: Promise<void>;
  private readyReached = false;
  private readonly logger: Logger;

  constructor(
    private readonly backend: SessionLivedBackend,
    private readonly deps: RunDeps,
  ) {
    this.name = backend.metadata.name ?? '';
    this.uid = backend.metadata.uid ?? '';
    this.info = { image: backend.spec.template.containers[0].image };
    this.logger = deps.logger.child({ backend: this.name });
  }

  /** The sidecar's serve address once it listens (and until the run stops). */
  get servePort(): number | undefined {
    return this.stopping ? undefined : this.info.servePort;
  }

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  start(): void {
    this.armDeadlines();
    this.started = this.run().catch((err: unknown) => {
      // Anything unexpected while starting is the node's failure to run the Pod.
      this.logger.error('backend failed to start', { error: err });
      this.deps.report({
        phase: 'Failed',
        reason: Reasons.Unschedulable,
        message: `local mode could not start it: ${errorMessage(err)}`,
      });
    });
  }

  /** Stops everything of the run; idempotent; resolves when the app has exited. */
  stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  /** Signals the app's process group now (for an exit of local mode that cannot wait). */
  signal(sig: NodeJS.Signals): void {
    this.app?.signalGroup(sig);
  }

  private armDeadlines(): void {
    const spec = this.backend.spec;
    const created = new Date(this.backend.metadata.creationTimestamp as unknown as string).getTime();
    const startup = spec.startupTimeoutSeconds ?? DEFAULT_STARTUP_TIMEOUT_SECONDS;
    this.timers.push(
      longTimeout(
        () => {
          if (this.readyReached) return;
          this.deps.report({
            phase: 'Failed',
            reason: Reasons.StartupTimeout,
            message: `not Ready within startupTimeoutSeconds (${startup})`,
          });
        },
        created + startup * 1000 - Date.now(),
      ),
    );
    const lifetime = spec.maxLifetimeSeconds;
    if (lifetime !== undefined) {
      this.timers.push(
        longTimeout(
          () => {
            this.deps.report({
              phase: 'Swept',
              reason: Reasons.LifetimeExceeded,
              message: `maxLifetimeSeconds (${lifetime}) reached`,
            });
          },
          created + lifetime * 1000 - Date.now(),
        ),
      );
    }
  }

  private async run(): Promise<void> {
    const { deps, backend } = this;
    const containers = backend.spec.template.containers;
    const container = containers[0];
    const image = deps.images.resolve(container.image);
    if (!image) {
      const known = deps.images.names().join(', ');
      const where = deps.images.file ?? 'spawner.local.json (or --images-file)';
      deps.report({
        phase: 'Failed',
        reason: Reasons.ImagePullError,
        message: `local mode has no command for image "${container.image}": map it in ${where}; known images: ${known}`,
      });
      return;
    }
    if (containers.length > 1) {
      this.logger.warn('local mode runs only the first container (the app)', { ignored: containers.slice(1).map((c) => c.name) });
    }

    let appPort: number;
    try {
      appPort = await deps.ports.allocate();
    } catch (err) {
      deps.report({ phase: 'Failed', reason: Reasons.Unschedulable, message: errorMessage(err) });
      return;
    }
    this.info.appPort = appPort;
    if (this.stopping) return;

    const tokenSha256 = backend.metadata.annotations?.[ANNOTATION_TOKEN_HASH]?.toLowerCase();
    const sidecar = createSidecar(
      sidecarConfig({
        ...deps.sidecar,
        servePort: 0,
        adminPort: 0,
        listenHost: deps.host,
        upstreamHost: deps.host,
        upstreamPort: appPort,
        ...(tokenSha256 ? { tokenSha256 } : {}),
      }),
      { logger: deps.sidecarLogger.child({ backend: this.name }), defaultMetrics: false },
    );
    this.sidecar = sidecar;
    await sidecar.start();
    this.info.servePort = sidecar.servePort;
    this.info.adminPort = sidecar.adminPort;
    if (this.stopping) return;

    // The "Service" (the sidecar's address) exists, then the "Pod" is on this node.
    const url = `http://${deps.host}:${sidecar.servePort}/`;
    if (!deps.report({ phase: 'Constructed', fields: { ip: deps.host, port: sidecar.servePort, url } })) return;
    if (!deps.report({ phase: 'Scheduled', fields: { nodeName: deps.nodeName, podIP: deps.host } })) return;

    const argv = commandLine(image, container.command, container.args);
    const { env, skipped } = appEnvironment(image, container, appPort, deps.host);
    if (skipped.length > 0) this.logger.warn('env valueFrom is not supported in local mode; skipped', { names: skipped });
    const cwd = container.workingDir ? resolve(image.workingDir, container.workingDir) : image.workingDir;
    this.info.command = argv;
    const app = new AppProcess({
      argv,
      env,
      cwd,
      onOutput: (line, stream) => this.logger.info(line, { source: 'app', stream, pid: this.info.pid }),
    });
    this.app = app;
    let pid: number;
    try {
      pid = await app.started;
    } catch (err) {
      // What a container runtime reports for an entrypoint it cannot exec (StartError).
      deps.report({
        phase: 'Failed',
        reason: Reasons.ContainerExited,
        message: `the application could not be started (${argv[0]}): ${errorMessage(err)}`,
        fields: { exitCode: 128 },
      });
      return;
    }
    this.info.pid = pid;
    deps.watchdog?.add(pid);
    void app.exited.then((exit) => this.onExit(exit));
    if (this.stopping) return;
    if (!deps.report({ phase: 'Running' })) return;

    const onState = (ready: boolean): void => {
      if (!ready || this.readyReached || this.stopping) return;
      this.readyReached = deps.report({ phase: 'Ready' });
    };
    this.unsubscribe = sidecar.subscribe((m) => onState(m.ready));
    onState(sidecar.state().ready);

    const grace = backend.spec.gracePeriodSeconds ?? DEFAULT_GRACE_PERIOD_SECONDS;
    this.tracker = new Tracker({
      url: `http://${deps.host}:${sidecar.adminPort}/events`,
      gracePeriodSeconds: grace,
      heartbeatSeconds: deps.sidecar.heartbeatSeconds,
      unreachableAfterMs: deps.unreachableAfterMs,
      onIdle: () => {
        deps.report({ phase: 'Swept', reason: Reasons.IdleTimeout, message: `idle for gracePeriodSeconds (${grace})` });
      },
      onUnreachable: (since) => {
        this.logger.warn("the sidecar's state stream is down; not sweeping meanwhile", { sinceMs: Date.now() - since });
        return true;
      },
    });
    this.tracker.start();
  }

  private onExit(exit: AppExit): void {
    if (this.info.pid !== undefined) this.deps.watchdog?.remove(this.info.pid);
    if (this.stopping) return;
    const how = exit.signal ? `was killed by ${exit.signal} (exit code ${exit.exitCode})` : `exited with code ${exit.exitCode}`;
    this.deps.report({
      phase: 'Failed',
      reason: Reasons.ContainerExited,
      message: `the application ${how}`,
      fields: { exitCode: exit.exitCode },
    });
  }

  private async teardown(): Promise<void> {
    for (const t of this.timers) t.clear();
    // Let a start in progress reach a point where it notices the stop (it checks after each await).
    await this.started?.catch(() => undefined);
    this.unsubscribe?.();
    this.tracker?.close();
    const app = this.app;
    if (app?.pid !== undefined) {
      const exit = await app.stop(this.deps.stopGraceMs);
      this.deps.watchdog?.remove(app.pid);
      this.logger.debug('app stopped', { pid: app.pid, exitCode: exit.exitCode });
    }
    await this.sidecar?.stop().catch((err: unknown) => this.logger.warn('sidecar stop failed', { error: err }));
    if (this.info.appPort !== undefined) this.deps.ports.release(this.info.appPort);
  }
}
