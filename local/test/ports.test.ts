/** Port allocation for apps: no port handed out twice, nothing in use handed out, exhaustion is clear. */
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { canBind, NoFreePortError, PortAllocator } from '../src/ports';

async function occupy(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

describe('port allocation', () => {
  it('hands out distinct ports, also to concurrent callers, and reuses released ones', async () => {
    const ports = new PortAllocator({ host: '127.0.0.1', min: 41000, max: 41019 });
    const got = await Promise.all(Array.from({ length: 20 }, () => ports.allocate().catch(() => 0)));
    const handed = got.filter((p) => p > 0);
    // Another process may hold a port of the range; what was handed out is distinct regardless.
    expect(new Set(handed).size).toBe(handed.length);
    expect(handed.length).toBeGreaterThanOrEqual(15);
    for (const p of handed) expect(p).toBeGreaterThanOrEqual(41000);
    expect(ports.inUse).toEqual([...handed].sort((a, b) => a - b));
    if (handed.length === 20) await expect(ports.allocate()).rejects.toThrow(NoFreePortError);
    ports.release(handed[3]);
    await expect(ports.allocate()).resolves.toBe(handed[3]);
  });

  it('skips a port something else has bound', async () => {
    const busy = await occupy();
    try {
      expect(await canBind(busy.port, '127.0.0.1')).toBe(false);
      const ports = new PortAllocator({ host: '127.0.0.1', min: busy.port, max: busy.port });
      await expect(ports.allocate()).rejects.toThrow(`no free port in ${busy.port}-${busy.port}`);
      // A range around it: the busy port is never chosen, whatever the random picks.
      const around = new PortAllocator({ host: '127.0.0.1', min: busy.port - 1, max: busy.port + 1, random: () => 0.5 });
      const first = await around.allocate().catch(() => undefined);
      const second = await around.allocate().catch(() => undefined);
      expect([first, second]).not.toContain(busy.port);
    } finally {
      await busy.close();
    }
    expect(await canBind(busy.port, '127.0.0.1')).toBe(true);
  });

  it('refuses an empty or impossible range', () => {
    expect(() => new PortAllocator({ host: '127.0.0.1', min: 30000, max: 29999 })).toThrow(RangeError);
    expect(() => new PortAllocator({ host: '127.0.0.1', min: 0, max: 10 })).toThrow(RangeError);
  });
});
