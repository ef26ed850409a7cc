/**
 * Structured JSON logs, one object per line on stdout, so that any log pipeline (Loki, Cloud
 * Logging, `kubectl logs | jq`) can read them. Secrets never go through here: callers log names
 * and hashes, not tokens.
 *
 * An Error given as a field keeps its stack trace and its `cause` chain: callers pass the error
 * itself (`{ error: err }`), not its message.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export const LOG_LEVELS = Object.keys(RANK) as LogLevel[];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogSink = (line: string) => void;

const MAX_CAUSES = 5;

/** An Error as JSON: name, message, its primitive own fields (status, reason, code), stack, cause. */
function errorFields(value: unknown, depth = 0): unknown {
  if (!(value instanceof Error)) return value;
  const out: LogFields = { name: value.name, message: value.message };
  for (const [k, v] of Object.entries(value)) {
    if (k !== 'name' && k !== 'message' && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) {
      out[k] = v;
    }
  }
  if (value.stack) out.stack = value.stack;
  if (value.cause !== undefined) {
    out.cause = depth < MAX_CAUSES ? errorFields(value.cause, depth + 1) : String(value.cause);
  }
  return out;
}

export function createLogger(
  component: string,
  level: LogLevel = 'info',
  sink: LogSink = (line) => process.stdout.write(line),
  base: LogFields = {},
): Logger {
  const min = RANK[level];
  const write = (lvl: LogLevel, msg: string, fields?: LogFields): void => {
    if (RANK[lvl] < min) return;
    const entry: LogFields = { time: new Date().toISOString(), level: lvl, component, msg, ...base };
    if (fields) for (const [k, v] of Object.entries(fields)) entry[k] = errorFields(v);
    sink(`${JSON.stringify(entry)}\n`);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (fields) => createLogger(component, level, sink, { ...base, ...fields }),
  };
}

/** For tests: a logger that keeps its lines. */
export function memoryLogger(component = 'test'): Logger & { lines: LogFields[] } {
  const lines: LogFields[] = [];
  const logger = createLogger(component, 'debug', (line) => lines.push(JSON.parse(line) as LogFields));
  return Object.assign(logger, { lines });
}

export const silentLogger: Logger = createLogger('silent', 'error', () => undefined);
