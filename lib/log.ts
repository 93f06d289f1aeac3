/**
 * Operational log: one JSON line per event on stderr (stdout carries the audit records). Callers
 * pass only fields that are safe to keep: never a value, token, data key or request body.
 */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export function jsonLogger(write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Logger {
  const emit = (level: string, message: string, fields?: Record<string, unknown>) =>
    write(JSON.stringify({ time: new Date().toISOString(), level, message, ...fields }));
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** What may be logged of an unexpected error: its class and code, and where it was thrown. */
export function describeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { errorType: typeof err };
  const frames = (err.stack ?? '')
    .split('\n')
    .slice(1, 8)
    .map((l) => l.trim());
  const cause = (err as { cause?: unknown }).cause;
  return {
    errorName: err.name,
    ...((err as { code?: unknown }).code !== undefined
      ? { errorCode: String((err as { code?: unknown }).code) }
      : {}),
    // Only the cause's class and code: its message may quote anything.
    ...(cause instanceof Error
      ? {
          causeName: cause.name,
          ...((cause as { code?: unknown }).code !== undefined
            ? { causeCode: String((cause as { code?: unknown }).code) }
            : {}),
        }
      : {}),
    stack: frames,
  };
}
