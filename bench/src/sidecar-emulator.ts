/**
 * Emulates many sidecars' admin ports in one process, for the sweeper-scale benchmark: one HTTP
 * server per backend address (distinct loopback addresses, one port), each serving `/events` as
 * the sidecar does (sidecar/src/admin.ts): a state message at once, then one every heartbeat
 * (each sidecar on its own phase), `{"ready":true,"liveConnections":0,"secondsSinceActive":s}`
 * with s counted from the plan's last activity, in fractional seconds like the real one.
 *
 *   node sidecar-emulator.js --plan=<plan.json>
 */
import * as http from 'node:http';
import { formatEvent, SSE_RESPONSE_HEADERS } from '../../common/src/sse';
import { readPlan } from './sweep-plan';

async function main(): Promise<void> {
  const planPath = /^--plan=(.+)$/.exec(process.argv[2] ?? '')?.[1];
  if (!planPath) throw new Error('--plan=<file> is required');
  const plan = readPlan(planPath);
  const heartbeatMs = plan.heartbeatSeconds * 1000;
  let streams = 0;
  await Promise.all(
    plan.entries.map(async (entry) => {
      const clients = new Set<http.ServerResponse>();
      const message = (): string =>
        formatEvent({
          data: JSON.stringify({
            ready: true,
            liveConnections: 0,
            secondsSinceActive: Math.max(0, Date.now() - entry.lastActiveMs) / 1000,
          }),
        });
      const server = http.createServer((req, res) => {
        if (req.url !== '/events') {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, SSE_RESPONSE_HEADERS);
        req.socket.setNoDelay(true);
        res.write(message());
        clients.add(res);
        streams++;
        res.on('close', () => {
          clients.delete(res);
          streams--;
        });
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(plan.port, entry.ip, () => resolve());
      });
      // Real sidecars start at different times: their heartbeats are not aligned.
      setTimeout(() => {
        setInterval(() => {
          if (clients.size === 0) return;
          const m = message();
          for (const c of clients) c.write(m);
        }, heartbeatMs);
      }, Math.random() * heartbeatMs);
    }),
  );
  process.stdout.write(`emulating ${plan.entries.length} sidecars on port ${plan.port}\n`);
  setInterval(() => process.stdout.write(`open streams ${streams}\n`), 10_000).unref();
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`sidecar-emulator: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
