/**
 * Spawner's own components (operator, sweeper, API) run by a test as host processes against the
 * test cluster, from the compiled `dist/`, with their logs kept under reports/e2e-logs/. Tests can
 * kill and restart them. (The chart test runs them as Pods instead.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as net from 'node:net';
import { join } from 'node:path';
import { httpGet, kubeconfigPath, ROOT, waitFor } from './cluster';

export type ComponentName = 'operator' | 'sweeper' | 'api';

export interface Component {
  readonly name: ComponentName;
  readonly port: number;
  readonly process: ChildProcess;
  readonly pid: number;
  /** Where its stdout and stderr go. */
  readonly logPath: string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<number | null>;
  metrics(): Promise<string>;
  /** SIGTERM and wait (graceful); SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>;
  kill(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

const PORT_FLAG: Record<ComponentName, string> = { operator: '--admin-port', sweeper: '--admin-port', api: '--port' };

/**
 * Host-run operators share one assign key, as the chart's replicas do (mounted from a Secret), so
 * a restarted operator can still assign the pool Pods an earlier one made.
 */
function assignKeyFile(): string {
  const file = join(tmpdir(), `spawner-e2e-assign-key-${process.pid}`);
  if (!existsSync(file)) writeFileSync(file, `e2e-assign-key-${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
  return file;
}

/**
 * Starts a component with `args` (flags as the component documents them) and waits until its
 * /readyz answers 200 (pass `waitReady: false` to skip). The admin (or API) port is chosen here.
 */
export async function startComponent(
  name: ComponentName,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; waitReady?: boolean; logName?: string; kubeconfig?: string } = {},
): Promise<Component> {
  const port = await freePort();
  const logDir = join(ROOT, 'reports', 'e2e-logs', 'host-components');
  mkdirSync(logDir, { recursive: true });
  const logPath = join(logDir, `${opts.logName ?? name}-${Date.now()}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(process.execPath, [join(ROOT, 'dist', name, 'src', 'main.js'), `${PORT_FLAG[name]}=${port}`, ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      KUBECONFIG: opts.kubeconfig ?? kubeconfigPath(),
      ...(name === 'operator' ? { SPAWNER_OPERATOR_ASSIGN_KEY_FILE: assignKeyFile() } : {}),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const component: Component = {
    name,
    port,
    process: child,
    pid: child.pid as number,
    logPath,
    exited,
    metrics: async () => (await httpGet(`http://127.0.0.1:${port}/metrics`)).body,
    stop: async (timeoutMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
  if (opts.waitReady !== false) {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
        return (await httpGet(`http://127.0.0.1:${port}/readyz`, 2000).catch(() => ({ status: 0 }))).status === 200;
      },
      { description: `${name} to be ready on :${port}`, timeoutMs: 30_000 },
    );
  }
  return component;
}

/** The bearer token and signing secret of the API host processes the e2e tests start. */
export const E2E_API_TOKEN = 'e2e-api-token-0123456789abcdef';
export const E2E_SIGNING_SECRET = 'e2e-signing-secret-0123456789abcdef';

/**
 * The API and its entry point as a host process for `namespace`, both on 127.0.0.1 (the entry
 * point on a port of its own choosing), with E2E_API_TOKEN; `extra` flags are appended; `kubeconfig`
 * to reach the API server another way (through a FreezableProxy, say).
 */
export function startApi(
  namespace: string,
  extra: string[] = [],
  opts: { kubeconfig?: string; logName?: string } = {},
): Promise<Component> {
  return startComponent(
    'api',
    [`--namespace=${namespace}`, '--entry-point-port=0', '--host=127.0.0.1', '--entry-point-host=127.0.0.1', ...extra],
    { env: { SPAWNER_API_TOKENS: E2E_API_TOKEN, SPAWNER_API_SIGNING_SECRET: E2E_SIGNING_SECRET }, ...opts },
  );
}

/** Stops every component given (ignoring ones already gone). */
export async function stopAll(components: Array<Component | undefined>): Promise<void> {
  await Promise.all(components.filter((c): c is Component => !!c).map((c) => c.stop()));
}
