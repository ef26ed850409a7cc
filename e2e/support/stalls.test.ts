import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StallWatch } from './stalls';

const dir = mkdtempSync(join(tmpdir(), 'stall-watch-'));

describe('StallWatch', () => {
  test('a blocked event loop is a stall, and gaps subtract only what overlaps it', () => {
    const watch = new StallWatch(dir, 10, 200);
    const blockedFrom = Date.now();
    while (Date.now() - blockedFrom < 400) {
      // the process is busy: no timer runs, as when the machine stands still
    }
    watch.stop();
    expect(watch.stalls).toHaveLength(1);
    const [stall] = watch.stalls;
    expect(stall.to - stall.from).toBeGreaterThanOrEqual(400);
    // A gap covering the stall and 100 ms either side was awake for those 200 ms only.
    expect(watch.awakeMs(stall.from - 100, stall.to + 100)).toBe(200);
    // A gap before the stall is untouched.
    expect(watch.awakeMs(stall.from - 500, stall.from - 100)).toBe(400);
  });

  test('short delays are not stalls', async () => {
    const watch = new StallWatch(dir, 10);
    await new Promise((r) => setTimeout(r, 100));
    watch.stop();
    expect(watch.stalls).toHaveLength(0);
  });
});
