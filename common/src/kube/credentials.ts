/**
 * Where the API server is and how to authenticate to it, without loading `@kubernetes/client-node`
 * (about 40 MB of RSS: its KubeConfig module pulls in every generated API model). The sweeper runs
 * on every node and the API beside it, so they read the two kinds of configuration they meet in
 * practice here: a Pod's service-account files (in cluster), and kubeconfig files with
 * certificates and tokens. Anything else a kubeconfig can ask for (exec plugins, auth providers,
 * basic auth, several merged files) is handed to client-node's KubeConfig, loaded only then.
 * See docs/adr/0006-light-credentials.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import type * as https from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { load as parseYaml } from 'js-yaml';

/** What HttpKubeClient needs; client-node's KubeConfig has the same shape. */
export interface KubeCredentials {
  getCurrentCluster(): { server: string } | null;
  /** Sets CA, client certificate and key, TLS verification and the Authorization header. */
  applyToHTTPSOptions(options: https.RequestOptions): Promise<void>;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface StaticCredentials {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure?: boolean;
  token?: string;
  /** Re-read on every use: projected service-account tokens rotate. */
  tokenFile?: string;
}

class LightCredentials implements KubeCredentials {
  constructor(private readonly c: StaticCredentials) {}

  getCurrentCluster(): { server: string } {
    return { server: this.c.server };
  }

  async applyToHTTPSOptions(options: https.RequestOptions): Promise<void> {
    if (this.c.ca) options.ca = this.c.ca;
    if (this.c.cert) options.cert = this.c.cert;
    if (this.c.key) options.key = this.c.key;
    if (this.c.insecure) options.rejectUnauthorized = false;
    const token = this.c.tokenFile ? readFileSync(this.c.tokenFile, 'utf8').trim() : this.c.token;
    if (token) options.headers = { ...options.headers, authorization: `Bearer ${token}` };
  }
}

type Named<T> = Array<{ name: string } & T>;
interface KubeconfigFile {
  'current-context'?: string;
  clusters?: Named<{ cluster: Record<string, unknown> }>;
  users?: Named<{ user?: Record<string, unknown> }>;
  contexts?: Named<{ context: { cluster: string; user?: string } }>;
}

/** Keys of a kubeconfig user this module handles itself. */
const LIGHT_USER_KEYS = new Set([
  'token',
  'tokenFile',
  'client-certificate',
  'client-certificate-data',
  'client-key',
  'client-key-data',
]);

/** Undefined when the file needs client-node (exec plugins, auth providers and the like). */
export function lightFromKubeconfig(path: string): KubeCredentials | undefined {
  const doc = parseYaml(readFileSync(path, 'utf8')) as KubeconfigFile | undefined;
  if (!doc || typeof doc !== 'object') throw new Error(`${path}: not a kubeconfig file`);
  const contextName = doc['current-context'];
  const context = doc.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw new Error(`${path}: current-context '${contextName ?? ''}' is not among its contexts`);
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster || typeof cluster.server !== 'string')
    throw new Error(`${path}: cluster '${context.cluster}' of context '${contextName}' has no server`);
  const user = (context.user ? doc.users?.find((u) => u.name === context.user)?.user : undefined) ?? {};
  if (Object.keys(user).some((k) => !LIGHT_USER_KEYS.has(k))) return undefined;
  if (cluster.proxy_url !== undefined || cluster['proxy-url'] !== undefined) return undefined;

  const base = dirname(path);
  const file = (p: unknown): Buffer | undefined =>
    typeof p === 'string' && p ? readFileSync(isAbsolute(p) ? p : join(base, p)) : undefined;
  const data = (d: unknown): Buffer | undefined => (typeof d === 'string' && d ? Buffer.from(d, 'base64') : undefined);
  return new LightCredentials({
    server: cluster.server,
    ca: data(cluster['certificate-authority-data']) ?? file(cluster['certificate-authority']),
    insecure: cluster['insecure-skip-tls-verify'] === true,
    cert: data(user['client-certificate-data']) ?? file(user['client-certificate']),
    key: data(user['client-key-data']) ?? file(user['client-key']),
    token: typeof user.token === 'string' ? user.token : undefined,
    tokenFile:
      typeof user.tokenFile === 'string' ? (isAbsolute(user.tokenFile) ? user.tokenFile : join(base, user.tokenFile)) : undefined,
  });
}

/** The Pod's own service account, as every Kubernetes client reads it. */
export function lightInCluster(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR): KubeCredentials | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port || !existsSync(join(dir, 'token'))) return undefined;
  return new LightCredentials({
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(join(dir, 'ca.crt')),
    tokenFile: join(dir, 'token'),
  });
}

/**
 * The same search as client-node's `loadFromDefault`: an explicit path, then $KUBECONFIG, then
 * ~/.kube/config, then the in-cluster service account.
 */
export async function loadCredentials(kubeconfigPath?: string, env: NodeJS.ProcessEnv = process.env): Promise<KubeCredentials> {
  const fromEnv = env.KUBECONFIG?.split(':').filter(Boolean) ?? [];
  const home = join(homedir(), '.kube', 'config');
  const path =
    kubeconfigPath ?? (fromEnv.length === 1 ? fromEnv[0] : fromEnv.length === 0 && existsSync(home) ? home : undefined);
  if (path) {
    const light = lightFromKubeconfig(path);
    if (light) return light;
  } else if (fromEnv.length === 0) {
    const light = lightInCluster(env);
    if (light) return light;
  }
  // Several merged files, exec plugins, auth providers...: client-node knows them all.
  const { loadKubeConfig } = await import('./kube-config');
  return loadKubeConfig(path);
}
