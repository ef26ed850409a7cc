import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { newBackend, type SessionLivedBackend } from '../../common/src/backend';
import type { OperatorConfig } from './config';
import { buildPod, buildService } from './desired-state';

export const CREATED = new Date('2026-01-01T00:00:00Z');
export const secondsAfter = (s: number): Date => new Date(CREATED.getTime() + s * 1000);

export const testConfig: OperatorConfig = {
  namespaces: ['ns'],
  sidecarImage: 'spawner-sidecar:test',
  sidecarImagePullPolicy: 'IfNotPresent',
  sidecarResources: { requests: { cpu: '10m', memory: '32Mi' } },
  sidecarSecurityContext: { runAsNonRoot: true, readOnlyRootFilesystem: true },
  sidecarEnv: { LOG_LEVEL: 'debug' },
  failedRetentionSeconds: 60,
  serviceMode: 'ClusterIP',
  resyncSeconds: 300,
  concurrency: 4,
  adminPort: 0,
  leaderElection: false,
  leaseName: 'spawner-operator',
  leaseNamespace: 'ns',
  identity: 'test',
  logLevel: 'error',
  assignKey: Buffer.from('test operator assign key'),
};

export function backendFixture(
  overrides: Partial<SessionLivedBackend['spec']> = {},
  status?: SessionLivedBackend['status'],
): SessionLivedBackend {
  const b = newBackend(
    'b1',
    'ns',
    {
      template: { containers: [{ name: 'app', image: 'spawner-test-app', env: [{ name: 'A', value: '1' }] }] },
      httpPort: 8080,
      gracePeriodSeconds: 300,
      startupTimeoutSeconds: 120,
      ...overrides,
    },
    {
      uid: 'uid-1',
      resourceVersion: '10',
      generation: 1,
      creationTimestamp: CREATED.toISOString() as unknown as Date,
      labels: { team: 'x' },
    },
  );
  if (status) b.status = status;
  return b;
}

export const podFor = (b: SessionLivedBackend, status: V1Pod['status'] = {}, nodeName?: string): V1Pod => {
  const pod = buildPod(b, testConfig);
  pod.metadata = { ...pod.metadata, uid: 'pod-uid' };
  if (nodeName) pod.spec = { ...pod.spec!, nodeName };
  pod.status = status;
  return pod;
};

export const serviceFor = (b: SessionLivedBackend): V1Service => {
  const s = buildService(b);
  s.spec = { ...s.spec, clusterIP: '10.0.0.9' };
  return s;
};

export const runningReady = (ready = true): V1Pod['status'] => ({
  phase: 'Running',
  podIP: '10.88.0.5',
  conditions: [
    { type: 'PodScheduled', status: 'True' },
    { type: 'Ready', status: ready ? 'True' : 'False' },
  ],
  containerStatuses: [
    { name: 'app', image: 'x', imageID: '', ready, restartCount: 0, state: { running: {} } },
    { name: 'spawner-sidecar', image: 'x', imageID: '', ready, restartCount: 0, state: { running: {} } },
  ],
});
