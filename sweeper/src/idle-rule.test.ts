import { idleDeadline, judge, type SidecarReport } from './idle-rule';

const report = (r: Partial<SidecarReport>): SidecarReport => ({
  ready: true,
  liveConnections: 0,
  secondsSinceActive: 0,
  receivedAtMs: 1_000_000,
  ...r,
});

/** First Ready well before every report here: the countdown runs from the reported activity. */
const READY_LONG_AGO = 0;

describe('idle rule', () => {
  it('counts the grace from the last activity the sidecar reports, not from when we heard it', () => {
    // A fresh stream (say after a sweeper restart) says 40 s idle already: 20 s of a 60 s grace remain.
    expect(idleDeadline(report({ secondsSinceActive: 40 }), 60)).toBe(1_000_000 + 20_000);
  });

  it('pauses while a WebSocket is open', () => {
    expect(idleDeadline(report({ liveConnections: 1, secondsSinceActive: 1000 }), 60)).toBeUndefined();
    expect(judge(report({ liveConnections: 2, secondsSinceActive: 1000 }), 60, 1_000_000, 5, READY_LONG_AGO)).toEqual({
      kind: 'wait',
    });
  });

  it('sweeps at the deadline, not before', () => {
    const r = report({ secondsSinceActive: 50 });
    expect(judge(r, 60, 1_009_999, 5, READY_LONG_AGO)).toEqual({ kind: 'wait', untilMs: 1_010_000 });
    expect(judge(r, 60, 1_010_000, 5, READY_LONG_AGO)).toEqual({ kind: 'sweep', deadlineMs: 1_010_000 });
  });

  it('is already past due when the report says so', () => {
    expect(judge(report({ secondsSinceActive: 90 }), 60, 1_000_000, 5, READY_LONG_AGO)).toEqual({
      kind: 'sweep',
      deadlineMs: 970_000,
    });
  });

  it('never sweeps on a stale report (the sidecar stopped talking) or no report at all', () => {
    expect(judge(report({ secondsSinceActive: 90 }), 60, 1_000_000 + 16_000, 5, READY_LONG_AGO)).toEqual({ kind: 'unknown' });
    expect(judge(undefined, 60, 1_000_000, 5, READY_LONG_AGO)).toEqual({ kind: 'unknown' });
  });

  it('never starts the countdown before the first Ready, and counts the grace from it', () => {
    // Never Ready: however long the sidecar has been quiet, not idle.
    expect(judge(report({ secondsSinceActive: 90 }), 60, 1_000_000, 5, undefined)).toEqual({ kind: 'wait' });
    // Ready 10 s before the report: the sidecar's quiet before that does not count.
    expect(judge(report({ secondsSinceActive: 90 }), 60, 1_000_000, 5, 990_000)).toEqual({ kind: 'wait', untilMs: 1_050_000 });
    expect(judge(report({ secondsSinceActive: 90 }), 60, 1_050_000, 5, 990_000)).toEqual({ kind: 'unknown' });
    expect(judge(report({ secondsSinceActive: 90, receivedAtMs: 1_049_000 }), 60, 1_050_000, 5, 990_000)).toEqual({
      kind: 'sweep',
      deadlineMs: 1_050_000,
    });
  });
});
