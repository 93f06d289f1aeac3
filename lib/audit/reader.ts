import {
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  type QueryCommandInput,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import {
  CHAIN_INDEX_PK,
  CHECKPOINT_PK,
  type ChainIndexEntry,
  recordKey,
  seqOfCheckpointKey,
  seqOfRecordKey,
} from './keys.js';

/** An item as stored, without its keys, and the sequence number its sort key claims. */
export interface StoredItem {
  readonly keySeq: number | undefined;
  readonly item: Record<string, unknown>;
}

function strip(raw: Record<string, unknown>): Record<string, unknown> {
  const { pk: _pk, sk: _sk, ...rest } = raw;
  return rest;
}

/**
 * Reads the audit table for the verifier, the checkpoint writer and the CLI. Queries only, with
 * consistent reads where a result must include what was just written.
 */
export class AuditReader {
  constructor(
    private readonly client: DynamoDBClient,
    readonly table: string,
  ) {}

  private async *query(input: Omit<QueryCommandInput, 'TableName'>): AsyncGenerator<Record<string, unknown>> {
    let start: QueryCommandInput['ExclusiveStartKey'];
    do {
      const out = await this.client.send(
        new QueryCommand({ TableName: this.table, ...input, ExclusiveStartKey: start }),
      );
      for (const raw of out.Items ?? []) yield unmarshall(raw);
      start = out.LastEvaluatedKey;
    } while (start);
  }

  async getRecord(chain: string, seq: number): Promise<Record<string, unknown> | undefined> {
    const out = await this.client.send(
      new GetItemCommand({
        TableName: this.table,
        Key: marshall(recordKey(chain, seq)),
        ConsistentRead: true,
      }),
    );
    return out.Item ? strip(unmarshall(out.Item)) : undefined;
  }

  /**
   * Chains whose `notAfter` is at or after `since` (all chains without it), by `notAfter`, oldest
   * first (newest first with `descending`).
   */
  async *chainIndex(since?: string, options: { descending?: boolean } = {}): AsyncGenerator<ChainIndexEntry> {
    const items = this.query({
      KeyConditionExpression: since ? 'pk = :pk AND sk >= :since' : 'pk = :pk',
      ExpressionAttributeValues: marshall({ ':pk': CHAIN_INDEX_PK, ...(since ? { ':since': since } : {}) }),
      ConsistentRead: true,
      ...(options.descending ? { ScanIndexForward: false } : {}),
    });
    for await (const item of items) {
      const sk = String(item.sk);
      const at = sk.lastIndexOf('#');
      // The key is what the checkpoint writer relies on; the verifier compares it with the certificate.
      yield { chain: sk.slice(at + 1), notAfter: sk.slice(0, at) };
    }
  }

  /** A chain's records from `fromSeq` on, in sequence order. */
  async *records(chain: string, fromSeq = 0): AsyncGenerator<StoredItem> {
    const items = this.query({
      KeyConditionExpression: 'pk = :pk AND sk >= :from',
      ExpressionAttributeValues: marshall({ ':pk': `C#${chain}`, ':from': recordKey(chain, fromSeq).sk }),
      ConsistentRead: true,
    });
    for await (const item of items) yield { keySeq: seqOfRecordKey(String(item.sk)), item: strip(item) };
  }

  /** A chain's last `limit` records, newest first. */
  async *latestRecords(chain: string, limit: number): AsyncGenerator<StoredItem> {
    const out = await this.client.send(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :r)',
        ExpressionAttributeValues: marshall({ ':pk': `C#${chain}`, ':r': 'R#' }),
        ScanIndexForward: false,
        Limit: limit,
        ConsistentRead: true,
      }),
    );
    for (const raw of out.Items ?? []) {
      const item = unmarshall(raw);
      yield { keySeq: seqOfRecordKey(String(item.sk)), item: strip(item) };
    }
  }

  /** The last record of a chain (its head), or undefined for an unknown chain. */
  async head(chain: string): Promise<StoredItem | undefined> {
    for await (const stored of this.latestRecords(chain, 1)) return stored;
    return undefined;
  }

  /** Checkpoints from `fromSeq` on, in order. */
  async *checkpoints(fromSeq = 0): AsyncGenerator<StoredItem> {
    const items = this.query({
      KeyConditionExpression: 'pk = :pk AND sk >= :from',
      ExpressionAttributeValues: marshall({
        ':pk': CHECKPOINT_PK,
        ':from': String(fromSeq).padStart(12, '0'),
      }),
      ConsistentRead: true,
    });
    for await (const item of items) yield { keySeq: seqOfCheckpointKey(String(item.sk)), item: strip(item) };
  }

  /** The newest `limit` checkpoints, newest first. */
  async latestCheckpoints(limit: number): Promise<StoredItem[]> {
    const out = await this.client.send(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: marshall({ ':pk': CHECKPOINT_PK }),
        ScanIndexForward: false,
        Limit: limit,
        ConsistentRead: true,
      }),
    );
    return (out.Items ?? []).map((raw) => {
      const item = unmarshall(raw);
      return { keySeq: seqOfCheckpointKey(String(item.sk)), item: strip(item) };
    });
  }

  /** DynamoDB's item count (refreshed about every six hours): only for a progress estimate. */
  async approximateItemCount(): Promise<number | undefined> {
    try {
      const out = await this.client.send(new DescribeTableCommand({ TableName: this.table }));
      return out.Table?.ItemCount;
    } catch {
      return undefined;
    }
  }
}
