import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceInUseException,
  ResourceNotFoundException,
} from '@aws-sdk/client-dynamodb';

export interface TableNames {
  /** Secret heads, versions, list index, deletion index, idempotency keys. */
  readonly secrets: string;
  /** Append-only audit records and checkpoints. */
  readonly audit: string;
}

async function exists(client: DynamoDBClient, name: string): Promise<boolean> {
  try {
    await client.send(new DescribeTableCommand({ TableName: name }));
    return true;
  } catch (err) {
    if (err instanceof ResourceNotFoundException) return false;
    throw err;
  }
}

async function create(client: DynamoDBClient, name: string): Promise<void> {
  try {
    await client.send(
      new CreateTableCommand({
        TableName: name,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    );
  } catch (err) {
    if (!(err instanceof ResourceInUseException)) throw err;
  }
  for (let i = 0; i < 100; i++) {
    const out = await client.send(new DescribeTableCommand({ TableName: name }));
    if (out.Table?.TableStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`table ${name} did not become ACTIVE`);
}

/**
 * Creates the tables if they are missing (local server and tests; in AWS the CDK stack owns
 * them). Both tables have the same key shape: `pk` (S) and `sk` (S).
 */
export async function ensureTables(client: DynamoDBClient, names: TableNames): Promise<void> {
  // Both at once: at a local start this is the first work of a JVM that has just come up.
  await Promise.all(
    [names.secrets, names.audit].map(async (name) => {
      if (!(await exists(client, name))) await create(client, name);
    }),
  );
}
