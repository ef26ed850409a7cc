import { AddressPool } from './network';

describe('pod address pool', () => {
  test('skips the network, the gateway and the broadcast address, and reuses addresses last', () => {
    const pool = new AddressPool('10.88.0.0/29', '10.88.0.1');
    const got = [1, 2, 3, 4, 5].map(() => pool.allocate());
    expect(got.map((a) => a.ip)).toEqual(['10.88.0.2', '10.88.0.3', '10.88.0.4', '10.88.0.5', '10.88.0.6']);
    expect(() => pool.allocate()).toThrow(/exhausted/);
    pool.release(got[0].index);
    pool.release(got[3].index);
    expect([pool.allocate().ip, pool.allocate().ip].sort()).toEqual(['10.88.0.2', '10.88.0.5']);
  });

  test('round-robin: a freed address waits for the others', () => {
    const pool = new AddressPool('10.88.0.0/16', '10.88.0.1');
    const a = pool.allocate();
    pool.release(a.index);
    expect(pool.allocate().ip).toBe('10.88.0.3');
  });

  test('immediate: the most recently freed address goes to the next pod', () => {
    const pool = new AddressPool('10.88.0.0/16', '10.88.0.1');
    const early = pool.allocate();
    pool.release(early.index);
    // Only what is freed from now on counts.
    pool.reuse = 'immediate';
    expect(pool.hasFreed).toBe(false);
    const [a, b] = [pool.allocate(), pool.allocate()];
    expect(pool.hasFreed).toBe(false);
    pool.release(a.index);
    pool.release(b.index);
    expect(pool.hasFreed).toBe(true);
    expect(pool.allocate().ip).toBe(b.ip);
    expect(pool.allocate().ip).toBe(a.ip);
    // Nothing freed: on round-robin from where it was.
    expect(pool.allocate().ip).toBe('10.88.0.5');
    // Released twice (or never used): handed out once.
    pool.release(a.index);
    pool.release(a.index);
    expect(pool.allocate().ip).toBe(a.ip);
    expect(pool.allocate().ip).toBe('10.88.0.6');
    // Back to round-robin: freed addresses wait their turn again.
    pool.reuse = 'round-robin';
    pool.release(b.index);
    expect(pool.hasFreed).toBe(false);
    expect(pool.allocate().ip).toBe('10.88.0.7');
  });
});
