import { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/**
 * Fixed credentials and region for DynamoDB Local. DynamoDB Local runs with `-sharedDb`, and
 * using fixed values means a developer's real AWS credentials in the environment neither reach
 * the local engine nor change which data it serves. (DynamoDB Local accepts only letters and
 * digits in the access key id.)
 */
export const LOCAL_DYNAMODB_CREDENTIALS = { accessKeyId: 'cofferlocal', secretAccessKey: 'cofferlocal' };
export const LOCAL_DYNAMODB_REGION = 'us-east-1';

/**
 * How long one attempt may take. The SDK sets no timeout of its own, so a connection that hangs
 * (a stopped engine, a dropped packet) would hold a request forever; with these, a request fails
 * as 503 `storage_unavailable` within about `maxAttempts × (connect + request)` plus backoff.
 * A loaded machine can take seconds for a transaction, hence not less.
 */
export const LOCAL_DYNAMODB_TIMEOUTS = {
  connectionTimeoutMs: 3_000,
  requestTimeoutMs: 10_000,
  maxAttempts: 3,
};

export function localDynamoClient(
  endpoint: string,
  timeouts: Partial<typeof LOCAL_DYNAMODB_TIMEOUTS> = {},
): DynamoDBClient {
  const t = { ...LOCAL_DYNAMODB_TIMEOUTS, ...timeouts };
  return new DynamoDBClient({
    endpoint,
    region: LOCAL_DYNAMODB_REGION,
    credentials: LOCAL_DYNAMODB_CREDENTIALS,
    maxAttempts: t.maxAttempts,
    requestHandler: {
      connectionTimeout: t.connectionTimeoutMs,
      requestTimeout: t.requestTimeoutMs,
      // Without it, smithy only warns when the request timeout passes and keeps waiting.
      throwOnRequestTimeout: true,
    },
  });
}
