import { KubeApiError } from './errors';
import { createLogger, memoryLogger, type LogFields } from './logger';

describe('logger', () => {
  it('writes one JSON object per line with level, component, message and fields', () => {
    const lines: string[] = [];
    const logger = createLogger('operator', 'info', (line) => lines.push(line)).child({ replica: 'a' });
    logger.debug('not shown');
    logger.info('hello', { n: 1 });
    expect(lines).toHaveLength(1);
    expect(lines[0].endsWith('\n')).toBe(true);
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'info', component: 'operator', msg: 'hello', replica: 'a', n: 1 });
  });

  it('a logged Error carries its stack trace, its own fields and its cause', () => {
    const logger = memoryLogger();
    const cause = new Error('socket hang up');
    const err = new KubeApiError(503, 'ServiceUnavailable', 'the API server is restarting', undefined);
    err.cause = cause;
    logger.error('status write failed', { error: err, backend: 'ns/b1' });
    const error = logger.lines[0].error as LogFields;
    expect(error).toMatchObject({
      name: 'KubeApiError',
      message: 'the API server is restarting',
      status: 503,
      reason: 'ServiceUnavailable',
    });
    expect(error.stack).toEqual(err.stack);
    expect(String(error.stack)).toContain('logger.test.ts');
    expect(error.cause).toMatchObject({ name: 'Error', message: 'socket hang up', stack: cause.stack });
    expect(logger.lines[0].backend).toBe('ns/b1');
  });

  it('a long or circular cause chain ends', () => {
    const logger = memoryLogger();
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    a.cause = b;
    logger.warn('loop', { error: a });
    let depth = 0;
    for (let e = logger.lines[0].error as LogFields | string; typeof e === 'object'; e = e.cause as LogFields) depth++;
    expect(depth).toBeLessThanOrEqual(6);
  });

  it('leaves values that are not errors as they are', () => {
    const logger = memoryLogger();
    logger.warn('x', { error: 'plain text', n: null });
    expect(logger.lines[0]).toMatchObject({ error: 'plain text', n: null });
  });
});
