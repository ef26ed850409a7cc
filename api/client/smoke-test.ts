/**
 * The chart's `helm test`: spawn a backend through the API, wait until it is Ready, reach it, then
 * delete it. Exits 0 on success, 1 with the reason otherwise. Configured by environment:
 * SPAWNER_API_URL, SPAWNER_TOKEN (the first line is used), SPAWNER_TEST_IMAGE,
 * SPAWNER_TEST_TIMEOUT_SECONDS.
 */
import { SpawnerClient, SpawnerError } from './spawner-client';

async function main(): Promise<void> {
  const baseUrl = process.env.SPAWNER_API_URL;
  const token = (process.env.SPAWNER_TOKEN ?? '').split('\n')[0].trim();
  const image = process.env.SPAWNER_TEST_IMAGE ?? 'spawner-demo-backend';
  const timeoutMs = Number(process.env.SPAWNER_TEST_TIMEOUT_SECONDS ?? 120) * 1000;
  if (!baseUrl) throw new Error('SPAWNER_API_URL is not set');
  const client = new SpawnerClient({ baseUrl, token });
  const { backend } = await client.create({ image, gracePeriodSeconds: 60, labels: { 'helm-test': 'true' } });
  console.log(`created ${backend.name}; waiting for Ready`);
  try {
    const ready = await client.waitForReady(backend.name, { timeoutMs });
    console.log(`${ready.name} is ${ready.phase} on ${ready.nodeName ?? '?'} at ${ready.podIP ?? '?'}`);
  } finally {
    await client.delete(backend.name).catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  const details = err instanceof SpawnerError && err.details !== undefined ? ` ${JSON.stringify(err.details)}` : '';
  console.error(`helm test failed: ${err instanceof Error ? err.message : String(err)}${details}`);
  process.exit(1);
});
