import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  PutItemCommand,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { chainIndexKey, checkpointKey, recordKey } from './keys.js';
import type { AuditRecord, ChainStartRecord, Checkpoint } from './record.js';

/**
 * The append-only audit writer. It can only create items: every write is a Put conditioned on the
 * item not existing, so nothing already written is ever overwritten, and this module has no code
 * path that updates or deletes (a test reads this file to keep it so). Removing records needs
 * table-level rights that the API's role does not have (see docs/audit.md).
 */

/** Condition of every audit write: a sequence number, chain or checkpoint is taken once, ever. */
const NEVER_WRITTEN = 'attribute_not_exists(pk)';

/** The sequence number (of a record or a checkpoint) is already taken. */
export class AuditSlotTaken extends Error {
  constructor() {
    super('audit slot already written');
    this.name = 'AuditSlotTaken';
  }
}

/**
 * An audit item as `marshall(…, { removeUndefinedValues: true })` makes it (test/unit/
 * audit-item.test.ts compares the two), written out for the JSON-shaped values records hold:
 * this runs for every request, and the generic converter was a visible part of a read's CPU.
 * Anything else (a class instance, a bigint, a set, bytes) still goes through `marshall`.
 */
export function auditItem(key: { pk: string; sk: string }, body: object): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {};
  const fields = { ...body, ...key } as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    const value = fields[name];
    if (value !== undefined) item[name] = attributeOf(value);
  }
  return item;
}

function attributeOf(value: unknown): AttributeValue {
  switch (typeof value) {
    case 'string':
      return { S: value };
    case 'boolean':
      return { BOOL: value };
    case 'number':
      if (Number.isFinite(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER) return { N: String(value) };
      break;
    case 'object':
      if (value === null) return { NULL: true };
      if (Array.isArray(value)) {
        const list: AttributeValue[] = [];
        for (const v of value) if (v !== undefined) list.push(attributeOf(v));
        return { L: list };
      }
      if (Object.getPrototypeOf(value) === Object.prototype) {
        const map: Record<string, AttributeValue> = {};
        const record = value as Record<string, unknown>;
        for (const name of Object.keys(record)) {
          const v = record[name];
          if (v !== undefined) map[name] = attributeOf(v);
        }
        return { M: map };
      }
      break;
  }
  // The generic converter: its conversion, or its error, for what the records never hold.
  return marshall({ value }, { removeUndefinedValues: true }).value as AttributeValue;
}

export class AuditWriter {
  constructor(
    private readonly client: DynamoDBClient,
    readonly table: string,
  ) {}

  /** The record as one item of a change's own TransactWriteItems (brief §3). */
  recordPut(record: AuditRecord): TransactWriteItem {
    return {
      Put: {
        TableName: this.table,
        Item: auditItem(recordKey(record.chain, record.seq), record),
        ConditionExpression: NEVER_WRITTEN,
      },
    };
  }

  /** Appends one record; resolves once it is durable. */
  async append(record: AuditRecord): Promise<void> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: auditItem(recordKey(record.chain, record.seq), record),
          ConditionExpression: NEVER_WRITTEN,
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new AuditSlotTaken();
      throw err;
    }
  }

  /** Writes a chain's certificate record and its index entry together, or neither. */
  async startChain(genesis: ChainStartRecord): Promise<void> {
    try {
      await this.client.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            this.recordPut(genesis),
            {
              Put: {
                TableName: this.table,
                Item: auditItem(chainIndexKey(genesis.notAfter, genesis.chain), {
                  type: 'chain-index',
                  chain: genesis.chain,
                  notAfter: genesis.notAfter,
                  startedAt: genesis.time,
                }),
                ConditionExpression: NEVER_WRITTEN,
              },
            },
          ],
        }),
      );
    } catch (err) {
      if (
        err instanceof TransactionCanceledException &&
        (err.CancellationReasons ?? []).some((r) => r.Code === 'ConditionalCheckFailed')
      ) {
        throw new AuditSlotTaken();
      }
      throw err;
    }
  }

  async putCheckpoint(checkpoint: Checkpoint): Promise<void> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: auditItem(checkpointKey(checkpoint.seq), checkpoint),
          ConditionExpression: NEVER_WRITTEN,
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new AuditSlotTaken();
      throw err;
    }
  }
}
