import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mapStorageError } from './storage-errors.js';

/**
 * The secrets table and the client that reaches it, shared by the store, the list walker and the
 * purge. `send` turns SDK failures into domain errors (throttling, storage unavailable).
 */
export class TableClient {
  constructor(
    readonly client: DynamoDBClient,
    readonly table: string,
  ) {}

  async send<T>(command: object): Promise<T> {
    try {
      return (await this.client.send(command as never)) as T;
    } catch (err) {
      throw mapStorageError(err);
    }
  }
}
