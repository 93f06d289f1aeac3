/** Retry settings of the client. */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 3; 1 turns retries off. */
  readonly maxAttempts?: number;
  /** The backoff before retry n is a random time up to `min(maxDelayMs, baseDelayMs * 2^n)`. Default 100. */
  readonly baseDelayMs?: number;
  /** Default 2000. A server's Retry-After is honoured up to this too. */
  readonly maxDelayMs?: number;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  const maxAttempts = options.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 10) {
    throw new RangeError('retry.maxAttempts must be an integer from 1 to 10');
  }
  return {
    maxAttempts,
    baseDelayMs: Math.max(0, options.baseDelayMs ?? 100),
    maxDelayMs: Math.max(0, options.maxDelayMs ?? 2000),
  };
}

/** The bounds of a backoff: the wait before retry n is random in [0, min(maxDelayMs, baseDelayMs * 2^n)). */
export interface Backoff {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/**
 * "Full jitter" backoff (AWS Architecture Blog, "Exponential Backoff And Jitter"): spreading
 * retries over the whole interval keeps many clients from retrying in lock step after an outage.
 * `retry` counts from 0 (the wait before the second attempt). A server's Retry-After is honoured
 * up to the maximum.
 */
export function backoffDelay(policy: Backoff, retry: number, retryAfterMs?: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  const jittered = Math.random() * ceiling;
  return retryAfterMs !== undefined
    ? Math.min(policy.maxDelayMs, Math.max(jittered, retryAfterMs))
    : jittered;
}

export interface RetryLoopOptions extends Backoff {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  /** Whether this failure of attempt `attempt` (from 1) is worth another try. */
  readonly isRetryable: (err: unknown, attempt: number) => boolean;
  /** A wait the failure itself asks for (a server's Retry-After), honoured up to `maxDelayMs`. */
  readonly retryAfterMs?: (err: unknown) => number | undefined;
  /** Replaced in tests so retries take no wall time. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Told of every failure, before the wait: for a log line. */
  readonly onFailure?: (err: unknown, attempt: number, retrying: boolean) => void;
}

/**
 * Runs `fn` until it succeeds, fails with an error `isRetryable` refuses, or has had `attempts`
 * tries, waiting a full-jitter backoff between tries; the last failure is thrown as it came.
 * Coffer's one retry loop: the client's requests, KMS calls and DynamoDB transactions use it.
 *
 * @example
 * const out = await retry(() => kms.send(command), {
 *   attempts: 4, baseDelayMs: 50, maxDelayMs: 1000, isRetryable: isRetryableFailure,
 * });
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryLoopOptions): Promise<T> {
  const wait = options.sleep ?? sleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const retrying = attempt < options.attempts && options.isRetryable(err, attempt);
      options.onFailure?.(err, attempt, retrying);
      if (!retrying) throw err;
      await wait(backoffDelay(options, attempt - 1, options.retryAfterMs?.(err)));
    }
  }
}

/** Retry-After in seconds (the HTTP-date form is not used by Coffer or API Gateway). */
export function retryAfterMs(header: string | null): number | undefined {
  if (header === null || !/^\d{1,4}$/.test(header.trim())) return undefined;
  return Number(header.trim()) * 1000;
}

/**
 * Waits before a retry. Deliberately not unref()'d, unlike the cache's timers: the caller is
 * awaiting this request, and an unref'd timer would let the process exit with it unsettled.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
