import { httpStatusOf } from '../../packages/client/src/error-registry.js';
import { CofferError } from '../errors.js';

/** The HTTP status of a domain error code, from the error registry. Unknown codes are 500. */
export function statusOf(code: string): number {
  return httpStatusOf(code);
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
