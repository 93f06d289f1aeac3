import { describe, expect, it } from 'vitest';
import { envNameOf } from '../../lib/cli/actions/run.js';
import { EXIT, exitCodeOf } from '../../lib/cli/exit-codes.js';
import { statusOf } from '../../lib/http/errors.js';
import { ERRORS, type ErrorSpec } from '../../packages/client/src/error-registry.js';
import {
  CofferClientError,
  CofferConflictError,
  CofferForbiddenError,
  CofferIntegrityError,
  CofferInvalidRequestError,
  CofferNetworkError,
  CofferNotFoundError,
  CofferThrottledError,
  CofferUnauthenticatedError,
  CofferUnavailableError,
  clientError,
  createClient,
  isTransient,
} from '../../packages/client/src/index.js';
import { backoffDelay, retryAfterMs, retryPolicy } from '../../packages/client/src/retry.js';
import { regionOfEndpoint } from '../../packages/client/src/sigv4.js';

describe('client errors', () => {
  it('maps server codes to typed errors, and unknown codes by status', () => {
    expect(clientError('not_found', 404, 'm')).toBeInstanceOf(CofferNotFoundError);
    expect(clientError('secret_deleted', 409, 'm')).toBeInstanceOf(CofferConflictError);
    expect(clientError('key_store_unavailable', 503, 'm')).toBeInstanceOf(CofferUnavailableError);
    expect(clientError('integrity_error', 500, 'm')).toBeInstanceOf(CofferIntegrityError);
    expect(clientError('some_new_400', 400, 'm')).toBeInstanceOf(CofferInvalidRequestError);
    expect(clientError('throttled', 429, 'm')).toBeInstanceOf(CofferThrottledError);
    const e = clientError('internal', 500, 'internal error', 'req-1');
    expect(e).toBeInstanceOf(CofferClientError);
    expect(e).toMatchObject({ code: 'internal', status: 500, requestId: 'req-1', name: 'CofferClientError' });
  });

  it('gives every error code the server answers a typed error and the documented CLI exit code', () => {
    const expected: Record<number, [new (...a: never[]) => CofferClientError, number]> = {
      400: [CofferInvalidRequestError, EXIT.invalid],
      401: [CofferUnauthenticatedError, EXIT.unauthenticated],
      403: [CofferForbiddenError, EXIT.forbidden],
      404: [CofferNotFoundError, EXIT.notFound],
      409: [CofferConflictError, EXIT.conflict],
      413: [CofferInvalidRequestError, EXIT.invalid],
      415: [CofferInvalidRequestError, EXIT.invalid],
      429: [CofferThrottledError, EXIT.unavailable],
      // 499: the client hung up; only the audit sees it, as a network failure.
      499: [CofferNetworkError, EXIT.unavailable],
      // 502: an external rotator's step failed (the current version is unchanged; try again later).
      502: [CofferUnavailableError, EXIT.unavailable],
      503: [CofferUnavailableError, EXIT.unavailable],
    };
    const served = Object.entries(ERRORS as Record<string, ErrorSpec>).flatMap(([code, spec]) =>
      spec.status === null ? [] : [[code, spec.status] as const],
    );
    expect(served.length).toBe(35);
    for (const [code, status] of served) {
      expect(statusOf(code), code).toBe(status);
      const err = clientError(code, status, 'm');
      expect(err.code).toBe(code);
      const want = expected[status];
      if (want) {
        expect(err, code).toBeInstanceOf(want[0]);
        expect(exitCodeOf(code), code).toBe(want[1]);
      } else {
        // 405 and 500: the base class, exit 1 (integrity_error has its own class).
        expect(err, code).toBeInstanceOf(
          code === 'integrity_error' ? CofferIntegrityError : CofferClientError,
        );
        expect(exitCodeOf(code), code).toBe(EXIT.error);
      }
    }
  });

  it('tells outages (served stale by the cache) from definite answers', () => {
    expect(isTransient(new CofferNetworkError('unreachable', 0, 'm'))).toBe(true);
    expect(isTransient(clientError('throttled', 429, 'm'))).toBe(true);
    expect(isTransient(clientError('audit_unavailable', 503, 'm'))).toBe(true);
    expect(isTransient(clientError('http_error', 502, 'm'))).toBe(true);
    expect(isTransient(clientError('integrity_error', 500, 'm'))).toBe(false);
    expect(isTransient(clientError('not_found', 404, 'm'))).toBe(false);
    expect(isTransient(clientError('forbidden', 403, 'm'))).toBe(false);
    expect(isTransient(clientError('unauthenticated', 401, 'm'))).toBe(false);
    expect(isTransient(new Error('x'))).toBe(false);
  });
});

describe('client retry', () => {
  it('keeps every backoff within [0, min(max, base * 2^n)] and honours Retry-After up to the max', () => {
    const policy = retryPolicy({ baseDelayMs: 100, maxDelayMs: 1000 });
    for (let n = 0; n < 6; n++) {
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(policy, n);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(Math.min(1000, 100 * 2 ** n));
      }
    }
    expect(backoffDelay(policy, 0, 800)).toBe(800);
    expect(backoffDelay(policy, 0, 30_000)).toBe(1000);
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
    expect(() => retryPolicy({ maxAttempts: 0 })).toThrow(RangeError);
  });
});

describe('client options', () => {
  it('refuses a bad endpoint and ambiguous auth', () => {
    expect(() => createClient({ endpoint: 'ftp://x', auth: { token: 't' } })).toThrow(CofferClientError);
    expect(() => createClient({ endpoint: 'not a url', auth: { token: 't' } })).toThrow(CofferClientError);
    const both = { token: 't', tokenProvider: () => 't' } as unknown as { token: string };
    expect(() => createClient({ endpoint: 'http://x', auth: both })).toThrow(/exactly one/);
    expect(() => createClient({ endpoint: 'http://x', auth: { token: 't' }, cache: { ttlMs: 0 } })).toThrow(
      RangeError,
    );
  });

  it('finds the region of execute-api endpoints only', () => {
    expect(regionOfEndpoint(new URL('https://a1b2c3.execute-api.us-east-1.amazonaws.com'))).toBe('us-east-1');
    expect(regionOfEndpoint(new URL('https://a1b2c3.execute-api.cn-north-1.amazonaws.com.cn/prod'))).toBe(
      'cn-north-1',
    );
    expect(regionOfEndpoint(new URL('https://a1b2c3.execute-api.us-gov-west-1.amazonaws.com'))).toBe(
      'us-gov-west-1',
    );
    expect(regionOfEndpoint(new URL('https://secrets.example.com'))).toBeUndefined();
    // A look-alike host of someone else's domain names no region.
    expect(
      regionOfEndpoint(new URL('https://x.execute-api.us-east-1.amazonaws.com.evil.example')),
    ).toBeUndefined();
  });

  it('when a path has a "." or ".." segment, it refuses it without a request (a URL would resolve it away)', async () => {
    const urls: string[] = [];
    const client = createClient({
      endpoint: 'http://127.0.0.1:9',
      auth: { token: 't' },
      fetch: (async (input: string | URL | Request) => {
        urls.push(String(input));
        return new Response('{"path":"b","version":1,"value":"v","createdAt":"x"}');
      }) as typeof fetch,
    });
    for (const call of [
      () => client.get('a/../b'),
      () => client.get('./b'),
      () => client.put('a/..', 'v'),
      () => client.delete('a/./b'),
      () => client.restore('..'),
      () => client.destroy('a/../b', [1]),
      () => client.history('a/../b'),
    ]) {
      await expect(call()).rejects.toMatchObject({ name: 'CofferInvalidRequestError', code: 'invalid_path' });
    }
    expect(urls).toEqual([]);
    // Dots inside a segment are ordinary characters.
    await client.get('a/.b/c..d');
    expect(urls).toEqual(['http://127.0.0.1:9/v1/secrets/a/.b/c..d']);
  });
});

describe('coffer run: variable names', () => {
  it('upper-cases the path below the prefix and turns / . - into _', () => {
    expect(envNameOf('db/password')).toBe('DB_PASSWORD');
    expect(envNameOf('stripe.api-key')).toBe('STRIPE_API_KEY');
    expect(envNameOf('a-b')).toBe(envNameOf('a.b'));
  });
});
