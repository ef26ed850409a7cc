/**
 * The figures a reliability test measured, written to reports/reliability/<name>.json (the source
 * of docs/reliability.md). Apart from the cluster helpers, so that unit-project tests can use it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..');

/** Writes a test's measured figures to reports/reliability/<name>.json and prints them. */
export function writeFigures(name: string, figures: Record<string, unknown>): void {
  const dir = join(ROOT, 'reports', 'reliability');
  mkdirSync(dir, { recursive: true });
  const text = JSON.stringify({ test: name, at: new Date().toISOString(), ...figures }, null, 2);
  writeFileSync(join(dir, `${name}.json`), `${text}\n`);
  process.stdout.write(`[figures] ${name}: ${JSON.stringify(figures)}\n`);
}
