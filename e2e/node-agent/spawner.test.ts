import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spawner } from './spawner';

describe('launcher', () => {
  const spawner = new Spawner();
  const dir = mkdtempSync(join(tmpdir(), 'spawner-test-'));
  afterAll(() => {
    spawner.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('runs a command with input, returning its status and output', async () => {
    const r = await spawner.run('sh', ['-c', 'cat; echo err >&2; exit 3'], 'line one\nline "two" $HOME', 5_000);
    expect(r).toEqual({ code: 3, stdout: 'line one\nline "two" $HOME\n', stderr: 'err\n' });
  });

  test('starts a process with exactly the given environment, working directory and log', async () => {
    const log = join(dir, 'out.log');
    const started = await spawner.start(
      'sh',
      ['-c', 'echo "$A|$B|$PWD|$HOME"; exit 7'],
      { A: 'x y', B: "it's\nmulti", PATH: process.env.PATH ?? '' },
      dir,
      log,
    );
    expect(started.pid).toBeGreaterThan(0);
    expect(await started.exited).toEqual({ status: 7 });
    expect(readFileSync(log, 'utf8')).toBe(`x y|it's\nmulti|${dir}|\n`);
  });

  test('a process killed by a signal reports 128+signal; the pid is the process itself', async () => {
    const started = await spawner.start('sleep', ['30'], { PATH: process.env.PATH ?? '' }, dir, join(dir, 'sleep.log'));
    // The pid comes back right after the fork; the exec chain (setsid, env) follows at once.
    const cmdline = (): string => readFileSync(`/proc/${started.pid}/cmdline`, 'utf8');
    for (let i = 0; i < 100 && cmdline() !== 'sleep\x0030\x00'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(cmdline()).toBe('sleep\x0030\x00');
    process.kill(started.pid, 'SIGKILL');
    expect(await started.exited).toEqual({ status: 137 });
  });

  test('a run that outlives its timeout is killed', async () => {
    const r = await spawner.run('sleep', ['30'], undefined, 1_000);
    expect(r.code).toBe(137);
  });
});
