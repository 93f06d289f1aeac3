import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { composePurger } from '../lib/compose.js';
import { describeError, jsonLogger, type Logger } from '../lib/log.js';
import type { LambdaSettings } from './env.js';

/**
 * The scheduled purge: removes soft-deleted secrets whose recovery window has ended
 * (lib/secrets/purger.ts). It serves no request, so it has no authorizer and writes no request
 * record; it works on the store alone and never reads or unwraps a value.
 */
export function purgeHandler(
  settings: LambdaSettings,
  deps: { dynamo?: DynamoDBClient; logger?: Logger; now?: () => Date } = {},
): () => Promise<{ purged: number }> {
  const logger = deps.logger ?? jsonLogger();
  const purger = composePurger({
    dynamo: deps.dynamo ?? new DynamoDBClient({}),
    tables: settings.tables,
    ...(deps.now ? { now: deps.now } : {}),
  });
  return async () => {
    try {
      const purged = await purger.purgeExpired();
      logger.info('purge finished', { purged });
      return { purged };
    } catch (err) {
      logger.error('purge failed', describeError(err));
      throw err;
    }
  };
}
