import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import type { KmsKeys } from '../lib/compose.js';
import type { RotatorInvoker, RotatorSettings } from '../lib/secrets/rotators/invoker.js';
import { useLeanTransport } from '../lib/store/dynamo-lean.js';
import { FIELD_HMAC_LABEL, type LambdaSettings } from './env.js';

/*
 * The AWS adapters every Coffer function shares, named from the environment's settings: the
 * composition root (lib/compose.ts) builds them.
 */

/**
 * The lean transport's waits against DynamoDB (lib/store/dynamo-lean.ts): answers come in
 * milliseconds, so a connection or answer this late is an outage, and the request fails as 503
 * rather than hold its Lambda until API Gateway gives up at 29 s.
 */
export const AWS_DYNAMODB_TIMEOUTS = { connectionTimeoutMs: 3_000, requestTimeoutMs: 10_000 };

/** The API's DynamoDB client: the SDK's defaults, with the read path's calls on the lean transport. */
export function defaultDynamoClient(): DynamoDBClient {
  return useLeanTransport(new DynamoDBClient({}), AWS_DYNAMODB_TIMEOUTS);
}

/** The KMS client of a function: the adapters retry KMS themselves (jittered, with error mapping), so the SDK must not. */
export function defaultKmsClient(): KMSClient {
  return new KMSClient({ maxAttempts: 1 });
}

/** Where the keys are in AWS: the data key, older data keys, the root audit key and the field HMAC key. */
export function kmsKeys(settings: LambdaSettings, client: KMSClient): KmsKeys {
  return {
    kind: 'kms',
    client,
    keyId: settings.secretsKeyArn,
    previousKeyIds: settings.previousSecretsKeyArns,
    rootKeyArns: settings.rootKeyArns ?? [],
    // Every root key must be in the stack's account: the secrets key's.
    account: settings.secretsKeyArn.split(':')[4] ?? '',
    auditKeyId: settings.auditKeyArn,
    ...(settings.fieldHmacKeyArn
      ? { fieldHmac: { keyId: settings.fieldHmacKeyArn, label: FIELD_HMAC_LABEL } }
      : {}),
  };
}

/** Audit lines go to stdout, one JSON line each, so that CloudWatch Logs holds a second copy. */
export function stdoutSink(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * The external rotators a function calls: the Lambda functions on the allow-list (CDK context
 * `rotatorLambdaArns`). The invoker is loaded on its first call: rotations through a Lambda are
 * rare, so the Lambda client stays out of the cold start. With an empty allow-list there is no
 * invoker, and naming a Lambda rotator is refused.
 */
export function lambdaRotators(allowedArns: readonly string[] | undefined): RotatorSettings {
  const arns = allowedArns ?? [];
  return { lambda: { allowedArns: arns, ...(arns.length > 0 ? { invoker: lazyLambdaInvoker() } : {}) } };
}

function lazyLambdaInvoker(): RotatorInvoker {
  let loaded: Promise<RotatorInvoker> | undefined;
  return {
    invoke: async (rotator, call, timeoutMs) => {
      loaded ??= import('./rotator-lambda.js').then((m) => new m.LambdaRotatorInvoker());
      return (await loaded).invoke(rotator, call, timeoutMs);
    },
  };
}
