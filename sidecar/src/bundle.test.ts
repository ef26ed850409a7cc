/**
 * The one-file sidecar (scripts/bundle-sidecar.mjs), started as a process from a directory where no
 * node_modules can be found: it proxies, scrapes, refuses bad flags with the usual messages, and
 * stops on SIGTERM. Anything the bundle left out but still needs (ajv, a prom-client part) fails here.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, request, startApp } from '../test/support';

const ROOT = resolve(__dirname, '..', '..');

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((done) => {
    if (child.exitCode !== null) done(child.exitCode);
    else child.once('exit', (code) => done(code));
  });
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('sidecar bundle', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spawner-sidecar-bundle-'));
  const bundle = join(dir, 'sidecar.js');
  beforeAll(() => {
    execFileSync(process.execPath, [join(ROOT, 'scripts/bundle-sidecar.mjs'), bundle], { cwd: ROOT, stdio: 'pipe' });
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs without node_modules: proxies, serves metrics, stops on SIGTERM', async () => {
    const app = await startApp();
    const [serve, admin] = [await freePort(), await freePort()];
    const child = spawn(
      process.execPath,
      [bundle, `--serve-port=${serve}`, `--admin-port=${admin}`, `--upstream-port=${app.port}`, '--listen-host=127.0.0.1'],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH, LOG_LEVEL: 'warn' } },
    );
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      await until(
        async () => (await request(`http://127.0.0.1:${admin}/ready`)).status === 200,
        `the bundle to be ready (${stderr})`,
      );
      const proxied = await request(`http://127.0.0.1:${serve}/hello`);
      expect(proxied.status).toBe(200);
      expect(JSON.parse(proxied.body)).toMatchObject({ url: '/hello' });
      const metrics = (await request(`http://127.0.0.1:${admin}/metrics`)).body;
      expect(metrics).toMatch(/^spawner_sidecar_requests_total\{code_class="2xx",component="sidecar"\} 1$/m);
      expect(metrics).toMatch(/^process_cpu_seconds_total\{component="sidecar"\} /m);
      expect(metrics).toMatch(/^nodejs_heap_size_used_bytes\{component="sidecar"\} /m);
    } finally {
      child.kill('SIGTERM');
      await app.close();
    }
    expect(await exited(child)).toBe(0);
    expect(stderr).toBe('');
  });

  it('refuses a bad flag or variable with the message naming it', async () => {
    const child = spawn(process.execPath, [bundle, '--hold-timeout-ms=0'], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH, SPAWNER_TOKEN_SHA256: 'xyz' },
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    expect(await exited(child)).toBe(2);
    expect(stderr).toBe(
      'invalid sidecar configuration:\n' +
        '  --token-sha256 (SPAWNER_SIDECAR_TOKEN_SHA256) must match pattern "^[0-9a-fA-F]{64}$"\n' +
        '  --hold-timeout-ms (SPAWNER_SIDECAR_HOLD_TIMEOUT_MS) must be >= 1\n',
    );
  });
});
