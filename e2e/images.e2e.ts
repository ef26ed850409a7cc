/**
 * The images users run (issue 17, docs/adr/0008-images.md). scripts/images.sh builds all five with
 * buildah from the one Dockerfile, on a Debian + Node.js 24 base made by mmdebstrap, cached by
 * content under ~/.cache/spawner/images; then each image's own entrypoint and command, read from
 * its image config, run inside its root filesystem (buildah run, chroot isolation, host network)
 * as the user the config names, uid 65532, against the test cluster. This is where the bundles and
 * Node.js 24 are proven: the rest of the suite runs `npm run build`'s dist/ on the machine's Node.
 *
 * SPAWNER_E2E_IMAGES=0 skips these tests (a machine without buildah, or not root).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { PODS } from '../common/src/kube/resources';
import { SpawnerClient } from '../api/client/spawner-client';
import { TEST_IMAGE } from './support/backends';
import {
  adminClient,
  agentInfo,
  hasAgent,
  httpGet,
  kubeconfigPath,
  ROOT,
  runCommand,
  useNamespace,
  waitFor,
} from './support/cluster';
import { E2E_API_TOKEN, E2E_SIGNING_SECRET, freePort } from './support/components';
import { writeFigures } from './support/figures';

jest.setTimeout(120_000);

const COMPONENTS = ['operator', 'api', 'sweeper', 'sidecar', 'demo-backend'] as const;
type Component = (typeof COMPONENTS)[number];

interface BuiltImage {
  ref: string;
  key: string;
  base: string;
  cached: boolean;
  seconds: number;
  size: number;
}
interface ImagesFile {
  storage: { root: string; runroot: string };
  images: Record<Component, BuiltImage>;
}
interface RunningImage {
  /** The command line: entrypoint, command, args. */
  argv: string[];
  /** The container's root filesystem, mounted. */
  mount: string;
  output: string;
  exited: Promise<number | null>;
  /** The node process that listens. */
  pid: number;
}
interface ImageConfig {
  User?: string;
  WorkingDir?: string;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[];
  ExposedPorts?: Record<string, unknown>;
}

const describeImages = process.env.SPAWNER_E2E_IMAGES === '0' ? describe.skip : describe;

describeImages('images', () => {
  const ns = useNamespace('images');
  let built: ImagesFile | undefined;
  const containers: string[] = [];
  const running: ChildProcess[] = [];

  const buildah = (args: string[], timeoutMs = 60_000) =>
    runCommand('buildah', ['--root', built!.storage.root, '--runroot', built!.storage.runroot, ...args], { timeoutMs });
  const buildahArgs = (): string[] => ['--root', built!.storage.root, '--runroot', built!.storage.runroot];

  async function imageConfig(ref: string): Promise<ImageConfig> {
    const out = await buildah(['inspect', '--type', 'image', ref]);
    return (JSON.parse(out.stdout) as { OCIv1: { config: ImageConfig } }).OCIv1.config;
  }

  /** A working container of `ref` with the test cluster's kubeconfig at /tmp/kubeconfig (uid 65532's). */
  async function container(c: Component): Promise<{ name: string; mount: string }> {
    const name = `spawner-e2e-${c}-${process.pid}-${containers.length}`;
    await buildah(['from', '--quiet', '--name', name, built!.images[c].ref]);
    containers.push(name);
    await buildah(['copy', '--quiet', '--chown', '65532:65532', name, kubeconfigPath(), '/tmp/kubeconfig']);
    const mount = (await buildah(['mount', name])).stdout.trim();
    return { name, mount };
  }

  afterAll(async () => {
    for (const child of running) if (child.exitCode === null && child.pid) process.kill(-child.pid, 'SIGKILL');
    if (built) for (const name of containers) await buildah(['rm', name]).catch(() => undefined);
  });

  test(
    'images: every image builds',
    async () => {
      const t0 = Date.now();
      const out = await runCommand('bash', ['scripts/images.sh', 'build'], { timeoutMs: 20 * 60_000, allowFail: true });
      if (out.code !== 0) throw new Error(`scripts/images.sh build exited ${out.code}:\n${out.stderr.slice(-4000)}`);
      built = JSON.parse(readFileSync(join(ROOT, 'dist', 'images', 'images.json'), 'utf8')) as ImagesFile;
      expect(Object.keys(built.images).sort()).toEqual([...COMPONENTS].sort());

      const figures: Record<string, unknown> = { totalSeconds: Math.round((Date.now() - t0) / 1000) };
      for (const c of COMPONENTS) {
        const image = built.images[c];
        const config = await imageConfig(image.ref);
        expect(config.User).toBe('65532:65532');
        expect(config.WorkingDir).toBe('/app');
        expect(config.Env).toContain('NODE_ENV=production');

        // Lean: /app holds this component's bundle and the notices, nothing else (no node_modules,
        // no other component, no e2e, bench or local-mode code).
        const { name, mount } = await container(c);
        const app = join(mount, 'app');
        const files = listFiles(app).map((f) => relative(app, f));
        const dir = c === 'demo-backend' ? 'examples/demo-backend' : c;
        expect(files).toContain(`dist/${dir}/src/main.js`);
        const own = new RegExp(
          `^(THIRD-PARTY-NOTICES\\.txt|dist/package\\.json|dist/[a-z-]+-[A-Z0-9]{8}\\.js|dist/${dir}/(src|client)/[a-z-]+\\.js(\\.map)?)$`,
        );
        expect(files.filter((f) => !own.test(f))).toEqual([]);
        const appBytes = files.reduce((n, f) => n + statSync(join(app, f)).size, 0);

        // The runtime: Node.js 24, as the image's user.
        const version = await buildah([
          'run',
          '--isolation=chroot',
          `--user=${config.User}`,
          name,
          '--',
          'node',
          '-p',
          'process.version + " " + process.getuid()',
        ]);
        expect(version.stdout.trim()).toMatch(/^v24\.\d+\.\d+ 65532$/);
        figures[c] = {
          sizeMiB: +(image.size / 1048576).toFixed(1),
          appMiB: +(appBytes / 1048576).toFixed(2),
          buildSeconds: image.seconds,
          cached: image.cached,
          node: version.stdout.trim().split(' ')[0],
        };
      }
      writeFigures('images-build', figures);
    },
    25 * 60_000,
  );

  /** Flags as the chart or the operator pass them (after the image's command; the sidecar's entrypoint takes them). */
  function podArgs(c: Component, port: number, second: number, extra: string[] = []): string[] {
    const nodeName = agentInfo()?.nodeName ?? 'e2e-images-node';
    const args: Record<Component, string[]> = {
      operator: [`--admin-port=${port}`, `--namespaces=${ns.name}`, '--leader-election=false'],
      sweeper: [`--admin-port=${port}`, `--namespaces=${ns.name}`, `--node-name=${nodeName}`],
      api: [
        `--port=${port}`,
        `--entry-point-port=${second}`,
        '--host=127.0.0.1',
        '--entry-point-host=127.0.0.1',
        `--namespace=${ns.name}`,
      ],
      sidecar: [`--serve-port=${second}`, `--admin-port=${port}`, '--upstream-port=1'],
      'demo-backend': [], // listens on $PORT, as Spawner sets it; answers every path
    };
    return [...args[c], ...extra];
  }

  /**
   * Runs image `c` as a Pod would: its entrypoint and command from the image config, then `args`,
   * in its root filesystem, as the config's user and in its working dir, with the test cluster's
   * kubeconfig; and waits for /healthz (and /readyz, for what syncs with the cluster) on `port`.
   */
  async function startImage(c: Component, port: number, args: string[]): Promise<RunningImage> {
    const config = await imageConfig(built!.images[c].ref);
    const { name, mount } = await container(c);
    const argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? []), ...args];
    const env = {
      KUBECONFIG: '/tmp/kubeconfig',
      SPAWNER_API_TOKENS: E2E_API_TOKEN,
      SPAWNER_API_SIGNING_SECRET: E2E_SIGNING_SECRET,
      PORT: String(port),
    };
    const child = spawn(
      'buildah',
      [
        ...buildahArgs(),
        'run',
        '--isolation=chroot',
        '--network=host',
        `--user=${config.User}`,
        `--workingdir=${config.WorkingDir}`,
        ...Object.entries(env).map(([k, v]) => `--env=${k}=${v}`),
        name,
        '--',
        ...argv,
      ],
      { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    running.push(child);
    const image: RunningImage = {
      argv,
      mount,
      output: '',
      exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
      pid: 0,
    };
    child.stdout!.on('data', (d: Buffer) => (image.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (image.output += d.toString()));
    const probe = async (path: string): Promise<boolean> => {
      if (child.exitCode !== null) throw new Error(`${c} exited with ${child.exitCode}:\n${image.output}`);
      return (await httpGet(`http://127.0.0.1:${port}${path}`, 2000).catch(() => ({ status: 0 }))).status === 200;
    };
    await waitFor(() => probe('/healthz'), { description: `${c} /healthz from its image on :${port}`, timeoutMs: 60_000 });
    // Ready too: the operator, API and sweeper have synced with the cluster through the bundle.
    if (c === 'operator' || c === 'api' || c === 'sweeper')
      await waitFor(() => probe('/readyz'), { description: `${c} /readyz`, timeoutMs: 60_000 });
    image.pid = await listeningPid(port);
    return image;
  }

  /** SIGTERM to the node process, as on a rolling update; its exit code. */
  async function stopImage(image: RunningImage): Promise<number | null | 'timeout'> {
    process.kill(image.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      image.exited,
      new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 30_000))),
    ]);
    clearTimeout(timer);
    return code;
  }

  test(
    'images: entrypoint serves as non-root',
    async () => {
      expect(built).toBeDefined();
      const figures: Record<string, unknown> = {};
      for (const c of COMPONENTS) {
        const t0 = Date.now();
        const port = await freePort();
        const image = await startImage(c, port, podArgs(c, port, await freePort()));
        const healthMs = Date.now() - t0;

        // The process answering is node from the image's root filesystem, as uid and gid 65532.
        const status = readFileSync(`/proc/${image.pid}/status`, 'utf8');
        expect(status).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
        expect(status).toMatch(/^Gid:\s+65532\s+65532\s+65532\s+65532$/m);
        const cmdline = readFileSync(`/proc/${image.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
        expect(cmdline).toEqual(['/usr/local/bin/node', ...image.argv.slice(1)]);
        expect(readFileSync(`/proc/${image.pid}/exe`).equals(readFileSync(join(image.mount, 'usr/local/bin/node')))).toBe(true);

        // And it stops cleanly on SIGTERM.
        const code = await stopImage(image);
        expect({ component: c, code, output: code === 0 ? '' : image.output }).toEqual({ component: c, code: 0, output: '' });
        figures[c] = { healthzMs: healthMs, totalMs: Date.now() - t0 };
      }
      writeFigures('images-run', figures);
    },
    10 * 60_000,
  );

  // The node agent runs the backend's Pod (its app and the sidecar, as host commands): what runs
  // from the images here is the operator, the sweeper and the API with its entry point.
  (hasAgent() ? test : test.skip)(
    'images: a backend spawns, serves and ends through the operator, sweeper and API images',
    async () => {
      expect(built).toBeDefined();
      const started: RunningImage[] = [];
      try {
        const [opPort, swPort, apiPort, epPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
        started.push(
          await startImage('operator', opPort, podArgs('operator', opPort, 0, [`--sidecar-image=${built!.images.sidecar.ref}`])),
        );
        started.push(await startImage('sweeper', swPort, podArgs('sweeper', swPort, 0)));
        started.push(await startImage('api', apiPort, podArgs('api', apiPort, epPort)));
        // The project's typed client against the API image.
        const client = new SpawnerClient({ baseUrl: `http://127.0.0.1:${apiPort}`, token: E2E_API_TOKEN });
        const { backend: created, created: isNew } = await client.create({ image: TEST_IMAGE, gracePeriodSeconds: 60 });
        expect(isNew).toBe(true);
        expect((await client.waitForReady(created.name, { timeoutMs: 60_000 })).phase).toBe('Ready');
        // The Pod the operator made runs the sidecar image it was given.
        const pod = await adminClient().get<V1Pod>(PODS, ns.name, created.name);
        expect(pod?.spec?.containers.map((c) => c.image)).toContain(built!.images.sidecar.ref);

        // Through the entry point (the API image) to the backend, with the URL's connection token.
        expect(new URL(created.url)).toMatchObject({ port: String(epPort), pathname: `/p/${created.name}/` });
        const page = await fetch(created.url);
        expect(page.status).toBe(200);
        expect(await page.text()).toContain('spawner-test-app');

        expect(await client.delete(created.name)).toMatchObject({ name: created.name });
        await waitFor(async () => (await adminClient().get(PODS, ns.name, created.name)) === undefined, {
          description: `Pod ${created.name} gone`,
          timeoutMs: 60_000,
        });
      } finally {
        for (const image of started.reverse()) await stopImage(image);
      }
      for (const image of started) expect(await image.exited).toBe(0);
    },
    5 * 60_000,
  );
});

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** The pid of the process listening on the TCP port (ss, from iproute2). */
async function listeningPid(port: number): Promise<number> {
  const out = await runCommand('ss', ['-Hltnp', `sport = :${port}`]);
  const m = /pid=(\d+)/.exec(out.stdout);
  if (!m) throw new Error(`nothing listens on :${port}: ${out.stdout}`);
  return Number(m[1]);
}
