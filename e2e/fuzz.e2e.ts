/**
 * Bad input against the real system (the property-based fuzzing of every route runs without a
 * cluster in e2e/fuzz.test.ts):
 * - schemathesis (PyPI) generates requests from /openapi.json of the API host process, which
 *   stores backends in the real kube-apiserver, and checks every answer against the document;
 * - malformed SessionLivedBackend manifests are rejected by the API server with field messages;
 * - header and body size limits, and a slowloris-style attack on the API, the entry point and a
 *   sidecar: the process under attack keeps bounded resources and other clients get answers.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import type { SessionLivedBackend } from '../common/src/backend';
import { BACKENDS } from '../common/src/kube/resources';
import { TEST_IMAGE } from './support/backends';
import { adminClient, containerPid, describeWithAgent, kubectl, ROOT, useNamespace, waitFor } from './support/cluster';
import { freePort, startComponent, stopAll, type Component } from './support/components';
import { connect, mb, MB, procStats, rawRequest, sleep, statusOf, undoAfterEach, writeFigures } from './support/faults';

jest.setTimeout(600_000);

const undo = undoAfterEach();

const TOKEN = 'e2e-fuzz-token-0123456789abcdef';
const SIGNING_SECRET = 'e2e-fuzz-signing-secret-0123456789';

/** schemathesis from the venv .ci/run installs (or SPAWNER_SCHEMATHESIS). */
function schemathesisBin(): string {
  const bin = process.env.SPAWNER_SCHEMATHESIS ?? join(homedir(), '.cache', 'spawner', 'venv', 'bin', 'schemathesis');
  if (!existsSync(bin)) {
    throw new Error(
      `schemathesis not found at ${bin}: python3 -m venv ~/.cache/spawner/venv && ~/.cache/spawner/venv/bin/pip install schemathesis==4.32.5 (as .ci/run does)`,
    );
  }
  return bin;
}

describeWithAgent('fuzz: the API on the cluster', () => {
  const ns = useNamespace('fuzz');
  let api: Component;

  beforeAll(async () => {
    // No operator: created backends stay Submitted, so the fuzzer exercises the API and the
    // kube-apiserver, not pod start-ups. Long polls and streams are capped at 1 s.
    api = await startComponent(
      'api',
      [
        `--namespace=${ns.name}`,
        '--entry-point-port=0',
        '--host=127.0.0.1',
        '--entry-point-host=127.0.0.1',
        '--wait-max-seconds=1',
        '--stream-max-seconds=1',
        '--sse-heartbeat-seconds=1',
      ],
      { env: { SPAWNER_API_TOKENS: TOKEN, SPAWNER_API_SIGNING_SECRET: SIGNING_SECRET }, logName: 'fuzz-api' },
    );
  });
  afterAll(() => stopAll([api]));

  test('fuzz: schemathesis finds no server errors and no schema violations', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spawner-schemathesis-'));
    // A URL longer than Node's 16 KiB head limit gets 431, a body over --body-limit-bytes 413:
    // both are correct refusals of schema-violating input, in the document's Error shape.
    // An ended backend stays answerable for --ended-retention-seconds after its deletion (issue 13,
    // as the original Spawner did): a GET after DELETE answers its ending, by design, so the
    // "deleted resource still available" check (use_after_free, excluded below: `--checks all`
    // overrides the config file's `enabled`) does not apply, and a valid request about an ended
    // backend may get 410 (`/backend/:id/ready`, documented).
    writeFileSync(
      join(dir, 'schemathesis.toml'),
      [
        '[checks.negative_data_rejection]',
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "431", "5xx"]',
        '[checks.positive_data_acceptance]',
        'expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx"]',
        '',
      ].join('\n'),
    );
    const junit = join(ROOT, 'reports', 'schemathesis.xml');
    const args = [
      '--config-file',
      join(dir, 'schemathesis.toml'),
      'run',
      `http://127.0.0.1:${api.port}/openapi.json`,
      '--header',
      `Authorization: Bearer ${TOKEN}`,
      '--checks',
      'all',
      '--exclude-checks',
      'use_after_free',
      '--max-examples',
      '30',
      // One worker: with two (threads) hypothesis describes filter lambdas with ast.parse
      // concurrently, which CPython 3.11 can fail with "AST constructor recursion depth
      // mismatch" (python/cpython#106905), an error of the tool rather than of the API.
      '--workers',
      '1',
      '--request-timeout',
      '10',
      '--seed',
      '20261128',
      '--output-truncate',
      'true',
      '--report',
      'junit',
      '--report-junit-path',
      junit,
    ];
    const { code, output } = await new Promise<{ code: number; output: string }>((resolve, reject) => {
      const child = spawn(schemathesisBin(), args, { cwd: dir, env: { ...process.env, NO_COLOR: '1' } });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 400_000);
      child.on('error', reject);
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c ?? -1, output: out });
      });
    });
    writeFileSync(join(ROOT, 'reports', 'schemathesis.log'), output);
    const summary = /(\d+) generated, (\d+) (?:passed|found)[^\n]*/.exec(output)?.[0] ?? '';
    const failures = readFileSync(junit, 'utf8').match(/<failure/g)?.length ?? 0;
    writeFigures('fuzz-schemathesis', {
      exitCode: code,
      summary,
      junitFailures: failures,
      operations: /Operations:\s+(\d+ selected \/ \d+ total)/.exec(output)?.[1],
    });
    // The whole report is in reports/schemathesis.log; the tail names what failed.
    expect({ code, failures, tail: code === 0 ? '' : output.slice(-6000) }).toEqual({ code: 0, failures: 0, tail: '' });
    const generated = Number(/(\d+) generated/.exec(output)?.[1] ?? 0);
    expect(generated).toBeGreaterThanOrEqual(500);
  });

  // Each row: what is wrong, the manifest's spec (or a whole manifest), what the API server says.
  const manifests: Array<[string, Record<string, unknown>, RegExp]> = [
    ['no spec', { spec: undefined }, /spec: Required value/],
    ['no template', { spec: { httpPort: 8080 } }, /spec\.template: Required value/],
    [
      'no containers',
      { spec: { template: { containers: [] } } },
      /spec\.template\.containers: Invalid value: \d+: spec\.template\.containers in body should have at least 1 items/,
    ],
    [
      'a container without an image',
      { spec: { template: { containers: [{ name: 'app' }] } } },
      /spec\.template\.containers\[0\]\.image: Required value/,
    ],
    [
      'an invalid container name',
      { spec: { template: { containers: [{ name: 'App_1', image: TEST_IMAGE }] } } },
      /spec\.template\.containers\[0\]\.name: Invalid value: "App_1": spec\.template\.containers\[0\]\.name in body should match/,
    ],
    [
      'httpPort out of range',
      { spec: { httpPort: 70000, template: { containers: [{ name: 'app', image: TEST_IMAGE }] } } },
      /spec\.httpPort: Invalid value: 70000: spec\.httpPort in body should be less than or equal to 65535/,
    ],
    [
      'gracePeriodSeconds of the wrong type',
      { spec: { gracePeriodSeconds: 'soon', template: { containers: [{ name: 'app', image: TEST_IMAGE }] } } },
      /spec\.gracePeriodSeconds: Invalid value: "string": spec\.gracePeriodSeconds in body must be of type integer/,
    ],
    [
      'startupTimeoutSeconds zero',
      { spec: { startupTimeoutSeconds: 0, template: { containers: [{ name: 'app', image: TEST_IMAGE }] } } },
      /spec\.startupTimeoutSeconds: Invalid value: 0: spec\.startupTimeoutSeconds in body should be greater than or equal to 1/,
    ],
    [
      'an unknown field',
      { spec: { gracePeriod: 30, template: { containers: [{ name: 'app', image: TEST_IMAGE }] } } },
      /unknown field "spec\.gracePeriod"/,
    ],
    [
      'an invalid resource name',
      { name: 'Bad_Name', spec: { template: { containers: [{ name: 'app', image: TEST_IMAGE }] } } },
      /metadata\.name: Invalid value: "Bad_Name"/,
    ],
  ];

  /** What the API server said to each manifest, for docs/reliability.md. */
  const rejections: Array<{ manifest: string; message: string }> = [];
  afterAll(() => {
    if (rejections.length > 0) writeFigures('fuzz-manifests', { rejected: rejections.length, rejections });
  });

  test.each(manifests)(
    'fuzz: a malformed SessionLivedBackend manifest is rejected by the API server — %s',
    async (what, fields, message) => {
      const { name, spec } = fields as { name?: string; spec?: unknown };
      const manifest = {
        apiVersion: 'spawner.dev/v1',
        kind: 'SessionLivedBackend',
        metadata: { name: name ?? `bad-${Math.random().toString(36).slice(2, 8)}`, namespace: ns.name },
        ...(spec === undefined ? {} : { spec }),
      };
      const res = await kubectl(['create', '--validate=strict', '-f', '-'], { input: JSON.stringify(manifest), allowFail: true });
      expect(res.code).not.toBe(0);
      expect(res.stderr).toMatch(message);
      rejections.push({ manifest: what, message: res.stderr.trim() });
      // Nothing of it was stored.
      expect(await adminClient().get<SessionLivedBackend>(BACKENDS, ns.name, manifest.metadata.name)).toBeUndefined();
    },
  );
});

// ---------------------------------------------------------------------------------------------

const SLOW_CONNECTIONS = 250;
const ATTACK_MS = 20_000;

interface Target {
  name: string;
  host: string;
  port: number;
  pid: number;
  /** A normal request, raw, that must keep getting prompt answers. */
  normal: string;
}

/**
 * Opens `n` connections that send a partial request head and then a header line every 2 s;
 * `closedByServer` counts those the server answered or hung up on.
 */
async function slowloris(host: string, port: number, n: number): Promise<{ sockets: Socket[]; closedByServer: () => number }> {
  const sockets: Socket[] = [];
  let closed = 0;
  for (let i = 0; i < n; i++) {
    const s = await connect(host, port);
    s.on('error', () => undefined);
    // The server gave up on it: answered (408, 400) or hung up.
    let counted = false;
    const gaveUp = (): void => {
      if (!counted) closed++;
      counted = true;
    };
    s.once('data', gaveUp);
    s.once('end', gaveUp);
    s.once('close', gaveUp);
    s.write(`GET /slow-${i} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: slowloris\r\n`);
    sockets.push(s);
  }
  const drip = setInterval(() => {
    for (const s of sockets) if (!s.destroyed) s.write(`X-Slow-${Math.floor(Math.random() * 1e6)}: 1\r\n`);
  }, 2000);
  drip.unref();
  sockets.forEach((s) => s.once('close', () => sockets.every((x) => x.destroyed) && clearInterval(drip)));
  return { sockets, closedByServer: () => closed };
}

describeWithAgent('fuzz: limits and slow clients', () => {
  const ns = useNamespace('limits');
  let operator: Component;
  let api: Component;
  let entryPort = 0;
  let backend: { name: string; url: string; podIP: string; token: string };

  beforeAll(async () => {
    operator = await startComponent('operator', [`--namespaces=${ns.name}`], { logName: 'limits-operator' });
    entryPort = await freePort();
    api = await startComponent(
      'api',
      [`--namespace=${ns.name}`, `--entry-point-port=${entryPort}`, '--host=127.0.0.1', '--entry-point-host=127.0.0.1'],
      { env: { SPAWNER_API_TOKENS: TOKEN, SPAWNER_API_SIGNING_SECRET: SIGNING_SECRET }, logName: 'limits-api' },
    );
    const res = await fetch(`http://127.0.0.1:${api.port}/v1/backends`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: TEST_IMAGE, gracePeriodSeconds: 600 }),
    });
    const created = (await res.json()) as { name: string; url: string };
    await fetch(`http://127.0.0.1:${api.port}/v1/backends/${created.name}/wait?timeoutSeconds=90`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const b = await waitFor(() => adminClient().get<SessionLivedBackend>(BACKENDS, ns.name, created.name), {
      description: 'the backend',
    });
    backend = {
      name: created.name,
      url: created.url,
      podIP: b.status!.podIP!,
      token: new URL(created.url).searchParams.get('spawner_token')!,
    };
  });
  afterAll(() => stopAll([api, operator]));

  const targets = async (): Promise<Target[]> => [
    {
      name: 'api',
      host: '127.0.0.1',
      port: api.port,
      pid: api.pid,
      normal: 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    },
    {
      name: 'entry point',
      host: '127.0.0.1',
      port: entryPort,
      pid: api.pid,
      normal: `GET /p/${backend.name}/?spawner_token=${backend.token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    },
    {
      name: 'sidecar',
      host: backend.podIP,
      port: 9090,
      pid: await containerPid(ns.name, backend.name, 'spawner-sidecar'),
      normal: `GET /?spawner_token=${backend.token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    },
  ];

  test('fuzz: oversized request heads get 431 and bodies over the API limit 413, on the API, the entry point and a sidecar', async () => {
    const rows: Array<Record<string, unknown>> = [];
    for (const t of await targets()) {
      const before = procStats(t.pid)!;
      const path = t.normal.split(' ')[1];
      // A 64 KiB header (over every component's 16 KiB head limit), then a 1 MiB one.
      for (const size of [64 * 1024, 1024 * 1024]) {
        const raw = await rawRequest(t.host, t.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(size)}\r\n\r\n`);
        expect({ target: t.name, size, status: statusOf(raw) }).toEqual({ target: t.name, size, status: 431 });
      }
      // The process is fine: a normal request still works, memory did not follow the sizes.
      expect(statusOf(await rawRequest(t.host, t.port, t.normal))).toBe(200);
      const after = procStats(t.pid)!;
      expect(after.rss - before.rss).toBeLessThan(30 * MB);
      rows.push({ target: t.name, header431: true, rssGrowthMB: mb(after.rss - before.rss) });
    }
    // The API's own body limit (--body-limit-bytes, 64 KiB by default): 413 in the JSON error shape.
    const big = JSON.stringify({ image: TEST_IMAGE, labels: { a: 'x'.repeat(60) }, env: { BIG: 'x'.repeat(1024 * 1024) } });
    const res = await fetch(`http://127.0.0.1:${api.port}/v1/backends`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: big,
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
    // The entry point and the sidecar stream bodies to the app: 16 MiB goes through with flat memory.
    const apiBefore = procStats(api.pid)!.rss;
    const sidecarPid = await containerPid(ns.name, backend.name, 'spawner-sidecar');
    const sidecarBefore = procStats(sidecarPid)!.rss;
    const upload = Buffer.alloc(16 * MB, 'u');
    const streamed = await fetch(backend.url, {
      method: 'POST',
      body: upload,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(streamed.status).toBe(200);
    await streamed.arrayBuffer();
    const growth = { api: procStats(api.pid)!.rss - apiBefore, sidecar: procStats(sidecarPid)!.rss - sidecarBefore };
    expect(growth.api).toBeLessThan(24 * MB);
    expect(growth.sidecar).toBeLessThan(24 * MB);
    writeFigures('fuzz-size-limits', {
      heads: rows,
      apiBody413: true,
      upload16MiBThroughEntryPointAndSidecar: { apiRssGrowthMB: mb(growth.api), sidecarRssGrowthMB: mb(growth.sidecar) },
    });
  });

  test('fuzz: slowloris — 250 connections holding partial request heads on the API, the entry point and a sidecar: bounded memory and fds, other clients answered promptly', async () => {
    const rows: Array<Record<string, unknown>> = [];
    for (const t of await targets()) {
      const before = procStats(t.pid)!;
      const attack = await slowloris(t.host, t.port, SLOW_CONNECTIONS);
      undo(() => attack.sockets.forEach((s) => s.destroy()));
      const openedAt = Date.now();
      // During the attack a normal client asks every second; each answer must come promptly.
      const latencies: number[] = [];
      let peak = before;
      while (Date.now() - openedAt < ATTACK_MS) {
        const t0 = Date.now();
        const raw = await rawRequest(t.host, t.port, t.normal, 10_000);
        latencies.push(Date.now() - t0);
        expect({ target: t.name, status: statusOf(raw) }).toEqual({ target: t.name, status: 200 });
        const now = procStats(t.pid)!;
        peak = { rss: Math.max(peak.rss, now.rss), fds: Math.max(peak.fds, now.fds) };
        await sleep(1000);
      }
      const closedByServer = attack.closedByServer();
      for (const s of attack.sockets) s.destroy();
      // Released: the fds of the attack go away once the sockets are closed.
      const released = await waitFor(
        () => {
          const s = procStats(t.pid)!;
          return s.fds <= before.fds + 10 ? s : undefined;
        },
        { description: `${t.name}'s fds back to ${before.fds} (+10)`, timeoutMs: 15_000 },
      );
      const row = {
        target: t.name,
        slowConnections: SLOW_CONNECTIONS,
        attackSeconds: ATTACK_MS / 1000,
        closedByServerDuringAttack: closedByServer,
        normalRequests: latencies.length,
        normalMaxMs: Math.max(...latencies),
        fdsBefore: before.fds,
        fdsPeak: peak.fds,
        fdsAfter: released.fds,
        rssBeforeMB: mb(before.rss),
        rssPeakMB: mb(peak.rss),
      };
      rows.push(row);
      // Bounded: at most one fd per slow connection (plus a little), memory within 40 MB of idle.
      expect(peak.fds - before.fds).toBeLessThanOrEqual(SLOW_CONNECTIONS + 20);
      expect(peak.rss - before.rss).toBeLessThan(40 * MB);
      // Unaffected: every normal request answered within a second (usually a few ms).
      expect({ target: t.name, slow: latencies.filter((ms) => ms > 1000) }).toEqual({ target: t.name, slow: [] });
      // The sidecar's own head timeout (15 s, checked every second) answers slow heads with 408.
      if (t.name === 'sidecar') expect(closedByServer).toBe(SLOW_CONNECTIONS);
    }
    writeFigures('fuzz-slowloris', { rows });
  });
});
