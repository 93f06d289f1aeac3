import { randomBytes } from 'node:crypto';
import { type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { inject } from 'vitest';
import { localDynamoClient } from '../../lib/store/dynamo-client.js';
import { ensureTables, type TableNames } from '../../lib/store/tables.js';

/** Table names no other test uses, for the run's DynamoDB Local (not created yet). */
export function freshTableNames(label: string): TableNames {
  const suffix = randomBytes(4).toString('hex');
  return { secrets: `${label}-secrets-${suffix}`, audit: `${label}-audit-${suffix}` };
}

/** A client for the run's DynamoDB Local and fresh tables for one test file. */
export async function freshTables(label: string): Promise<{ client: DynamoDBClient; tables: TableNames }> {
  const client = localDynamoClient(inject('dynamodbEndpoint'));
  const tables = freshTableNames(label);
  await ensureTables(client, tables);
  return { client, tables };
}

/** Every item of a table, raw (attribute values as stored). Test helper only: the code never scans. */
export async function scanAll(client: DynamoDBClient, table: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let start: Record<string, never> | undefined;
  do {
    const out = await client.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    items.push(...(out.Items ?? []).map((i) => unmarshall(i)));
    start = out.LastEvaluatedKey as Record<string, never> | undefined;
  } while (start);
  return items;
}
