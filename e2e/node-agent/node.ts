/** The Node object and its heartbeat Lease, as a kubelet keeps them. */
import { release } from 'node:os';
import { errorMessage, KubeApiError } from '../../common/src/errors';
import type { KubeClient, KubeObject } from '../../common/src/kube/types';
import { LEASES, NODES } from '../../common/src/kube/resources';
import type { Logger } from '../../common/src/logger';
import type { AgentConfig } from './config';
import { kubeTime } from './pod-types';

const LEASE_NAMESPACE = 'kube-node-lease';
const LEASE_SECONDS = 40;
const RENEW_MS = 10_000;
/** The kubelet reports unchanged node status every 5 minutes. */
const STATUS_MS = 300_000;
const FIELD_MANAGER = 'spawner-e2e-node-agent';

/** metav1.MicroTime wants exactly six fractional digits. */
const microTime = (): string => new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class NodeRegistration {
  private timers: NodeJS.Timeout[] = [];
  private nodeUid?: string;

  constructor(
    private readonly client: KubeClient,
    private readonly config: AgentConfig,
    private readonly version: string,
    private readonly logger: Logger,
  ) {}

  private status(): Record<string, unknown> {
    const now = kubeTime();
    const cond = (type: string, status: string, reason: string, message: string): Record<string, string> => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: now,
    });
    const resources = { ...this.config.capacity, 'ephemeral-storage': '1Ti' };
    return {
      capacity: resources,
      allocatable: resources,
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        cond('Ready', 'True', 'KubeletReady', 'spawner e2e node agent is posting ready status'),
      ],
      addresses: [
        { type: 'InternalIP', address: this.config.hostIp },
        { type: 'Hostname', address: this.config.nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
      nodeInfo: {
        machineID: '',
        systemUUID: '',
        bootID: '',
        kernelVersion: release(),
        osImage: 'spawner e2e node agent',
        containerRuntimeVersion: 'e2e-local://0.1.0',
        kubeletVersion: this.version,
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    };
  }

  async register(): Promise<void> {
    const name = this.config.nodeName;
    const node: KubeObject & { spec: { podCIDR: string; podCIDRs: string[] } } = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        labels: {
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch,
          'spawner.dev/e2e-node-agent': 'true',
        },
      },
      spec: { podCIDR: this.config.podCidr, podCIDRs: [this.config.podCidr] },
    };
    let created: KubeObject | undefined;
    try {
      created = await this.client.create(NODES, undefined, node, { fieldManager: FIELD_MANAGER });
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409)) throw err;
      created = await this.client.get(NODES, undefined, name);
    }
    this.nodeUid = created?.metadata?.uid;
    await this.postStatus();
    await this.untaint();
    await this.renewLease();
    this.timers.push(
      setInterval(() => void this.renewLease(), RENEW_MS),
      setInterval(() => void this.postStatus(), STATUS_MS),
    );
    this.logger.info('node registered', { node: name, podCIDR: this.config.podCidr });
  }

  private async postStatus(): Promise<void> {
    try {
      await this.client.patch(NODES, undefined, this.config.nodeName, { status: this.status() }, 'merge', {
        subresource: 'status',
        fieldManager: FIELD_MANAGER,
      });
    } catch (err) {
      this.logger.warn('node status update failed', { error: errorMessage(err) });
    }
  }

  /**
   * The API server's TaintNodesByCondition admission taints every new Node not-ready; the node
   * lifecycle controller lifts it once the Node reports Ready. That controller does not run here
   * (it would also evict pods on a missed heartbeat), so the agent lifts the taint itself.
   */
  private async untaint(): Promise<void> {
    const node = await this.client.get<KubeObject & { spec?: { taints?: Array<{ key: string }> } }>(
      NODES,
      undefined,
      this.config.nodeName,
    );
    const taints = node?.spec?.taints ?? [];
    const kept = taints.filter((t) => t.key !== 'node.kubernetes.io/not-ready' && t.key !== 'node.kubernetes.io/unreachable');
    if (kept.length === taints.length) return;
    await this.client.patch(NODES, undefined, this.config.nodeName, { spec: { taints: kept.length ? kept : null } }, 'merge', {
      fieldManager: FIELD_MANAGER,
    });
  }

  private async renewLease(): Promise<void> {
    const name = this.config.nodeName;
    const spec = { holderIdentity: name, leaseDurationSeconds: LEASE_SECONDS, renewTime: microTime() };
    try {
      const patched = await this.client
        .patch(LEASES, LEASE_NAMESPACE, name, { spec }, 'merge', { fieldManager: FIELD_MANAGER })
        .catch((err: unknown) => {
          if (err instanceof KubeApiError && err.status === 404) return undefined;
          throw err;
        });
      if (patched) return;
      await this.client.create<KubeObject & { spec: typeof spec }>(
        LEASES,
        LEASE_NAMESPACE,
        {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: {
            name,
            namespace: LEASE_NAMESPACE,
            ownerReferences: this.nodeUid ? [{ apiVersion: 'v1', kind: 'Node', name, uid: this.nodeUid }] : undefined,
          },
          spec,
        },
        { fieldManager: FIELD_MANAGER },
      );
    } catch (err) {
      this.logger.warn('node lease renewal failed', { error: errorMessage(err) });
    }
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }
}
