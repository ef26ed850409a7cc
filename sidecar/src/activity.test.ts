import { Activity, IDLE_NOTIFY_MS } from './activity';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Activity', () => {
  let t: number;
  let activity: Activity;
  /** Per test: a notification scheduled by an earlier test must not count here. */
  let calls: { n: number };
  beforeEach(() => {
    t = 10_000;
    activity = new Activity(() => t);
    const mine = { n: 0 };
    calls = mine;
    activity.subscribe(() => mine.n++);
  });

  it('measures idle time from the start until the first activity, in seconds with ms precision', () => {
    t += 1234;
    expect(activity.secondsSinceActive()).toBe(1.234);
    expect(activity.lastActivityAt).toBeNull();
    activity.requestStarted();
    activity.requestEnded();
    t += 500;
    expect(activity.secondsSinceActive()).toBe(0.5);
    expect(activity.lastActivityAt).toBe(11_234);
  });

  it('reports 0 while a request is in flight, however long', () => {
    activity.requestStarted();
    t += 600_000;
    expect(activity.secondsSinceActive()).toBe(0);
    activity.requestEnded();
    expect(activity.lastActivityAt).toBe(t);
  });

  it('announces ready flips and connection counts, coalesced per turn', async () => {
    activity.setReady(true);
    activity.webSocketOpened();
    activity.webSocketOpened();
    await turn();
    expect(calls.n).toBe(1);
    expect(activity.message()).toEqual({ ready: true, liveConnections: 2, secondsSinceActive: 0 });
    activity.setReady(true);
    await turn();
    expect(calls.n).toBe(1);
  });

  it('announces activity after idleness but not steady traffic', async () => {
    t += IDLE_NOTIFY_MS;
    activity.requestStarted();
    activity.requestEnded();
    await turn();
    expect(calls.n).toBe(1);
    t += IDLE_NOTIFY_MS - 1;
    activity.requestStarted();
    activity.requestEnded();
    await turn();
    expect(calls.n).toBe(1);
  });

  it('never counts below zero', () => {
    activity.webSocketClosed();
    expect(activity.liveConnections).toBe(0);
  });
});
