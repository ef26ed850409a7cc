import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { stopGracefully } from './graceful-stop';

/** A process that exits on `exitOn`, ignoring the other signal. */
function fake(exitOn: NodeJS.Signals | undefined) {
  const signals: NodeJS.Signals[] = [];
  let exit!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (exit = resolve));
  return {
    signals,
    exited,
    signal(sig: NodeJS.Signals) {
      signals.push(sig);
      if (sig === exitOn || sig === 'SIGKILL') exit(sig === 'SIGKILL' ? 137 : 143);
    },
  };
}

describe('stopGracefully', () => {
  it('sends only SIGTERM to a process that exits on it', async () => {
    const p = fake('SIGTERM');
    await expect(stopGracefully(p, 10_000)).resolves.toBe(143);
    expect(p.signals).toEqual(['SIGTERM']);
  });

  it('sends SIGKILL once the grace period is over', async () => {
    const p = fake(undefined);
    const started = Date.now();
    await expect(stopGracefully(p, 50)).resolves.toBe(137);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(p.signals).toEqual(['SIGTERM', 'SIGKILL']);
  });

  it('with a grace period of 0 kills at once', async () => {
    const p = fake(undefined);
    await expect(stopGracefully(p, 0)).resolves.toBe(137);
    expect(p.signals).toEqual(['SIGTERM', 'SIGKILL']);
  });

  it('stops a real process that ignores SIGTERM', async () => {
    const child = spawn('sh', ['-c', 'trap "" TERM; sleep 30 & wait; wait'], { stdio: 'ignore' });
    await once(child, 'spawn');
    await new Promise((resolve) => setTimeout(resolve, 100)); // the trap is set
    const exited = once(child, 'exit').then(([, signal]) => signal as NodeJS.Signals | null);
    const signal = await stopGracefully({ signal: (sig) => child.kill(sig), exited }, 100);
    expect(signal).toBe('SIGKILL');
  });
});
