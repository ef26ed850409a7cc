/**
 * The last line of defence against orphaned apps. Local mode stops its apps itself on Ctrl-C,
 * SIGTERM and on any exit it lives through ('exit' handler); what it cannot handle is its own
 * sudden death (SIGKILL, the OOM killer, a crash in native code). For that, one small guard
 * process holds the read end of a pipe from local mode and the list of the apps' process groups.
 * The kernel closes the pipe when local mode dies, however it dies; the guard then sends SIGTERM
 * to every group it knows, SIGKILL after the grace period, and exits.
 *
 * The guard runs in a session of its own, so a Ctrl-C in the terminal (SIGINT to the foreground
 * process group) reaches local mode, which stops the apps in order, and not the guard. Its source
 * is inline and run with `node -e`, so it works the same from the sources (tests) and from dist/.
 *
 * Limits: a process that leaves its process group (setsid, a daemonizing double fork) escapes;
 * an app spawned in the instant before its registration reaches the pipe is missed if local mode
 * dies in that instant; and a guard killed together with local mode (`kill -9` of both) protects
 * nothing. If the guard dies while local mode runs, it is restarted and told the live groups.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../../common/src/logger';

/** Reads `+<pgid>` / `-<pgid>` lines; on end of input, cleans up the groups it still holds. */
const GUARD_SOURCE = `
process.title = 'spawner-local-watchdog';
const graceMs = Number(process.argv[1]) || 5000;
const groups = new Set();
let buffered = '';
const signal = (sig) => {
  for (const g of [...groups]) {
    try { process.kill(-g, sig); } catch { groups.delete(g); }
  }
};
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  let end;
  while ((end = buffered.indexOf('\\n')) >= 0) {
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    const g = Number(line.slice(1));
    if (!Number.isInteger(g) || g <= 1) continue;
    if (line[0] === '+') groups.add(g);
    else if (line[0] === '-') groups.delete(g);
  }
});
process.stdin.on('error', () => {});
process.stdin.on('close', () => {
  if (groups.size === 0) process.exit(0);
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  setInterval(() => {
    signal(0);
    if (groups.size === 0) process.exit(0);
    if (Date.now() >= deadline) { signal('SIGKILL'); process.exit(0); }
  }, 100);
});
`;

const MAX_RESTARTS = 5;

export class Watchdog {
  private child?: ChildProcess;
  private readonly groups = new Set<number>();
  private closing = false;
  private restarts = 0;

  constructor(
    private readonly graceMs: number,
    private readonly logger: Logger,
  ) {}

  /** The guard's pid (for tests and logs). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    const child = spawn(process.execPath, ['-e', GUARD_SOURCE, String(this.graceMs)], {
      // A session of its own (see above); no inherited NODE_OPTIONS or hooks.
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
      env: { PATH: process.env.PATH ?? '' },
    });
    this.child = child;
    // The guard must not keep local mode alive, nor fail it: it only ever reads.
    child.unref();
    const stdin = child.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null;
    stdin?.on('error', () => undefined);
    stdin?.unref?.();
    child.on('error', (err) => this.logger.warn('watchdog failed to start', { error: err }));
    child.on('exit', (code, signal) => {
      if (this.child !== child || this.closing) return;
      this.child = undefined;
      if (this.restarts++ >= MAX_RESTARTS) {
        this.logger.error('watchdog keeps dying; apps may outlive a crash of local mode', { code, signal });
        return;
      }
      this.logger.warn('watchdog exited; restarting it', { code, signal });
      this.start();
    });
    for (const g of this.groups) this.write(`+${g}`);
  }

  add(pgid: number): void {
    this.groups.add(pgid);
    this.write(`+${pgid}`);
  }

  remove(pgid: number): void {
    if (this.groups.delete(pgid)) this.write(`-${pgid}`);
  }

  /** Normal shutdown, after every app is stopped: the guard sees end of input and exits. */
  close(): void {
    this.closing = true;
    for (const g of this.groups) this.write(`-${g}`);
    this.groups.clear();
    this.child?.stdin?.end();
  }

  private write(line: string): void {
    const stdin = this.child?.stdin;
    if (stdin && stdin.writable) stdin.write(`${line}\n`);
  }
}
