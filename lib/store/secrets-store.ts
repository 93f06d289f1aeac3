import {
  type AttributeValue,
  BatchGetItemCommand,
  type BatchGetItemCommandOutput,
  BatchWriteItemCommand,
  type BatchWriteItemCommandOutput,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  type GetItemCommandOutput,
  QueryCommand,
  type QueryCommandInput,
  type QueryCommandOutput,
  ScanCommand,
  type ScanCommandInput,
  type ScanCommandOutput,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { backoffDelay, retry } from '../../packages/client/src/retry.js';
import type { SealedValue } from '../crypto/envelope.js';
import { CasConflictError, IntegrityError, ThrottledError } from '../errors.js';
import { currentCopyOf, versionFromCopy, withValidCurrent } from './current-copy.js';
import { cursorAfter } from './cursor.js';
import { type HeadIntegrity, type StoredItem, sealHeadItem, verifyHeadItem } from './head-mac.js';
import {
  deletionToItem,
  headFromItem,
  headToItem,
  idempotencyFromItem,
  idempotencyToItem,
  type RotationDueEntry,
  rotationDueFromItem,
  rotationDueToItem,
  versionFromItem,
  versionToItem,
} from './item-codec.js';
import {
  currentKey,
  deletionKey,
  EXPIRY_PK,
  expiryKey,
  headKey,
  type ItemKey,
  idempotencyKey,
  ROTATION_PK,
  ROTATION_REQUEST_PK,
  rootKey,
  rotationDueKey,
  rotationRequestKey,
  VERSION_SK_PREFIX,
  versionKey,
  versionPartition,
} from './keys.js';
import { listHeads } from './list-walker.js';
import { expiredDeletions, purgeSecret } from './purge.js';
import type {
  CurrentRef,
  IdempotencyClaim,
  IdempotencyRecord,
  ListEntry,
  ListPage,
  SecretHead,
  StoredVersion,
  VersionMeta,
} from './records.js';
import { mapStorageError } from './storage-errors.js';
import { TableClient } from './table-client.js';

/** A head item exists and still names the version the caller based its change on. */
const HEAD_MATCHES = 'attribute_exists(pk) AND latest = :expected';
/** A version number is used once, ever. */
const VERSION_IS_NEW = 'attribute_not_exists(pk)';
/** An Idempotency-Key is claimed once per window (an expired claim may be taken over). */
const IDEMPOTENCY_UNCLAIMED = 'attribute_not_exists(pk) OR expiresAt < :now';

/** Which part of a change transaction failed its condition. */
export type ChangeFailure = 'head' | 'idempotency';

/** Raised by a change whose transaction was cancelled by a condition, saying which one. */
export class ChangeConditionFailed extends CasConflictError {
  constructor(readonly failed: ChangeFailure) {
    super('the secret changed since it was read');
  }
}

export interface StoreOptions {
  /** Attempts for a transaction cancelled by TransactionConflict before answering 409. */
  readonly transactionAttempts?: number;
  /** Upper bound of the jittered wait between those attempts, in ms. */
  readonly transactionBackoffMs?: number;
}

/**
 * How heads are authenticated. Without it (the scheduled purge, which decides nothing a table
 * writer could not do anyway: it deletes what the table says is deleted) every head read or write
 * fails closed with IntegrityError.
 */
export type StoreIntegrity = HeadIntegrity;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** BatchGetItem takes at most this many keys per call. */
const BATCH_GET_KEYS = 100;
/** Keys DynamoDB left unprocessed (throttling, response size) are asked for again, this often at most. */
const UNPROCESSED_RETRY = { attempts: 8, baseDelayMs: 20, maxDelayMs: 2560 } as const;

class UnprocessedKeys extends Error {}

/** A secret's head and its current item, as one BatchGetItem read them. */
export interface HeadRead {
  /** Verified; undefined when the secret does not exist. */
  readonly head?: SecretHead;
  /** The current item as stored, unverified: see `versionFromCopy`. */
  readonly copy?: StoredItem;
}

/** A version as it is to be written, with its sealed value. */
export type SealedVersion = StoredVersion & { sealed: SealedValue };

export interface PutVersionInput {
  readonly path: string;
  /** The head as read, or undefined when the secret is new. */
  readonly previous: SecretHead | undefined;
  readonly head: SecretHead;
  readonly version: SealedVersion;
  /** Versions that fall out of the max-versions window with this write. */
  readonly prune: readonly number[];
  readonly idempotency?: IdempotencyClaim;
  /** Items written in the same transaction (the change's audit record). */
  readonly extra?: readonly TransactWriteItem[];
}

/**
 * DynamoDB access for secrets. One adapter, the same code against DynamoDB and DynamoDB Local.
 * Every change is one TransactWriteItems; a cancellation by a condition becomes
 * ChangeConditionFailed naming the condition, one by TransactionConflict is retried with jitter
 * and then becomes a CAS conflict, never a 500. The key layout is in keys.ts, the item format in
 * item-codec.ts, listing in list-walker.ts and the purge in purge.ts.
 */
/** The key the readiness probe reads: no item is ever written there (see keys.ts for the layout). */
const READY_PROBE_KEY = { pk: 'READY', sk: 'READY' } as const;

const itemId = (key: ItemKey): string => `${key.pk}\n${key.sk}`;

/** The key of `getVersions`' answer for one version. */
export const versionId = (path: string, version: number): string => `${path}\n${version}`;

const sameRef = (a: CurrentRef, b: CurrentRef): boolean =>
  a.version === b.version && Buffer.from(a.digest).equals(Buffer.from(b.digest));

export class SecretsStore {
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly db: TableClient;

  constructor(
    readonly client: DynamoDBClient,
    readonly table: string,
    options: StoreOptions = {},
    private readonly integrity?: StoreIntegrity,
  ) {
    this.attempts = options.transactionAttempts ?? 4;
    this.backoffMs = options.transactionBackoffMs ?? 50;
    this.db = new TableClient(client, table);
  }

  /**
   * The installation id heads and values are bound to (the AAD, the KMS encryption context and
   * the head MACs name it, never the physical table, so a restored copy of the table reads).
   */
  get binding(): string {
    return this.integrity?.binding ?? this.table;
  }

  /** A secret's head, its MAC verified: IntegrityError when it fails, never an unverified head. */
  async getHead(path: string): Promise<SecretHead | undefined> {
    const item = await this.getHeadItem(path);
    return item ? this.openHead(item, path) : undefined;
  }

  /** The stored head item as it is, unverified (the purge; the legacy-head migration). */
  async getHeadItem(path: string): Promise<StoredItem | undefined> {
    const out = await this.db.send<GetItemCommandOutput>(
      new GetItemCommand({ TableName: this.table, Key: marshall(headKey(path)), ConsistentRead: true }),
    );
    return out.Item;
  }

  /** One page of heads without a MAC (the one-time legacy-head migration; never on a request). */
  async scanLegacyHeads(
    start: ScanCommandInput['ExclusiveStartKey'],
  ): Promise<{ items: StoredItem[]; next: ScanCommandInput['ExclusiveStartKey'] }> {
    const out = await this.db.send<ScanCommandOutput>(
      new ScanCommand({
        TableName: this.table,
        FilterExpression: 'begins_with(sk, :h) AND attribute_not_exists(mac)',
        ExpressionAttributeValues: { ':h': { S: 'H#' } },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    return { items: out.Items ?? [], next: out.LastEvaluatedKey };
  }

  /** Verifies a stored head item and decodes it. */
  openHead(raw: StoredItem, path?: string): SecretHead {
    if (!this.integrity) throw new IntegrityError();
    verifyHeadItem(this.integrity, raw);
    const item = unmarshall(raw);
    if (path !== undefined && item.path !== path) throw new IntegrityError();
    return headFromItem(item);
  }

  /**
   * One cheap read that proves the table answers (the readiness check): an eventually consistent
   * GetItem of a key no item ever has, projecting only its key. It returns nothing and decodes
   * nothing, so it cannot depend on any stored item's layout.
   */
  async ping(): Promise<void> {
    await this.db.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.table,
        Key: marshall(READY_PROBE_KEY),
        ProjectionExpression: 'pk',
      }),
    );
  }

  /**
   * The item a head is written as: the next revision, `mk` and `mac`. The revision counts up from
   * the previous head's, so it only rises while the head exists.
   */
  sealHead(next: SecretHead, previous: SecretHead | undefined): StoredItem {
    if (!this.integrity) throw new IntegrityError();
    const rev = (previous?.rev ?? 0) + 1;
    return sealHeadItem(
      this.integrity,
      marshall(headToItem({ ...withValidCurrent(next), rev }), { removeUndefinedValues: true }),
    );
  }

  /**
   * What a head says of the current item for `version` (set it as the head's `current` when that
   * version is or becomes current; the write that carries the head writes the item).
   */
  currentRef(path: string, version: SealedVersion): CurrentRef {
    return currentCopyOf(this.binding, path, version).ref;
  }

  /**
   * A head and its current item in one strongly consistent BatchGetItem. The two reads are not
   * isolated from a transaction committing between them, which is why a copy is only used when it
   * matches the head (`versionFromCopy`).
   */
  async getWithCurrent(path: string): Promise<HeadRead> {
    return (await this.getManyWithCurrent([path])).get(path) ?? {};
  }

  /** `getWithCurrent` for many paths, in as few BatchGetItem calls as the 100-key limit allows. */
  async getManyWithCurrent(paths: readonly string[]): Promise<Map<string, HeadRead>> {
    const keys = paths.flatMap((p) => [headKey(p), currentKey(p)]);
    const items = await this.batchGetItems(keys);
    const out = new Map<string, HeadRead>();
    for (const path of paths) {
      const rawHead = items.get(itemId(headKey(path)));
      const copy = items.get(itemId(currentKey(path)));
      out.set(path, {
        ...(rawHead ? { head: this.openHead(rawHead, path) } : {}),
        ...(copy ? { copy } : {}),
      });
    }
    return out;
  }

  /** The version `wanted` from a current item, or undefined when it may not serve it. */
  versionFromCopy(head: SecretHead, copy: StoredItem | undefined, wanted: number): StoredVersion | undefined {
    return versionFromCopy(this.binding, head, copy, wanted);
  }

  /** Several versions in BatchGetItem calls, each checked as `getVersion` checks one. */
  async getVersions(
    wanted: readonly { path: string; version: number }[],
  ): Promise<Map<string, StoredVersion>> {
    const items = await this.batchGetItems(wanted.map((w) => versionKey(w.path, w.version)));
    const out = new Map<string, StoredVersion>();
    for (const w of wanted) {
      const raw = items.get(itemId(versionKey(w.path, w.version)));
      if (!raw) continue;
      const item = unmarshall(raw);
      if (item.path !== w.path || Number(item.version) !== w.version) throw new IntegrityError();
      out.set(versionId(w.path, w.version), versionFromItem(item));
    }
    return out;
  }

  async getVersion(path: string, version: number): Promise<StoredVersion | undefined> {
    const out = await this.db.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.table,
        Key: marshall(versionKey(path, version)),
        ConsistentRead: true,
      }),
    );
    if (!out.Item) return undefined;
    const item = unmarshall(out.Item);
    // The stored identity must be the one asked for: a moved or edited item is tampering.
    if (item.path !== path || Number(item.version) !== version) throw new IntegrityError();
    return versionFromItem(item);
  }

  /** Version metadata, oldest first, without ciphertext or wrapped keys. */
  async listVersions(path: string): Promise<VersionMeta[]> {
    const versions: VersionMeta[] = [];
    let start: QueryCommandInput['ExclusiveStartKey'];
    do {
      const out = await this.db.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :v)',
          ExpressionAttributeValues: marshall({ ':pk': versionPartition(path), ':v': VERSION_SK_PREFIX }),
          ProjectionExpression: '#p, version, createdAt, createdBy, destroyed, kp, kid, vt',
          ExpressionAttributeNames: { '#p': 'path' },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const raw of out.Items ?? []) {
        const item = unmarshall(raw);
        if (item.path !== path) throw new IntegrityError();
        versions.push(versionFromItem(item));
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return versions;
  }

  async getIdempotency(scope: string, nowSeconds: number): Promise<IdempotencyRecord | undefined> {
    const out = await this.db.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.table,
        Key: marshall(idempotencyKey(scope)),
        ConsistentRead: true,
      }),
    );
    if (!out.Item) return undefined;
    const item = unmarshall(out.Item);
    if (Number(item.expiresAt) < nowSeconds) return undefined;
    return idempotencyFromItem(item);
  }

  /** Writes a new version and moves the head to it, in one transaction. */
  async putVersion(input: PutVersionInput): Promise<void> {
    const { path, previous, head, version } = input;
    const now = Math.floor(Date.now() / 1000);
    const items: TransactWriteItem[] = [];
    const index: ChangeFailure[] = [];
    items.push({
      Put: {
        TableName: this.table,
        Item: marshall(versionToItem(path, version), { removeUndefinedValues: true }),
        ConditionExpression: VERSION_IS_NEW,
      },
    });
    index.push('head');
    items.push({
      Put: {
        TableName: this.table,
        Item: this.sealHead(head, previous),
        ...(previous
          ? {
              // The head as read, metadata included: a concurrent retag between the read and this
              // write makes the write lose, so that it is re-read and re-authorized, never undone.
              ConditionExpression: `${HEAD_MATCHES} AND updatedAt = :updated AND attribute_not_exists(deletedAt)`,
              ExpressionAttributeValues: marshall({
                ':expected': previous.latest,
                ':updated': previous.updatedAt,
              }),
            }
          : { ConditionExpression: 'attribute_not_exists(pk)' }),
      },
    });
    index.push('head');
    for (const change of this.currentItemChanges(previous, head, version)) {
      items.push(change);
      index.push('head');
    }
    if (!previous) {
      // Idempotent: the root marker may already exist from another secret.
      items.push({ Put: { TableName: this.table, Item: marshall(rootKey(path)) } });
      index.push('head');
    }
    if (input.idempotency) {
      items.push({
        Put: {
          TableName: this.table,
          Item: marshall(idempotencyToItem(input.idempotency)),
          ConditionExpression: IDEMPOTENCY_UNCLAIMED,
          ExpressionAttributeValues: marshall({ ':now': now }),
        },
      });
      index.push('idempotency');
    }
    for (const v of input.prune) {
      items.push({ Delete: { TableName: this.table, Key: marshall(versionKey(path, v)) } });
      index.push('head');
    }
    for (const due of this.dueIndexChanges(previous, head)) {
      items.push(due);
      index.push('head');
    }
    for (const extra of input.extra ?? []) {
      items.push(extra);
      index.push('head');
    }
    await this.transact(items, index);
  }

  /**
   * Replaces the head (metadata change, soft delete, restore) if it still holds the version and
   * deletion state the caller read. `deletion` adds or removes the purge index entry.
   */
  async replaceHead(
    previous: SecretHead,
    next: SecretHead,
    options: {
      prune?: readonly number[];
      extra?: readonly TransactWriteItem[];
      /** The version `next` names a new current copy of (a revert, a finished rotation). */
      copy?: SealedVersion;
    } = {},
  ): Promise<void> {
    const items: TransactWriteItem[] = [];
    const values: Record<string, unknown> = { ':expected': previous.latest, ':updated': previous.updatedAt };
    let condition = `${HEAD_MATCHES} AND updatedAt = :updated`;
    if (previous.deletedAt) {
      condition += ' AND deletedAt = :deleted';
      values[':deleted'] = previous.deletedAt;
    } else {
      condition += ' AND attribute_not_exists(deletedAt)';
    }
    items.push({
      Put: {
        TableName: this.table,
        Item: this.sealHead(next, previous),
        ConditionExpression: condition,
        ExpressionAttributeValues: marshall(values),
      },
    });
    if (previous.deletedAt && previous.purgeAt && previous.purgeAt !== next.purgeAt) {
      items.push({
        Delete: {
          TableName: this.table,
          Key: marshall(deletionKey(previous.path, previous.purgeAt)),
        },
      });
    }
    if (next.deletedAt && next.purgeAt && next.purgeAt !== previous.purgeAt) {
      items.push({
        Put: {
          TableName: this.table,
          Item: marshall(deletionToItem({ path: next.path, purgeAt: next.purgeAt })),
        },
      });
    }
    items.push(...this.currentItemChanges(previous, next, options.copy));
    for (const v of options.prune ?? []) {
      items.push({ Delete: { TableName: this.table, Key: marshall(versionKey(next.path, v)) } });
    }
    items.push(...this.dueIndexChanges(previous, next));
    items.push(...(options.extra ?? []));
    await this.transact(
      items,
      items.map(() => 'head'),
    );
  }

  /** Erases the ciphertext and wrapped key of versions, keeping their metadata as `destroyed`. */
  async destroyVersions(
    previous: SecretHead,
    next: SecretHead,
    versions: readonly number[],
    extra: readonly TransactWriteItem[] = [],
  ): Promise<void> {
    const kept = withValidCurrent(next).current;
    // A destroyed value must not live on in a copy: its head drops the copy and the item goes.
    if (kept && versions.includes(kept.version)) throw new Error('a destroyed version keeps no current copy');
    const items: TransactWriteItem[] = versions.map((v) => ({
      Update: {
        TableName: this.table,
        Key: marshall(versionKey(previous.path, v)),
        UpdateExpression: 'SET destroyed = :t REMOVE ct, wk, iv',
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeValues: marshall({ ':t': true }),
      },
    }));
    items.push({
      Put: {
        TableName: this.table,
        Item: this.sealHead(next, previous),
        ConditionExpression: `${HEAD_MATCHES} AND updatedAt = :updated`,
        ExpressionAttributeValues: marshall({ ':expected': previous.latest, ':updated': previous.updatedAt }),
      },
    });
    items.push(...this.currentItemChanges(previous, next, undefined));
    items.push(...extra);
    await this.transact(
      items,
      items.map(() => 'head'),
    );
  }

  /** Deletes version items outside a transaction (pruning left over from a lowered maxVersions). */
  async deleteVersions(path: string, versions: readonly number[]): Promise<void> {
    for (let i = 0; i < versions.length; i += 25) {
      const chunk = versions.slice(i, i + 25);
      let requests = chunk.map((v) => ({ DeleteRequest: { Key: marshall(versionKey(path, v)) } }));
      for (let attempt = 0; requests.length > 0 && attempt < 8; attempt++) {
        const out = await this.db.send<BatchWriteItemCommandOutput>(
          new BatchWriteItemCommand({ RequestItems: { [this.table]: requests } }),
        );
        requests = (out.UnprocessedItems?.[this.table] ?? []) as typeof requests;
        if (requests.length > 0) await sleep(backoffDelay({ baseDelayMs: 20, maxDelayMs: 2560 }, attempt));
      }
    }
  }

  /**
   * Lists heads whose path starts with `prefix`. With `delimiter` ('/'), only one level: deeper
   * paths are rolled up into folders (like S3 common prefixes). Soft-deleted heads are returned;
   * the caller filters them. `limit` bounds the number of heads plus folders on the page.
   */
  async list(
    prefix: string,
    options: { delimiter?: string; limit: number; cursor?: string },
  ): Promise<ListPage> {
    return listHeads(this.db, prefix, options, (raw) => this.openHead(raw));
  }

  /**
   * A cursor that resumes a listing of `prefix` (with the same delimiter) right after `entry`, an
   * entry that listing returned. It names only that entry: a caller that filters pages can hand
   * it out without revealing the entries it filtered away.
   */
  cursorAfter(prefix: string, entry: ListEntry): string {
    return cursorAfter(prefix, entry);
  }

  /**
   * The due and expiry indexes follow the head in the head's own transaction: a due entry exists
   * exactly while a live (not soft-deleted) head has a rotation policy, at its `nextAt`; a request
   * entry while it has a request to be replaced by hand, at the request's time; an expiry
   * entry while a live head's current value is a certificate, at its `notAfter`.
   */
  private dueIndexChanges(previous: SecretHead | undefined, next: SecretHead): TransactWriteItem[] {
    const live = (h: SecretHead | undefined) => (h && !h.deletedAt ? h : undefined);
    return [
      ...this.indexChange(
        live(previous)?.rotation?.nextAt,
        live(next)?.rotation?.nextAt,
        (at) => rotationDueKey(next.path, at),
        (at) => rotationDueToItem({ path: next.path, nextAt: at }),
      ),
      ...this.indexChange(
        live(previous)?.rotationRequested?.at,
        live(next)?.rotationRequested?.at,
        (at) => rotationRequestKey(next.path, at),
        (at) => ({ ...rotationRequestKey(next.path, at), path: next.path, at }),
      ),
      ...this.indexChange(
        live(previous)?.typeInfo?.certificate?.notAfter,
        live(next)?.typeInfo?.certificate?.notAfter,
        (at) => expiryKey(next.path, at),
        (at) => ({ ...expiryKey(next.path, at), path: next.path, notAfter: at }),
      ),
    ];
  }

  private indexChange(
    before: string | undefined,
    after: string | undefined,
    key: (at: string) => { pk: string; sk: string },
    item: (at: string) => Record<string, unknown>,
  ): TransactWriteItem[] {
    if (before === after) return [];
    const items: TransactWriteItem[] = [];
    if (before !== undefined) items.push({ Delete: { TableName: this.table, Key: marshall(key(before)) } });
    if (after !== undefined) items.push({ Put: { TableName: this.table, Item: marshall(item(after)) } });
    return items;
  }

  /**
   * One page of a lifecycle index (`rotation`: the due index by nextAt; `requested`: requests to
   * replace by hand, by time; `expiry`: certificates by notAfter), entries at or before
   * `boundIso`, soonest first, after the sort key `after` (a page's `last`). One Query; `last` is
   * set while the index may hold more in range. Entries are hints.
   */
  async lifecycleIndexPage(
    index: 'rotation' | 'requested' | 'expiry',
    boundIso: string,
    options: { limit: number; after?: string },
  ): Promise<{ entries: { path: string; at: string; sk: string }[]; last?: string }> {
    const bound = `${boundIso}#~`;
    // A resumed page past the bound has nothing left (and DynamoDB refuses a start key out of range).
    if (options.after !== undefined && options.after >= bound) return { entries: [] };
    const pk = index === 'rotation' ? ROTATION_PK : index === 'requested' ? ROTATION_REQUEST_PK : EXPIRY_PK;
    const out = await this.db.send<QueryCommandOutput>(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND sk <= :bound',
        ExpressionAttributeValues: marshall({ ':pk': pk, ':bound': bound }),
        Limit: options.limit,
        ConsistentRead: true,
        ...(options.after !== undefined ? { ExclusiveStartKey: marshall({ pk, sk: options.after }) } : {}),
      }),
    );
    const entries = (out.Items ?? []).map((raw) => {
      const item = unmarshall(raw);
      return {
        path: String(item.path),
        at: String(index === 'rotation' ? item.nextAt : index === 'requested' ? item.at : item.notAfter),
        sk: String(item.sk),
      };
    });
    const last = out.LastEvaluatedKey ? String(unmarshall(out.LastEvaluatedKey).sk) : undefined;
    return { entries, ...(last !== undefined ? { last } : {}) };
  }

  /**
   * Secrets whose rotation is due at `nowIso` or before, oldest first: one Query of the due index
   * (never a Scan). Entries are hints; the caller acts only on the verified head.
   */
  async dueRotations(nowIso: string, limit = 100): Promise<RotationDueEntry[]> {
    const out = await this.db.send<QueryCommandOutput>(
      new QueryCommand({
        TableName: this.table,
        // `#` then a path sorts below `#~`: an entry due exactly now is included.
        KeyConditionExpression: 'pk = :pk AND sk <= :bound',
        ExpressionAttributeValues: marshall({ ':pk': ROTATION_PK, ':bound': `${nowIso}#~` }),
        Limit: limit,
        ConsistentRead: true,
      }),
    );
    return (out.Items ?? []).map((raw) => rotationDueFromItem(unmarshall(raw)));
  }

  /** Removes a due index entry that no head stands behind any more (left by a table writer). */
  async deleteDueEntry(entry: RotationDueEntry): Promise<void> {
    await this.db.send(
      new DeleteItemCommand({
        TableName: this.table,
        Key: marshall(rotationDueKey(entry.path, entry.nextAt)),
      }),
    );
  }

  /** Soft-deleted secrets whose recovery window ended before `now`, oldest first. */
  async expiredDeletions(nowIso: string, limit = 100): Promise<{ path: string; purgeAt: string }[]> {
    return expiredDeletions(this.db, nowIso, limit);
  }

  /**
   * Removes a soft-deleted secret for good: its versions, then the head (only if it is still
   * deleted with that purge time, so a restored secret is never purged) and the index entry.
   * See purge.ts for why in that order.
   */
  async purge(path: string, purgeAt: string): Promise<boolean> {
    // The purge reads the head unverified: it only deletes a secret the table says is deleted
    // and past its window, which a table writer could delete directly anyway.
    return purgeSecret(
      this.db,
      {
        getHead: async (p) => {
          const item = await this.getHeadItem(p);
          return item ? headFromItem(unmarshall(item)) : undefined;
        },
        listVersions: (p) => this.listVersions(p),
        deleteVersions: (p, v) => this.deleteVersions(p, v),
      },
      path,
      purgeAt,
    );
  }

  /**
   * Strongly consistent BatchGetItem of `keys` (deduplicated), by item id. Keys DynamoDB leaves
   * unprocessed are asked for again with the shared full-jitter retry; still unprocessed after
   * that, the read is throttled (429), never answered with items missing.
   */
  private async batchGetItems(keys: readonly ItemKey[]): Promise<Map<string, StoredItem>> {
    const unique = [...new Map(keys.map((k) => [itemId(k), k])).values()];
    const found = new Map<string, StoredItem>();
    for (let i = 0; i < unique.length; i += BATCH_GET_KEYS) {
      let pending: Record<string, AttributeValue>[] = unique
        .slice(i, i + BATCH_GET_KEYS)
        .map((k) => marshall(k));
      try {
        await retry(
          async () => {
            const out = await this.db.send<BatchGetItemCommandOutput>(
              new BatchGetItemCommand({
                RequestItems: { [this.table]: { Keys: pending, ConsistentRead: true } },
              }),
            );
            for (const item of out.Responses?.[this.table] ?? []) {
              found.set(itemId({ pk: String(item.pk?.S), sk: String(item.sk?.S) }), item);
            }
            pending = out.UnprocessedKeys?.[this.table]?.Keys ?? [];
            if (pending.length > 0) throw new UnprocessedKeys();
          },
          { ...UNPROCESSED_RETRY, isRetryable: (err) => err instanceof UnprocessedKeys },
        );
      } catch (err) {
        if (err instanceof UnprocessedKeys) throw new ThrottledError();
        throw err;
      }
    }
    return found;
  }

  /**
   * The current item follows the head in the head's transaction: written when the head names a
   * copy it did not name before (`copy` is then the version it copies), deleted when the head
   * stops naming one (a destroyed current version, a promotion without a copy). While the head
   * keeps its copy, the item is left alone (a metadata change, a soft delete, a restore).
   */
  private currentItemChanges(
    previous: SecretHead | undefined,
    next: SecretHead,
    copy: SealedVersion | undefined,
  ): TransactWriteItem[] {
    const before = previous ? withValidCurrent(previous).current : undefined;
    const after = withValidCurrent(next).current;
    if (after && before && sameRef(before, after)) return [];
    if (!after) {
      return before ? [{ Delete: { TableName: this.table, Key: marshall(currentKey(next.path)) } }] : [];
    }
    if (!copy || copy.version !== after.version) {
      throw new Error('a head that names a new current copy is written with that copy');
    }
    const made = currentCopyOf(this.binding, next.path, copy);
    if (!sameRef(made.ref, after)) throw new Error('the current copy does not match the head');
    return [{ Put: { TableName: this.table, Item: made.item } }];
  }

  private async transact(items: TransactWriteItem[], index: readonly ChangeFailure[]): Promise<void> {
    /** Cancelled by a concurrent transaction alone (no condition failed): worth another try. */
    const conflictOnly = (err: unknown) => {
      if (!(err instanceof TransactionCanceledException)) return false;
      const codes = (err.CancellationReasons ?? []).map((r) => r.Code);
      return !codes.includes('ConditionalCheckFailed') && codes.includes('TransactionConflict');
    };
    try {
      // Full jitter (the shared retry): spread the retries of contending writers apart.
      await retry(() => this.transactOnce(items), {
        attempts: this.attempts,
        baseDelayMs: this.backoffMs,
        maxDelayMs: Number.POSITIVE_INFINITY,
        isRetryable: conflictOnly,
      });
    } catch (err) {
      if (!(err instanceof TransactionCanceledException)) throw mapStorageError(err);
      const failed = (err.CancellationReasons ?? []).findIndex((r) => r.Code === 'ConditionalCheckFailed');
      if (failed !== -1) throw new ChangeConditionFailed(index[failed] ?? 'head');
      if (!conflictOnly(err)) throw mapStorageError(err);
      throw new CasConflictError('the secret is being changed concurrently; retry');
    }
  }

  private async transactOnce(items: TransactWriteItem[]): Promise<void> {
    await this.client.send(new TransactWriteItemsCommand({ TransactItems: items }));
  }
}
