import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { Authorizer, Decision } from '../lib/authz/authorizer.js';
import { composeCoffer } from '../lib/compose.js';
import { describeError, jsonLogger, type Logger } from '../lib/log.js';
import { publishLifecycleMetrics } from '../lib/secrets/lifecycle-metrics.js';
import type { RotatorSettings } from '../lib/secrets/rotators/invoker.js';
import type { SecretService } from '../lib/secrets/service.js';
import { defaultKmsClient, kmsKeys, lambdaRotators, stdoutSink } from './aws.js';
import type { LambdaSettings } from './env.js';

/**
 * Decides nothing in favour of anyone: the rotation job serves no request, and the service's
 * scheduled rotation authorizes by the verified rotation policy in the head, not by Cedar. Should
 * anything in the job ever ask, the answer is no (fail closed).
 */
const JOB_AUTHORIZER: Authorizer = {
  policySetHash: 'rotation-job',
  authorize: (): Decision => ({ allowed: false, policyIds: [], errors: [] }),
};

/**
 * The scheduled rotation (EventBridge rule): rotates every secret whose rotation policy is due,
 * read from the due index (lib/store/keys.ts `ROT`, one Query, never a Scan), with the secret's
 * own generator (SecretService.rotateDue). Each rotation writes its signed audit record in its own
 * transaction. A failed rotation is recorded in the head and counted; any failure throws after the
 * run, so it shows in the function's Errors metric (alarmed) and is tried again by the next run.
 * After each run it publishes the lifecycle metrics (expiring certificates, overdue and failed
 * rotations; lib/secrets/lifecycle-metrics.ts), which the stack alarms on.
 */
export function rotationHandler(
  settings: LambdaSettings,
  deps: {
    dynamo?: DynamoDBClient;
    kms?: KMSClient;
    cloudwatch?: CloudWatchClient;
    logger?: Logger;
    now?: () => Date;
    /** Where audit records are copied as JSON lines. Default: stdout (CloudWatch Logs). */
    auditSink?: (line: string) => void;
    /** The external rotators the job calls. Default: the allow-listed Lambda functions. */
    rotators?: RotatorSettings;
  } = {},
): () => Promise<{ rotated: number; failed: number }> {
  const logger = deps.logger ?? jsonLogger();
  const cloudwatch = deps.cloudwatch ?? new CloudWatchClient({});
  const now = deps.now ?? (() => new Date());
  let service: Promise<SecretService> | undefined;
  const open = async (): Promise<SecretService> => {
    const coffer = await composeCoffer({
      dynamo: deps.dynamo ?? new DynamoDBClient({}),
      tables: settings.tables,
      ...(settings.installationId ? { installationId: settings.installationId } : {}),
      keys: kmsKeys(settings, deps.kms ?? defaultKmsClient()),
      audit: { kind: 'dynamo', writer: 'rotation-job', chains: 1, sink: deps.auditSink ?? stdoutSink },
      policy: { authorizer: JOB_AUTHORIZER },
      authn: { config: { issuers: [] } },
      connection: () => ({ sourceIp: 'internal' }),
      logger,
      ...(deps.now ? { now: deps.now } : {}),
      rotators: deps.rotators ?? lambdaRotators(settings.rotatorLambdaArns),
    });
    return coffer.service;
  };
  return async () => {
    service ??= open();
    // A failed start (KMS down) is retried by the next run, not remembered.
    const opened = await service.catch((err: unknown) => {
      service = undefined;
      throw err;
    });
    try {
      const result = await opened.rotateDue();
      logger.info('rotation finished', result);
      await publishLifecycleMetrics({
        service: opened,
        cloudwatch,
        failed: result.failed,
        ...(settings.expiryWarningSeconds !== undefined
          ? { expiryWarningSeconds: settings.expiryWarningSeconds }
          : {}),
        logger,
        now,
      });
      if (result.failed > 0) throw new Error(`${result.failed} rotation(s) failed`);
      return result;
    } catch (err) {
      logger.error('rotation failed', describeError(err));
      throw err;
    }
  };
}
