import {
  DynamoDBClient,
  GetItemCommand,
  type TransactWriteItemsCommandInput,
} from '@aws-sdk/client-dynamodb';
import { useLeanTransport } from './dynamo-lean.js';

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

export interface LocalDynamoOptions extends Partial<typeof LOCAL_DYNAMODB_TIMEOUTS> {
  /** Waits for each transaction to reach the database file before answering (see below). */
  readonly commitBarrier?: boolean;
}

export function localDynamoClient(endpoint: string, options: LocalDynamoOptions = {}): DynamoDBClient {
  const { commitBarrier, ...timeouts } = options;
  const t = { ...LOCAL_DYNAMODB_TIMEOUTS, ...timeouts };
  const client = new DynamoDBClient({
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
  if (commitBarrier) addCommitBarrier(client);
  // The read path's calls (GetItem, BatchGetItem, PutItem) skip the SDK's pipeline.
  return useLeanTransport(client, t);
}

/**
 * DynamoDB Local answers a TransactWriteItems that spans tables before SQLite has committed it: its
 * commit is a job on the engine's one database queue, still waiting when the answer leaves. A Java
 * killed in that window loses a write Coffer has acknowledged (a version and its audit record; a
 * test killed Java after each of 20 writes and lost 14). Any later request that reads the database
 * runs behind that job on the same queue, so one GetItem of an absent key after each transaction
 * is a barrier: when it returns, the transaction is in the file. It costs one cheap call per write,
 * only against DynamoDB Local; DynamoDB itself commits before it answers.
 */
function addCommitBarrier(client: DynamoDBClient): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const out = await next(args);
      if (context.commandName === 'TransactWriteItemsCommand') {
        const first = (args.input as TransactWriteItemsCommandInput).TransactItems?.[0];
        const table =
          first?.Put?.TableName ??
          first?.Update?.TableName ??
          first?.Delete?.TableName ??
          first?.ConditionCheck?.TableName;
        if (table) {
          await client.send(
            new GetItemCommand({ TableName: table, Key: { pk: { S: '~commit-barrier' }, sk: { S: '~' } } }),
          );
        }
      }
      return out;
    },
    { step: 'initialize', name: 'cofferCommitBarrier' },
  );
}
