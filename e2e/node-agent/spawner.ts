/**
 * Process creation through a small bash "launcher" the agent starts once. Forking the agent itself
 * (a ~170 MB Node.js process) is what `child_process.spawn` does: it blocked the event loop until
 * each child had exec'd (~18 ms per call with both cores busy) and, from worker threads, still
 * stalled the main thread for up to 0.5 s while page tables were copied. bash forks in microseconds
 * and never waits for the exec: 200 processes start in ~0.15 s with the agent's loop untouched.
 *
 * Requests go to the launcher's stdin as NUL-terminated fields (no field can contain a NUL):
 *   S id cwd logPath nEnv env... nArgv argv...   start a detached process (its own session),
 *                                                stdout+stderr appended to logPath
 *   R id timeoutSeconds input nArgv argv...     run a short command; output to files in `dir`
 * Replies come back one per line: `P id pid` (started), `X id status` (exited; 128+n when killed by
 * signal n, as a shell and a container runtime report it), `D id status` (run finished).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Plain strings, not a template literal: the script is full of bash's own ${...}.
const LAUNCHER = [
  'set -u',
  'dir=$1',
  'field() { IFS= read -r -d \'\' "$1"; }',
  'list() { local -n out=$1; local n i v; field n; out=(); for ((i = 0; i < n; i++)); do field v; out+=("$v"); done; }',
  'while field kind; do',
  '  field id',
  '  if [ "$kind" = S ]; then',
  '    field cwd; field log; list envs; list argv',
  '    (',
  '      cd "$cwd" 2>/dev/null || cd /',
  '      setsid env -i "${envs[@]}" "${argv[@]}" >>"$log" 2>&1 </dev/null &',
  '      pid=$!',
  '      echo "P $id $pid"',
  '      wait "$pid"',
  '      echo "X $id $?"',
  '    ) &',
  '  else',
  '    field timeout; field input; list argv',
  '    (',
  '      if [ -n "$input" ]; then',
  '        timeout -s KILL "$timeout" "${argv[@]}" <<<"$input" >"$dir/$id.out" 2>"$dir/$id.err"',
  '      else',
  '        timeout -s KILL "$timeout" "${argv[@]}" </dev/null >"$dir/$id.out" 2>"$dir/$id.err"',
  '      fi',
  '      echo "D $id $?"',
  '    ) &',
  '  fi',
  'done',
].join('\n');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Exit {
  /** Exit status, or 128+n for a process killed by signal n. */
  status: number;
}

export interface Started {
  pid: number;
  exited: Promise<Exit>;
}

interface Pending {
  started?: (pid: number) => void;
  exited?: (status: number) => void;
  done?: (status: number) => void;
}

const frame = (fields: Array<string | number>): string => fields.map((f) => `${String(f).replace(/\0/g, '')}\0`).join('');

export class Spawner {
  private launcher?: ChildProcessWithoutNullStreams;
  /** Output of `run` commands; `cluster.sh down` removes leftovers of an agent that was killed. */
  private readonly dir = mkdtempSync(join(tmpdir(), 'spawner-e2e-launcher-'));
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffered = '';
  private closed = false;

  private ensure(): ChildProcessWithoutNullStreams {
    if (this.launcher) return this.launcher;
    // Its own process group: a signal aimed at the agent's group (Ctrl-C, `cluster.sh down`) must
    // not kill the launcher before the agent has used it to stop its pods. It exits when the agent
    // closes its stdin, or dies.
    const launcher = spawn('bash', ['-c', LAUNCHER, 'launcher', this.dir], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    launcher.stdout.setEncoding('utf8');
    launcher.stdout.on('data', (chunk: string) => this.onData(chunk));
    launcher.stderr.on('data', (d: Buffer) => process.stderr.write(`[launcher] ${d.toString()}`));
    launcher.stdin.on('error', () => undefined);
    launcher.on('exit', () => {
      this.launcher = undefined;
      if (this.closed) return;
      // Whatever it was starting or running is lost; report it as failed rather than hang.
      for (const [id, p] of this.pending) {
        p.started?.(-1);
        p.exited?.(128);
        p.done?.(-1);
        this.pending.delete(id);
      }
    });
    this.launcher = launcher;
    return launcher;
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const [kind, idText, value] = this.buffered.slice(0, nl).split(' ');
      this.buffered = this.buffered.slice(nl + 1);
      const id = Number(idText);
      const p = this.pending.get(id);
      if (!p) continue;
      if (kind === 'P') p.started?.(Number(value));
      else if (kind === 'X') {
        this.pending.delete(id);
        p.exited?.(Number(value));
      } else if (kind === 'D') {
        this.pending.delete(id);
        p.done?.(Number(value));
      }
    }
  }

  /** Runs a short command; resolves with its exit code and output (never rejects). */
  run(cmd: string, args: string[], input: string | undefined, timeoutMs: number): Promise<RunResult> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, {
        done: (code) => {
          const out = join(this.dir, `${id}.out`);
          const err = join(this.dir, `${id}.err`);
          void Promise.all([readFile(out, 'utf8').catch(() => ''), readFile(err, 'utf8').catch(() => '')]).then(
            ([stdout, stderr]) => {
              void rm(out, { force: true });
              void rm(err, { force: true });
              resolve({ code, stdout, stderr });
            },
          );
        },
      });
      const argv = [cmd, ...args];
      this.ensure().stdin.write(frame(['R', id, Math.max(1, Math.ceil(timeoutMs / 1000)), input ?? '', argv.length, ...argv]));
    });
  }

  /** Starts a detached process with stdout and stderr appended to `logPath`. */
  start(cmd: string, args: string[], env: Record<string, string>, cwd: string, logPath: string): Promise<Started> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      let exit!: (e: Exit) => void;
      const exited = new Promise<Exit>((r) => (exit = r));
      this.pending.set(id, {
        started: (pid) => resolve({ pid, exited }),
        exited: (status) => {
          resolve({ pid: -1, exited });
          exit({ status });
        },
      });
      const envs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
      const argv = [cmd, ...args];
      this.ensure().stdin.write(frame(['S', id, cwd, logPath, envs.length, ...envs, argv.length, ...argv]));
    });
  }

  close(): void {
    this.closed = true;
    this.launcher?.stdin.end();
    this.launcher?.kill();
    // Processes it started hold its stdout open; stop listening to it.
    this.launcher?.stdout.destroy();
    this.launcher?.stderr.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

let shared: Spawner | undefined;
/** The process-wide spawner (the launcher starts on first use). */
export function spawner(): Spawner {
  shared ??= new Spawner();
  return shared;
}
