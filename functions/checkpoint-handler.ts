import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import {
  type CheckpointJobResult,
  type CheckpointStorage,
  runCheckpointJob,
} from '../lib/audit/checkpoint-job.js';
import { composeStorage, openAuditRoot } from '../lib/compose.js';
import { ConfigError } from '../lib/errors.js';
import type { RootSigner } from '../lib/keys/provider.js';
import { jsonLogger, type Logger } from '../lib/log.js';
import { migrateLegacyHeadsUnlessSigned } from '../lib/store/legacy-heads.js';
import { defaultKmsClient, kmsKeys, stdoutSink } from './aws.js';
import { AUDIT_METRIC_NAMESPACE, ENV, type LambdaSettings } from './env.js';

/**
 * The scheduled audit job: verifies the chains written since the last checkpoint and writes the
 * next root-signed checkpoint (lib/audit/checkpoint-job.ts), publishing its metrics. The checkpoint
 * signs the secrets table's control-record generations, and each run first makes sure legacy heads
 * are MAC'd (once per installation; afterwards one verified read). A failure throws, so the run
 * shows in the function's Errors metric (alarmed) and Lambda retries it.
 */
export function checkpointHandler(
  settings: LambdaSettings,
  deps: { dynamo?: DynamoDBClient; kms?: KMSClient; cloudwatch?: CloudWatchClient; logger?: Logger } = {},
): () => Promise<CheckpointJobResult> {
  const logger = deps.logger ?? jsonLogger();
  // The storage MAC key is derived from the field HMAC key, as in the API: without it no head or
  // control record can be verified, so the function refuses to start rather than sign nothing.
  if (!settings.fieldHmacKeyArn)
    throw new ConfigError(`environment variable ${ENV.fieldHmacKeyArn} is required`);
  const keys = kmsKeys(settings, deps.kms ?? defaultKmsClient());
  const dynamo = deps.dynamo ?? new DynamoDBClient({});
  const cloudwatch = deps.cloudwatch ?? new CloudWatchClient({});
  // The root signer is the one the API's writers are certified by, named by the same key settings.
  let root: Promise<RootSigner> | undefined;
  // One per warm instance: ControlRecords remembers the generations it has seen.
  let storage: Promise<CheckpointStorage> | undefined;
  const openStorage = async (): Promise<CheckpointStorage> => {
    const { store, control } = await composeStorage(
      {
        dynamo,
        tables: settings.tables,
        keys,
        ...(settings.installationId ? { installationId: settings.installationId } : {}),
      },
      logger,
    );
    return {
      generations: () => control.generations(),
      upkeep: async (signed) => {
        const result = await migrateLegacyHeadsUnlessSigned(store, control, signed);
        if (!result.alreadyDone) logger.info('legacy heads authenticated', { migrated: result.migrated });
      },
    };
  };
  return async () => {
    root ??= openAuditRoot(keys, logger);
    storage ??= openStorage();
    // A failed derivation (KMS down) is retried by the next run, not remembered.
    const opened = await storage.catch((err: unknown) => {
      storage = undefined;
      throw err;
    });
    return runCheckpointJob({
      dynamo,
      table: settings.tables.audit,
      root: await root,
      cloudwatch,
      metricNamespace: AUDIT_METRIC_NAMESPACE,
      logger,
      sink: stdoutSink,
      storage: opened,
    });
  };
}
