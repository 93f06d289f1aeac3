import { classifyFailure } from '../../packages/client/src/failures.js';
import { CofferError, ThrottledError } from '../errors.js';

/** DynamoDB cannot be reached or failed internally: the request fails, nothing is assumed. */
export class StorageUnavailableError extends CofferError {
  static override readonly code = 'storage_unavailable';
  constructor() {
    super('storage unavailable');
  }
}

/**
 * Turns SDK failures into domain errors; domain errors pass through unchanged. Throttling is 429,
 * unavailability (a service failure, a timeout, a refused connection, a host name that does not
 * resolve) is 503; anything else stays as it is and becomes a bare 500.
 */
export function mapStorageError(err: unknown): Error {
  if (err instanceof CofferError) return err;
  switch (classifyFailure(err)) {
    case 'throttled':
      return new ThrottledError();
    case 'unavailable':
      return new StorageUnavailableError();
    default:
      return err instanceof Error ? err : new Error('storage error');
  }
}
