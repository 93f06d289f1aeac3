import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { NoAuditTrail } from '../lib/audit/trail.js';
import { Envelope } from '../lib/crypto/envelope.js';
import { KmsKeyProvider } from '../lib/keys/kms.js';
import { describeError, jsonLogger, type Logger } from '../lib/log.js';
import { SecretService } from '../lib/secrets/service.js';
import { SecretsStore } from '../lib/store/secrets-store.js';
import { DenyAllAuthorizer } from './authorizer.js';
import type { LambdaSettings } from './env.js';

/**
 * The scheduled purge: removes soft-deleted secrets whose recovery window has ended
 * (SecretService.purgeExpired). It serves no request, so it authorizes nothing (deny-all) and
 * writes no request record; it never reads or unwraps a value.
 */
export function purgeHandler(
  settings: LambdaSettings,
  deps: { dynamo?: DynamoDBClient; logger?: Logger; now?: () => Date } = {},
): () => Promise<{ purged: number }> {
  const logger = deps.logger ?? jsonLogger();
  const service = new SecretService({
    store: new SecretsStore(deps.dynamo ?? new DynamoDBClient({}), settings.tables.secrets),
    // Required by the service; purging never touches a key.
    envelope: new Envelope(
      new KmsKeyProvider({ client: new KMSClient({ maxAttempts: 1 }), keyId: settings.secretsKeyArn }),
    ),
    authorizer: new DenyAllAuthorizer(),
    audit: new NoAuditTrail(),
    ...(deps.now ? { now: deps.now } : {}),
  });
  return async () => {
    try {
      const purged = await service.purgeExpired();
      logger.info('purge finished', { purged });
      return { purged };
    } catch (err) {
      logger.error('purge failed', describeError(err));
      throw err;
    }
  };
}
