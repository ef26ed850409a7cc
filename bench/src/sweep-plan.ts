/** The plan shared by the sweeper-scale processes: one emulated sidecar per backend. */
import { readFileSync } from 'node:fs';

export interface PlanEntry {
  name: string;
  /** Loopback address the emulated sidecar listens on (the backend's status.podIP). */
  ip: string;
  gracePeriodSeconds: number;
  /** Epoch ms of the last activity the sidecar reports (secondsSinceActive counts from it). */
  lastActiveMs: number;
}

export interface Plan {
  port: number;
  heartbeatSeconds: number;
  entries: PlanEntry[];
}

export const readPlan = (path: string): Plan => JSON.parse(readFileSync(path, 'utf8')) as Plan;

/** The moment the backend becomes idle past its grace: what a perfect sweeper would act on. */
export const deadlineOf = (e: PlanEntry): number => e.lastActiveMs + e.gracePeriodSeconds * 1000;

/** Distinct loopback addresses (all of 127.0.0.0/8 reaches lo on Linux). */
export const loopbackAddress = (i: number): string => `127.77.${Math.floor(i / 250)}.${(i % 250) + 1}`;
