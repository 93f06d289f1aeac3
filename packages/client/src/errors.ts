/**
 * Errors of the Coffer client. Every error the server answers keeps the server's stable `code`
 * (`not_found`, `forbidden`, `cas_conflict`…) and its HTTP status; a subclass per family lets
 * callers write `if (err instanceof CofferNotFoundError)` instead of comparing strings.
 *
 * Messages come from the server (fixed sentences, never a value) or are fixed here: an error never
 * carries a secret value, a token or a signature.
 */
export class CofferClientError extends Error {
  constructor(
    /** The server's stable error code, or a client-side one (`unreachable`, `timeout`, `bad_response`). */
    readonly code: string,
    /** The HTTP status, 0 when no response arrived. */
    readonly status: number,
    message: string,
    /** The server's request id (also in the audit record), when there was a response. */
    readonly requestId?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** 404 `not_found`: no such secret or version, or one the caller may not see (same answer). */
export class CofferNotFoundError extends CofferClientError {}
/** 403 `forbidden`: the caller may see the secret but not do this to it. */
export class CofferForbiddenError extends CofferClientError {}
/** 401 `unauthenticated`: no credentials, or credentials the server refused. */
export class CofferUnauthenticatedError extends CofferClientError {}
/** 409 `cas_conflict` or `secret_deleted`: the secret is not in the state the request expected. */
export class CofferConflictError extends CofferClientError {}
/** 400/413/415: the server refused the input (`invalid_path`, `value_too_large`…). */
export class CofferInvalidRequestError extends CofferClientError {}
/** 429 `throttled`: retried by the client before it surfaces. */
export class CofferThrottledError extends CofferClientError {}
/** 503 (`audit_unavailable`, `key_store_unavailable`, `storage_unavailable`): retried first. */
export class CofferUnavailableError extends CofferClientError {}
/** 500 `integrity_error`: a stored value failed authentication on the server. Never retried. */
export class CofferIntegrityError extends CofferClientError {}
/** No response: the server could not be reached, or did not answer in time (`unreachable`, `timeout`). */
export class CofferNetworkError extends CofferClientError {}

type ErrorClass = new (
  code: string,
  status: number,
  message: string,
  requestId?: string,
) => CofferClientError;

const BY_CODE: Readonly<Record<string, ErrorClass>> = {
  not_found: CofferNotFoundError,
  forbidden: CofferForbiddenError,
  unauthenticated: CofferUnauthenticatedError,
  cas_conflict: CofferConflictError,
  secret_deleted: CofferConflictError,
  throttled: CofferThrottledError,
  audit_unavailable: CofferUnavailableError,
  key_store_unavailable: CofferUnavailableError,
  storage_unavailable: CofferUnavailableError,
  integrity_error: CofferIntegrityError,
  unreachable: CofferNetworkError,
  timeout: CofferNetworkError,
};

const BY_STATUS: Readonly<Record<number, ErrorClass>> = {
  400: CofferInvalidRequestError,
  401: CofferUnauthenticatedError,
  403: CofferForbiddenError,
  404: CofferNotFoundError,
  409: CofferConflictError,
  413: CofferInvalidRequestError,
  415: CofferInvalidRequestError,
  429: CofferThrottledError,
  503: CofferUnavailableError,
};

/** The typed error for a server code (or, for a code this client does not know, the status). */
export function clientError(
  code: string,
  status: number,
  message: string,
  requestId?: string,
): CofferClientError {
  const Class = BY_CODE[code] ?? BY_STATUS[status] ?? CofferClientError;
  return new Class(code, status, message, requestId);
}

/**
 * Failures that say nothing about the secret itself, only that the service could not answer now.
 * The cache serves a stale value through these (never through `not_found`, `forbidden` or
 * `unauthenticated`, which may mean the secret was deleted or the caller revoked).
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof CofferNetworkError || err instanceof CofferThrottledError) return true;
  return err instanceof CofferClientError && err.status >= 500 && !(err instanceof CofferIntegrityError);
}
