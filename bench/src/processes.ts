/**
 * Child processes of a benchmark: started in their own process group (so nginx's workers or a
 * shell's children go with them), logs kept under bench/results/logs/, readiness by TCP port or
 * HTTP status, and stopped by pid at the end, whatever happened.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { dirname, join, resolve } from 'node:path';

/** The repository root: the nearest directory above this file whose package.json is "spawner". */
export const ROOT = ((): string => {
  let dir = __dirname;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'spawner') return dir;
    const up = dirname(dir);
    if (up === dir) return resolve(__dirname, '..', '..', '..');
    dir = up;
  }
})();

export const RESULTS_DIR = join(ROOT, 'bench', 'results');
export const LOG_DIR = join(RESULTS_DIR, 'logs');

/**
 * A compiled entry point of this repository, e.g. dist('sidecar/src/main.js'). SPAWNER_BENCH_DIST
 * runs the components from another build instead (to measure a change side by side).
 */
export const dist = (path: string): string => join(process.env.SPAWNER_BENCH_DIST ?? join(ROOT, 'dist'), path);
/** A compiled bench script next to this file (works wherever the bench was compiled to). */
export const benchScript = (name: string): string => join(__dirname, `${name}.js`);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  readonly logPath: string;
  stop(timeoutMs?: number): Promise<void>;
}

const live = new Set<Child>();

/** Starts `cmd args` in its own process group, stdout/stderr to a log file. */
export function startChild(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Child {
  mkdirSync(LOG_DIR, { recursive: true });
  const logPath = join(LOG_DIR, `${name}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(cmd, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<number | null>((r) => child.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))));
  child.once('error', (err) => log.write(`spawn error: ${err.message}\n`));
  const c: Child = {
    name,
    process: child,
    pid: child.pid as number,
    exited,
    logPath,
    stop: async (timeoutMs = 5000) => {
      live.delete(c);
      if (child.exitCode !== null || child.signalCode !== null) return;
      signalGroup(child, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
      // Whatever else of the group is left (a worker that ignored the signal).
      signalGroup(child, 'SIGKILL');
    },
  };
  live.add(c);
  return c;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Stops every child still running (on exit or interrupt). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(3000)));
}

/** Stops every child synchronously (SIGKILL to each group): for process 'exit' handlers. */
export function killAllChildrenNow(): void {
  for (const c of live) signalGroup(c.process, 'SIGKILL');
  live.clear();
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolvePort(port));
    });
  });
}

/** `n` distinct free ports, all held until every one is found (starting many servers at once). */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((resolveListen, reject) => {
        srv.once('error', reject);
        srv.listen(0, host, () => resolveListen());
      });
    }
    return servers.map((srv) => (srv.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
  }
}

/** Resolves once a TCP connection to host:port succeeds; fails when `child` exits first or on timeout. */
export async function waitForPort(port: number, child?: Child, host = '127.0.0.1', timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && (child.process.exitCode !== null || child.process.signalCode !== null)) {
      throw new Error(`${child.name} exited before listening on ${port}; see ${child.logPath}`);
    }
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export function httpGet(
  url: string,
  timeoutMs = 5000,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** Polls until `probe` returns a value that is not undefined/false, or throws after `timeoutMs`. */
export async function waitUntil<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  timeoutMs = 60_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}

/** Runs a command to completion and returns its output (for wrk and the ws load generator). */
export function runToEnd(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      if (timer) clearTimeout(timer);
      resolveRun({ code: code ?? -1, stdout, stderr });
    });
  });
}
