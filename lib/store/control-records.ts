import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  type GetItemCommandOutput,
  PutItemCommand,
  QueryCommand,
  type QueryCommandInput,
  type QueryCommandOutput,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { canonicalJson, encodeFields } from '../crypto/canonical.js';
import { CasConflictError, IntegrityError } from '../errors.js';
import { requireMac, type StorageMacKey } from '../keys/storage-mac.js';
import type { ItemKey } from './keys.js';
import { mapStorageError } from './storage-errors.js';
import { TableClient } from './table-client.js';

/*
 * Authenticated control records: the small items that decide what Coffer does (which branch key
 * is active, the policy set, revocations, rotation settings, job cursors, whether legacy heads may
 * exist). A writer of the secrets table who holds no Coffer key must not be able to change one,
 * nor put an older one back. So each record carries
 *
 *   mac = HMAC-SHA256(storage key `mk`,
 *           encodeFields('coffer/control/v1', [binding, kind, id, generation, canonicalJson(payload)]))
 *
 * and a generation that only rises: a write names the generation it replaces (conditional put),
 * and a reader keeps the highest generation it has seen per (kind, id) and refuses any lower one,
 * an absent record included once one was seen. Audit checkpoints sign the current generations
 * (`generations()`), so a rollback between processes is caught by `coffer audit verify`.
 *
 * Layout: pk = CTL, sk = <kind>#<id> — one partition, so every generation is one Query.
 */

export const CONTROL_PK = 'CTL';
export const CONTROL_MAC_DOMAIN = 'coffer/control/v1';

/** A verified control record. */
export interface ControlRecord<T> {
  readonly kind: string;
  readonly id: string;
  /** Rises by one with every write; the first write is generation 1. */
  readonly generation: number;
  readonly payload: T;
}

/** Kinds and ids are plain names: they become part of a sort key. */
const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export const controlKey = (kind: string, id: string): ItemKey => ({ pk: CONTROL_PK, sk: `${kind}#${id}` });

/** A write lost a race: the record is no longer at the generation the writer read. */
export class ControlRecordConflict extends CasConflictError {
  constructor(
    readonly kind: string,
    readonly id: string,
  ) {
    super('the control record changed since it was read');
  }
}

export interface ControlRecordsOptions {
  readonly client: DynamoDBClient;
  /** The secrets table. */
  readonly table: string;
  readonly key: StorageMacKey;
  /** The stable installation id (as for heads and values). */
  readonly binding: string;
}

/**
 * Reads and writes authenticated control records. Keep one instance per process: its memory of
 * the highest generation seen per record is what refuses a rollback within the process.
 *
 * @example
 * const control = new ControlRecords({ client, table, key, binding });
 * const current = await control.get<{ active: string }>('branch-key', 'team-a');
 * await control.put('branch-key', 'team-a', { active: 'v2' }, current?.generation ?? 0);
 */
export class ControlRecords {
  private readonly db: TableClient;
  private readonly seen = new Map<string, number>();

  constructor(private readonly options: ControlRecordsOptions) {
    this.db = new TableClient(options.client, options.table);
  }

  /**
   * The record, verified; undefined if it was never written. IntegrityError when its MAC fails,
   * it names another kind or id, or its generation is lower than one this instance has seen
   * (an absent record counts as generation 0).
   */
  async get<T>(kind: string, id: string): Promise<ControlRecord<T> | undefined> {
    checkName(kind, id);
    // The floor is what was seen before this read was sent: a write this process made while the
    // read was in flight is newer than the read, not a rollback of it.
    const floor = this.seen.get(seenKey(kind, id)) ?? 0;
    const out = await this.db.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.options.table,
        Key: marshallKey(controlKey(kind, id)),
        ConsistentRead: true,
      }),
    );
    if (!out.Item) {
      if (floor > 0) throw new IntegrityError();
      return undefined;
    }
    const record = this.open<T>(out.Item, () => floor);
    if (record.kind !== kind || record.id !== id) throw new IntegrityError();
    this.note(record);
    return record;
  }

  /**
   * Raises this instance's memory of the generations seen to those a verified audit checkpoint
   * signed (`<kind>/<id>` → generation), so that a process that never read a record still refuses
   * it deleted or put back below what was signed. Unknown or malformed keys are ignored.
   */
  noteSigned(generations: Readonly<Record<string, number>>): void {
    for (const [key, generation] of Object.entries(generations)) {
      const at = key.indexOf('/');
      if (at <= 0 || !Number.isSafeInteger(generation) || generation < 1) continue;
      const kind = key.slice(0, at);
      const id = key.slice(at + 1);
      if (!NAME.test(kind) || !NAME.test(id)) continue;
      this.note({ kind, id, generation, payload: undefined });
    }
  }

  /**
   * Writes generation `expected + 1` of a record, if the stored one is still at `expected` (0:
   * absent). ControlRecordConflict when another writer got there first. `with` are more writes
   * (the change's audit record) committed in the same transaction, or not at all.
   */
  async put<T>(
    kind: string,
    id: string,
    payload: T,
    expected: number,
    with_: readonly TransactWriteItem[] = [],
  ): Promise<ControlRecord<T>> {
    checkName(kind, id);
    if (!Number.isInteger(expected) || expected < 0) throw new RangeError('expected generation');
    const record: ControlRecord<T> = { kind, id, generation: expected + 1, payload };
    const payloadJson = canonicalJson(payload);
    const mac = this.options.key.mac(this.bytes(kind, id, record.generation, payloadJson));
    const put = {
      TableName: this.options.table,
      Item: {
        ...marshallKey(controlKey(kind, id)),
        type: { S: 'control' },
        kind: { S: kind },
        id: { S: id },
        generation: { N: String(record.generation) },
        payload: { S: payloadJson },
        mk: { S: this.options.key.keyId },
        mac: { B: mac },
      },
      // Generations only rise: the first write needs an empty slot, every later one the
      // generation it read.
      ...(expected === 0
        ? { ConditionExpression: 'attribute_not_exists(pk)' }
        : {
            ConditionExpression: 'generation = :expected',
            ExpressionAttributeValues: { ':expected': { N: String(expected) } },
          }),
    };
    try {
      if (with_.length === 0) {
        await this.options.client.send(new PutItemCommand(put));
      } else {
        await this.options.client.send(
          new TransactWriteItemsCommand({ TransactItems: [{ Put: put }, ...with_] }),
        );
      }
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new ControlRecordConflict(kind, id);
      // The record's own condition is the first item: its failure is a lost race.
      if (
        err instanceof TransactionCanceledException &&
        err.CancellationReasons?.[0]?.Code === 'ConditionalCheckFailed'
      ) {
        throw new ControlRecordConflict(kind, id);
      }
      throw mapStorageError(err);
    }
    this.note(record);
    return record;
  }

  /**
   * Every record of one kind, verified (one Query on the control partition). IntegrityError when
   * any fails its MAC or went back, or one seen before is missing.
   */
  async list<T>(kind: string): Promise<ControlRecord<T>[]> {
    checkName(kind, 'x');
    const out: ControlRecord<T>[] = [];
    const found = new Set<string>();
    const floors = this.floors();
    let start: QueryCommandInput['ExclusiveStartKey'];
    do {
      const page = await this.db.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.options.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :kind)',
          ExpressionAttributeValues: { ':pk': { S: CONTROL_PK }, ':kind': { S: `${kind}#` } },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of page.Items ?? []) {
        const record = this.open<T>(item, (key) => floors.get(key) ?? 0);
        if (record.kind !== kind) throw new IntegrityError();
        this.note(record);
        found.add(seenKey(record.kind, record.id));
        out.push(record);
      }
      start = page.LastEvaluatedKey;
    } while (start);
    for (const [key, generation] of floors) {
      if (generation > 0 && key.startsWith(`${kind}/`) && !found.has(key)) throw new IntegrityError();
    }
    return out;
  }

  /**
   * The current generation of every control record, each verified (`<kind>/<id>` → generation),
   * for the audit checkpoints to sign. IntegrityError when any fails or went back.
   */
  async generations(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const floors = this.floors();
    for await (const item of this.allItems()) {
      const record = this.open<unknown>(item, (key) => floors.get(key) ?? 0);
      this.note(record);
      out[seenKey(record.kind, record.id)] = record.generation;
    }
    // A record seen before but missing now was deleted: a rollback to "never written".
    for (const [key, generation] of floors) {
      if (generation > 0 && out[key] === undefined) throw new IntegrityError();
    }
    return out;
  }

  /**
   * The stored generation of every control record, as stored and unverified (the storage
   * verifier compares them with the generations a checkpoint signed). Never for a decision.
   */
  async rawGenerations(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for await (const item of this.allItems()) {
      const sk = item.sk?.S ?? '';
      const at = sk.indexOf('#');
      out[`${sk.slice(0, at)}/${sk.slice(at + 1)}`] = Number(item.generation?.N);
    }
    return out;
  }

  /** Every control record item as stored, page by page (one partition: a Query, never a Scan). */
  private async *allItems(): AsyncGenerator<NonNullable<QueryCommandOutput['Items']>[number]> {
    let start: QueryCommandInput['ExclusiveStartKey'];
    do {
      const page = await this.db.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.options.table,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: CONTROL_PK } },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      yield* page.Items ?? [];
      start = page.LastEvaluatedKey;
    } while (start);
  }

  /** The generations seen so far, as a read about to be sent must not go below. */
  private floors(): ReadonlyMap<string, number> {
    return new Map(this.seen);
  }

  private open<T>(
    item: NonNullable<GetItemCommandOutput['Item']>,
    floorOf: (key: string) => number,
  ): ControlRecord<T> {
    const kind = item.kind?.S;
    const id = item.id?.S;
    const generation = Number(item.generation?.N);
    const payloadJson = item.payload?.S;
    if (kind === undefined || id === undefined || payloadJson === undefined) throw new IntegrityError();
    if (!Number.isInteger(generation) || generation < 1) throw new IntegrityError();
    // The key must name the record the MAC covers: a record copied to another slot fails.
    if (item.pk?.S !== CONTROL_PK || item.sk?.S !== controlKey(kind, id).sk) throw new IntegrityError();
    requireMac(this.options.key, item.mk?.S, this.bytes(kind, id, generation, payloadJson), item.mac?.B);
    if (generation < floorOf(seenKey(kind, id))) throw new IntegrityError();
    return { kind, id, generation, payload: JSON.parse(payloadJson) as T };
  }

  private note(record: ControlRecord<unknown>): void {
    const key = seenKey(record.kind, record.id);
    if (record.generation > (this.seen.get(key) ?? 0)) this.seen.set(key, record.generation);
  }

  private bytes(kind: string, id: string, generation: number, payloadJson: string): Buffer {
    return encodeFields(CONTROL_MAC_DOMAIN, [
      this.options.binding,
      kind,
      id,
      String(generation),
      payloadJson,
    ]);
  }
}

const seenKey = (kind: string, id: string) => `${kind}/${id}`;

function checkName(kind: string, id: string): void {
  if (!NAME.test(kind) || !NAME.test(id))
    throw new RangeError('control record kinds and ids are plain names');
}

function marshallKey(key: ItemKey) {
  return { pk: { S: key.pk }, sk: { S: key.sk } };
}
