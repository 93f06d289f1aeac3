import { CofferError } from '../errors.js';

/** The one mapping from domain error codes to HTTP statuses. Unknown codes are 500. */
export const STATUS: Readonly<Record<string, number>> = {
  invalid_request: 400,
  invalid_path: 400,
  invalid_json: 400,
  invalid_cursor: 400,
  idempotency_key_reused: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  cas_conflict: 409,
  secret_deleted: 409,
  payload_too_large: 413,
  value_too_large: 413,
  unsupported_media_type: 415,
  throttled: 429,
  integrity_error: 500,
  internal: 500,
  audit_unavailable: 503,
  key_store_unavailable: 503,
  storage_unavailable: 503,
};

export function statusOf(code: string): number {
  return STATUS[code] ?? 500;
}

export interface ErrorBody {
  error: { code: string; message: string; requestId: string; [extra: string]: unknown };
}

/** The response body for an error. Internal errors say nothing about their cause. */
export function errorBody(err: unknown, requestId: string): { status: number; body: ErrorBody } {
  if (err instanceof CofferError) {
    const status = statusOf(err.code);
    if (status === 500) {
      return { status, body: { error: { code: err.code, message: err.message, requestId } } };
    }
    return {
      status,
      body: { error: { code: err.code, message: err.message, requestId, ...(err.details ?? {}) } },
    };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'internal error', requestId } } };
}
