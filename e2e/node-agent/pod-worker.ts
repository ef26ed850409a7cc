/**
 * One Pod on this node, from admission to deletion: sandbox (network namespace), volumes, init
 * containers, containers with restarts and probes, and the Pod status that reflects them.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container } from '@kubernetes/client-node';
import { backoffDelay, sleep } from '../../common/src/backoff';
import { errorMessage } from '../../common/src/errors';
import { stopGracefully } from '../../common/src/graceful-stop';
import { commandLine, type ImageCatalog } from '../../common/src/image-catalog';
import type { Logger } from '../../common/src/logger';
import { expand, type NodeAllocatable } from './downward';
import { ConfigError, containerEnv, type ObjectSource } from './env';
import type { PodNetwork, Sandbox } from './network';
import { kubeTime, podKey, type ContainerStateJson, type Pod, type PodConditionJson, type PodStatusJson } from './pod-types';
import { ProbeWorker } from './probes';
import { ContainerProcess, prepareCgroup, removeCgroup, resolveExecutable, type ExitInfo } from './process';
import { run } from './run';
import { buildStatus, podPhase, type ContainerView, type PodView, type RestartPolicy } from './status';
import { containerMounts, ensureMountTargets, MountError, prepareVolumes, type Mount, type TokenSource } from './volumes';
import { parseQuantity } from './quantity';

export interface WorkerContext {
  stateDir: string;
  nodeName: string;
  apiHost: string;
  apiPort: number;
  maxGraceSeconds: number;
  maxRestartBackoffMs: number;
  statusDebounceMs: number;
  /** Parent cgroup directory for pod cgroups, or undefined when cgroups are not used. */
  cgroupRoot?: string;
  memoryLimits: boolean;
  /** Niceness of pod processes: the control plane and the agent come first, as on separate nodes. */
  podNice: number;
  node: NodeAllocatable;
  network: PodNetwork;
  images: ImageCatalog;
  sources: ObjectSource & TokenSource;
  logger: Logger;
  writeStatus(pod: Pod, status: PodStatusJson): Promise<'ok' | 'gone'>;
  deletePod(pod: Pod): Promise<void>;
  recordCreatedPath(top: string): void;
  onSandbox?(setupMs: number): void;
  /** Agent saw the pod → pod Ready, once per pod. */
  onReady?(ms: number): void;
}

/** Process timings the agent reports on /pods (tests measure the app's own start-up with them). */
export interface ContainerTiming {
  pid?: number;
  spawnedAt?: string;
  firstSpawnedAt?: string;
  readyAt?: string;
  firstReadyAt?: string;
  exitedAt?: string;
  exitCode?: number;
  /** Where the last start spent its time: env and mounts, the cgroup, and spawning the process. */
  startMs?: { config: number; cgroup: number; spawn: number };
}

/** One container on /pods: the e2e suite and the benchmarks read these. */
export interface AgentContainer extends ContainerTiming {
  name: string;
  image?: string;
  state: 'waiting' | 'running' | 'terminated';
  ready: boolean;
  restartCount: number;
  logPath: string;
}

/** One pod on /pods. */
export interface AgentPod {
  namespace: string;
  name: string;
  uid: string;
  phase: string;
  podIP?: string;
  netns?: string;
  netnsSetupMs?: number;
  seenAt: string;
  sandboxReadyAt?: string;
  readyAt?: string;
  statusWrites: number;
  initContainers: AgentContainer[];
  containers: AgentContainer[];
}

type Terminated = NonNullable<ContainerStateJson['terminated']>;

type RunResult =
  | { kind: 'exited'; info: ExitInfo; terminated: Terminated }
  | { kind: 'pull'; retryMs: number }
  | { kind: 'config'; retryMs: number };

class Container {
  view: ContainerView;
  proc?: ContainerProcess;
  probes: ProbeWorker[] = [];
  timing: ContainerTiming = {};
  /** Consecutive quick failures (restart back-off) and image lookups that failed (pull back-off). */
  crashes = 0;
  pulls = 0;
  configFailures = 0;
  /** Resolves the first time the container counts as started (native sidecars gate later init containers). */
  readonly started: Promise<void>;
  markStarted: () => void = () => undefined;

  constructor(
    readonly spec: V1Container,
    readonly init: boolean,
    initializing: boolean,
  ) {
    this.view = {
      name: spec.name,
      image: spec.image ?? '',
      // The kubelet's wording while init containers run; ContainerCreating once they are done.
      state: { waiting: { reason: init || initializing ? 'PodInitializing' : 'ContainerCreating' } },
      lastState: {},
      restartCount: 0,
      ready: false,
      started: false,
      sidecar: init && spec.restartPolicy === 'Always',
    };
    this.started = new Promise((resolve) => (this.markStarted = resolve));
  }

  stopProbes(): void {
    for (const p of this.probes) p.stop();
    this.probes = [];
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class PodWorker {
  pod: Pod;
  readonly uid: string;
  readonly key: string;
  readonly seenAt = Date.now();
  sandbox?: Sandbox;
  sandboxReadyAt?: number;
  readyAt?: number;
  phase: string = 'Pending';
  private readonly log: Logger;
  private readonly inits: Container[];
  private readonly containers: Container[];
  private volumes = new Map<string, string>();
  private startTime?: string;
  private terminalPhase?: 'Succeeded' | 'Failed';
  private stopping = false;
  private terminating?: Promise<void>;
  private readonly abort = new AbortController();
  /** Some process ran without a cgroup, so only the netns tells whether anything is left. */
  private untracked = false;
  private lastWritten?: string;
  private lastConditions?: PodConditionJson[];
  private flushTimer?: NodeJS.Timeout;
  private writing?: Promise<void>;
  private dirty = false;
  writes = 0;

  constructor(
    private readonly ctx: WorkerContext,
    pod: Pod,
  ) {
    this.pod = pod;
    this.uid = pod.metadata.uid;
    this.key = podKey(pod);
    this.log = ctx.logger.child({ pod: this.key, uid: this.uid });
    this.inits = (pod.spec.initContainers ?? []).map((c) => new Container(c, true, true));
    this.containers = pod.spec.containers.map((c) => new Container(c, false, this.inits.length > 0));
  }

  get dir(): string {
    return join(this.ctx.stateDir, 'pods', `${this.pod.metadata.namespace}_${this.pod.metadata.name}`);
  }

  /** Per-incarnation data (volumes hold tokens): removed when the pod ends; logs stay. */
  private get runDir(): string {
    return join(this.dir, `run-${this.uid}`);
  }

  private get policy(): RestartPolicy {
    return (this.pod.spec.restartPolicy ?? 'Always') as RestartPolicy;
  }

  private get cgroupDir(): string | undefined {
    return this.ctx.cgroupRoot && join(this.ctx.cgroupRoot, this.uid);
  }

  start(): void {
    this.startTime = kubeTime();
    this.markDirty();
    this.setup().catch((err: unknown) => this.log.error('pod set-up failed', { error: errorMessage(err) }));
  }

  update(pod: Pod): void {
    this.pod = pod;
    if (pod.metadata.deletionTimestamp) void this.terminate();
  }

  // ---- set-up ------------------------------------------------------------------------------

  private async retrying<T>(what: string, attempt: () => Promise<T>, onError: (message: string) => void): Promise<T | undefined> {
    for (let i = 0; !this.stopping; i++) {
      try {
        return await attempt();
      } catch (err) {
        const message = errorMessage(err);
        if (i === 0 || i % 10 === 0) this.log.warn(`${what} failed; retrying`, { error: message });
        onError(message);
        await sleep(backoffDelay(i, 200, 5_000), this.abort.signal);
      }
    }
    return undefined;
  }

  private async setup(): Promise<void> {
    mkdirSync(join(this.runDir, 'home'), { recursive: true });
    const hostNetwork = Boolean(this.pod.spec.hostNetwork);
    const sandbox = await this.retrying(
      'pod sandbox',
      () => (hostNetwork ? Promise.resolve(this.ctx.network.hostNetwork()) : this.ctx.network.acquire()),
      () => undefined,
    );
    if (!sandbox) return;
    if (this.stopping) {
      // Stopped while the sandbox was being made: nothing else will free it.
      await this.ctx.network.release(sandbox, true);
      return;
    }
    this.sandbox = sandbox;
    this.sandboxReadyAt = Date.now();
    this.ctx.onSandbox?.(this.sandbox.setupMs);
    this.markDirty();

    const volumes = await this.retrying(
      'volume set-up',
      () =>
        prepareVolumes(this.pod, join(this.runDir, 'volumes'), {
          addr: { podIP: this.sandbox?.ip, hostIP: this.ctx.network.hostIp },
          node: this.ctx.node,
          sources: this.ctx.sources,
        }),
      (message) => {
        for (const c of [...this.inits, ...this.containers]) {
          if (c.view.state.waiting) c.view.state = { waiting: { reason: c.view.state.waiting.reason, message } };
        }
        this.markDirty();
      },
    );
    if (!volumes) return;
    if (this.stopping) {
      rmSync(this.runDir, { recursive: true, force: true });
      return;
    }
    this.volumes = volumes;

    for (const c of this.inits) {
      if (this.stopping) return;
      if (c.view.sidecar) {
        // A native sidecar keeps running; the next init container waits only for it to start.
        void this.runLoop(c);
        await Promise.race([
          c.started,
          new Promise((resolve) => this.abort.signal.addEventListener('abort', resolve, { once: true })),
        ]);
        continue;
      }
      if (!(await this.runLoop(c))) return;
    }
    for (const c of this.containers) {
      if (c.view.state.waiting) c.view.state = { waiting: { reason: 'ContainerCreating' } };
    }
    await Promise.all(this.containers.map((c) => this.runLoop(c)));
  }

  /**
   * Runs a container for as long as its restart policy says, with the kubelet's back-offs.
   * Resolves true when an init container completed, false when the pod stops or fails.
   */
  private async runLoop(c: Container): Promise<boolean> {
    const signal = this.abort.signal;
    for (;;) {
      if (this.stopping) return false;
      const result = await this.runOnce(c);
      if (this.stopping) return false;
      if (result.kind === 'pull') {
        // ErrImagePull first, then ImagePullBackOff until the next attempt, as a real pull goes.
        await sleep(1_000, signal);
        if (this.stopping) return false;
        c.view.state = { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${c.spec.image ?? ''}"` } };
        this.markDirty();
        await sleep(result.retryMs, signal);
        continue;
      }
      if (result.kind === 'config') {
        await sleep(result.retryMs, signal);
        continue;
      }
      const { info, terminated } = result;
      if (c.init && !c.view.sidecar && info.exitCode === 0) return true;
      const restart =
        c.view.sidecar ||
        this.policy === 'Always' ||
        (this.policy === 'OnFailure' && info.exitCode !== 0) ||
        (c.init && this.policy !== 'Never');
      if (!restart) {
        this.checkTerminal();
        return false;
      }
      const delay = this.restartDelay(c);
      c.view.lastState = { terminated };
      if (delay > 0) {
        c.view.state = {
          waiting: {
            reason: 'CrashLoopBackOff',
            message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${c.spec.name} pod=${this.pod.metadata.name}_${this.pod.metadata.namespace}(${this.uid})`,
          },
        };
        this.markDirty();
        await sleep(delay, signal);
        if (this.stopping) return false;
      }
      c.view.restartCount++;
    }
  }

  private baseEnv(): Record<string, string> {
    const port = String(this.ctx.apiPort);
    return {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOSTNAME: this.pod.metadata.name.slice(0, 63),
      // An empty HOME: client libraries look for ~/.kube/config before in-cluster credentials.
      HOME: join(this.runDir, 'home'),
      KUBERNETES_SERVICE_HOST: this.ctx.apiHost,
      KUBERNETES_SERVICE_PORT: port,
      KUBERNETES_SERVICE_PORT_HTTPS: port,
      KUBERNETES_PORT: `tcp://${this.ctx.apiHost}:${port}`,
    };
  }

  /** One run of a container: resolves when its process has exited, or when it could not start. */
  private async runOnce(c: Container): Promise<RunResult> {
    if (!this.sandbox) return { kind: 'config', retryMs: 1_000 };
    const spec = c.spec;
    const entry = this.ctx.images.resolve(spec.image ?? '');
    if (!entry) {
      c.view.state = {
        waiting: {
          reason: 'ErrImagePull',
          message: `Failed to pull image "${spec.image ?? ''}": not found in the e2e image map ${this.ctx.images.file ?? ''}`,
        },
      };
      this.markDirty();
      return { kind: 'pull', retryMs: backoffDelay(c.pulls++, 1_000, this.ctx.maxRestartBackoffMs) };
    }
    c.pulls = 0;
    let env: Record<string, string>;
    let mounts: Mount[];
    const cwd = spec.workingDir ?? entry.workingDir;
    const t0 = Date.now();
    try {
      env = await containerEnv(this.pod, spec, {
        podIP: this.sandbox.ip,
        hostIP: this.ctx.network.hostIp,
        base: this.baseEnv(),
        imageEnv: entry.env,
        node: this.ctx.node,
        sources: this.ctx.sources,
      });
      mounts = containerMounts(spec, this.volumes);
      ensureMountTargets(mounts, (top) => this.ctx.recordCreatedPath(top));
      mkdirSync(cwd, { recursive: true });
    } catch (err) {
      const reason =
        err instanceof ConfigError || err instanceof MountError ? 'CreateContainerConfigError' : 'CreateContainerError';
      c.view.state = { waiting: { reason, message: errorMessage(err) } };
      this.markDirty();
      return { kind: 'config', retryMs: backoffDelay(c.configFailures++, 500, this.ctx.maxRestartBackoffMs) };
    }
    c.configFailures = 0;
    if (this.stopping) return { kind: 'config', retryMs: 0 };
    const argv = commandLine(entry, spec.command, spec.args).map((a) => expand(a, env));
    if (!resolveExecutable(argv[0], env.PATH, cwd)) {
      // What a runtime reports for a missing executable: the container "ran" and failed at once.
      const now = Date.now();
      const message = `exec: "${argv[0]}": executable file not found in $PATH`;
      return { kind: 'exited', ...this.exited(c, undefined, { exitCode: 128, oomKilled: false, at: now }, now, message) };
    }
    const t1 = Date.now();
    const limit = parseQuantity(spec.resources?.limits?.memory);
    // A memory cgroup only where there is a limit to enforce: creating one costs 0.2–2 s of kernel
    // time during a burst of pods. Without one, the process group and the network namespace are
    // how the pod's processes are found and killed.
    const cgroup =
      this.cgroupDir && this.ctx.memoryLimits && limit ? join(this.cgroupDir, `${spec.name}-${c.view.restartCount}`) : undefined;
    if (cgroup) await prepareCgroup(cgroup, limit);
    else this.untracked = true;
    if (this.stopping) {
      if (cgroup) await removeCgroup(cgroup);
      return { kind: 'config', retryMs: 0 };
    }
    const t2 = Date.now();
    const proc = await ContainerProcess.start({
      argv,
      env,
      cwd,
      netns: this.sandbox.netns,
      mounts,
      hostname: this.pod.metadata.name,
      logPath: join(this.dir, `${spec.name}.log`),
      cgroup,
      nice: this.ctx.podNice,
    });
    if (this.stopping) {
      // The pod was stopped while this process was being started: it must not outlive the pod.
      await proc.cleanup();
      return { kind: 'config', retryMs: 0 };
    }
    c.proc = proc;
    const startedAt = proc.spawnedAt;
    const startMs = { config: t1 - t0, cgroup: t2 - t1, spawn: Date.now() - t2 };
    c.timing = {
      ...c.timing,
      startMs,
      pid: proc.pid,
      spawnedAt: iso(startedAt),
      readyAt: undefined,
      exitedAt: undefined,
      exitCode: undefined,
    };
    c.timing.firstSpawnedAt ??= c.timing.spawnedAt;
    c.view.state = { running: { startedAt: kubeTime(startedAt) } };
    c.view.containerID = `e2e://${this.uid}/${spec.name}/${c.view.restartCount}`;
    this.log.debug('container started', { container: spec.name, pid: proc.pid, argv });
    this.startProbes(c, proc);
    this.markDirty();
    const info = await proc.exited;
    return { kind: 'exited', ...this.exited(c, proc, info, startedAt) };
  }

  private markReady(c: Container): void {
    const now = iso(Date.now());
    c.timing.readyAt = now;
    c.timing.firstReadyAt ??= now;
  }

  private startProbes(c: Container, proc: ContainerProcess): void {
    const target = {
      podIP: this.sandbox?.ip ?? '127.0.0.1',
      ports: c.spec.ports ?? [],
      exec: async (command: string[], timeoutMs: number) =>
        (await run('nsenter', ['-t', String(proc.pid), '-n', '-m', '-u', '--', ...command], { allowFail: true, timeoutMs })).code,
    };
    const onStarted = (): void => {
      c.view.started = true;
      c.markStarted();
      // Init containers that run to completion are never "ready"; the rest are, after their probe.
      if (c.init && !c.view.sidecar) return;
      if (c.spec.readinessProbe) {
        const w = new ProbeWorker('readiness', c.spec.readinessProbe, target, (ok) => {
          if (c.proc !== proc) return;
          c.view.ready = ok;
          if (ok) this.markReady(c);
          this.markDirty();
        });
        c.probes.push(w);
        w.start();
      } else {
        c.view.ready = true;
        this.markReady(c);
      }
      if (c.spec.livenessProbe) {
        const w = new ProbeWorker('liveness', c.spec.livenessProbe, target, (ok) => {
          if (ok || c.proc !== proc) return;
          this.log.info('liveness probe failed; restarting container', { container: c.spec.name, message: w.lastMessage });
          void this.killProcess(proc, Math.min(this.pod.spec.terminationGracePeriodSeconds ?? 30, this.ctx.maxGraceSeconds));
        });
        c.probes.push(w);
        w.start();
      }
    };
    c.view.started = false;
    c.view.ready = false;
    if (c.spec.startupProbe) {
      const w = new ProbeWorker('startup', c.spec.startupProbe, target, (ok) => {
        if (!ok || c.proc !== proc) return;
        onStarted();
        this.markDirty();
      });
      c.probes.push(w);
      w.start();
    } else {
      onStarted();
    }
  }

  private restartDelay(c: Container): number {
    const delay = c.crashes === 0 ? 0 : Math.min(1000 * 2 ** (c.crashes - 1), this.ctx.maxRestartBackoffMs);
    c.crashes++;
    return delay;
  }

  private exited(
    c: Container,
    proc: ContainerProcess | undefined,
    info: ExitInfo,
    startedAt: number,
    message?: string,
  ): { info: ExitInfo; terminated: Terminated } {
    c.stopProbes();
    if (proc) void proc.cleanup();
    if (c.proc === proc) c.proc = undefined;
    const reason = message ? 'StartError' : info.oomKilled ? 'OOMKilled' : info.exitCode === 0 ? 'Completed' : 'Error';
    const terminated: Terminated = {
      exitCode: info.exitCode,
      reason,
      startedAt: kubeTime(startedAt),
      finishedAt: kubeTime(info.at),
      containerID: c.view.containerID,
    };
    if (message) terminated.message = message;
    c.view.state = { terminated };
    c.view.ready = false;
    c.view.started = false;
    c.timing.exitedAt = iso(info.at);
    c.timing.exitCode = info.exitCode;
    this.log.info('container exited', { container: c.spec.name, exitCode: info.exitCode, reason });
    // A container that ran a while earns a fresh back-off, as on the kubelet.
    if (info.at - startedAt > 60_000) c.crashes = 0;
    this.markDirty();
    return { info, terminated };
  }

  private checkTerminal(): void {
    if (this.terminalPhase) return;
    const phase = podPhase(
      this.policy,
      this.inits.map((c) => c.view),
      this.containers.map((c) => c.view),
    );
    if (phase !== 'Succeeded' && phase !== 'Failed') return;
    this.terminalPhase = phase;
    this.log.info('pod finished', { phase });
    // The kubelet tears the sandbox down once every container is done; the status keeps the IP.
    void this.stopEverything(false);
    this.markDirty();
  }

  // ---- termination -----------------------------------------------------------------------------

  private async killProcess(proc: ContainerProcess, graceSeconds: number): Promise<void> {
    await stopGracefully(proc, graceSeconds * 1000);
  }

  /** Stops containers, probes and timers; frees the sandbox. `graceSeconds` 0 means SIGKILL at once. */
  private async stopEverything(kill: boolean, graceSeconds = 0): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    const all = [...this.inits, ...this.containers];
    for (const c of all) c.stopProbes();
    const procs = all.map((c) => c.proc).filter((p): p is ContainerProcess => p !== undefined);
    if (kill) await Promise.all(procs.map((p) => this.killProcess(p, graceSeconds)));
    for (const p of procs) await p.cleanup();
    // The pod cgroup can only be removed once every process of the pod is gone from it.
    const empty = this.cgroupDir && !this.untracked ? await removeCgroup(this.cgroupDir) : false;
    if (this.cgroupDir && this.untracked) await removeCgroup(this.cgroupDir);
    if (this.sandbox) await this.ctx.network.release(this.sandbox, empty);
    rmSync(this.runDir, { recursive: true, force: true });
  }

  /** The Pod has a deletionTimestamp: stop gracefully, report the final status, finalize deletion. */
  terminate(): Promise<void> {
    this.terminating ??= (async () => {
      const grace = Math.min(
        Number(this.pod.metadata.deletionGracePeriodSeconds ?? this.pod.spec.terminationGracePeriodSeconds ?? 30),
        this.ctx.maxGraceSeconds,
      );
      this.log.info('terminating pod', { graceSeconds: grace });
      await this.stopEverything(true, grace);
      if (!this.terminalPhase) {
        const all = this.containers.map((c) => c.view);
        this.terminalPhase = all.every((v) => v.state.terminated?.exitCode === 0) ? 'Succeeded' : 'Failed';
      }
      this.dirty = true;
      await this.flush();
      await this.ctx.deletePod(this.pod);
    })().catch((err: unknown) => this.log.error('pod termination failed', { error: errorMessage(err) }));
    return this.terminating;
  }

  /** The Pod is gone from the API (or the agent stops): kill everything, write nothing. */
  async kill(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.dirty = false;
    await this.stopEverything(true, 0);
  }

  // ---- status ----------------------------------------------------------------------------------

  private view(): PodView {
    return {
      sandboxReady: Boolean(this.sandbox) && !this.stopping,
      podIP: this.sandbox?.ip,
      hostIP: this.ctx.network.hostIp,
      startTime: this.startTime ?? kubeTime(this.seenAt),
      initContainers: this.inits.map((c) => c.view),
      containers: this.containers.map((c) => c.view),
      terminalPhase: this.terminalPhase,
    };
  }

  status(): PodStatusJson {
    const owned = new Set((this.lastConditions ?? []).map((c) => c.type));
    const previous = [...(this.lastConditions ?? []), ...(this.pod.status?.conditions ?? []).filter((c) => !owned.has(c.type))];
    return buildStatus(this.pod, this.view(), previous, kubeTime());
  }

  private markDirty(): void {
    this.dirty = true;
    if (this.flushTimer || this.writing) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, this.ctx.statusDebounceMs);
  }

  /** Writes the status if it changed since the last write; one write in flight per pod. */
  private async flush(): Promise<void> {
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    while (this.writing) await this.writing;
    if (!this.dirty) return;
    this.dirty = false;
    const status = this.status();
    this.phase = status.phase;
    if (!this.readyAt && status.conditions?.find((c) => c.type === 'Ready')?.status === 'True') {
      this.readyAt = Date.now();
      this.ctx.onReady?.(this.readyAt - this.seenAt);
    }
    const json = JSON.stringify(status);
    if (json === this.lastWritten) return;
    this.writing = (async () => {
      try {
        const result = await this.ctx.writeStatus(this.pod, status);
        this.writes++;
        this.lastWritten = json;
        this.lastConditions = status.conditions;
        if (result === 'gone') this.dirty = false;
      } catch (err) {
        this.log.warn('status write failed; retrying', { error: errorMessage(err) });
        this.dirty = true;
        await sleep(1_000);
      }
    })();
    await this.writing;
    this.writing = undefined;
    if (this.dirty) this.markDirty();
  }

  /** For /pods: what runs, with timings and pids. */
  describe(): AgentPod {
    const containers = (list: Container[]): AgentContainer[] =>
      list.map((c) => ({
        name: c.spec.name,
        image: c.spec.image,
        state: Object.keys(c.view.state)[0] as AgentContainer['state'],
        ready: c.view.ready,
        restartCount: c.view.restartCount,
        ...c.timing,
        logPath: join(this.dir, `${c.spec.name}.log`),
      }));
    return {
      namespace: this.pod.metadata.namespace,
      name: this.pod.metadata.name,
      uid: this.uid,
      phase: this.phase,
      podIP: this.sandbox?.ip,
      netns: this.sandbox?.netns,
      netnsSetupMs: this.sandbox?.setupMs,
      seenAt: iso(this.seenAt),
      sandboxReadyAt: this.sandboxReadyAt !== undefined ? iso(this.sandboxReadyAt) : undefined,
      readyAt: this.readyAt !== undefined ? iso(this.readyAt) : undefined,
      statusWrites: this.writes,
      initContainers: containers(this.inits),
      containers: containers(this.containers),
    };
  }
}
