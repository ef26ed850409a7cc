import { mkdtempSync, writeFileSync } from 'node:fs';
import type * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { lightFromKubeconfig, lightInCluster, loadCredentials } from './credentials';

const b64 = (s: string) => Buffer.from(s).toString('base64');

function kubeconfig(dir: string, user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  const path = join(dir, 'config');
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'main',
      clusters: [
        { name: 'other', cluster: { server: 'https://wrong:1' } },
        { name: 'c', cluster: { server: 'https://10.1.2.3:6443', 'certificate-authority-data': b64('CA'), ...cluster } },
      ],
      users: [{ name: 'u', user }],
      contexts: [
        { name: 'other', context: { cluster: 'other', user: 'u' } },
        { name: 'main', context: { cluster: 'c', user: 'u' } },
      ],
    }),
  );
  return path;
}

async function applied(creds: { applyToHTTPSOptions(o: https.RequestOptions): Promise<void> }): Promise<https.RequestOptions> {
  const o: https.RequestOptions = {};
  await creds.applyToHTTPSOptions(o);
  return o;
}

describe('credentials without client-node', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spawner-creds-'));

  it('reads the current context: server, CA, client certificate and key from data fields', async () => {
    const creds = lightFromKubeconfig(
      kubeconfig(dir, { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') }),
    ) as NonNullable<ReturnType<typeof lightFromKubeconfig>>;
    expect(creds.getCurrentCluster()).toEqual({ server: 'https://10.1.2.3:6443' });
    const o = await applied(creds);
    expect(String(o.ca)).toBe('CA');
    expect(String(o.cert)).toBe('CERT');
    expect(String(o.key)).toBe('KEY');
    expect(o.headers).toBeUndefined();
    expect(o.rejectUnauthorized).toBeUndefined();
  });

  it('reads files relative to the kubeconfig, and re-reads a token file on every use', async () => {
    writeFileSync(join(dir, 'ca.pem'), 'CA-FILE');
    writeFileSync(join(dir, 'token'), 'first\n');
    const creds = lightFromKubeconfig(
      kubeconfig(dir, { tokenFile: 'token' }, { 'certificate-authority-data': undefined, 'certificate-authority': 'ca.pem' }),
    ) as NonNullable<ReturnType<typeof lightFromKubeconfig>>;
    let o = await applied(creds);
    expect(String(o.ca)).toBe('CA-FILE');
    expect(o.headers).toEqual({ authorization: 'Bearer first' });
    writeFileSync(join(dir, 'token'), 'rotated\n');
    o = await applied(creds);
    expect(o.headers).toEqual({ authorization: 'Bearer rotated' });
  });

  it('honours insecure-skip-tls-verify and a static token', async () => {
    const creds = lightFromKubeconfig(kubeconfig(dir, { token: 't0k' }, { 'insecure-skip-tls-verify': true }));
    const o = await applied(creds as NonNullable<typeof creds>);
    expect(o.rejectUnauthorized).toBe(false);
    expect(o.headers).toEqual({ authorization: 'Bearer t0k' });
  });

  it('leaves exec plugins and auth providers to client-node', async () => {
    const path = kubeconfig(dir, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' } });
    expect(lightFromKubeconfig(path)).toBeUndefined();
    const creds = await loadCredentials(path, {});
    expect(creds).toBeInstanceOf(KubeConfig);
    expect(creds.getCurrentCluster()?.server).toBe('https://10.1.2.3:6443');
  });

  it('names the file and the missing context when the kubeconfig is wrong', () => {
    const path = join(dir, 'broken');
    writeFileSync(path, 'current-context: nowhere\ncontexts: []\n');
    expect(() => lightFromKubeconfig(path)).toThrow(`${path}: current-context 'nowhere' is not among its contexts`);
  });

  it("reads a Pod's service account in cluster, with the token re-read on every use", async () => {
    const sa = mkdtempSync(join(tmpdir(), 'spawner-sa-'));
    writeFileSync(join(sa, 'ca.crt'), 'CLUSTER-CA');
    writeFileSync(join(sa, 'token'), 'sa-token');
    const env = { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' };
    const creds = lightInCluster(env, sa) as NonNullable<ReturnType<typeof lightInCluster>>;
    expect(creds.getCurrentCluster()).toEqual({ server: 'https://10.0.0.1:443' });
    const o = await applied(creds);
    expect(String(o.ca)).toBe('CLUSTER-CA');
    expect(o.headers).toEqual({ authorization: 'Bearer sa-token' });
    expect(lightInCluster({}, sa)).toBeUndefined();
  });

  it('prefers an explicit path, then $KUBECONFIG', async () => {
    const path = kubeconfig(dir, { token: 'x' });
    expect((await loadCredentials(undefined, { KUBECONFIG: path })).getCurrentCluster()?.server).toBe('https://10.1.2.3:6443');
    expect((await loadCredentials(path, { KUBECONFIG: '/nonexistent' })).getCurrentCluster()?.server).toBe(
      'https://10.1.2.3:6443',
    );
  });
});
