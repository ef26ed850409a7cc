/**
 * The sweeper-scale baseline: the least a sweeper can do. Holds one state stream per emulated
 * sidecar (node:http, no agent, as the sweeper does), reads each message, keeps one timer per
 * backend at the deadline the message implies (receipt time + grace − secondsSinceActive), and
 * notes how late each timer fired against the true deadline. No Kubernetes, no retries, no
 * metrics: its RSS and CPU are the cost of holding the streams in one Node.js process, and its
 * lag is the floor for timer-driven sweeping on this machine.
 *
 *   node sse-follower.js --plan=<plan.json> --out=<result.json>
 */
import * as http from 'node:http';
import { writeFileSync } from 'node:fs';
import { SSE_MEDIA_TYPE, SseParser } from '../../common/src/sse';
import { deadlineOf, readPlan, type PlanEntry } from './sweep-plan';

function args(): { plan: string; out: string } {
  const get = (k: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3);
  const plan = get('plan');
  const out = get('out');
  if (!plan || !out) throw new Error('--plan and --out are required');
  return { plan, out };
}

function main(): void {
  const { plan: planPath, out } = args();
  const plan = readPlan(planPath);
  const lags: number[] = [];
  let connected = 0;
  let messages = 0;
  const follow = (e: PlanEntry): void => {
    let timer: NodeJS.Timeout | undefined;
    let fired = false;
    const req = http.get(`http://${e.ip}:${plan.port}/events`, { agent: false, headers: { accept: SSE_MEDIA_TYPE } }, (res) => {
      connected++;
      const parser = new SseParser();
      res.on('data', (chunk: Buffer) => {
        for (const { data } of parser.push(chunk)) {
          messages++;
          const report = JSON.parse(data) as { secondsSinceActive: number };
          if (fired) continue;
          const deadline = Date.now() + (e.gracePeriodSeconds - report.secondsSinceActive) * 1000;
          if (timer) clearTimeout(timer);
          timer = setTimeout(
            () => {
              fired = true;
              lags.push(Date.now() - deadlineOf(e));
              if (lags.length === plan.entries.length) writeFileSync(out, JSON.stringify({ lags, messages }));
              req.destroy();
            },
            Math.max(0, deadline - Date.now()),
          );
        }
      });
    });
    req.on('error', () => undefined);
  };
  for (const e of plan.entries) follow(e);
  setInterval(() => process.stdout.write(`connected ${connected} messages ${messages} fired ${lags.length}\n`), 10_000).unref();
  process.on('SIGTERM', () => {
    writeFileSync(out, JSON.stringify({ lags, messages }));
    process.exit(0);
  });
}

main();
