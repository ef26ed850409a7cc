import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Activity } from './activity';
import { EventStream } from './admin';
import { listenEvents, waitFor } from '../test/support';

describe('EventStream', () => {
  it('forgets a listener that disconnects, and stops its timers with the last one', async () => {
    const activity = new Activity();
    const events = new EventStream(activity, 60_000);
    const server = http.createServer((req, res) => events.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
    try {
      const a = listenEvents(url);
      const b = listenEvents(url);
      await waitFor(() => a.messages.length === 1 && b.messages.length === 1, 'first messages');
      expect(events.size).toBe(2);
      a.close();
      await waitFor(() => events.size === 1, 'one listener left');
      activity.webSocketOpened();
      await waitFor(() => b.messages.length === 2, 'the change reaches the remaining listener');
      b.close();
      await waitFor(() => events.size === 0, 'no listener left');
    } finally {
      events.closeAll();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
