/**
 * WebSocket load generator (its own process, so its CPU is not the proxy's): opens N connections,
 * then each one sends a message, waits for the echo, and sends the next (closed loop) for the
 * duration. Prints one JSON line: messages completed, messages/s, round-trip p50/p99 in ms.
 *
 *   node ws-load.js --url=ws://127.0.0.1:9090/ --connections=50 --duration=3 --size=64 [--header=k:v]
 */
import WebSocket from 'ws';
import { quantileSorted } from './stats';

interface Args {
  url: string;
  connections: number;
  durationS: number;
  size: number;
  headers: Record<string, string>;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { url: '', connections: 50, durationS: 3, size: 64, headers: {} };
  for (const arg of argv) {
    const [k, ...rest] = arg.replace(/^--/, '').split('=');
    const v = rest.join('=');
    if (k === 'url') a.url = v;
    else if (k === 'connections') a.connections = Number(v);
    else if (k === 'duration') a.durationS = Number(v);
    else if (k === 'size') a.size = Number(v);
    else if (k === 'header') {
      const i = v.indexOf(':');
      a.headers[v.slice(0, i)] = v.slice(i + 1);
    } else throw new Error(`unknown argument ${arg}`);
  }
  if (!a.url) throw new Error('--url is required');
  return a;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const payload = Buffer.alloc(args.size, 'x');
  const sockets = await Promise.all(
    Array.from(
      { length: args.connections },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(args.url, { perMessageDeflate: false, headers: args.headers });
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
        }),
    ),
  );
  let rtts = new Float64Array(1 << 16);
  let count = 0;
  let errors = 0;
  let running = true;
  const record = (ms: number): void => {
    if (count === rtts.length) {
      const bigger = new Float64Array(rtts.length * 2);
      bigger.set(rtts);
      rtts = bigger;
    }
    rtts[count++] = ms;
  };
  const started = performance.now();
  const finished = Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          let sentAt = 0;
          const send = (): void => {
            sentAt = performance.now();
            ws.send(payload);
          };
          ws.on('message', () => {
            const now = performance.now();
            if (!running) return resolve();
            record(now - sentAt);
            send();
          });
          ws.on('error', () => {
            errors++;
            resolve();
          });
          ws.on('close', () => resolve());
          send();
        }),
    ),
  );
  await new Promise((r) => setTimeout(r, args.durationS * 1000));
  running = false;
  const elapsedS = (performance.now() - started) / 1000;
  const done = count;
  await Promise.race([finished, new Promise((r) => setTimeout(r, 2000))]);
  for (const ws of sockets) ws.terminate();
  const sorted = rtts.subarray(0, done).sort();
  process.stdout.write(
    `${JSON.stringify({
      messages: done,
      durationS: elapsedS,
      mps: done / elapsedS,
      p50Ms: quantileSorted(sorted, 0.5),
      p99Ms: quantileSorted(sorted, 0.99),
      errors,
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`ws-load: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
