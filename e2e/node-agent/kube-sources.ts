/** Secrets, ConfigMaps and ServiceAccount tokens for pods, read from the API as a kubelet would. */
import type { KubeClient, KubeObject, ResourceType } from '../../common/src/kube/types';
import type { ObjectSource } from './env';
import type { Pod } from './pod-types';
import type { TokenSource } from './volumes';

interface DataObject extends KubeObject {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

interface TokenRequest extends KubeObject {
  spec: {
    audiences?: string[];
    expirationSeconds: number;
    boundObjectRef: { apiVersion: string; kind: string; name: string; uid: string };
  };
  status?: { token?: string };
}

const SECRETS: ResourceType = { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true };
const CONFIGMAPS: ResourceType = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };

/**
 * The TokenRequest subresource (POST .../serviceaccounts/<name>/token). KubeClient has no way to
 * create a subresource, but resourcePath leaves the plural unescaped, so the path is spelled there.
 */
const tokenRequests = (serviceAccount: string): ResourceType => ({
  group: '',
  version: 'v1',
  plural: `serviceaccounts/${encodeURIComponent(serviceAccount)}/token`,
  kind: 'TokenRequest',
  namespaced: true,
});

/** Pods created in a burst read the same objects (kube-root-ca.crt above all); a short cache absorbs that. */
const CACHE_MS = 2_000;

export class KubeSources implements ObjectSource, TokenSource {
  private readonly cache = new Map<string, { at: number; value: Promise<Record<string, Buffer> | undefined> }>();

  constructor(private readonly client: KubeClient) {}

  private cached(type: ResourceType, namespace: string, name: string): Promise<Record<string, Buffer> | undefined> {
    const key = `${type.plural}/${namespace}/${name}`;
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.value;
    const value = this.client.get<DataObject>(type, namespace, name).then((obj) => {
      if (!obj) return undefined;
      const out: Record<string, Buffer> = {};
      const data = obj.data ?? {};
      const binary = obj.binaryData ?? {};
      const isSecret = type === SECRETS;
      for (const [k, v] of Object.entries(data)) out[k] = Buffer.from(v, isSecret ? 'base64' : 'utf8');
      for (const [k, v] of Object.entries(binary)) out[k] = Buffer.from(v, 'base64');
      return out;
    });
    value.catch(() => this.cache.delete(key));
    this.cache.set(key, { at: Date.now(), value });
    if (this.cache.size > 1000) for (const [k, v] of this.cache) if (Date.now() - v.at >= CACHE_MS) this.cache.delete(k);
    return value;
  }

  secret(namespace: string, name: string): Promise<Record<string, Buffer> | undefined> {
    return this.cached(SECRETS, namespace, name);
  }

  configMap(namespace: string, name: string): Promise<Record<string, Buffer> | undefined> {
    return this.cached(CONFIGMAPS, namespace, name);
  }

  async token(
    namespace: string,
    serviceAccount: string,
    opts: { audience?: string; expirationSeconds?: number; pod: Pod },
  ): Promise<string> {
    const request: TokenRequest = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        // No audience: the API server's own (what in-cluster clients present to it).
        audiences: opts.audience ? [opts.audience] : undefined,
        expirationSeconds: opts.expirationSeconds ?? 3607,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: opts.pod.metadata.name, uid: opts.pod.metadata.uid },
      },
    };
    const answer = await this.client.create<TokenRequest>(tokenRequests(serviceAccount), namespace, request);
    const token = answer.status?.token;
    if (!token) throw new Error(`no token in the TokenRequest answer for ${namespace}/${serviceAccount}`);
    return token;
  }
}
