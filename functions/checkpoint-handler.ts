import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { type CheckpointJobResult, runCheckpointJob } from '../lib/audit/checkpoint-job.js';
import { KmsRootSigner } from '../lib/keys/kms.js';
import { jsonLogger, type Logger } from '../lib/log.js';
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
  const root = new KmsRootSigner({
    client: deps.kms ?? new KMSClient({ maxAttempts: 1 }),
    keyId: settings.auditKeyArn,
    logger,
  });
  const dynamo = deps.dynamo ?? new DynamoDBClient({});
  const cloudwatch = deps.cloudwatch ?? new CloudWatchClient({});
  return () =>
    runCheckpointJob({
      dynamo,
      table: settings.tables.audit,
      root,
      cloudwatch,
      metricNamespace: AUDIT_METRIC_NAMESPACE,
      logger,
      sink: (line) => process.stdout.write(`${line}\n`),
    });
}
