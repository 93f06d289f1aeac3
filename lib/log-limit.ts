import type { Logger } from './log.js';

/** Identical lines after the first are counted, and the count logged, once per this interval. */
export const DEFAULT_REPEAT_INTERVAL_MS = 10_000;

/**
 * Errors that say "a dependency is down", whose stack frames tell nothing: one per request while
 * DynamoDB is unreachable would bury the line that says why.
 */
const KNOWN_UNAVAILABLE = new Set(['storage_unavailable', 'audit_unavailable', 'StorageUnavailableError']);

interface Repeat {
  readonly level: 'info' | 'warn' | 'error';
  readonly message: string;
  readonly fields: Record<string, unknown>;
  count: number;
  since: number;
}

/** Fields that differ between otherwise identical lines (one per request). */
const VARYING = new Set(['requestId', 'stack']);

function identity(level: string, message: string, fields: Record<string, unknown>): string {
  const stable = Object.entries(fields).filter(([k]) => !VARYING.has(k));
  return JSON.stringify([level, message, stable]);
}

export interface LimitedLogger extends Logger {
  /** Logs the counts still pending and stops the timer. */
  close(): void;
}

/**
 * A logger that writes the first of a run of identical lines (same level, message and fields but
 * the request id) and then, every `intervalMs` while they keep coming, one line with how many were
 * left out. Known unavailability errors lose their stack frames.
 */
export function rateLimitedLogger(
  inner: Logger,
  options: { intervalMs?: number; now?: () => number } = {},
): LimitedLogger {
  const intervalMs = options.intervalMs ?? DEFAULT_REPEAT_INTERVAL_MS;
  const now = options.now ?? Date.now;
  const repeats = new Map<string, Repeat>();

  const flush = (all: boolean) => {
    const t = now();
    for (const [key, r] of repeats) {
      if (!all && t - r.since < intervalMs) continue;
      if (r.count > 0) {
        inner[r.level](r.message, {
          ...r.fields,
          repeated: r.count,
          repeatedOverSeconds: Math.max(1, Math.round((t - r.since) / 1000)),
        });
        r.count = 0;
        r.since = t;
      } else {
        repeats.delete(key);
      }
    }
  };
  const timer = setInterval(() => flush(false), intervalMs);
  timer.unref();

  const emit = (level: Repeat['level'], message: string, given: Record<string, unknown> = {}) => {
    const known = [given.code, given.errorCode, given.errorName, given.causeName].some(
      (v) => typeof v === 'string' && KNOWN_UNAVAILABLE.has(v),
    );
    const fields = known ? Object.fromEntries(Object.entries(given).filter(([k]) => k !== 'stack')) : given;
    const key = identity(level, message, fields);
    let seen = repeats.get(key);
    // Quiet for a whole interval: the timer would have forgotten it (it may lag, or not run).
    if (seen && seen.count === 0 && now() - seen.since >= intervalMs) {
      repeats.delete(key);
      seen = undefined;
    }
    if (seen) {
      seen.count++;
      // The interval timer may lag (or, in tests, not run): a due count is written here.
      if (now() - seen.since >= intervalMs) flush(false);
      return;
    }
    const { requestId: _requestId, ...rest } = fields;
    repeats.set(key, { level, message, fields: rest, count: 0, since: now() });
    inner[level](message, fields);
  };

  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    close: () => {
      clearInterval(timer);
      flush(true);
    },
  };
}
