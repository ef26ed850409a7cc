import { silentLogger } from './logger';
import { onShutdown, REPEATED_SIGNAL_MS, type ShutdownHost } from './shutdown';

function fakeHost(): ShutdownHost & { send(signal: NodeJS.Signals): void; exits: number[]; clock: number } {
  const handlers: ((signal: NodeJS.Signals) => void)[] = [];
  const host = {
    exits: [] as number[],
    clock: 0,
    on: (_signal: string, handler: (signal: NodeJS.Signals) => void) => void handlers.push(handler),
    exit: (code: number) => void host.exits.push(code),
    now: () => host.clock,
    send: (signal: NodeJS.Signals) => handlers[0](signal),
  };
  return host;
}

describe('onShutdown', () => {
  it('treats a signal repeated within REPEATED_SIGNAL_MS as the same request: the drain finishes', async () => {
    const host = fakeHost();
    let finish!: () => void;
    let cleanups = 0;
    onShutdown(silentLogger, () => new Promise<void>((resolve) => ((finish = resolve), cleanups++)), 60_000, host);
    host.send('SIGTERM');
    host.clock += 2; // the same SIGTERM, sent to the process and to its group
    host.send('SIGTERM');
    expect(host.exits).toEqual([]);
    finish();
    await new Promise((r) => setImmediate(r));
    expect(host.exits).toEqual([0]);
    expect(cleanups).toBe(1);
  });

  it('exits at once on a second signal after that', () => {
    const host = fakeHost();
    onShutdown(silentLogger, () => new Promise<void>(() => undefined), 60_000, host);
    host.send('SIGINT');
    host.clock += REPEATED_SIGNAL_MS;
    host.send('SIGINT');
    expect(host.exits).toEqual([1]);
  });
});
