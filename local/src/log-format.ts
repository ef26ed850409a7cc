/**
 * Log lines for a person at a terminal: common's logger writes one JSON object per line, which
 * tools want but people squint at. This sink turns each into `time level message key=value…`, and
 * an app's output into `time [backend] line`. `--log-format=json` keeps the JSON.
 */
import type { LogSink } from '../../common/src/logger';

const SKIP = new Set(['time', 'level', 'component', 'msg']);

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v);
}

export function formatLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 19) : '';
  if (entry.source === 'app') return `${time} [${String(entry.backend)}] ${String(entry.msg)}\n`;
  const level = String(entry.level ?? 'info')
    .toUpperCase()
    .padEnd(5);
  const component = entry.component && entry.component !== 'local' ? `${String(entry.component)}: ` : '';
  const rest = Object.entries(entry)
    .filter(([k, v]) => !SKIP.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${value(v)}`)
    .join(' ');
  return `${time} ${level} ${component}${String(entry.msg)}${rest ? `  ${rest}` : ''}\n`;
}

export function textSink(write: (text: string) => void = (text) => process.stdout.write(text)): LogSink {
  return (line) => write(formatLine(line.trimEnd()));
}
