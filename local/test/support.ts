/**
 * Shared by local mode's tests: process liveness, a small SSE reader over fetch, and the check that
 * the build output local mode runs (the demo backend, main.js) exists.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/src/paths';
import { readEvents as readSse, SSE_MEDIA_TYPE } from '../../common/src/sse';

/** Alive = exists and is not a zombie (a reaped-late child still answers signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

/** Every live descendant of `pid` (Linux: from /proc). */
export function descendants(pid: number): number[] {
  if (process.platform !== 'linux') return [];
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(entry), Number(fields[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [child, ppid] of parent) {
      if (ppid === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

export function requireBuild(...relative: string[]): void {
  for (const rel of relative) {
    const file = join(projectRoot(), rel);
    if (!existsSync(file)) throw new Error(`${rel} is missing: run \`npm run build\` first (local mode runs the build output)`);
  }
}

export const DEMO_BACKEND_BUILD = 'dist/examples/demo-backend/src/main.js';

export interface StatusEvent {
  phase: string;
  time: string;
  reason?: string;
  message?: string;
}

/** Reads an SSE response to its end (or until `signal` aborts); `onEvent` sees each data object. */
export async function readEvents(url: string, onEvent: (e: StatusEvent) => void, signal?: AbortSignal): Promise<StatusEvent[]> {
  const res = await fetch(url, { headers: { accept: SSE_MEDIA_TYPE }, signal });
  if (res.status !== 200 || !res.body) throw new Error(`status stream answered ${res.status}`);
  const events: StatusEvent[] = [];
  try {
    for await (const { data } of readSse(res.body, signal)) {
      const e = JSON.parse(data) as StatusEvent;
      events.push(e);
      onEvent(e);
    }
  } catch (err) {
    if (!signal?.aborted) throw err;
  }
  return events;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
