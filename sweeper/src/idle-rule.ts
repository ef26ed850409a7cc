/**
 * The idle rule (the original Spawner's): a backend is swept once it has had no live WebSocket
 * connection and no activity for `gracePeriodSeconds`, counted from the moment it was first Ready;
 * an open WebSocket pauses the countdown.
 *
 * The sidecar reports how long ago it last saw activity, not when, so the deadline survives a
 * restart of the sweeper (and clock skew between nodes): it is computed from the report's own
 * receipt time on this clock.
 */

/** One message of the sidecar's state stream, with the local time it arrived. */
export interface SidecarReport {
  ready: boolean;
  liveConnections: number;
  secondsSinceActive: number;
  receivedAtMs: number;
}

/** When the backend becomes idle past its grace, or undefined while a connection is open. */
export function idleDeadline(report: SidecarReport, gracePeriodSeconds: number): number | undefined {
  if (report.liveConnections > 0) return undefined;
  const remainingMs = (gracePeriodSeconds - report.secondsSinceActive) * 1000;
  return report.receivedAtMs + remainingMs;
}

/**
 * A report is only trusted while the stream is alive: the sidecar sends one at every change and
 * heartbeat, so silence longer than a few heartbeats means we no longer know (a frozen sidecar may
 * have a WebSocket open that it cannot report). Unknown is never idle.
 */
export function isFresh(report: SidecarReport, nowMs: number, heartbeatSeconds: number): boolean {
  return nowMs - report.receivedAtMs <= heartbeatSeconds * 3 * 1000;
}

export type IdleVerdict = { kind: 'sweep'; deadlineMs: number } | { kind: 'wait'; untilMs?: number } | { kind: 'unknown' };

/**
 * `countdownFromMs` is when the backend was first Ready: the countdown never starts before it
 * (a slow starter is not idle, `startupTimeoutSeconds` bounds that time), so a backend that was
 * never Ready is never idle.
 */
export function judge(
  report: SidecarReport | undefined,
  gracePeriodSeconds: number,
  nowMs: number,
  heartbeatSeconds: number,
  countdownFromMs: number | undefined,
): IdleVerdict {
  if (countdownFromMs === undefined) return { kind: 'wait' };
  if (!report || !isFresh(report, nowMs, heartbeatSeconds)) return { kind: 'unknown' };
  const reported = idleDeadline(report, gracePeriodSeconds);
  if (reported === undefined) return { kind: 'wait' };
  const deadline = Math.max(reported, countdownFromMs + gracePeriodSeconds * 1000);
  if (nowMs >= deadline) return { kind: 'sweep', deadlineMs: deadline };
  return { kind: 'wait', untilMs: deadline };
}
