import {
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

const itemOf = (key: { pk: string; sk: string }, body: object) =>
  marshall({ ...body, ...key }, { removeUndefinedValues: true });

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
        Item: itemOf(recordKey(record.chain, record.seq), record),
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
          Item: itemOf(recordKey(record.chain, record.seq), record),
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
                Item: itemOf(chainIndexKey(genesis.notAfter, genesis.chain), {
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
          Item: itemOf(checkpointKey(checkpoint.seq), checkpoint),
          ConditionExpression: NEVER_WRITTEN,
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new AuditSlotTaken();
      throw err;
    }
  }
}
