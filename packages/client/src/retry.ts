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

/**
 * "Full jitter" backoff (AWS Architecture Blog, "Exponential Backoff And Jitter"): spreading
 * retries over the whole interval keeps many clients from retrying in lock step after an outage.
 */
export function backoffDelay(policy: RetryPolicy, retry: number, retryAfterMs?: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  const jittered = Math.random() * ceiling;
  return retryAfterMs !== undefined
    ? Math.min(policy.maxDelayMs, Math.max(jittered, retryAfterMs))
    : jittered;
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
