/**
 * The release recipe, checked without building an image (unit project; e2e/images.e2e.ts builds
 * and runs them): the Dockerfile, scripts/images.sh, scripts/bundle.mjs, the release workflow and
 * the chart name the same images; the workflow passes actionlint (built by
 * scripts/install-test-deps.sh when Go is there; skipped otherwise); and the workflow's chart step,
 * run here as written, packages a chart that passes helm lint and runs the tag's images of the
 * repository's owner.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as yaml from 'js-yaml';

const ROOT = join(__dirname, '..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const CACHE = process.env.SPAWNER_CACHE ?? join(homedir(), '.cache', 'spawner');

interface Step {
  name?: string;
  run?: string;
  uses?: string;
  with?: Record<string, unknown>;
}
interface Workflow {
  on: { push: { tags: string[] } };
  jobs: Record<string, { strategy?: { matrix: { component: string[] } }; steps: Step[] }>;
}
const workflow = yaml.load(read('.github/workflows/release.yml')) as Workflow;

function findTool(name: string, dirs: string[]): string | undefined {
  for (const dir of dirs) if (existsSync(join(dir, name))) return join(dir, name);
  const which = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : undefined;
}
const cached = (prefix: string): string[] =>
  existsSync(join(CACHE, 'bin'))
    ? readdirSync(join(CACHE, 'bin'))
        .filter((d) => d.startsWith(prefix))
        .sort()
        .reverse()
        .map((d) => join(CACHE, 'bin', d))
    : [];
const actionlint = findTool('actionlint', cached('actionlint-'));
const helm = findTool('helm', cached('kube-'));

describe('release', () => {
  test('release: the Dockerfile, the build script, the bundler, the workflow and the chart name the same images', () => {
    const dockerfile = read('Dockerfile');
    const targets = [...dockerfile.matchAll(/^FROM runtime AS (\S+)$/gm)].map((m) => m[1]).sort();
    expect(targets).toEqual(['api', 'demo-backend', 'operator', 'sidecar', 'sweeper']);
    // The base is an argument, the public Node.js 24 image by default; nothing runs at build time.
    expect(dockerfile).toMatch(/^ARG BASE=docker\.io\/library\/node:24-[a-z]+-slim$/m);
    expect(dockerfile).toMatch(/^FROM \$\{BASE\} AS runtime$/m);
    expect(dockerfile).not.toMatch(/^RUN /m);
    expect(dockerfile).toMatch(/^USER 65532:65532$/m);
    // Each image gets its own bundle and nothing else.
    const copies = [...dockerfile.matchAll(/^COPY (.*)$/gm)].map((m) => m[1]).sort();
    expect(copies).toEqual(targets.map((t) => `dist/images/${t}/ /app/`));
    expect(read('.dockerignore')).toMatch(/^\*\n!dist\/images\/$/m);

    const script = /^COMPONENTS=\((.*)\)$/m.exec(read('scripts/images.sh'))![1].split(' ').sort();
    expect(script).toEqual(targets);
    const table = /export const COMPONENTS = \{([^}]*)\};/.exec(read('scripts/bundle.mjs'))![1];
    const bundled = [...table.matchAll(/^\s+'?([a-z-]+)'?:/gm)].map((m) => m[1]).sort();
    expect(bundled).toEqual(targets);
    expect([...workflow.jobs.images.strategy!.matrix.component].sort()).toEqual(targets);

    // The chart runs the same names: ghcr.io/<owner>/spawner-<component>, and the demo backend in helm test.
    const values = yaml.load(read('chart/values.yaml')) as {
      images: Record<string, { repository: string }>;
      tests: { backendImage: string };
    };
    const chartImages = Object.entries(values.images).map(([k, v]) => [k, v.repository]);
    expect(chartImages.sort()).toEqual(
      targets.filter((t) => t !== 'demo-backend').map((t) => [t, `ghcr.io/spawner-dev/spawner-${t}`]),
    );
    expect(values.tests.backendImage).toBe('ghcr.io/spawner-dev/spawner-demo-backend');
  });

  (actionlint ? test : test.skip)('release: the workflow passes actionlint', () => {
    const r = spawnSync(actionlint!, ['-no-color'], { cwd: ROOT, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  });

  (helm ? test : test.skip)(
    "release: the workflow's chart step packages the tag's version with the owner's images, and it lints",
    () => {
      const step = workflow.jobs.chart.steps.find((s) => s.name?.startsWith('Package the chart'));
      expect(step?.run).toBeDefined();
      const dir = mkdtempSync(join(tmpdir(), 'spawner-release-'));
      try {
        cpSync(join(ROOT, 'chart'), join(dir, 'chart'), { recursive: true });
        const githubEnv = join(dir, 'github-env');
        const r = spawnSync('bash', ['-eo', 'pipefail', '-c', step!.run!], {
          cwd: dir,
          encoding: 'utf8',
          env: {
            PATH: `${join(helm!, '..')}:${process.env.PATH}`,
            HOME: dir,
            TAG: 'v1.2.3',
            OWNER: 'Example-Org',
            GITHUB_ENV: githubEnv,
          },
        });
        expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
        expect(readFileSync(githubEnv, 'utf8')).toBe('CHART=out/spawner-1.2.3.tgz\nOWNER_LC=example-org\n');

        const t = spawnSync(helm!, ['template', 'spawner', join(dir, 'out', 'spawner-1.2.3.tgz')], { encoding: 'utf8' });
        expect(t.status).toBe(0);
        const images = new Set([...t.stdout.matchAll(/ghcr\.io\/[^\s"']+/g)].map((m) => m[0]));
        expect([...images].sort()).toEqual(
          ['api', 'demo-backend', 'operator', 'sidecar', 'sweeper'].map((c) => `ghcr.io/example-org/spawner-${c}:1.2.3`),
        );
        expect(t.stdout).not.toContain('spawner-dev');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
