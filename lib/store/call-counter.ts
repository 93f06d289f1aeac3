import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/**
 * Counts the calls a DynamoDB client sends, by operation (`GetItem`, `TransactWriteItems`, …):
 * the storage-call tests assert the count per request type, and the HTTP benchmark reports it.
 *
 * It sits in the SDK's `finalizeRequest` step below the retry middleware, so each attempt on the
 * wire counts (a throttled call retried once is two calls, as DynamoDB bills and sees them).
 *
 * @example
 * const calls = countStorageCalls(client);
 * await app.request('/v1/secrets/a/b');
 * calls.take(); // { GetItem: 2, PutItem: 1 }
 */
export interface StorageCallCounter {
  /** The counts since the last `take` (or since counting began), and starts again from zero. */
  take(): Record<string, number>;
  /** The counts since the last `take`, left as they are. */
  peek(): Record<string, number>;
  /** Stops counting (removes the middleware). */
  stop(): void;
}

const MIDDLEWARE_NAME = 'cofferStorageCallCounter';

export function countStorageCalls(client: DynamoDBClient): StorageCallCounter {
  let counts: Record<string, number> = {};
  client.middlewareStack.add(
    (next, context) => async (args) => {
      // The client names the operation without its `Command` suffix.
      const name = String(context.commandName ?? 'unknown').replace(/Command$/, '');
      counts[name] = (counts[name] ?? 0) + 1;
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'low', name: MIDDLEWARE_NAME, override: true },
  );
  return {
    take() {
      const taken = counts;
      counts = {};
      return taken;
    },
    peek: () => ({ ...counts }),
    stop: () => {
      client.middlewareStack.remove(MIDDLEWARE_NAME);
    },
  };
}

/** The total of a set of counts. */
export const totalCalls = (counts: Readonly<Record<string, number>>): number =>
  Object.values(counts).reduce((a, b) => a + b, 0);
