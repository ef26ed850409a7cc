/**
 * What a kubelet does for one backend's Pod, in local mode: the app as a child process, the real
 * sidecar in front of it (in process, on ports the OS picks), and what becomes of both told the
 * way Kubernetes tells it, as a Pod and a Service (`pod`, `service`). The operator's own planner
 * reads them (see local-backend-store.ts), so the phases, reasons and deadlines are the
 * operator's, not a second copy.
 *
 * The run observes; it decides nothing and writes no backend status. It keeps its Pod up to date
 * and calls `onChange` whenever the Pod changed. Stopping is the store's call (`stop`), made when
 * the plan deletes the Pod or the backend.
 *
 * The Pod, as local mode fills it in:
 * - created Pending, the app container waiting (ContainerCreating); the Service exists from the
 *   start, its clusterIP the address everything listens on;
 * - no local command for the image: the app container waits with ErrImagePull and a message;
 * - no free app port: PodScheduled False (Unschedulable), tried again every second;
 * - the sidecar listens: spec.nodeName and status.podIP (PodScheduled True);
 * - the app process started: phase Running, the container running;
 * - the sidecar reached the app's port: the Ready condition True (and the container's `ready`);
 * - the app exited: the container terminated with its exit code (reason Completed for 0, Error
 *   otherwise; 128 + n for signal n), phase Succeeded or Failed; a command that cannot be run is
 *   exit code 128, reason StartError, as container runtimes report it;
 * - anything else that keeps local mode from running it: phase Failed with a message.
 */
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { V1ContainerStatus, V1OwnerReference, V1Pod, V1PodStatus, V1Service } from '@kubernetes/client-node';
import { type SessionLivedBackend } from '../../common/src/backend';
import { identityOf, tellApp } from '../../common/src/backend-identity';
import { ANNOTATION_TOKEN_HASH, API_VERSION, KIND, LABEL_RUN } from '../../common/src/constants';
import { errorMessage } from '../../common/src/errors';
import { commandLine, type ImageCatalog, type ResolvedImage } from '../../common/src/image-catalog';
import type { Logger } from '../../common/src/logger';
import { createSidecar, sidecarConfig, type Sidecar, type SidecarConfig } from '../../sidecar/src/index';
import type { BackendContainer } from '../../crd-schemas/generated/types';
import { AppProcess, type AppExit } from './app-process';
import type { PortAllocator } from './ports';
import type { Watchdog } from './watchdog';
import type { ClaimedProcess } from './warm-process';

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
  /** The Pod changed (not called once the run is stopping). */
  onChange(): void;
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

/** How often a Pod without a free app port ("unschedulable") tries again. */
const NO_PORT_RETRY_MS = 1000;
/** A claimed app that refused its assignment is told again after this long. */
const APP_ASSIGN_RETRY_MS = 500;

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

/**
 * Starts `container`'s app as the image maps it, on `port`, as a container runtime would: the
 * image's entrypoint with the container's overrides, its environment and working directory.
 * Shared by a backend's own run and a warm pool's pre-started processes.
 */
export function spawnApp(
  image: ResolvedImage,
  container: BackendContainer,
  port: number,
  host: string,
  logger: Logger,
  onOutput: (line: string, stream: 'stdout' | 'stderr') => void,
): { app: AppProcess; argv: string[] } {
  const argv = commandLine(image, container.command, container.args);
  const { env, skipped } = appEnvironment(image, container, port, host);
  if (skipped.length > 0) logger.warn('env valueFrom is not supported in local mode; skipped', { names: skipped });
  const cwd = container.workingDir ? resolve(image.workingDir, container.workingDir) : image.workingDir;
  return { app: new AppProcess({ argv, env, cwd, onOutput }), argv };
}

export class BackendRun {
  readonly name: string;
  readonly uid: string;
  readonly info: RunInfo;
  /** The backend's Pod as a kubelet would report it; changes are announced through `onChange`. */
  readonly pod: V1Pod;
  /** The backend's Service: its address is the sidecar's (`info.servePort` on `host`). */
  readonly service: V1Service;
  private sidecar?: Sidecar;
  private app?: AppProcess;
  private unsubscribe?: () => void;
  private started?: Promise<void>;
  private stopping?: Promise<void>;
  /** Ends a wait (between port attempts, or for a claimed app's sidecar) early, when the run is stopped. */
  private wake?: () => void;
  private adopted = false;
  private readonly logger: Logger;

  /**
   * With `claimed`, the run adopts a warm pool's pre-started app instead of starting one: its Pod
   * is named after that process (as a claimed Pod keeps its name), and it reports the Pod
   * scheduled, running and Ready at once, when the sidecar in front of the app is up.
   */
  constructor(
    private readonly backend: SessionLivedBackend,
    private readonly deps: RunDeps,
    private readonly claimed?: ClaimedProcess,
  ) {
    this.name = backend.metadata.name ?? '';
    this.uid = backend.metadata.uid ?? '';
    const container = backend.spec.template.containers[0];
    this.info = { image: container.image };
    this.logger = deps.logger.child({ backend: this.name });
    const owner: V1OwnerReference = {
      apiVersion: backend.apiVersion ?? API_VERSION,
      kind: backend.kind ?? KIND,
      name: this.name,
      uid: this.uid,
      controller: true,
      blockOwnerDeletion: true,
    };
    const metadata = (name: string) => ({
      name,
      namespace: backend.metadata.namespace,
      uid: randomUUID(),
      labels: { ...(backend.metadata.labels ?? {}), [LABEL_RUN]: this.name },
      ownerReferences: [owner],
    });
    const app: V1ContainerStatus = {
      name: container.name,
      image: container.image,
      imageID: '',
      ready: false,
      restartCount: 0,
      started: false,
      state: { waiting: { reason: 'ContainerCreating' } },
    };
    this.pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: metadata(claimed?.name ?? this.name),
      spec: { containers: [{ name: container.name, image: container.image }], restartPolicy: 'Never' },
      status: {
        phase: 'Pending',
        conditions: [
          { type: 'PodScheduled', status: 'False' },
          { type: 'Ready', status: 'False' },
        ],
        containerStatuses: [app],
      },
    };
    this.service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata(this.name),
      spec: { type: 'ClusterIP', clusterIP: deps.host },
    };
  }

  /** The sidecar's serve address once it listens (and until the run stops). */
  get servePort(): number | undefined {
    return this.stopping ? undefined : this.info.servePort;
  }

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /** A claimed app whose sidecar is not up yet: its Pod will be reported complete in one change. */
  get adopting(): boolean {
    return this.claimed !== undefined && !this.adopted;
  }

  /** Starts the Pod (once). */
  start(): void {
    this.started ??= (this.claimed ? this.adopt(this.claimed) : this.run()).catch((err: unknown) => {
      this.adopted = true;
      this.logger.error('backend failed to start', { error: err });
      this.update((status) => {
        status.phase = 'Failed';
        status.message = `local mode could not run it: ${errorMessage(err)}`;
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

  private get appStatus(): V1ContainerStatus {
    return (this.pod.status?.containerStatuses as V1ContainerStatus[])[0];
  }

  /** Changes the Pod's status (and spec) through `change`; tells the store when anything changed. */
  private update(change: (status: V1PodStatus, app: V1ContainerStatus) => void): void {
    if (this.stopping) return;
    const before = JSON.stringify(this.pod);
    change(this.pod.status as V1PodStatus, this.appStatus);
    if (JSON.stringify(this.pod) !== before) this.deps.onChange();
  }

  private condition(status: V1PodStatus, type: string, value: boolean, reason?: string, message?: string): void {
    const now = value ? 'True' : 'False';
    const c = status.conditions?.find((x) => x.type === type);
    if (c && c.status === now && c.reason === reason && c.message === message) return;
    const entry = {
      type,
      status: now,
      lastTransitionTime: new Date(),
      ...(reason ? { reason } : {}),
      ...(message ? { message } : {}),
    };
    status.conditions = [...(status.conditions ?? []).filter((x) => x.type !== type), entry];
  }

  private async run(): Promise<void> {
    const { deps, backend } = this;
    const containers = backend.spec.template.containers;
    const container = containers[0];
    const image = deps.images.resolve(container.image);
    if (!image) {
      const known = deps.images.names().join(', ');
      const where = deps.images.file ?? 'spawner.local.json (or --images-file)';
      const message = `local mode has no command for image "${container.image}": map it in ${where}; known images: ${known}`;
      this.update((_, app) => (app.state = { waiting: { reason: 'ErrImagePull', message } }));
      return;
    }
    if (containers.length > 1) {
      this.logger.warn('local mode runs only the first container (the app)', { ignored: containers.slice(1).map((c) => c.name) });
    }

    const appPort = await this.allocatePort();
    if (appPort === undefined || this.stopping) return;
    this.info.appPort = appPort;

    const sidecar = await this.startSidecar(appPort);
    if (this.stopping) return;
    // The Pod is on this "node" once its sidecar (the Service's target) listens.
    this.update((status) => {
      (this.pod.spec as NonNullable<V1Pod['spec']>).nodeName = deps.nodeName;
      status.hostIP = deps.host;
      status.podIP = deps.host;
      status.podIPs = [{ ip: deps.host }];
      this.condition(status, 'PodScheduled', true);
    });

    const { app, argv } = spawnApp(image, container, appPort, deps.host, this.logger, (line, stream) =>
      this.logger.info(line, { source: 'app', stream, pid: this.info.pid }),
    );
    this.info.command = argv;
    this.app = app;
    let pid: number;
    try {
      pid = await app.started;
    } catch (err) {
      // What a container runtime reports for an entrypoint it cannot exec.
      this.update((status, c) => {
        status.phase = 'Failed';
        c.state = { terminated: { exitCode: 128, reason: 'StartError', message: `cannot run ${argv[0]}: ${errorMessage(err)}` } };
      });
      return;
    }
    this.info.pid = pid;
    deps.watchdog?.add(pid);
    void app.exited.then((exit) => this.onExit(exit));
    if (this.stopping) return;
    this.update((status, c) => {
      status.phase = 'Running';
      status.startTime = new Date();
      c.started = true;
      c.state = { running: { startedAt: new Date() } };
    });

    this.followReadiness(sidecar);
  }

  /**
   * A claimed warm process: the app runs and accepts connections already. Its sidecar, with this
   * backend's token, starts now; once the sidecar's own probe has reached the app, the Pod is
   * reported scheduled, running and Ready in one change, so the backend goes to Ready in one
   * status write, as a claimed Pod does on a cluster.
   */
  private async adopt(claimed: ClaimedProcess): Promise<void> {
    const { deps } = this;
    const { app } = claimed;
    this.app = app;
    Object.assign(this.info, { appPort: claimed.appPort, pid: claimed.pid, command: claimed.command });
    claimed.logTo(this.logger);
    void app.exited.then((exit) => this.onExit(exit));
    const sidecar = await this.startSidecar(claimed.appPort);
    if (this.stopping) return;
    // The sidecar's first probe reaches a listening app at once; an exit or a stop ends the wait too.
    let off: (() => void) | undefined;
    await new Promise<void>((done) => {
      this.wake = done;
      void app.exited.then(() => done());
      if (sidecar.state().ready) return done();
      off = sidecar.subscribe((m) => {
        if (m.ready) done();
      });
    });
    off?.();
    this.wake = undefined;
    if (claimed.assignPath !== undefined && !(await this.tellApp(claimed.appPort, claimed.assignPath))) return;
    this.adopted = true;
    if (this.stopping || !app.running) return;
    this.update((status, c) => {
      (this.pod.spec as NonNullable<V1Pod['spec']>).nodeName = deps.nodeName;
      status.hostIP = deps.host;
      status.podIP = deps.host;
      status.podIPs = [{ ip: deps.host }];
      this.condition(status, 'PodScheduled', true);
      status.phase = 'Running';
      status.startTime = claimed.startedAt;
      c.started = true;
      c.state = { running: { startedAt: claimed.startedAt } };
      c.ready = true;
      this.condition(status, 'Ready', true);
    });
    this.followReadiness(sidecar);
  }

  /**
   * Tells a claimed app its backend at the pool's assignPath, as an assigned sidecar does on a
   * cluster: until a 2xx answer the backend is not Ready (again every APP_ASSIGN_RETRY_MS, as the
   * operator repeats the handover; the startup timeout bounds it). False when the run stopped or
   * the app exited meanwhile.
   */
  private async tellApp(appPort: number, path: string): Promise<boolean> {
    const id = identityOf(this.backend);
    while (!this.stopping && this.app?.running) {
      try {
        await tellApp({ host: this.deps.host, port: appPort, path }, id);
        return true;
      } catch (err) {
        this.logger.warn('the app did not take its assignment; again shortly', { error: err });
        await new Promise<void>((done) => {
          this.wake = done;
          setTimeout(done, APP_ASSIGN_RETRY_MS);
        });
        this.wake = undefined;
      }
    }
    return false;
  }

  /** The sidecar in front of the app on `appPort`, with the backend's connection token, listening. */
  private async startSidecar(appPort: number): Promise<Sidecar> {
    const { deps, backend } = this;
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
    return sidecar;
  }

  /** Ready follows the sidecar's readiness probe: the app accepts connections. */
  private followReadiness(sidecar: Sidecar): void {
    const onState = (ready: boolean): void => {
      const c = this.appStatus;
      if (!c.state?.running || c.ready === ready) return;
      this.update((status) => {
        c.ready = ready;
        this.condition(status, 'Ready', ready);
      });
    };
    this.unsubscribe = sidecar.subscribe((m) => onState(m.ready));
    onState(sidecar.state().ready);
  }

  /** An app port; while none is free the Pod is "unschedulable" and asks again every second. */
  private async allocatePort(): Promise<number | undefined> {
    for (;;) {
      try {
        return await this.deps.ports.allocate();
      } catch (err) {
        this.update((status) =>
          this.condition(status, 'PodScheduled', false, 'Unschedulable', `local mode has no free app port: ${errorMessage(err)}`),
        );
      }
      await new Promise<void>((done) => {
        const timer = setTimeout(done, NO_PORT_RETRY_MS);
        timer.unref();
        this.wake = () => {
          clearTimeout(timer);
          done();
        };
      });
      this.wake = undefined;
      if (this.stopping) return undefined;
    }
  }

  private onExit(exit: AppExit): void {
    if (this.info.pid !== undefined) this.deps.watchdog?.remove(this.info.pid);
    this.adopted = true;
    this.update((status, c) => {
      const started = c.state?.running?.startedAt;
      status.phase = exit.exitCode === 0 ? 'Succeeded' : 'Failed';
      c.ready = false;
      c.state = {
        terminated: {
          exitCode: exit.exitCode,
          reason: exit.exitCode === 0 ? 'Completed' : 'Error',
          ...(exit.signal ? { message: `killed by ${exit.signal}`, signal: exit.exitCode - 128 } : {}),
          ...(started ? { startedAt: started } : {}),
          finishedAt: new Date(),
        },
      };
      this.condition(status, 'Ready', false);
    });
  }

  private async teardown(): Promise<void> {
    this.wake?.();
    // Let a start in progress reach a point where it notices the stop (it checks after each await).
    await this.started?.catch(() => undefined);
    this.unsubscribe?.();
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
