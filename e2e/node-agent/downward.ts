/**
 * What a Pod may learn about itself (downward API, env references) and `$(VAR)` expansion, with
 * the kubelet's semantics so that manifests behave here as they would on a real node.
 */
import type { V1Container, V1ObjectFieldSelector, V1ResourceFieldSelector } from '@kubernetes/client-node';
import type { Pod } from './pod-types';
import { parseQuantity } from './quantity';

export interface PodAddresses {
  podIP?: string;
  hostIP: string;
}

/** The node's allocatable resources: a container without limits sees these, as on a kubelet. */
export interface NodeAllocatable {
  cpu: number;
  memory: number;
}

function mapFile(map: Record<string, string> | undefined): string {
  return Object.keys(map ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(map?.[k] ?? '')}`)
    .join('\n');
}

export function fieldRef(pod: Pod, sel: V1ObjectFieldSelector, addr: PodAddresses): string {
  const path = sel.fieldPath;
  const keyed = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (keyed) return (keyed[1] === 'labels' ? pod.metadata.labels : pod.metadata.annotations)?.[keyed[2]] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace;
    case 'metadata.uid':
      return pod.metadata.uid;
    case 'metadata.labels':
      return mapFile(pod.metadata.labels);
    case 'metadata.annotations':
      return mapFile(pod.metadata.annotations);
    case 'spec.nodeName':
      return pod.spec.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs':
      return addr.podIP ?? '';
    case 'status.hostIP':
    case 'status.hostIPs':
      return addr.hostIP;
    default:
      throw new Error(`unsupported fieldRef ${path}`);
  }
}

export function resourceFieldRef(
  container: V1Container | undefined,
  sel: V1ResourceFieldSelector,
  node: NodeAllocatable,
): string {
  const [kind, resource] = sel.resource.split('.');
  const fromSpec = parseQuantity((kind === 'limits' ? container?.resources?.limits : container?.resources?.requests)?.[resource]);
  const limit =
    container?.resources?.limits?.[resource] !== undefined ? parseQuantity(container.resources.limits[resource]) : undefined;
  // Unset limits read as the node's allocatable; unset requests fall back to the limit (defaulting).
  const value =
    fromSpec ??
    (kind === 'requests' ? limit : undefined) ??
    (resource === 'cpu' ? node.cpu : resource === 'memory' ? node.memory : 0);
  const divisor = parseQuantity(sel.divisor as string | undefined) || 1;
  // The kubelet rounds up: a container with 250m CPU reads "1" with the default divisor.
  return String(Math.ceil(value / divisor));
}

/** `$(VAR)` expands when VAR is known, `$$` is a literal `$`, anything else stays as written. */
export function expand(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === '$$') return '$';
    return name !== undefined && Object.prototype.hasOwnProperty.call(vars, name) ? vars[name] : match;
  });
}
