import WebSocket from 'ws';
import { ASSIGN_PATH, startDemoServer, type DemoServer } from './server';

const nextState = (ws: WebSocket, pred: (m: any) => boolean) =>
  new Promise<any>((resolve) =>
    ws.on('message', (d) => {
      const m = JSON.parse(String(d));
      if (pred(m)) resolve(m);
    }),
  );

describe('demo backend', () => {
  let s: DemoServer;
  beforeEach(async () => (s = await startDemoServer(0, '127.0.0.1')));
  afterEach(() => s.close());

  it('shares one counter between everyone connected', async () => {
    const a = new WebSocket(`ws://127.0.0.1:${s.port}/`);
    const b = new WebSocket(`ws://127.0.0.1:${s.port}/`);
    await Promise.all([new Promise((r) => a.on('open', r)), new Promise((r) => b.on('open', r))]);
    const seenByB = nextState(b, (m) => m.type === 'state' && m.counter === 1);
    a.send(JSON.stringify({ type: 'increment' }));
    expect((await seenByB).clients).toBe(2);
    a.close();
    b.close();
  });

  it('echoes to the sender and answers HTTP', async () => {
    const a = new WebSocket(`ws://127.0.0.1:${s.port}/x`);
    await new Promise((r) => a.on('open', r));
    const echo = nextState(a, (m) => m.type === 'echo');
    a.send(JSON.stringify({ type: 'echo', n: 7 }));
    expect(await echo).toEqual({ type: 'echo', n: 7 });
    a.close();
    const res = await fetch(`http://127.0.0.1:${s.port}/hello`);
    expect(await res.json()).toMatchObject({ app: 'spawner-demo-backend', path: '/hello' });
  });

  it("learns its backend from a warm pool's assignment, and refuses one that is not JSON", async () => {
    const post = (body: string) => fetch(`http://127.0.0.1:${s.port}${ASSIGN_PATH}`, { method: 'POST', body });
    expect((await post('{not json')).status).toBe(400);
    const self = async () => (await (await fetch(`http://127.0.0.1:${s.port}/`)).json()) as { backend?: unknown };
    expect((await self()).backend).toBeUndefined();
    expect((await post(JSON.stringify({ name: 'b1', uid: 'u1', key: 'doc/7' }))).status).toBe(200);
    expect((await self()).backend).toMatchObject({ name: 'b1', uid: 'u1', key: 'doc/7' });
  });
});
