/**
 * Errors of the Coffer client. Every error the server answers keeps the server's stable `code`
 * (`not_found`, `forbidden`, `cas_conflict`…) and its HTTP status; a subclass per family lets
 * callers write `if (err instanceof CofferNotFoundError)` instead of comparing strings.
 *
 * Messages come from the server (fixed sentences, never a value) or are fixed here: an error never
 * carries a secret value, a token or a signature.
 */
import { type ClientErrorKind, ERRORS, type ErrorCode, type ErrorSpec, errorSpec } from './error-registry.js';

export class CofferClientError extends Error {
  /** The server's stable error code, or a client-side one (`unreachable`, `timeout`, `bad_response`). */
  readonly code: string;

  constructor(
    /** A registered code (error-registry.ts); codes from the wire go through `clientError`. */
    code: ErrorCode,
    /** The HTTP status, 0 when no response arrived. */
    readonly status: number,
    message: string,
    /** The server's request id (also in the audit record), when there was a response. */
    readonly requestId?: string,
  ) {
    super(message);
    this.name = new.target.name;
    this.code = code;
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
  code: ErrorCode,
  status: number,
  message: string,
  requestId?: string,
) => CofferClientError;

/** The class of each kind in the registry; a kind without a class here does not compile. */
const CLASS_OF: Readonly<Record<ClientErrorKind, ErrorClass>> = {
  base: CofferClientError,
  invalid: CofferInvalidRequestError,
  unauthenticated: CofferUnauthenticatedError,
  forbidden: CofferForbiddenError,
  notFound: CofferNotFoundError,
  conflict: CofferConflictError,
  throttled: CofferThrottledError,
  unavailable: CofferUnavailableError,
  integrity: CofferIntegrityError,
  network: CofferNetworkError,
};

/**
 * The class for a status, for codes this client does not know (a newer server's, a proxy's): the
 * kind every registered code of that status shares, else the base class (500 holds both
 * `integrity_error` and `internal`, so it says nothing by itself).
 */
const KIND_OF_STATUS: ReadonlyMap<number, ClientErrorKind> = (() => {
  const kinds = new Map<number, ClientErrorKind>();
  const mixed = new Set<number>();
  for (const spec of Object.values(ERRORS) as ErrorSpec[]) {
    if (spec.status === null) continue;
    const seen = kinds.get(spec.status);
    if (seen !== undefined && seen !== spec.client) mixed.add(spec.status);
    kinds.set(spec.status, spec.client);
  }
  for (const status of mixed) kinds.delete(status);
  return kinds;
})();

/**
 * The typed error for a code: the registry's class, or for a code this client does not know (or
 * one whose class is the base), the class of the status.
 */
export function clientError(
  code: string,
  status: number,
  message: string,
  requestId?: string,
): CofferClientError {
  const kind = errorSpec(code)?.client ?? 'base';
  const Class = CLASS_OF[kind === 'base' ? (KIND_OF_STATUS.get(status) ?? 'base') : kind];
  // A code from a newer server is kept as sent: callers compare it, the registry only types ours.
  return new Class(code as ErrorCode, status, message, requestId);
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
