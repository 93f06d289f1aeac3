import type { ErrorCode } from '../packages/client/src/error-registry.js';

/**
 * Domain errors. Each carries a stable `code` that clients and policies can rely on; every code
 * is a row of the error registry (packages/client/src/error-registry.ts), which gives its HTTP
 * status, client class and CLI exit code. A subclass with an unregistered code does not compile.
 *
 * Messages are fixed sentences chosen by the code that throws them: they never embed a secret
 * value, a token, a data key or the reason a security check failed.
 */
export class CofferError extends Error {
  static readonly code: ErrorCode = 'internal';
  readonly code: ErrorCode;
  /** Extra fields that are safe to return to the caller (never secret material). */
  readonly details: Record<string, unknown> | undefined;

  constructor(message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
    this.code = (new.target as typeof CofferError).code;
    this.details = details;
  }
}

/** The request is malformed: path, body, query or header. */
export class InvalidRequestError extends CofferError {
  static override readonly code: ErrorCode = 'invalid_request';
}

/** The secret path breaks the path rules. */
export class InvalidPathError extends InvalidRequestError {
  static override readonly code = 'invalid_path';
}

/** A reused Idempotency-Key came with a different request. */
export class IdempotencyKeyReusedError extends InvalidRequestError {
  static override readonly code = 'idempotency_key_reused';
}

/** A text type was given bytes that are not UTF-8. */
export class ValueNotTextError extends InvalidRequestError {
  static override readonly code = 'value_not_text';
}

/**
 * The value does not fit its type. The message names the field and the rule, never the value.
 */
export class InvalidValueError extends InvalidRequestError {
  static override readonly code = 'invalid_value';
}

/** The public key or certificate of a value is not its private key's. */
export class KeyMismatchError extends InvalidRequestError {
  static override readonly code = 'key_mismatch';
}

/** The request body is larger than the server accepts. */
export class PayloadTooLargeError extends CofferError {
  static override readonly code: ErrorCode = 'payload_too_large';
}

/** The secret value is larger than 64 KiB. */
export class ValueTooLargeError extends PayloadTooLargeError {
  static override readonly code = 'value_too_large';
}

/** No credentials, or credentials that did not verify. Always the same sentence. */
export class UnauthenticatedError extends CofferError {
  static override readonly code: ErrorCode = 'unauthenticated';
  constructor() {
    super('authentication required');
  }
}

/**
 * The token names a trusted issuer whose identity provider cannot be reached, and Coffer holds no
 * key set of it young enough to verify with (never fetched since start, or older than the
 * issuer's `jwksMaxStaleSeconds`). A 503 rather than the 401 sentence: the token was not found
 * wrong, it could not be checked, and the caller should retry rather than log in again. It is an
 * UnauthenticatedError all the same: the request is not authenticated.
 */
export class IdentityProviderUnavailableError extends UnauthenticatedError {
  static override readonly code: ErrorCode = 'identity_provider_unavailable';
  constructor() {
    super();
    this.message = 'identity provider unavailable; the token cannot be verified now';
  }
}

/** The caller is known but may not do this. */
export class ForbiddenError extends CofferError {
  static override readonly code = 'forbidden';
  constructor() {
    super('access denied');
  }
}

/**
 * The principal is revoked (by id, by group or for tokens issued before a cutoff). Decided before
 * Cedar: no permit overrides it.
 */
export class RevokedError extends CofferError {
  static override readonly code = 'revoked';
  constructor() {
    super('access revoked');
  }
}

/** No such secret or version (also the answer for secrets the caller may not see). */
export class NotFoundError extends CofferError {
  static override readonly code = 'not_found';
  constructor(message = 'secret not found') {
    super(message);
  }
}

/** Check-and-set failed: the secret's latest version is not the one the caller expected. */
export class CasConflictError extends CofferError {
  static override readonly code = 'cas_conflict';
}

/** The secret is soft-deleted: restore it (or wait for the purge) before writing to it. */
export class SecretDeletedError extends CofferError {
  static override readonly code = 'secret_deleted';
}

/** Stored data failed authentication: it was altered, moved or swapped. No detail on purpose. */
export class IntegrityError extends CofferError {
  static override readonly code = 'integrity_error';
  constructor() {
    super('stored data failed an integrity check');
  }
}

/** The audit record could not be written, so the request was not served (fail closed). */
export class AuditUnavailableError extends CofferError {
  static override readonly code = 'audit_unavailable';
  /** Why the record could not be written (for the operational log only, never the caller). */
  override readonly cause: unknown;
  constructor(cause?: unknown) {
    super('audit log unavailable; request not served');
    this.cause = cause;
  }
}

/** The key store (KMS, CloudHSM) cannot serve the request right now. */
export class KeyStoreUnavailableError extends CofferError {
  static override readonly code = 'key_store_unavailable';
  constructor() {
    super('key store unavailable');
  }
}

/**
 * A write without `cas` kept losing to concurrent writers past its bounded retries. Retryable: it
 * asked for no check, so sending it again is what the server itself did.
 */
export class WriteContentionError extends CofferError {
  static override readonly code = 'write_contention';
  constructor() {
    super('too many concurrent writes to this secret; retry later');
  }
}

/** The storage engine throttled or is unreachable. */
export class ThrottledError extends CofferError {
  static override readonly code = 'throttled';
  constructor() {
    super('too many requests; retry later');
  }
}

/** Configuration is invalid; raised at start, never per request. */
export class ConfigError extends CofferError {
  static override readonly code = 'config_error';
}

/** The `issuer` of a certificate is not a certificate secret whose certificate is a CA. */
export class NotACaError extends InvalidRequestError {
  static override readonly code = 'not_a_ca';
  constructor() {
    super('the issuer is not a certificate secret holding a CA certificate and its key');
  }
}

/** A certificate asked of a CA for longer than the CA may issue. */
export class ValidityTooLongError extends InvalidRequestError {
  static override readonly code = 'validity_too_long';
  constructor(maxValidityDays: number) {
    super(`this CA issues certificates valid for at most ${maxValidityDays} days`, { maxValidityDays });
  }
}

/** A certificate asked of a CA with a name none of the CA's allowed patterns match. */
export class NameNotAllowedError extends CofferError {
  static override readonly code = 'name_not_allowed';
  constructor(name: string) {
    super('this CA may not issue a certificate for this name', { name });
  }
}

/**
 * A CA certificate asked of a CA with limits (allowed names, maximum validity). Whoever holds the
 * new CA's key, as its writer may read it, could sign outside those limits: such a CA issues leaves only.
 */
export class CaNotAllowedError extends CofferError {
  static override readonly code = 'ca_not_allowed';
  constructor() {
    super('this CA has limits on what it issues and does not issue CA certificates');
  }
}

/** A rotation policy named a rotator this installation does not call (docs/rotation.md). */
export class RotatorNotAllowedError extends InvalidRequestError {
  static override readonly code = 'rotator_not_allowed';
}

/**
 * An external rotator failed or timed out at `step`. `reason` is one of a few fixed words (never
 * the rotator's answer, which could hold anything); `current` was not touched.
 */
export class RotationStepFailedError extends CofferError {
  static override readonly code = 'rotation_step_failed';
  constructor(
    readonly step: RotatorStepName,
    readonly version: number,
    readonly reason: RotatorFailure,
  ) {
    super(`the rotator failed at step ${step} (${reason}); the current version is unchanged`, {
      step,
      version,
      reason,
    });
  }
}

/** Why a rotator step failed, as fixed words. */
export type RotatorFailure =
  | 'timeout'
  | 'unreachable'
  | 'refused'
  | 'bad_status'
  | 'function_error'
  | 'unavailable';
type RotatorStepName = 'setSecret' | 'testSecret' | 'revertSecret';
