/**
 * The Pod and Service a backend should have, as pure functions of the backend and the operator's
 * configuration. The reconcile creates exactly these; tests check them without a cluster.
 */
import type { V1Container, V1EnvVar, V1OwnerReference, V1Pod, V1Service } from '@kubernetes/client-node';
import type { SessionLivedBackend } from '../../common/src/backend';
import {
  ANNOTATION_TOKEN_HASH,
  DEFAULT_HTTP_PORT,
  ENV_SIDECAR_TOKEN_HASH,
  LABEL_MANAGED_BY,
  LABEL_RUN,
  MANAGED_BY,
  SERVICE_PORT_NAME,
  SIDECAR_ADMIN_PORT,
  SIDECAR_CONTAINER,
  SIDECAR_SERVE_PORT,
} from '../../common/src/constants';
import type { OperatorConfig, ServiceMode } from './config';

export type SidecarConfig = Pick<
  OperatorConfig,
  'sidecarImage' | 'sidecarImagePullPolicy' | 'sidecarResources' | 'sidecarSecurityContext' | 'sidecarEnv' | 'imagePullSecret'
>;

export function ownerReference(backend: SessionLivedBackend): V1OwnerReference {
  const { name, uid } = backend.metadata;
  if (!name || !uid) throw new Error('backend has no name or uid yet');
  return {
    apiVersion: backend.apiVersion,
    kind: backend.kind,
    name,
    uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The backend's own labels plus the ones Spawner's selectors rely on. */
export function childLabels(backend: SessionLivedBackend): Record<string, string> {
  return {
    ...(backend.metadata.labels ?? {}),
    [LABEL_RUN]: backend.metadata.name as string,
    [LABEL_MANAGED_BY]: MANAGED_BY,
  };
}

export const httpPortOf = (backend: SessionLivedBackend): number => backend.spec.httpPort ?? DEFAULT_HTTP_PORT;

/** The spec problems the CRD schema cannot express; a backend with any of them is Failed at once. */
export function specProblems(backend: SessionLivedBackend): string[] {
  const problems: string[] = [];
  const port = httpPortOf(backend);
  if (port === SIDECAR_SERVE_PORT || port === SIDECAR_ADMIN_PORT) {
    problems.push(`spec.httpPort ${port} is reserved for the sidecar (${SIDECAR_SERVE_PORT}, ${SIDECAR_ADMIN_PORT})`);
  }
  const names = backend.spec.template.containers.map((c) => c.name);
  if (names.includes(SIDECAR_CONTAINER)) problems.push(`container name ${SIDECAR_CONTAINER} is reserved for the sidecar`);
  if (new Set(names).size !== names.length) problems.push('container names must be unique');
  return problems;
}

function sidecarContainer(backend: SessionLivedBackend, cfg: SidecarConfig): V1Container {
  const env: V1EnvVar[] = Object.entries(cfg.sidecarEnv).map(([name, value]) => ({ name, value }));
  const tokenHash = backend.metadata.annotations?.[ANNOTATION_TOKEN_HASH];
  if (tokenHash) env.push({ name: ENV_SIDECAR_TOKEN_HASH, value: tokenHash });
  const container: V1Container = {
    name: SIDECAR_CONTAINER,
    image: cfg.sidecarImage,
    imagePullPolicy: cfg.sidecarImagePullPolicy,
    args: [`--serve-port=${SIDECAR_SERVE_PORT}`, `--upstream-port=${httpPortOf(backend)}`],
    ports: [
      { name: 'proxy', containerPort: SIDECAR_SERVE_PORT, protocol: 'TCP' },
      { name: 'admin', containerPort: SIDECAR_ADMIN_PORT, protocol: 'TCP' },
    ],
    // Probed every second so a new backend is Ready soon after its app listens; three misses of
    // 3 s each before NotReady, so a busy node or a paused sidecar does not flap a live backend
    // (a blip never ends it either: the phase only moves forward).
    readinessProbe: {
      httpGet: { path: '/ready', port: SIDECAR_ADMIN_PORT },
      periodSeconds: 1,
      failureThreshold: 3,
      successThreshold: 1,
      timeoutSeconds: 3,
    },
    resources: cfg.sidecarResources as V1Container['resources'],
    securityContext: cfg.sidecarSecurityContext as V1Container['securityContext'],
  };
  if (env.length > 0) container.env = env;
  return container;
}

export function buildPod(backend: SessionLivedBackend, cfg: SidecarConfig): V1Pod {
  const name = backend.metadata.name as string;
  const template = backend.spec.template;
  const port = httpPortOf(backend);
  const [app, ...others] = template.containers;
  const appEnv = [...((app.env ?? []) as V1EnvVar[]).filter((e) => e.name !== 'PORT'), { name: 'PORT', value: String(port) }];
  const appContainer = {
    ...app,
    env: appEnv,
    // The tail of the app's log becomes the termination message, which the backend's status
    // carries after a crash, so users see why without the (deleted) Pod.
    terminationMessagePolicy: 'FallbackToLogsOnError',
  } as V1Container;

  const imagePullSecrets = [...(template.imagePullSecrets ?? [])];
  if (cfg.imagePullSecret && !imagePullSecrets.some((s) => s.name === cfg.imagePullSecret)) {
    imagePullSecrets.push({ name: cfg.imagePullSecret });
  }

  const spec: NonNullable<V1Pod['spec']> = {
    restartPolicy: 'Never',
    containers: [appContainer, ...(others as V1Container[]), sidecarContainer(backend, cfg)],
  };
  if (imagePullSecrets.length > 0) spec.imagePullSecrets = imagePullSecrets;
  const passThrough = [
    'volumes',
    'nodeSelector',
    'tolerations',
    'affinity',
    'securityContext',
    'serviceAccountName',
    'priorityClassName',
    'runtimeClassName',
  ] as const;
  for (const field of passThrough) {
    if (template[field] !== undefined) (spec as unknown as Record<string, unknown>)[field] = template[field];
  }
  if (!template.serviceAccountName) {
    // Backends run untrusted session code; they get no API credentials unless asked for.
    spec.automountServiceAccountToken = false;
  }

  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: backend.metadata.namespace,
      labels: childLabels(backend),
      ownerReferences: [ownerReference(backend)],
    },
    spec,
  };
}

export function buildService(backend: SessionLivedBackend, cfg: { serviceMode?: ServiceMode } = {}): V1Service {
  const name = backend.metadata.name as string;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: backend.metadata.namespace,
      labels: childLabels(backend),
      ownerReferences: [ownerReference(backend)],
    },
    spec: {
      type: 'ClusterIP',
      ...(cfg.serviceMode === 'Headless' ? { clusterIP: 'None' } : {}),
      selector: { [LABEL_RUN]: name },
      ports: [{ name: SERVICE_PORT_NAME, protocol: 'TCP', port: SIDECAR_SERVE_PORT, targetPort: SIDECAR_SERVE_PORT }],
    },
  };
}

/** The in-cluster URL of a backend, through its Service and sidecar (the original's `url`). */
export function serviceUrl(backend: SessionLivedBackend): string {
  return `http://${backend.metadata.name}.${backend.metadata.namespace}.svc:${SIDECAR_SERVE_PORT}/`;
}

/** The in-cluster URL of a backend without a Service: its Pod's sidecar (as the original's Service URL was). */
export function podUrl(podIP: string): string {
  return `http://${podIP.includes(':') ? `[${podIP}]` : podIP}:${SIDECAR_SERVE_PORT}/`;
}
