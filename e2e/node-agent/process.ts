/**
 * A container as a local process: `nsenter --net=<pod netns> unshare --mount --uts` gives it the
 * pod's network and a mount namespace of its own, where a short shell prologue bind-mounts its
 * volumes and sets the pod's hostname before exec'ing the command. Every step execs, so the pid
 * the agent holds is the application's pid. Each container also gets a cgroup (v1 memory
 * controller, when present) for its memory limit, OOM detection and reliable killing; the caller
 * creates it first with prepareCgroup.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import { spawner } from './spawner';
import type { Mount } from './volumes';

export const CGROUP_MEMORY_ROOT = '/sys/fs/cgroup/memory';

export interface ProcessSpec {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  netns?: string;
  mounts: Mount[];
  hostname: string;
  logPath: string;
  /** cgroup directory (absolute) for this container, or undefined to run without one. */
  cgroup?: string;
  nice?: number;
}

export interface ExitInfo {
  exitCode: number;
  oomKilled: boolean;
  at: number;
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Finds argv[0] the way exec would; the runtime reports StartError instead of exit code 127. */
export function resolveExecutable(cmd: string, path: string | undefined, cwd: string): string | undefined {
  const candidates = cmd.includes('/')
    ? [isAbsolute(cmd) ? cmd : join(cwd, cmd)]
    : (path ?? '').split(delimiter).map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The shell prologue run inside the container's mount namespace before exec. */
export function prologue(mounts: Mount[], hostname: string): string {
  const lines = ['set -e'];
  for (const m of mounts) {
    lines.push(`mount --bind ${quote(m.source)} ${quote(m.target)}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${quote(m.target)}`);
  }
  // Hostnames are limited to 64 characters; pod names may be longer.
  lines.push(`hostname ${quote(hostname.slice(0, 63))}`);
  lines.push('exec "$@"');
  return lines.join('\n');
}

export class ContainerProcess {
  private constructor(
    private readonly spec: ProcessSpec,
    readonly pid: number,
    readonly spawnedAt: number,
    readonly exited: Promise<ExitInfo>,
  ) {}

  static async start(spec: ProcessSpec): Promise<ContainerProcess> {
    const wrapper = [
      'unshare',
      '--mount',
      '--uts',
      '--propagation',
      'private',
      'sh',
      '-c',
      prologue(spec.mounts, spec.hostname),
      'sh',
      ...spec.argv,
    ];
    // nsenter only joins the namespace; `ip netns exec` would also make a mount namespace and
    // remount /sys, a few ms more per container with hundreds of namespaces mounted.
    const inNetns = spec.netns ? ['nsenter', `--net=/run/netns/${spec.netns}`, ...wrapper] : wrapper;
    const niced = spec.nice ? ['nice', '-n', String(spec.nice), ...inNetns] : inNetns;
    // The process joins its cgroup itself, before exec'ing the rest of the chain: nothing runs
    // outside the limit, and the write, which waits for an RCU grace period in the kernel, stalls
    // this process instead of the agent.
    const argv = spec.cgroup ? ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', spec.cgroup, ...niced] : niced;
    const spawnedAt = Date.now();
    // Its own session and process group: signals to the agent's group never reach it, and the
    // whole group (children included) can be killed.
    const started = await spawner().start(argv[0], argv.slice(1), spec.env, spec.cwd, spec.logPath);
    const exited = started.exited.then(async ({ status }) => {
      const at = Date.now();
      const kills = spec.cgroup ? await oomKills(spec.cgroup) : 0;
      // The launcher reports 128+n for a process killed by signal n, as a container runtime does.
      return { exitCode: status, oomKilled: kills > 0, at };
    });
    return new ContainerProcess(spec, started.pid, spawnedAt, exited);
  }

  /**
   * Every process of the container gets the signal once, as a container runtime sends it: the
   * cgroup's members when there is a cgroup (whatever they forked, in any group), else the
   * container's process group. (Both at once would deliver it twice to the app.)
   */
  signal(sig: NodeJS.Signals): void {
    const members = this.cgroupMembers();
    if (members !== undefined) {
      for (const pid of members) {
        try {
          process.kill(pid, sig);
        } catch {
          // gone
        }
      }
      return;
    }
    if (this.pid <= 0) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      // the group is gone
    }
  }

  private cgroupMembers(): number[] | undefined {
    if (!this.spec.cgroup) return undefined;
    try {
      return readFileSync(join(this.spec.cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return undefined; // no cgroup (any more): the group it is
    }
  }

  /** After exit: kill stragglers and remove the cgroup. */
  async cleanup(): Promise<void> {
    this.signal('SIGKILL');
    if (this.spec.cgroup) await removeCgroup(this.spec.cgroup);
  }
}

export function cgroupsAvailable(): boolean {
  try {
    accessSync(CGROUP_MEMORY_ROOT, constants.W_OK);
    return existsSync(join(CGROUP_MEMORY_ROOT, 'cgroup.procs'));
  } catch {
    return false;
  }
}

/** Creates the container's cgroup (asynchronously: memcg creation can be slow under load). */
export async function prepareCgroup(dir: string, limit: number | undefined): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (limit) await writeFile(join(dir, 'memory.limit_in_bytes'), String(Math.floor(limit)));
}

async function oomKills(dir: string): Promise<number> {
  try {
    const m = /oom_kill (\d+)/.exec(await readFile(join(dir, 'memory.oom_control'), 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Removes a (child-free) cgroup once its tasks are gone; true when it no longer exists. */
export async function removeCgroup(dir: string): Promise<boolean> {
  // rmdir fails while the kernel still accounts exiting tasks; a few retries are enough.
  for (let i = 0; i < 50; i++) {
    try {
      await rmdir(dir);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return false;
}
