/**
 * Helpers for e2e tests: the admin client, kubectl, polling with a useful failure message, a fresh
 * namespace per test file, and the node agent's /pods endpoint (pids and process timings).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HttpKubeClient } from '../../common/src/kube/http-client';
import { loadKubeConfig } from '../../common/src/kube/kube-config';
import { NAMESPACES } from '../../common/src/kube/resources';

export const ROOT = resolve(__dirname, '..', '..');

export const stateDir = (): string => process.env.SPAWNER_E2E_DIR ?? '/tmp/spawner-e2e';

export function kubeconfigPath(): string {
  const path = process.env.KUBECONFIG;
  if (!path)
    throw new Error(
      'KUBECONFIG is not set: run the suite with `npm run e2e` (or jest --selectProjects e2e, whose global set-up starts a cluster)',
    );
  return path;
}

/** The control-plane binaries (kubectl, helm) built by e2e/scripts/build-binaries.sh, if present. */
export function binDir(): string | undefined {
  if (process.env.SPAWNER_E2E_BIN) return process.env.SPAWNER_E2E_BIN;
  const cache = process.env.SPAWNER_CACHE ?? join(homedir(), '.cache', 'spawner');
  const dir = join(cache, 'bin', `kube-${process.env.KUBE_VERSION ?? 'v1.36.3'}-helm-${process.env.HELM_VERSION ?? 'v3.22.0'}`);
  return existsSync(join(dir, 'kubectl')) ? dir : undefined;
}

const tool = (name: string): string => {
  const dir = binDir();
  return dir && existsSync(join(dir, name)) ? join(dir, name) : name;
};

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  input?: string;
  /** Resolve with a non-zero exit code instead of throwing. */
  allowFail?: boolean;
  timeoutMs?: number;
}

export function runCommand(cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, KUBECONFIG: kubeconfigPath() } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const result = { code: code ?? -1, stdout, stderr };
      if (result.code !== 0 && !opts.allowFail) {
        reject(new Error(`${cmd} ${args.join(' ')} exited ${result.code}\n${stderr}${stdout}`));
      } else resolvePromise(result);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** `kubectl <args>` against the test cluster; pass YAML/JSON manifests as `input` with `-f -`. */
export const kubectl = (args: string[], opts?: CommandOptions): Promise<CommandResult> => runCommand(tool('kubectl'), args, opts);
export const helm = (args: string[], opts?: CommandOptions): Promise<CommandResult> => runCommand(tool('helm'), args, opts);

let client: HttpKubeClient | undefined;
/** A client with the admin kubeconfig (cluster-admin). */
export function adminClient(): HttpKubeClient {
  client ??= new HttpKubeClient(loadKubeConfig(kubeconfigPath()));
  return client;
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What is awaited, for the timeout message ("pod x to be Ready"). */
  description: string;
}

/**
 * Polls until `probe` returns something other than undefined/null/false and returns that. On
 * timeout the error names what was awaited and what was last seen (value or error).
 */
export async function waitFor<T>(
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: WaitOptions,
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value;
      last = value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const seen = lastError
        ? `last error: ${(lastError as Error).message ?? String(lastError)}`
        : `last seen: ${describeValue(last)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.description}; ${seen}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}

function describeValue(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 3000 ? `${text.slice(0, 3000)}…` : text;
}

export async function createNamespace(prefix: string): Promise<string> {
  const name = `e2e-${prefix}-${randomBytes(3).toString('hex')}`.slice(0, 63);
  await adminClient().create(NAMESPACES, undefined, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'spawner.dev/e2e': 'true' } },
  });
  // Pods need the namespace's default ServiceAccount (admission rejects them until it exists).
  await waitFor(
    () =>
      adminClient().get(
        { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
        name,
        'default',
      ),
    {
      description: `ServiceAccount ${name}/default`,
      timeoutMs: 30_000,
    },
  );
  return name;
}

export async function deleteNamespace(name: string): Promise<void> {
  if (process.env.SPAWNER_E2E_KEEP_NAMESPACES === '1') return;
  await adminClient().delete(NAMESPACES, undefined, name, { propagationPolicy: 'Background' });
}

/** A fresh namespace for the enclosing describe block (created in beforeAll, deleted in afterAll). */
export function useNamespace(prefix: string): { readonly name: string } {
  const ns = { name: '' };
  beforeAll(async () => {
    ns.name = await createNamespace(prefix);
  });
  afterAll(async () => {
    if (ns.name) await deleteNamespace(ns.name);
  });
  return ns;
}

// ---- the node agent ----------------------------------------------------------------------------

export interface AgentInfo {
  pid: number;
  port: number;
  url: string;
  nodeName: string;
  apiServer: string;
  podApiServer: string;
  hostIp: string;
  podCidr: string;
  stateDir: string;
}

/** The agent of the cluster under test, or undefined when that cluster has none (e.g. kind). */
export function agentInfo(): AgentInfo | undefined {
  const path = join(stateDir(), 'agent.json');
  if (!process.env.KUBECONFIG || !existsSync(path)) return undefined;
  const info = JSON.parse(readFileSync(path, 'utf8')) as AgentInfo;
  // A stale agent.json of another cluster must not make tests think this one has an agent.
  const server = loadKubeConfig(process.env.KUBECONFIG).getCurrentCluster()?.server;
  return server === info.apiServer ? info : undefined;
}

export const hasAgent = (): boolean => agentInfo() !== undefined;

/** `describe` for tests that need the node agent (local processes, pids); skipped on other clusters. */
export const describeWithAgent: jest.Describe = hasAgent() ? describe : describe.skip;

export function httpGet(url: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

import type { AgentPod } from '../node-agent/pod-worker';

export type { AgentContainer, AgentPod } from '../node-agent/pod-worker';

function agentUrl(path: string): string {
  const info = agentInfo();
  if (!info) throw new Error('this cluster has no e2e node agent (agent.json missing or for another cluster)');
  return `${info.url}${path}`;
}

export async function agentPods(): Promise<AgentPod[]> {
  const { body } = await httpGet(agentUrl('/pods'));
  return (JSON.parse(body) as { pods: AgentPod[] }).pods;
}

export async function agentPod(namespace: string, name: string): Promise<AgentPod | undefined> {
  const { status, body } = await httpGet(agentUrl(`/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`));
  return status === 200 ? (JSON.parse(body) as AgentPod) : undefined;
}

/** The host pid of a running container (for SIGKILL/SIGSTOP in tests). */
export async function containerPid(namespace: string, pod: string, container: string, timeoutMs = 30_000): Promise<number> {
  return waitFor(
    async () => {
      const p = await agentPod(namespace, pod);
      const c = p?.containers.find((x) => x.name === container) ?? p?.initContainers.find((x) => x.name === container);
      return c?.state === 'running' ? c.pid : undefined;
    },
    { description: `a running process for container ${container} of pod ${namespace}/${pod}`, timeoutMs },
  );
}

/**
 * How the node agent hands freed Pod IPs out again: `immediate` gives the next Pod the address the
 * last one freed (to provoke IP reuse), `round-robin` is the default. Returns the previous mode.
 */
export async function setAgentIpReuse(mode: 'round-robin' | 'immediate'): Promise<string> {
  const url = agentUrl('/network/ip-reuse');
  const before = ((await (await fetch(url)).json()) as { ipReuse: string }).ipReuse;
  const res = await fetch(url, { method: 'PUT', body: mode });
  if (res.status !== 200) throw new Error(`PUT ${url} ${mode}: ${res.status} ${await res.text()}`);
  return before;
}

export async function containerLogs(namespace: string, pod: string, container: string, tail = 100): Promise<string> {
  const { body } = await httpGet(
    agentUrl(
      `/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(pod)}/logs/${encodeURIComponent(container)}?tail=${tail}`,
    ),
  );
  return body;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie is dead for our purposes.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}
