/**
 * The demo page in a real browser (Debian's Chromium, headless, driven by playwright-core; no
 * browser is downloaded): spawn by key from the default configuration's warm pool and see the warm
 * start (a cold one when the pool is not used), see Ready, talk over WebSocket through the entry
 * point, share the backend with a second page on the same key, and see it swept once both are gone.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createLogger } from '../../common/src/logger';
import { projectRoot } from '../../common/src/paths';
import { waitFor } from '../../common/src/testing/wait-for';
import { localConfig } from '../src/config';
import { startLocalMode, type LocalMode } from '../src/local-mode';
import { DEMO_BACKEND_BUILD, isAlive, requireBuild } from './support';

jest.setTimeout(180_000);

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = join(projectRoot(), 'reports', 'local-browser-demo.png');
const UI_TIMEOUT = 45_000;

let local: LocalMode;
let browser: Browser | undefined;

beforeAll(async () => {
  requireBuild(DEMO_BACKEND_BUILD);
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package`);
  const quiet = createLogger('local-test', 'error', () => undefined);
  local = await startLocalMode(localConfig({ port: 0, entryPointPort: 0, sidecarHeartbeatSeconds: 1 }), {
    logger: quiet,
    sidecarLogger: quiet,
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 60_000,
  });
});

afterAll(async () => {
  await browser?.close();
  await local?.close();
});

const text = (page: Page, id: string): Promise<string> => page.locator(`#${id}`).innerText();

async function expectText(page: Page, id: string, expected: string | RegExp): Promise<void> {
  await page.waitForFunction(
    ([sel, want, isRegex]) => {
      // Runs in the page (no DOM types in this project's compile).
      const doc = (globalThis as unknown as { document: { getElementById(id: string): { textContent: string | null } | null } })
        .document;
      const t = doc.getElementById(sel)?.textContent ?? '';
      return isRegex ? new RegExp(want).test(t) : t === want;
    },
    [id, expected instanceof RegExp ? expected.source : expected, expected instanceof RegExp] as const,
    { timeout: UI_TIMEOUT, polling: 100 },
  );
}

test('local: browser demo', async () => {
  const key = `browser-demo-${Date.now().toString(36)}`;
  const grace = 3;
  // The default configuration's pool, started with local mode.
  await waitFor(async () => (await local.store.pools.get('demo'))?.status?.readyReplicas === 2, {
    timeoutMs: 30_000,
    intervalMs: 100,
    description: 'the demo pool to be ready',
  });
  const prestarted = local.store.pools.pids();
  const first = await browser!.newPage();
  first.on('pageerror', (err) => console.error('page error (first):', err));
  await first.goto(local.demoUrl);
  await first.getByLabel('Key (for example a document id)').fill(key);
  await first.getByLabel('Idle grace period (seconds)').fill(String(grace));
  await first.getByRole('button', { name: 'Spawn (or join)' }).click();

  await expectText(first, 'phase', 'Ready');
  await expectText(first, 'launch', /^Warm: created → Ready in \d+ ms \(a pre-started process of the pool was claimed\)$/);
  await expectText(first, 'connection', /^connected/);
  await expectText(first, 'counter', '0');
  expect(await text(first, 'join-status')).toContain('You started a new backend');
  const name = await text(first, 'backend-name');
  // What the page shows is what happened: a process of the pool, started before the click.
  expect((await local.store.get(name))?.status).toMatchObject({ launch: 'Warm' });
  expect(prestarted).toContain(local.store.runInfo(name)?.pid);
  expect(name).toMatch(/^spawner-k-[0-9a-f]{32}$/);
  const history = await first.locator('#phase-history li').allInnerTexts();
  expect(history.map((h) => h.split(' ')[0])).toEqual(['Submitted', 'Constructed', 'Scheduled', 'Running', 'Ready']);

  // A WebSocket round trip: the click goes to the backend process, the new count comes back.
  await first.getByRole('button', { name: 'Increment' }).click();
  await expectText(first, 'counter', '1');
  await expectText(first, 'clients', '1');

  // A second visitor (its own browser context: another user) joins by the same key.
  const context = await browser!.newContext();
  const second = await context.newPage();
  second.on('pageerror', (err) => console.error('page error (second):', err));
  const shareLink = await first.locator('#share-link').getAttribute('href');
  expect(shareLink).toContain(`key=${key}`);
  await second.goto(shareLink!);
  expect(await second.locator('#key').inputValue()).toBe(key);
  await second.getByRole('button', { name: 'Spawn (or join)' }).click();
  await expectText(second, 'phase', 'Ready');
  expect(await text(second, 'join-status')).toContain('You joined the backend already running');
  expect(await text(second, 'backend-name')).toBe(name);
  await expectText(second, 'launch', /^Warm: /);
  await expectText(second, 'counter', '1');
  await expectText(second, 'clients', '2');
  await expectText(first, 'clients', '2');

  await second.getByRole('button', { name: 'Increment' }).click();
  await expectText(first, 'counter', '2');
  await first.getByRole('button', { name: 'Increment' }).click();
  await expectText(second, 'counter', '3');
  await expectText(first, 'counter', '3');

  mkdirSync(join(projectRoot(), 'reports'), { recursive: true });
  await first.screenshot({ path: SCREENSHOT, fullPage: true });

  const pid = local.store.runInfo(name)?.pid;
  expect(pid).toBeGreaterThan(0);
  expect(local.store.appPids()).toEqual([pid]);

  // Both leave: idle from now on, swept after the grace period, its process stopped.
  await second.close();
  await context.close();
  await first.close();
  await waitFor(async () => (await local.store.get(name)) === undefined, {
    timeoutMs: (grace + 20) * 1000,
    intervalMs: 200,
    description: 'the backend to be swept and removed',
  });
  // Its ending stays answerable for a while after the removal.
  expect(await (await fetch(`${local.apiUrl}/v1/backends/${name}`)).json()).toMatchObject({
    phase: 'Swept',
    reason: 'IdleTimeout',
  });
  await waitFor(() => !isAlive(pid!), { timeoutMs: 15_000, intervalMs: 100, description: 'the app process to end' });
});

test('local: browser demo shows a sweep while the page stays open, and a cold start without the pool', async () => {
  const page = await browser!.newPage();
  await page.goto(`${local.demoUrl}?key=stay-open-${Date.now().toString(36)}&grace=2`);
  await page.getByLabel(/Start from the warm pool/).uncheck();
  await page.getByRole('button', { name: 'Spawn (or join)' }).click();
  await expectText(page, 'connection', /^connected/);
  await expectText(page, 'launch', /^Cold: created → Ready in \d+ ms \(a process was started for it\)$/);
  const name = await text(page, 'backend-name');
  expect((await local.store.get(name))?.spec.poolRef).toBeUndefined();
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await expectText(page, 'connection', /^disconnected/);
  await expectText(page, 'phase', 'Swept');
  expect(await text(page, 'phase-reason')).toContain('IdleTimeout');
  expect(await page.getByRole('button', { name: 'Increment' }).isDisabled()).toBe(true);
  await page.close();
});
