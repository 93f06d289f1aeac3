import {
  BatchWriteItemCommand,
  type BatchWriteItemCommandOutput,
  type DynamoDBClient,
  GetItemCommand,
  type GetItemCommandOutput,
  QueryCommand,
  type QueryCommandInput,
  type QueryCommandOutput,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { backoffDelay, retry } from '../../packages/client/src/retry.js';
import { ENVELOPE_ALGORITHM, type SealedValue } from '../crypto/envelope.js';
import { CasConflictError, IntegrityError, InvalidRequestError } from '../errors.js';
import { mapStorageError } from './storage-errors.js';

/*
 * Key design of the secrets table (pk/sk strings):
 *
 *   head      pk = P#<first segment>   sk = H#<path>           one per secret: latest, tags, deletion
 *   version   pk = S#<path>            sk = V#<10-digit n>     immutable; ciphertext + wrapped key
 *   root      pk = ROOTS               sk = R#<first segment>  one per first segment, for prefix lists
 *   deletion  pk = DEL                 sk = <purgeAt>#<path>   soft-deleted secrets, by purge time
 *   idem      pk = I#<scope>           sk = I                  remembered Idempotency-Key results
 *
 * A list of a prefix that contains `/` is one Query on one head partition (begins_with). A prefix
 * inside the first segment (or empty) first Queries ROOTS for the matching first segments, then
 * each of their partitions in order. Nothing scans.
 */

const ROOTS_PK = 'ROOTS';
const DELETION_PK = 'DEL';
/** Sorts after every character a path may contain, so `prefix + HIGH` bounds a begins_with range. */
const HIGH = '~';

/** A head item exists and still names the version the caller based its change on. */
const HEAD_MATCHES = 'attribute_exists(pk) AND latest = :expected';
/** A version number is used once, ever. */
const VERSION_IS_NEW = 'attribute_not_exists(pk)';
/** An Idempotency-Key is claimed once per window (an expired claim may be taken over). */
const IDEMPOTENCY_UNCLAIMED = 'attribute_not_exists(pk) OR expiresAt < :now';

export function firstSegment(path: string): string {
  const i = path.indexOf('/');
  return i === -1 ? path : path.slice(0, i);
}

const headKey = (path: string) => ({ pk: `P#${firstSegment(path)}`, sk: `H#${path}` });
const versionKey = (path: string, version: number) => ({
  pk: `S#${path}`,
  sk: `V#${String(version).padStart(10, '0')}`,
});

export interface SecretHead {
  readonly path: string;
  readonly latest: number;
  /** Versions below this were pruned (max versions) and no longer exist for readers. */
  readonly minVersion: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly description?: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly maxVersions: number;
  /** Principal id of the creator. */
  readonly owner?: string;
  readonly deletedAt?: string;
  readonly purgeAt?: string;
}

export interface VersionMeta {
  readonly path: string;
  readonly version: number;
  readonly createdAt: string;
  readonly createdBy?: string;
  readonly destroyed: boolean;
  readonly keyProvider?: string;
  readonly keyId?: string;
}

export interface StoredVersion extends VersionMeta {
  /** Absent when the version was destroyed. */
  readonly sealed?: SealedValue;
}

export interface IdempotencyRecord {
  readonly fingerprint: string;
  readonly result: Record<string, unknown>;
}

export interface IdempotencyClaim {
  readonly scope: string;
  readonly fingerprint: string;
  readonly result: Record<string, unknown>;
  /** Epoch seconds after which the claim is forgotten. */
  readonly expiresAt: number;
}

/** One entry of a list page: a secret's head, or a folder (with a delimiter). */
export type ListEntry =
  | { readonly kind: 'head'; readonly head: SecretHead }
  | { readonly kind: 'folder'; readonly path: string };

export interface ListPage {
  /** Heads and folders, in the order they were found (the order cursors follow). */
  readonly entries: ListEntry[];
  readonly cursor?: string;
}

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

interface Cursor {
  /** The first segment being read when the page ended (only for root-level prefixes). */
  r?: string;
  /** The last head sort key returned or skipped. */
  k: string;
}

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

/** Thrown for a cursor this store did not make. */
export class InvalidCursorError extends InvalidRequestError {
  static override readonly code = 'invalid_cursor';
}

function decodeCursor(raw: string | undefined): Cursor | undefined {
  if (!raw) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError('invalid cursor');
  }
  const c = parsed as Partial<Cursor> | null;
  if (
    typeof c !== 'object' ||
    c === null ||
    typeof c.k !== 'string' ||
    (c.k !== '' && !c.k.startsWith('H#')) ||
    (c.r !== undefined && typeof c.r !== 'string')
  ) {
    throw new InvalidCursorError('invalid cursor');
  }
  return c.r === undefined ? { k: c.k } : { k: c.k, r: c.r };
}

function toHead(item: Record<string, unknown>): SecretHead {
  const head: SecretHead = {
    path: String(item.path),
    latest: Number(item.latest),
    minVersion: Number(item.minVersion ?? 1),
    createdAt: String(item.createdAt),
    updatedAt: String(item.updatedAt),
    tags: (item.tags as Record<string, string> | undefined) ?? {},
    maxVersions: Number(item.maxVersions),
    ...(typeof item.description === 'string' ? { description: item.description } : {}),
    ...(typeof item.owner === 'string' ? { owner: item.owner } : {}),
    ...(typeof item.deletedAt === 'string' ? { deletedAt: item.deletedAt } : {}),
    ...(typeof item.purgeAt === 'string' ? { purgeAt: item.purgeAt } : {}),
  };
  if (!Number.isInteger(head.latest) || !Number.isInteger(head.maxVersions)) throw new IntegrityError();
  return head;
}

function toVersion(item: Record<string, unknown>): StoredVersion {
  const meta: VersionMeta = {
    path: String(item.path),
    version: Number(item.version),
    createdAt: String(item.createdAt),
    destroyed: item.destroyed === true,
    ...(typeof item.createdBy === 'string' ? { createdBy: item.createdBy } : {}),
    ...(typeof item.kp === 'string' ? { keyProvider: item.kp } : {}),
    ...(typeof item.kid === 'string' ? { keyId: item.kid } : {}),
  };
  if (meta.destroyed || item.ct === undefined) return meta;
  if (
    !(item.ct instanceof Uint8Array) ||
    !(item.iv instanceof Uint8Array) ||
    !(item.wk instanceof Uint8Array) ||
    item.alg !== ENVELOPE_ALGORITHM
  ) {
    throw new IntegrityError();
  }
  return {
    ...meta,
    sealed: {
      algorithm: ENVELOPE_ALGORITHM,
      ciphertext: item.ct,
      iv: item.iv,
      wrappedKey: item.wk,
      keyProvider: String(item.kp),
      keyId: String(item.kid),
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PutVersionInput {
  readonly path: string;
  /** The head as read, or undefined when the secret is new. */
  readonly previous: SecretHead | undefined;
  readonly head: SecretHead;
  readonly version: StoredVersion & { sealed: SealedValue };
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
 * and then becomes a CAS conflict, never a 500.
 */
export class SecretsStore {
  private readonly attempts: number;
  private readonly backoffMs: number;

  constructor(
    private readonly client: DynamoDBClient,
    readonly table: string,
    options: StoreOptions = {},
  ) {
    this.attempts = options.transactionAttempts ?? 4;
    this.backoffMs = options.transactionBackoffMs ?? 50;
  }

  async getHead(path: string): Promise<SecretHead | undefined> {
    const out = await this.send<GetItemCommandOutput>(
      new GetItemCommand({ TableName: this.table, Key: marshall(headKey(path)), ConsistentRead: true }),
    );
    if (!out.Item) return undefined;
    const item = unmarshall(out.Item);
    if (item.path !== path) throw new IntegrityError();
    return toHead(item);
  }

  async getVersion(path: string, version: number): Promise<StoredVersion | undefined> {
    const out = await this.send<GetItemCommandOutput>(
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
    return toVersion(item);
  }

  /** Version metadata, oldest first, without ciphertext or wrapped keys. */
  async listVersions(path: string): Promise<VersionMeta[]> {
    const versions: VersionMeta[] = [];
    let start: QueryCommandInput['ExclusiveStartKey'];
    do {
      const out = await this.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :v)',
          ExpressionAttributeValues: marshall({ ':pk': `S#${path}`, ':v': 'V#' }),
          ProjectionExpression: '#p, version, createdAt, createdBy, destroyed, kp, kid',
          ExpressionAttributeNames: { '#p': 'path' },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const raw of out.Items ?? []) {
        const item = unmarshall(raw);
        if (item.path !== path) throw new IntegrityError();
        versions.push(toVersion(item));
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return versions;
  }

  async getIdempotency(scope: string, nowSeconds: number): Promise<IdempotencyRecord | undefined> {
    const out = await this.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.table,
        Key: marshall({ pk: `I#${scope}`, sk: 'I' }),
        ConsistentRead: true,
      }),
    );
    if (!out.Item) return undefined;
    const item = unmarshall(out.Item);
    if (Number(item.expiresAt) < nowSeconds) return undefined;
    return { fingerprint: String(item.fingerprint), result: item.result as Record<string, unknown> };
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
        Item: marshall(
          {
            ...versionKey(path, version.version),
            type: 'version',
            path,
            version: version.version,
            createdAt: version.createdAt,
            createdBy: version.createdBy,
            alg: version.sealed.algorithm,
            iv: version.sealed.iv,
            ct: version.sealed.ciphertext,
            wk: version.sealed.wrappedKey,
            kp: version.sealed.keyProvider,
            kid: version.sealed.keyId,
          },
          { removeUndefinedValues: true },
        ),
        ConditionExpression: VERSION_IS_NEW,
      },
    });
    index.push('head');
    items.push({
      Put: {
        TableName: this.table,
        Item: marshall(this.headItem(head), { removeUndefinedValues: true }),
        ...(previous
          ? {
              ConditionExpression: `${HEAD_MATCHES} AND attribute_not_exists(deletedAt)`,
              ExpressionAttributeValues: marshall({ ':expected': previous.latest }),
            }
          : { ConditionExpression: 'attribute_not_exists(pk)' }),
      },
    });
    index.push('head');
    if (!previous) {
      // Idempotent: the root marker may already exist from another secret.
      items.push({
        Put: { TableName: this.table, Item: marshall({ pk: ROOTS_PK, sk: `R#${firstSegment(path)}` }) },
      });
      index.push('head');
    }
    if (input.idempotency) {
      const claim = input.idempotency;
      items.push({
        Put: {
          TableName: this.table,
          Item: marshall({
            pk: `I#${claim.scope}`,
            sk: 'I',
            type: 'idempotency',
            fingerprint: claim.fingerprint,
            result: claim.result,
            expiresAt: claim.expiresAt,
            ttl: claim.expiresAt,
          }),
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
    options: { prune?: readonly number[]; extra?: readonly TransactWriteItem[] } = {},
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
        Item: marshall(this.headItem(next), { removeUndefinedValues: true }),
        ConditionExpression: condition,
        ExpressionAttributeValues: marshall(values),
      },
    });
    if (previous.deletedAt && previous.purgeAt && previous.purgeAt !== next.purgeAt) {
      items.push({
        Delete: {
          TableName: this.table,
          Key: marshall({ pk: DELETION_PK, sk: `${previous.purgeAt}#${previous.path}` }),
        },
      });
    }
    if (next.deletedAt && next.purgeAt && next.purgeAt !== previous.purgeAt) {
      items.push({
        Put: {
          TableName: this.table,
          Item: marshall({
            pk: DELETION_PK,
            sk: `${next.purgeAt}#${next.path}`,
            path: next.path,
            purgeAt: next.purgeAt,
          }),
        },
      });
    }
    for (const v of options.prune ?? []) {
      items.push({ Delete: { TableName: this.table, Key: marshall(versionKey(next.path, v)) } });
    }
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
        Item: marshall(this.headItem(next), { removeUndefinedValues: true }),
        ConditionExpression: `${HEAD_MATCHES} AND updatedAt = :updated`,
        ExpressionAttributeValues: marshall({ ':expected': previous.latest, ':updated': previous.updatedAt }),
      },
    });
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
        const out = await this.send<BatchWriteItemCommandOutput>(
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
    const cursor = decodeCursor(options.cursor);
    const entries: ListEntry[] = [];
    const { delimiter, limit } = options;
    const full = () => entries.length >= limit;

    // Walks one head partition after the sort key `after` ('' = from the start), filling the
    // page. Returns the sort key to resume after, or undefined when the partition is exhausted.
    const walk = async (root: string, after: string): Promise<string | undefined> => {
      let lower = after;
      for (;;) {
        const out = await this.send<QueryCommandOutput>(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
            ExpressionAttributeValues: marshall({
              ':pk': `P#${root}`,
              ':lo': lower === '' ? `H#${prefix}` : lower,
              ':hi': `H#${prefix}${HIGH}`,
            }),
            // +2: the inclusive lower bound may return the last item already seen, and one more
            // item tells whether the page is full with more to come.
            Limit: Math.min(1000, limit - entries.length + 2),
            ConsistentRead: true,
          }),
        );
        let rolledUp = false;
        for (const raw of out.Items ?? []) {
          const item = unmarshall(raw);
          const sk = String(item.sk);
          // BETWEEN is inclusive; the cursor is exclusive.
          if (lower !== '' && sk <= lower) continue;
          if (full()) return lower;
          const path = sk.slice(2);
          if (item.path !== path) throw new IntegrityError();
          const cut = delimiter ? path.indexOf(delimiter, prefix.length) : -1;
          if (delimiter && cut !== -1) {
            const folder = path.slice(0, cut + delimiter.length);
            entries.push({ kind: 'folder', path: folder });
            // Jump past everything under the folder with the next query.
            lower = `H#${folder}${HIGH}`;
            rolledUp = true;
            break;
          }
          entries.push({ kind: 'head', head: toHead(item) });
          lower = sk;
        }
        if (rolledUp) continue;
        if (!out.LastEvaluatedKey) return undefined;
        lower = String(unmarshall(out.LastEvaluatedKey).sk);
      }
    };

    if (prefix.includes('/')) {
      if (cursor && cursor.r !== undefined) throw new InvalidCursorError('invalid cursor');
      const resume = await walk(firstSegment(prefix), cursor?.k ?? '');
      return {
        entries,
        ...(resume !== undefined ? { cursor: encodeCursor({ k: resume }) } : {}),
      };
    }

    // The prefix ends inside the first segment: walk the partitions of the matching first
    // segments in order.
    if (cursor && cursor.r === undefined) throw new InvalidCursorError('invalid cursor');
    const fromRoot = cursor?.r;
    let startKey: QueryCommandInput['ExclusiveStartKey'];
    for (;;) {
      const out = await this.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
          ExpressionAttributeValues: marshall({
            ':pk': ROOTS_PK,
            ':lo': `R#${fromRoot ?? prefix}`,
            ':hi': `R#${prefix}${HIGH}`,
          }),
          ExclusiveStartKey: startKey,
          ConsistentRead: true,
        }),
      );
      for (const raw of out.Items ?? []) {
        const root = String(unmarshall(raw).sk).slice(2);
        const after = root === fromRoot ? (cursor?.k ?? '') : '';
        if (full()) return { entries, cursor: encodeCursor({ r: root, k: after }) };
        const resume = await walk(root, after);
        if (resume !== undefined) return { entries, cursor: encodeCursor({ r: root, k: resume }) };
      }
      startKey = out.LastEvaluatedKey;
      if (!startKey) return { entries };
    }
  }

  /**
   * A cursor that resumes a listing of `prefix` (with the same delimiter) right after `entry`, an
   * entry that listing returned. It names only that entry: a caller that filters pages can hand
   * it out without revealing the entries it filtered away.
   */
  cursorAfter(prefix: string, entry: ListEntry): string {
    const path = entry.kind === 'head' ? entry.head.path : entry.path;
    // After a folder, resume past everything under it, as the walk itself does.
    const k = entry.kind === 'head' ? `H#${path}` : `H#${path}${HIGH}`;
    return encodeCursor(prefix.includes('/') ? { k } : { r: firstSegment(path), k });
  }

  /** Soft-deleted secrets whose recovery window ended before `now`, oldest first. */
  async expiredDeletions(nowIso: string, limit = 100): Promise<{ path: string; purgeAt: string }[]> {
    const out = await this.send<QueryCommandOutput>(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND sk < :now',
        ExpressionAttributeValues: marshall({ ':pk': DELETION_PK, ':now': nowIso }),
        Limit: limit,
        ConsistentRead: true,
      }),
    );
    return (out.Items ?? []).map((raw) => {
      const item = unmarshall(raw);
      return { path: String(item.path), purgeAt: String(item.purgeAt) };
    });
  }

  /**
   * Removes a soft-deleted secret for good: its versions, then the head (only if it is still
   * deleted with that purge time, so a restored secret is never purged) and the index entry.
   *
   * Versions go first, while the head still marks the secret deleted: no write can add a version
   * meanwhile, so only the old secret's versions are removed. Deleting the head first would let a
   * new secret at the path write a version that the version sweep then deletes.
   */
  async purge(path: string, purgeAt: string): Promise<boolean> {
    const head = await this.getHead(path);
    if (head?.purgeAt !== purgeAt) {
      // Restored, deleted again with another window, or purged by someone else meanwhile.
      await this.dropDeletionEntry(path, purgeAt);
      return false;
    }
    const versions = await this.listVersions(path);
    await this.deleteVersions(
      path,
      versions.map((v) => v.version),
    );
    try {
      await this.transactOnce([
        {
          Delete: {
            TableName: this.table,
            Key: marshall(headKey(path)),
            ConditionExpression: 'purgeAt = :p',
            ExpressionAttributeValues: marshall({ ':p': purgeAt }),
          },
        },
        { Delete: { TableName: this.table, Key: marshall({ pk: DELETION_PK, sk: `${purgeAt}#${path}` }) } },
      ]);
    } catch (err) {
      if (err instanceof TransactionCanceledException) {
        await this.dropDeletionEntry(path, purgeAt);
        return false;
      }
      throw mapStorageError(err);
    }
    return true;
  }

  private async dropDeletionEntry(path: string, purgeAt: string): Promise<void> {
    await this.send(
      new BatchWriteItemCommand({
        RequestItems: {
          [this.table]: [{ DeleteRequest: { Key: marshall({ pk: DELETION_PK, sk: `${purgeAt}#${path}` }) } }],
        },
      }),
    );
  }

  private headItem(head: SecretHead): Record<string, unknown> {
    return {
      ...headKey(head.path),
      type: 'head',
      path: head.path,
      latest: head.latest,
      minVersion: head.minVersion,
      createdAt: head.createdAt,
      updatedAt: head.updatedAt,
      description: head.description,
      tags: head.tags,
      maxVersions: head.maxVersions,
      owner: head.owner,
      deletedAt: head.deletedAt,
      purgeAt: head.purgeAt,
    };
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

  private async send<T>(command: object): Promise<T> {
    try {
      return (await this.client.send(command as never)) as T;
    } catch (err) {
      throw mapStorageError(err);
    }
  }
}
