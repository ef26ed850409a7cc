/** Entry point of the demo backend: listens on $PORT (Spawner sets it; default 8080). */
import { startDemoServer } from './server';

const port = Number(process.env.PORT ?? 8080);
startDemoServer(port, process.env.HOST ?? '0.0.0.0')
  .then((s) => {
    process.stdout.write(`${JSON.stringify({ msg: 'demo backend listening', port: s.port, pid: process.pid })}\n`);
    const stop = (): void => void s.close().then(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  })
  .catch((err: unknown) => {
    process.stderr.write(`demo backend failed: ${String(err)}\n`);
    process.exit(1);
  });
