/**
 * One backend's app as a child process, in a process group of its own (spawned `detached`, so it
 * is the leader of a new session). The group is what gets signalled, so whatever the app starts
 * (a shell wrapper's child, worker processes) stops with it, and a Ctrl-C in local mode's terminal
 * does not hit every app at once: local mode stops them itself, in order.
 *
 * Stopping is what a kubelet does: SIGTERM, then SIGKILL after the grace period. When the app
 * itself exits, what is left of its group is killed, as a container's processes die with it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { stopGracefully } from '../../common/src/graceful-stop';

export interface AppExit {
  /** As a container runtime reports it: the exit code, or 128 + the signal number. */
  exitCode: number;
  signal?: NodeJS.Signals;
}

export interface AppProcessOptions {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Each line the app writes (stdout and stderr). */
  onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
}

const MAX_LINE = 4000;

function forwardLines(stream: Readable | null, name: 'stdout' | 'stderr', onLine?: AppProcessOptions['onOutput']): void {
  if (!stream) return;
  stream.setEncoding('utf8');
  let rest = '';
  stream.on('data', (chunk: string) => {
    rest += chunk;
    let end: number;
    while ((end = rest.indexOf('\n')) >= 0) {
      onLine?.(rest.slice(0, Math.min(end, MAX_LINE)), name);
      rest = rest.slice(end + 1);
    }
    if (rest.length > MAX_LINE) {
      onLine?.(rest.slice(0, MAX_LINE), name);
      rest = '';
    }
  });
  stream.on('end', () => {
    if (rest !== '') onLine?.(rest, name);
  });
  stream.on('error', () => undefined);
}

export class AppProcess {
  private readonly child: ChildProcess;
  /** Resolves once the process runs; rejects when it could not be started (no such command). */
  readonly started: Promise<number>;
  readonly exited: Promise<AppExit>;
  private hasExited = false;

  constructor(readonly opts: AppProcessOptions) {
    this.child = spawn(opts.argv[0], opts.argv.slice(1), {
      cwd: opts.cwd,
      env: opts.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    forwardLines(this.child.stdout, 'stdout', opts.onOutput);
    forwardLines(this.child.stderr, 'stderr', opts.onOutput);
    this.started = new Promise((resolve, reject) => {
      this.child.once('spawn', () => resolve(this.child.pid as number));
      this.child.once('error', reject);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.hasExited = true;
        // Whatever the app left running in its group goes with it.
        this.signalGroup('SIGKILL');
        const signum = signal ? constants.signals[signal] : undefined;
        resolve(signal ? { exitCode: 128 + (signum ?? 9), signal } : { exitCode: code ?? 0 });
      });
      // A failed spawn emits 'error' and no 'exit'.
      this.child.once('error', () => {
        if (this.child.pid === undefined) {
          this.hasExited = true;
          resolve({ exitCode: 128 });
        }
      });
    });
    this.started.catch(() => undefined);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.pid !== undefined && !this.hasExited;
  }

  /** Signals the app's whole process group; false when there is nothing left to signal. */
  signalGroup(sig: NodeJS.Signals): boolean {
    const pid = this.child.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the app has exited. */
  async stop(graceMs: number): Promise<AppExit> {
    if (this.child.pid === undefined || this.hasExited) return this.exited;
    return stopGracefully({ signal: (sig) => this.signalGroup(sig), exited: this.exited }, graceMs);
  }
}
