/**
 * Volumes as files on the host, one directory per volume under the pod's state directory, later
 * bind-mounted at each container's mountPaths inside the container's own mount namespace. This is
 * also how in-cluster credentials arrive: the ServiceAccount admission plugin adds a projected
 * volume (token + kube-root-ca.crt + namespace) mounted at /var/run/secrets/kubernetes.io/serviceaccount.
 */
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { V1Container, V1DownwardAPIVolumeFile, V1KeyToPath, V1Volume } from '@kubernetes/client-node';
import { fieldRef, resourceFieldRef, type NodeAllocatable, type PodAddresses } from './downward';
import type { ObjectSource } from './env';
import type { Pod } from './pod-types';

export interface TokenSource {
  /** TokenRequest for a ServiceAccount, bound to the pod like the kubelet's. */
  token(
    namespace: string,
    serviceAccount: string,
    opts: { audience?: string; expirationSeconds?: number; pod: Pod },
  ): Promise<string>;
}

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface VolumeContext {
  addr: PodAddresses;
  node: NodeAllocatable;
  sources: ObjectSource & TokenSource;
}

/** Mount set-up failures: the kubelet keeps the container in ContainerCreating and retries. */
export class MountError extends Error {}

function safeJoin(dir: string, rel: string): string {
  const path = normalize(join(dir, rel));
  if (!path.startsWith(`${dir}/`)) throw new MountError(`path ${rel} escapes its volume`);
  return path;
}

function writeAt(dir: string, rel: string, data: Buffer | string, mode: number): void {
  const path = safeJoin(dir, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
  chmodSync(path, mode);
}

function writeKeys(
  dir: string,
  what: string,
  data: Record<string, Buffer> | undefined,
  items: V1KeyToPath[] | undefined,
  mode: number,
  optional: boolean | undefined,
): void {
  if (!data) {
    if (optional) return;
    throw new MountError(`${what} not found`);
  }
  if (!items?.length) {
    for (const [key, value] of Object.entries(data)) writeAt(dir, key, value, mode);
    return;
  }
  for (const item of items) {
    if (!(item.key in data)) {
      if (optional) continue;
      throw new MountError(`${what}: key ${item.key} not found`);
    }
    writeAt(dir, item.path, data[item.key], item.mode ?? mode);
  }
}

function writeDownward(
  dir: string,
  pod: Pod,
  items: V1DownwardAPIVolumeFile[] | undefined,
  mode: number,
  ctx: VolumeContext,
): void {
  for (const item of items ?? []) {
    let value = '';
    if (item.fieldRef) value = fieldRef(pod, item.fieldRef, ctx.addr);
    else if (item.resourceFieldRef) {
      const c = pod.spec.containers.find((x) => x.name === item.resourceFieldRef?.containerName);
      value = resourceFieldRef(c, item.resourceFieldRef, ctx.node);
    }
    writeAt(dir, item.path, value, item.mode ?? mode);
  }
}

async function prepareOne(pod: Pod, volume: V1Volume, dir: string, ctx: VolumeContext): Promise<string> {
  const ns = pod.metadata.namespace;
  if (volume.hostPath) {
    if (volume.hostPath.type === 'DirectoryOrCreate') mkdirSync(volume.hostPath.path, { recursive: true });
    return volume.hostPath.path;
  }
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (volume.emptyDir) return dir;
  if (volume.secret) {
    const s = volume.secret;
    writeKeys(
      dir,
      `secret "${s.secretName}"`,
      await ctx.sources.secret(ns, s.secretName ?? ''),
      s.items,
      s.defaultMode ?? 0o644,
      s.optional,
    );
    return dir;
  }
  if (volume.configMap) {
    const c = volume.configMap;
    writeKeys(
      dir,
      `configmap "${c.name}"`,
      await ctx.sources.configMap(ns, c.name ?? ''),
      c.items,
      c.defaultMode ?? 0o644,
      c.optional,
    );
    return dir;
  }
  if (volume.downwardAPI) {
    writeDownward(dir, pod, volume.downwardAPI.items, volume.downwardAPI.defaultMode ?? 0o644, ctx);
    return dir;
  }
  if (volume.projected) {
    const mode = volume.projected.defaultMode ?? 0o644;
    for (const source of volume.projected.sources ?? []) {
      if (source.serviceAccountToken) {
        const t = source.serviceAccountToken;
        const token = await ctx.sources.token(ns, pod.spec.serviceAccountName ?? 'default', {
          audience: t.audience,
          expirationSeconds: t.expirationSeconds,
          pod,
        });
        writeAt(dir, t.path, token, mode);
      } else if (source.secret) {
        const s = source.secret;
        writeKeys(dir, `secret "${s.name}"`, await ctx.sources.secret(ns, s.name ?? ''), s.items, mode, s.optional);
      } else if (source.configMap) {
        const c = source.configMap;
        writeKeys(dir, `configmap "${c.name}"`, await ctx.sources.configMap(ns, c.name ?? ''), c.items, mode, c.optional);
      } else if (source.downwardAPI) {
        writeDownward(dir, pod, source.downwardAPI.items, mode, ctx);
      } else {
        throw new MountError(`volume ${volume.name}: unsupported projected source ${Object.keys(source).join(',')}`);
      }
    }
    return dir;
  }
  const kind = Object.keys(volume).find((k) => k !== 'name') ?? 'unknown';
  throw new MountError(`volume ${volume.name}: type ${kind} is not supported by the e2e node agent`);
}

/** Materializes every volume of the pod; returns volume name → host directory. */
export async function prepareVolumes(pod: Pod, volumesDir: string, ctx: VolumeContext): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const volume of pod.spec.volumes ?? []) {
    try {
      out.set(volume.name, await prepareOne(pod, volume, join(volumesDir, volume.name), ctx));
    } catch (err) {
      if (err instanceof MountError) throw err;
      throw new MountError(`MountVolume.SetUp failed for volume "${volume.name}": ${(err as Error).message}`);
    }
  }
  return out;
}

export function containerMounts(container: V1Container, volumes: Map<string, string>): Mount[] {
  return (container.volumeMounts ?? []).map((m) => {
    const base = volumes.get(m.name);
    if (!base) throw new MountError(`container ${container.name}: volumeMount ${m.name} names no volume`);
    return { source: m.subPath ? safeJoin(base, m.subPath) : base, target: m.mountPath, readOnly: Boolean(m.readOnly) };
  });
}

/**
 * Bind mounts need an existing target. Containers have their own root filesystem; these processes
 * share the host's, so missing targets are created on the host and recorded (in `record`) for the
 * agent to remove when it stops.
 */
export function ensureMountTargets(mounts: Mount[], record: (createdTop: string) => void): void {
  for (const m of mounts) {
    if (existsSync(m.target)) continue;
    let top = m.target;
    while (!existsSync(dirname(top))) top = dirname(top);
    const isFile = existsSync(m.source) && statSync(m.source).isFile();
    if (isFile) {
      mkdirSync(dirname(m.target), { recursive: true });
      writeFileSync(m.target, '');
    } else {
      mkdirSync(m.target, { recursive: true });
    }
    record(top);
  }
}
