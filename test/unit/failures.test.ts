import { describe, expect, it } from 'vitest';
import { ThrottledError } from '../../lib/errors.js';
import { mapStorageError, StorageUnavailableError } from '../../lib/store/storage-errors.js';
import {
  classifyFailure,
  isRetryableFailure,
  NETWORK_ERROR_CODES,
  NEVER_SENT_CODES,
  neverSent,
} from '../../packages/client/src/failures.js';
import { retry } from '../../packages/client/src/retry.js';

const errno = (code: string) => Object.assign(new Error(`connect ${code}`), { code });
const aws = (name: string, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error('x'), { name, $metadata: {}, ...extra });

describe('the failure classifier', () => {
  it('calls every network error, DNS failures included, unavailable and retryable', () => {
    for (const code of NETWORK_ERROR_CODES) {
      expect(classifyFailure(errno(code)), code).toBe('unavailable');
      expect(isRetryableFailure(errno(code)), code).toBe(true);
    }
    expect(NETWORK_ERROR_CODES).toContain('ENOTFOUND');
    expect(NETWORK_ERROR_CODES).toContain('EAI_AGAIN');
  });

  it('finds the code on fetch’s cause and inside an AggregateError', () => {
    const fetchFailure = new TypeError('fetch failed', { cause: errno('ECONNREFUSED') });
    expect(classifyFailure(fetchFailure)).toBe('unavailable');
    expect(neverSent(fetchFailure)).toBe(true);
    const aggregate = Object.assign(new AggregateError([errno('ECONNREFUSED'), errno('ENETUNREACH')]), {});
    expect(classifyFailure(aggregate)).toBe('unavailable');
  });

  it('tells requests that never left from those that may have reached the server', () => {
    for (const code of NEVER_SENT_CODES) expect(NETWORK_ERROR_CODES).toContain(code);
    expect(neverSent(new TypeError('fetch failed', { cause: errno('ENOTFOUND') }))).toBe(true);
    expect(neverSent(new TypeError('fetch failed', { cause: errno('ECONNRESET') }))).toBe(false);
    expect(neverSent(new Error('other'))).toBe(false);
  });

  it('tells throttling from unavailability from everything else', () => {
    expect(classifyFailure(aws('ProvisionedThroughputExceededException'))).toBe('throttled');
    expect(classifyFailure(aws('ThrottlingException'))).toBe('throttled');
    expect(classifyFailure(aws('InternalServerError'))).toBe('unavailable');
    expect(classifyFailure(aws('KMSInternalException'))).toBe('unavailable');
    expect(classifyFailure(aws('SomethingException', { $metadata: { httpStatusCode: 503 } }))).toBe(
      'unavailable',
    );
    expect(classifyFailure(aws('ValidationException', { $metadata: { httpStatusCode: 400 } }))).toBe('other');
    expect(classifyFailure(aws('ConditionalCheckFailedException'))).toBe('other');
    expect(classifyFailure(new Error('bug'))).toBe('other');
    expect(classifyFailure(undefined)).toBe('other');
  });

  it('maps storage failures to 429 and 503 through it', () => {
    expect(mapStorageError(errno('ENOTFOUND'))).toBeInstanceOf(StorageUnavailableError);
    expect(mapStorageError(errno('EAI_AGAIN'))).toBeInstanceOf(StorageUnavailableError);
    expect(mapStorageError(aws('ThrottlingException'))).toBeInstanceOf(ThrottledError);
    const bug = new Error('bug');
    expect(mapStorageError(bug)).toBe(bug);
  });
});

describe('the retry helper', () => {
  it('retries what it is told to, with full-jitter waits within the bounds, and throws the last failure', async () => {
    const waits: number[] = [];
    let calls = 0;
    const err = await retry(
      async () => {
        calls++;
        throw errno('ECONNRESET');
      },
      {
        attempts: 4,
        baseDelayMs: 10,
        maxDelayMs: 25,
        isRetryable: isRetryableFailure,
        sleep: async (ms) => {
          waits.push(ms);
        },
      },
    ).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('ECONNRESET');
    expect(calls).toBe(4);
    expect(waits).toHaveLength(3);
    waits.forEach((w, n) => {
      expect(w).toBeGreaterThanOrEqual(0);
      expect(w).toBeLessThanOrEqual(Math.min(25, 10 * 2 ** n));
    });
  });

  it('stops at the first failure it may not retry, and returns the first success', async () => {
    let calls = 0;
    const noWait = async () => {};
    await expect(
      retry(
        async () => {
          calls++;
          throw new Error('bug');
        },
        { attempts: 5, baseDelayMs: 1, maxDelayMs: 1, isRetryable: isRetryableFailure, sleep: noWait },
      ),
    ).rejects.toThrow('bug');
    expect(calls).toBe(1);
    const seen: boolean[] = [];
    const value = await retry(
      async (attempt) => {
        if (attempt < 3) throw errno('ETIMEDOUT');
        return 'ok';
      },
      {
        attempts: 3,
        baseDelayMs: 1,
        maxDelayMs: 1,
        isRetryable: isRetryableFailure,
        sleep: noWait,
        onFailure: (_e, _a, retrying) => seen.push(retrying),
      },
    );
    expect(value).toBe('ok');
    expect(seen).toEqual([true, true]);
  });
});
