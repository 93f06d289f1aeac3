import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { onLeanCall, type StorageCallListener } from './dynamo-lean.js';

/**
 * Counts the calls a DynamoDB client sends, by operation (`GetItem`, `TransactWriteItems`, …):
 * the storage-call tests assert the count per request type, and the HTTP benchmark reports it.
 *
 * It sees both transports (observeStorageCalls): each attempt on the wire counts (a throttled call
 * retried once is two calls, as DynamoDB bills and sees them).
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
  /** Stops counting. */
  stop(): void;
}

let observers = 0;

/**
 * Tells `listener` of every call attempt `client` sends, whichever way it goes: through the SDK
 * (a middleware in its `finalizeRequest` step, below the retry middleware) or through the lean
 * transport of the read path (lib/store/dynamo-lean.ts), which bypasses the SDK's middleware.
 * Returns the function that stops it.
 */
export function observeStorageCalls(client: DynamoDBClient, listener: StorageCallListener): () => void {
  const name = `cofferStorageCallObserver${++observers}`;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      // The client names the operation without its `Command` suffix.
      listener(String(context.commandName ?? 'unknown').replace(/Command$/, ''), args.input);
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'low', name },
  );
  const stopLean = onLeanCall(client, listener);
  return () => {
    client.middlewareStack.remove(name);
    stopLean();
  };
}

export function countStorageCalls(client: DynamoDBClient): StorageCallCounter {
  let counts: Record<string, number> = {};
  const stop = observeStorageCalls(client, (name) => {
    counts[name] = (counts[name] ?? 0) + 1;
  });
  return {
    take() {
      const taken = counts;
      counts = {};
      return taken;
    },
    peek: () => ({ ...counts }),
    stop,
  };
}

/** The total of a set of counts. */
export const totalCalls = (counts: Readonly<Record<string, number>>): number =>
  Object.values(counts).reduce((a, b) => a + b, 0);
