/**
 * The one classifier of failures to reach a service (DynamoDB, KMS, a Coffer server): is it worth
 * another try, and does it mean "the service cannot answer now" rather than "the request is
 * wrong"? The server maps these to 429 `throttled` / 503 `*_unavailable`, the KMS adapter and the
 * DynamoDB store retry them, the CLI says "cannot reach", the client retries them.
 *
 * Errors are read by shape (`name`, `code`, `$retryable`, `$metadata`), so that this module needs
 * neither the AWS SDK nor Node's types.
 */

/**
 * Error codes of a connection that could not be made or broke: Node's socket and DNS errors and
 * undici's (the engine of `fetch`). DNS failures are here: a name that does not resolve now is an
 * outage like a refused connection, not a fault of the request.
 */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/**
 * Of the network errors (a subset of the list above; a test holds it so), those where the request
 * certainly never left this machine (no connection was made), so that even a request that is not
 * safe to repeat may be sent again.
 */
export const NEVER_SENT_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Services asking the caller to slow down (DynamoDB, KMS and the AWS SDK's names for it). */
const THROTTLING_NAMES: ReadonlySet<string> = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'LimitExceededException',
]);

/** A service's own failure or timeout: the request may well succeed a moment later. */
const UNAVAILABLE_NAMES: ReadonlySet<string> = new Set([
  'InternalServerError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'KMSInternalException',
  'DependencyTimeoutException',
  'KeyUnavailableException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);

type FailureLike = {
  name?: unknown;
  code?: unknown;
  cause?: unknown;
  errors?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
};

/**
 * The network error code of a failure, looked for where Node and undici put it: on the error, on
 * its `cause` (fetch's TypeError), or on one of its `errors` (an AggregateError of the addresses
 * tried).
 */
export function networkErrorCode(err: unknown, depth = 0): string | undefined {
  const e = err as FailureLike | null | undefined;
  if (e === null || typeof e !== 'object' || depth > 3) return undefined;
  if (typeof e.code === 'string' && NETWORK_ERROR_CODES.has(e.code)) return e.code;
  const nested = [e.cause, ...(Array.isArray(e.errors) ? e.errors : [])];
  for (const inner of nested) {
    const code = networkErrorCode(inner, depth + 1);
    if (code) return code;
  }
  return undefined;
}

/** The connection could not be made or broke. */
export function isNetworkError(err: unknown): boolean {
  return networkErrorCode(err) !== undefined;
}

/** No connection was made, so the request never reached the server. */
export function neverSent(err: unknown): boolean {
  const code = networkErrorCode(err);
  return code !== undefined && NEVER_SENT_CODES.has(code);
}

/**
 * `throttled`: the service asks us to slow down (429). `unavailable`: it cannot be reached or
 * failed on its side (503). `other`: anything else, which says something about the request or
 * this code and is not retried.
 */
export type FailureKind = 'throttled' | 'unavailable' | 'other';

/**
 * What a failure of a call to AWS (or any service) means.
 *
 * @example
 * classifyFailure(Object.assign(new Error('getaddrinfo'), { code: 'ENOTFOUND' })) // 'unavailable'
 */
export function classifyFailure(err: unknown): FailureKind {
  const e = err as FailureLike | null | undefined;
  const name = typeof e?.name === 'string' ? e.name : '';
  if (THROTTLING_NAMES.has(name)) return 'throttled';
  if (UNAVAILABLE_NAMES.has(name) || isNetworkError(err)) return 'unavailable';
  // The AWS SDK marks transient failures it knows of, and a 5xx is the service's own failure.
  if (e?.$retryable) return 'unavailable';
  const status = e?.$metadata?.httpStatusCode;
  if (typeof status === 'number' && status >= 500) return 'unavailable';
  return 'other';
}

/** Worth another try after a jittered wait: throttling or unavailability. */
export function isRetryableFailure(err: unknown): boolean {
  return classifyFailure(err) !== 'other';
}
