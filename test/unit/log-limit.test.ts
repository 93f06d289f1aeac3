import { describe, expect, it } from 'vitest';
import type { Logger } from '../../lib/log.js';
import { rateLimitedLogger } from '../../lib/log-limit.js';

function capture() {
  const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  const logger: Logger = {
    info: (message, fields = {}) => lines.push({ level: 'info', message, fields }),
    warn: (message, fields = {}) => lines.push({ level: 'warn', message, fields }),
    error: (message, fields = {}) => lines.push({ level: 'error', message, fields }),
  };
  return { lines, logger };
}

describe('rateLimitedLogger', () => {
  it('when one error repeats per request, it writes the first and then a count per interval', () => {
    const { lines, logger } = capture();
    let now = 0;
    const log = rateLimitedLogger(logger, { intervalMs: 10_000, now: () => now });
    for (let i = 0; i < 50; i++) {
      now += 100;
      log.error('request failed', {
        requestId: `r${i}`,
        code: 'internal',
        errorName: 'TypeError',
        stack: [`at ${i}`],
      });
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]?.fields).toMatchObject({ requestId: 'r0', stack: ['at 0'] });
    log.close();
    expect(lines).toHaveLength(2);
    expect(lines[1]?.fields).toMatchObject({ code: 'internal', repeated: 49 });
    expect(lines[1]?.fields).not.toHaveProperty('requestId');
  });

  it('when lines differ in anything but the request id, each is written', () => {
    const { lines, logger } = capture();
    const log = rateLimitedLogger(logger);
    log.warn('purge failed', { errorName: 'A' });
    log.warn('purge failed', { errorName: 'B' });
    log.info('other');
    log.close();
    expect(lines.map((l) => l.fields.errorName ?? l.message)).toEqual(['A', 'B', 'other']);
  });

  it('when the error is a known storage outage, it drops the stack frames', () => {
    const { lines, logger } = capture();
    const log = rateLimitedLogger(logger);
    log.error('request failed', {
      code: 'storage_unavailable',
      errorName: 'StorageUnavailableError',
      stack: ['x'],
    });
    log.error('audit write failed', {
      errorName: 'AuditUnavailableError',
      causeName: 'StorageUnavailableError',
      stack: ['y'],
    });
    log.close();
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l.fields).not.toHaveProperty('stack');
  });

  it('when an interval passes without a repeat, the next identical line is written in full again', () => {
    const { lines, logger } = capture();
    let now = 0;
    const log = rateLimitedLogger(logger, { intervalMs: 1_000, now: () => now });
    log.error('x', { code: 'c' });
    now = 5_000;
    log.error('x', { code: 'c' });
    log.close();
    expect(lines).toHaveLength(2);
    expect(lines[1]?.fields).not.toHaveProperty('repeated');
  });
});
