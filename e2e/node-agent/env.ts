/** A container's environment, built the way the kubelet builds it. */
import type { V1Container } from '@kubernetes/client-node';
import { expand, fieldRef, resourceFieldRef, type NodeAllocatable, type PodAddresses } from './downward';
import type { Pod } from './pod-types';

/** Missing Secret/ConfigMap keys: the kubelet reports CreateContainerConfigError and retries. */
export class ConfigError extends Error {}

export interface ObjectSource {
  /** Decoded data of a Secret or ConfigMap (binaryData included), or undefined when it does not exist. */
  secret(namespace: string, name: string): Promise<Record<string, Buffer> | undefined>;
  configMap(namespace: string, name: string): Promise<Record<string, Buffer> | undefined>;
}

export interface EnvContext extends PodAddresses {
  /** Variables every process gets (PATH, HOME, HOSTNAME, KUBERNETES_SERVICE_*). */
  base: Record<string, string>;
  imageEnv?: Record<string, string>;
  node: NodeAllocatable;
  sources: ObjectSource;
}

async function lookup(
  sources: ObjectSource,
  kind: 'secret' | 'configMap',
  namespace: string,
  name: string,
  key: string | undefined,
  optional: boolean | undefined,
): Promise<Record<string, string> | string | undefined> {
  const raw = kind === 'secret' ? await sources.secret(namespace, name) : await sources.configMap(namespace, name);
  const data = raw && Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v.toString('utf8')]));
  const label = kind === 'secret' ? 'secret' : 'configmap';
  if (!data) {
    if (optional) return undefined;
    throw new ConfigError(`${label} "${name}" not found`);
  }
  if (key === undefined) return data;
  if (!(key in data)) {
    if (optional) return undefined;
    throw new ConfigError(`couldn't find key ${key} in ${kind === 'secret' ? 'Secret' : 'ConfigMap'} ${namespace}/${name}`);
  }
  return data[key];
}

const VALID_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

export async function containerEnv(pod: Pod, container: V1Container, ctx: EnvContext): Promise<Record<string, string>> {
  const ns = pod.metadata.namespace;
  // Expansion sees service variables and every variable defined before it, not the image's env.
  const vars: Record<string, string> = { ...ctx.base };
  const own: Record<string, string> = {};
  const set = (name: string, value: string): void => {
    vars[name] = value;
    own[name] = value;
  };

  for (const from of container.envFrom ?? []) {
    const ref = from.secretRef ?? from.configMapRef;
    if (!ref?.name) continue;
    const kind = from.secretRef ? 'secret' : 'configMap';
    const data = (await lookup(ctx.sources, kind, ns, ref.name, undefined, ref.optional)) as Record<string, string> | undefined;
    for (const [k, v] of Object.entries(data ?? {})) {
      const name = `${from.prefix ?? ''}${k}`;
      if (VALID_NAME.test(name)) set(name, v);
    }
  }

  for (const env of container.env ?? []) {
    const from = env.valueFrom;
    if (!from) {
      set(env.name, expand(env.value ?? '', vars));
    } else if (from.fieldRef) {
      set(env.name, fieldRef(pod, from.fieldRef, ctx));
    } else if (from.resourceFieldRef) {
      const target = from.resourceFieldRef.containerName
        ? [...(pod.spec.containers ?? []), ...(pod.spec.initContainers ?? [])].find(
            (c) => c.name === from.resourceFieldRef?.containerName,
          )
        : container;
      set(env.name, resourceFieldRef(target, from.resourceFieldRef, ctx.node));
    } else if (from.secretKeyRef || from.configMapKeyRef) {
      const ref = (from.secretKeyRef ?? from.configMapKeyRef)!;
      const kind = from.secretKeyRef ? 'secret' : 'configMap';
      const value = await lookup(ctx.sources, kind, ns, ref.name ?? '', ref.key, ref.optional);
      if (typeof value === 'string') set(env.name, value);
    }
  }
  return { ...ctx.base, ...(ctx.imageEnv ?? {}), ...own };
}
