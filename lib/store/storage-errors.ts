import { CofferError, ThrottledError } from '../errors.js';

/** DynamoDB cannot be reached or failed internally: the request fails, nothing is assumed. */
export class StorageUnavailableError extends CofferError {
  static override readonly code = 'storage_unavailable';
  constructor() {
    super('storage unavailable');
  }
}

const THROTTLING = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'LimitExceededException',
]);

/** Turns SDK failures into domain errors; domain errors pass through unchanged. */
export function mapStorageError(err: unknown): Error {
  if (err instanceof CofferError) return err;
  const name = (err as { name?: string } | undefined)?.name ?? '';
  if (THROTTLING.has(name)) return new ThrottledError();
  if (
    name === 'InternalServerError' ||
    name === 'ServiceUnavailable' ||
    name === 'TimeoutError' ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes((err as NodeJS.ErrnoException)?.code ?? '')
  ) {
    return new StorageUnavailableError();
  }
  return err instanceof Error ? err : new Error('storage error');
}
