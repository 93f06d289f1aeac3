import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import { composeKeyAdmin } from '../lib/compose.js';
import { ConfigError } from '../lib/errors.js';
import type { KeyAdmin } from '../lib/keys/key-admin.js';
import {
  DEFAULT_REWRAP_EVERY_SECONDS,
  rewrapTick,
  type ScheduledRewrap,
} from '../lib/keys/rewrap-schedule.js';
import { jsonLogger, type Logger } from '../lib/log.js';
import { defaultKmsClient, kmsKeys } from './aws.js';
import { ENV, type LambdaSettings } from './env.js';

/** Time left for saving the cursor and answering after the last page, in ms. */
const MARGIN_MS = 60_000;

/**
 * The scheduled re-wrap (docs/keys.md): run often (hourly), each run continues an unfinished pass
 * or starts a new one when `COFFER_REWRAP_EVERY_SECONDS` have passed since the last finished, and
 * stops a minute before the function's time limit with its cursor saved, so a pass of any size
 * finishes over several runs. It serves no caller: no authorizer, no request record; it never
 * decrypts a secret value.
 */
export function rewrapHandler(
  settings: LambdaSettings,
  deps: { dynamo?: DynamoDBClient; kms?: KMSClient; logger?: Logger } = {},
): (event?: unknown, context?: { getRemainingTimeInMillis?: () => number }) => Promise<ScheduledRewrap> {
  const logger = deps.logger ?? jsonLogger();
  if (!settings.fieldHmacKeyArn)
    throw new ConfigError(`environment variable ${ENV.fieldHmacKeyArn} is required`);
  const keys = kmsKeys(settings, deps.kms ?? defaultKmsClient());
  const dynamo = deps.dynamo ?? new DynamoDBClient({});
  let admin: Promise<KeyAdmin> | undefined;
  const open = () =>
    composeKeyAdmin(
      {
        dynamo,
        tables: settings.tables,
        keys,
        ...(settings.installationId ? { installationId: settings.installationId } : {}),
        ...(settings.keyCache ? { keyCache: settings.keyCache } : {}),
      },
      logger,
    );
  return async (_event, context) => {
    admin ??= open().catch((err: unknown) => {
      admin = undefined;
      throw err;
    });
    const remaining = context?.getRemainingTimeInMillis?.() ?? 5 * 60_000;
    try {
      const tick = await rewrapTick(await admin, {
        everySeconds: settings.rewrapEverySeconds ?? DEFAULT_REWRAP_EVERY_SECONDS,
        budgetMs: Math.max(1_000, remaining - MARGIN_MS),
      });
      logger.info('key re-wrap', {
        ran: tick.ran,
        scanned: tick.cursor?.scanned ?? 0,
        rewrapped: tick.cursor?.rewrapped ?? 0,
        done: tick.cursor?.done ?? true,
        destroyed: tick.destroyed.length,
      });
      return tick;
    } catch (err) {
      logger.error('key re-wrap failed', { name: err instanceof Error ? err.name : 'Error' });
      throw err;
    }
  };
}
