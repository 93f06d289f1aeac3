import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import { type CheckpointJobResult, runCheckpointJob } from '../lib/audit/checkpoint-job.js';
import { openAuditRoot } from '../lib/compose.js';
import type { RootSigner } from '../lib/keys/provider.js';
import { jsonLogger, type Logger } from '../lib/log.js';
import { defaultKmsClient, kmsKeys, stdoutSink } from './aws.js';
import { AUDIT_METRIC_NAMESPACE, type LambdaSettings } from './env.js';

/**
 * The scheduled audit job: verifies the chains written since the last checkpoint and writes the
 * next root-signed checkpoint (lib/audit/checkpoint-job.ts), publishing its metrics. A failure
 * throws, so the run shows in the function's Errors metric (alarmed) and Lambda retries it.
 */
export function checkpointHandler(
  settings: LambdaSettings,
  deps: { dynamo?: DynamoDBClient; kms?: KMSClient; cloudwatch?: CloudWatchClient; logger?: Logger } = {},
): () => Promise<CheckpointJobResult> {
  const logger = deps.logger ?? jsonLogger();
  const keys = kmsKeys(settings, deps.kms ?? defaultKmsClient());
  const dynamo = deps.dynamo ?? new DynamoDBClient({});
  const cloudwatch = deps.cloudwatch ?? new CloudWatchClient({});
  // The root signer is the one the API's writers are certified by, named by the same key settings.
  let root: Promise<RootSigner> | undefined;
  return async () => {
    root ??= openAuditRoot(keys, logger);
    return runCheckpointJob({
      dynamo,
      table: settings.tables.audit,
      root: await root,
      cloudwatch,
      metricNamespace: AUDIT_METRIC_NAMESPACE,
      logger,
      sink: stdoutSink,
    });
  };
}
