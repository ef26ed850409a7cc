import { ANNOTATION_TOKEN_HASH } from '../../common/src/constants';
import { buildPod, buildService, specProblems } from './desired-state';
import { backendFixture, testConfig } from './test-fixtures';

describe('the Pod built for a backend', () => {
  const b = backendFixture({ httpPort: 3000 });
  const pod = buildPod(b, testConfig);

  it('is named after the backend, labelled, and controlled by it', () => {
    expect(pod.metadata?.name).toBe('b1');
    expect(pod.metadata?.labels).toEqual({ team: 'x', run: 'b1', 'app.kubernetes.io/managed-by': 'spawner' });
    expect(pod.metadata?.ownerReferences).toEqual([
      {
        apiVersion: 'spawner.dev/v1',
        kind: 'SessionLivedBackend',
        name: 'b1',
        uid: 'uid-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    expect(pod.spec?.restartPolicy).toBe('Never');
  });

  it('gives the app its PORT, keeping its own env', () => {
    const app = pod.spec!.containers[0];
    expect(app.name).toBe('app');
    expect(app.env).toEqual([
      { name: 'A', value: '1' },
      { name: 'PORT', value: '3000' },
    ]);
  });

  it('appends the sidecar with the original flags, a readiness probe on its admin port, and configured resources', () => {
    const sidecar = pod.spec!.containers[1];
    expect(pod.spec!.containers).toHaveLength(2);
    expect(sidecar.name).toBe('spawner-sidecar');
    expect(sidecar.image).toBe('spawner-sidecar:test');
    expect(sidecar.args).toEqual(['--serve-port=9090', '--upstream-port=3000']);
    expect(sidecar.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 9091 });
    expect(sidecar.resources).toEqual(testConfig.sidecarResources);
    expect(sidecar.securityContext).toEqual(testConfig.sidecarSecurityContext);
    expect(sidecar.env).toEqual([{ name: 'LOG_LEVEL', value: 'debug' }]);
  });

  it('passes the connection token hash to the sidecar when the backend has one', () => {
    const withToken = backendFixture();
    withToken.metadata.annotations = { [ANNOTATION_TOKEN_HASH]: 'abc123' };
    const env = buildPod(withToken, testConfig).spec!.containers[1].env;
    expect(env).toContainEqual({ name: 'SPAWNER_TOKEN_SHA256', value: 'abc123' });
  });

  it('passes the scheduling and security fields of the template through', () => {
    const t = backendFixture({
      template: {
        containers: [{ name: 'app', image: 'x' }],
        nodeSelector: { pool: 'a' },
        tolerations: [{ key: 'k', operator: 'Exists' }],
        serviceAccountName: 'sa',
        priorityClassName: 'high',
        imagePullSecrets: [{ name: 'reg' }],
      },
    });
    const spec = buildPod(t, { ...testConfig, imagePullSecret: 'sidecar-reg' }).spec!;
    expect(spec.nodeSelector).toEqual({ pool: 'a' });
    expect(spec.tolerations).toEqual([{ key: 'k', operator: 'Exists' }]);
    expect(spec.serviceAccountName).toBe('sa');
    expect(spec.automountServiceAccountToken).toBeUndefined();
    expect(spec.priorityClassName).toBe('high');
    expect(spec.imagePullSecrets).toEqual([{ name: 'reg' }, { name: 'sidecar-reg' }]);
    expect(buildPod(backendFixture(), testConfig).spec!.automountServiceAccountToken).toBe(false);
  });
});

describe('the Service built for a backend', () => {
  it('selects the Pod by run=<name> and exposes the sidecar as spawner-app:9090', () => {
    const s = buildService(backendFixture());
    expect(s.metadata?.name).toBe('b1');
    expect(s.metadata?.ownerReferences?.[0].uid).toBe('uid-1');
    expect(s.spec?.selector).toEqual({ run: 'b1' });
    expect(s.spec?.ports).toEqual([{ name: 'spawner-app', protocol: 'TCP', port: 9090, targetPort: 9090 }]);
    expect(s.spec?.clusterIP).toBeUndefined();
  });

  it('is headless (no cluster IP to allocate) when so configured', () => {
    const s = buildService(backendFixture(), { serviceMode: 'Headless' });
    expect(s.spec?.clusterIP).toBe('None');
    expect(s.spec?.selector).toEqual({ run: 'b1' });
  });
});

describe('spec problems the schema cannot express', () => {
  it('refuses the sidecar ports and a container named like the sidecar', () => {
    expect(specProblems(backendFixture({ httpPort: 9090 }))).toHaveLength(1);
    expect(specProblems(backendFixture({ template: { containers: [{ name: 'spawner-sidecar', image: 'x' }] } }))).toHaveLength(1);
    expect(specProblems(backendFixture())).toEqual([]);
  });
});
