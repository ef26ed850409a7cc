/**
 * Local mode as the user runs it (`node dist/local/src/main.js`, a real child process): stopping it
 * stops every backend's app, and even killing it outright leaves nothing running (the watchdog).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../common/src/paths';
import { waitFor } from '../../common/src/testing/wait-for';
import { DEMO_POOL } from '../src/config';
import { canBind } from '../src/ports';
import { DEMO_BACKEND_BUILD, descendants, isAlive, requireBuild } from './support';

jest.setTimeout(120_000);

const MAIN = 'dist/local/src/main.js';

interface Running {
  child: ChildProcess;
  api: string;
  apiPort: number;
  entryPointPort: number;
  logs: Array<Record<string, any>>;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let started: Running | undefined;

/** The test's settings only: none of the developer's SPAWNER_LOCAL_* variables. */
const cleanEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SPAWNER_LOCAL_')));

beforeAll(() => requireBuild(DEMO_BACKEND_BUILD, MAIN));

afterEach(() => {
  // A failed test must not leave local mode behind (its watchdog then stops the apps).
  if (started && started.child.exitCode === null && started.child.signalCode === null) started.child.kill('SIGKILL');
  started = undefined;
});

async function startLocal(): Promise<Running> {
  const child = spawn(
    process.execPath,
    [MAIN, '--port=0', '--entry-point-port=0', '--log-format=json', '--stop-grace-seconds=2', '--sidecar-heartbeat-seconds=1'],
    { cwd: projectRoot(), stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() },
  );
  const logs: Array<Record<string, any>> = [];
  const output: string[] = [];
  let rest = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    rest += chunk;
    let end: number;
    while ((end = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, end);
      rest = rest.slice(end + 1);
      output.push(line);
      if (line.startsWith('{')) logs.push(JSON.parse(line));
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => output.push(`stderr: ${chunk}`));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const banner = await waitFor(() => output.find((l) => l.includes('Spawner (local mode)')), {
    timeoutMs: 30_000,
    intervalMs: 50,
    description: `the banner (output: ${output.join('\n')})`,
  });
  const api = /API: (http:\/\/[\d.]+:(\d+))\/v1\/backends/.exec(banner)!;
  const entry = /entry point: http:\/\/[\d.]+:(\d+)\//.exec(banner)!;
  expect(banner).toContain(`demo: ${api[1]}/demo/`);
  return { child, api: api[1], apiPort: Number(api[2]), entryPointPort: Number(entry[1]), logs, output, exited };
}

interface RunningBackend {
  name: string;
  pid: number;
  appPort: number;
  sidecarPort: number;
  adminPort: number;
}

async function spawnReady(local: Running, count: number): Promise<RunningBackend[]> {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${local.api}/v1/backends`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'spawner-demo-backend' }),
    });
    expect(res.status).toBe(201);
    names.push(((await res.json()) as { name: string }).name);
  }
  for (const name of names) {
    const wait = await fetch(`${local.api}/v1/backends/${name}/wait?timeoutSeconds=60`);
    expect(((await wait.json()) as { phase: string }).phase).toBe('Ready');
  }
  return names.map((name) => {
    const log = local.logs.find((l) => l.msg === 'backend Ready' && l.backend === name);
    expect(log).toBeDefined();
    return { name, pid: log!.pid, appPort: log!.appPort, sidecarPort: log!.sidecarPort, adminPort: log!.adminPort };
  });
}

test('local: stop leaves nothing running', async () => {
  const local = (started = await startLocal());
  const backends = await spawnReady(local, 3);
  const pids = backends.map((b) => b.pid);
  for (const pid of pids) expect(isAlive(pid)).toBe(true);
  // Everything local mode started: the three apps, the demo pool's pre-started processes and the watchdog.
  const family = descendants(local.child.pid!);
  if (process.platform === 'linux') {
    expect(family).toEqual(expect.arrayContaining(pids));
    expect(family.length).toBeGreaterThanOrEqual(pids.length + DEMO_POOL.replicas! + 1);
  }

  local.child.kill('SIGINT');
  const exit = await local.exited;
  expect(exit).toEqual({ code: 0, signal: null });

  // The apps were stopped before local mode exited; the watchdog leaves as soon as its pipe closes.
  for (const pid of pids) expect(isAlive(pid)).toBe(false);
  await waitFor(() => family.every((pid) => !isAlive(pid)), {
    timeoutMs: 10_000,
    intervalMs: 100,
    description: `no process of local mode left (${family.filter(isAlive).join(', ')})`,
  });
  const ports = [local.apiPort, local.entryPointPort, ...backends.flatMap((b) => [b.appPort, b.sidecarPort, b.adminPort])];
  for (const port of ports) expect({ port, free: await canBind(port, '127.0.0.1') }).toEqual({ port, free: true });
  expect(local.logs.filter((l) => l.msg === 'backend Running')).toHaveLength(3);
});

test('local: a killed local mode leaves nothing running (the watchdog stops its apps)', async () => {
  const local = (started = await startLocal());
  const backends = await spawnReady(local, 2);
  const family = descendants(local.child.pid!);
  const pids = backends.map((b) => b.pid);
  // The demo pool's processes are among them: the watchdog stops those too.
  if (process.platform === 'linux') expect(family.length).toBeGreaterThanOrEqual(pids.length + DEMO_POOL.replicas! + 1);

  local.child.kill('SIGKILL');
  expect(await local.exited).toEqual({ code: null, signal: 'SIGKILL' });
  // SIGTERM at once from the watchdog, SIGKILL after the 2 s grace at the latest.
  await waitFor(() => [...pids, ...family].every((pid) => !isAlive(pid)), {
    timeoutMs: 20_000,
    intervalMs: 100,
    description: `the apps and the watchdog to end (alive: ${[...pids, ...family].filter(isAlive).join(', ')})`,
  });
  for (const b of backends) expect(await canBind(b.appPort, '127.0.0.1')).toBe(true);
});

test('local: a bad images file stops local mode at start with a message naming file and field', async () => {
  const child = spawn(
    process.execPath,
    [MAIN, '--port=0', '--entry-point-port=0', `--images-file=${join('local', 'test', 'fixtures', 'bad-images.json')}`],
    {
      cwd: projectRoot(),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: cleanEnv(),
    },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  expect(code).toBe(2);
  expect(stderr).toContain(join(projectRoot(), 'local', 'test', 'fixtures', 'bad-images.json'));
  expect(stderr).toContain('images.my-app: missing field "command"');
});
