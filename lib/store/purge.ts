import {
  BatchWriteItemCommand,
  QueryCommand,
  type QueryCommandOutput,
  TransactionCanceledException,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { type DeletionEntry, deletionFromItem } from './item-codec.js';
import { currentKey, DELETION_PK, deletionKey, headKey } from './keys.js';
import type { SecretHead, VersionMeta } from './records.js';
import { mapStorageError } from './storage-errors.js';
import type { TableClient } from './table-client.js';

/** What the purge needs of the store: the secret as it is now, and a way to drop its versions. */
export interface PurgeableSecrets {
  getHead(path: string): Promise<SecretHead | undefined>;
  listVersions(path: string): Promise<VersionMeta[]>;
  deleteVersions(path: string, versions: readonly number[]): Promise<void>;
}

/** Soft-deleted secrets whose recovery window ended before `now`, oldest first. */
export async function expiredDeletions(
  db: TableClient,
  nowIso: string,
  limit: number,
): Promise<DeletionEntry[]> {
  const out = await db.send<QueryCommandOutput>(
    new QueryCommand({
      TableName: db.table,
      // Index entries sort by purge time: everything below `now` is past its window.
      KeyConditionExpression: 'pk = :pk AND sk < :now',
      ExpressionAttributeValues: marshall({ ':pk': DELETION_PK, ':now': nowIso }),
      Limit: limit,
      ConsistentRead: true,
    }),
  );
  return (out.Items ?? []).map((raw) => deletionFromItem(unmarshall(raw)));
}

/**
 * Removes a soft-deleted secret for good: its versions, then the head (only if it is still
 * deleted with that purge time, so a restored secret is never purged) and the index entry.
 *
 * Versions go first, while the head still marks the secret deleted: no write can add a version
 * meanwhile, so only the old secret's versions are removed. Deleting the head first would let a
 * new secret at the path write a version that the version sweep then deletes.
 */
export async function purgeSecret(
  db: TableClient,
  secrets: PurgeableSecrets,
  path: string,
  purgeAt: string,
): Promise<boolean> {
  const head = await secrets.getHead(path);
  if (head?.purgeAt !== purgeAt) {
    // Restored, deleted again with another window, or purged by someone else meanwhile.
    await dropDeletionEntry(db, path, purgeAt);
    return false;
  }
  const versions = await secrets.listVersions(path);
  await secrets.deleteVersions(
    path,
    versions.map((v) => v.version),
  );
  try {
    await db.client.send(
      new TransactWriteItemsCommand({
        TransactItems: [
          {
            Delete: {
              TableName: db.table,
              Key: marshall(headKey(path)),
              ConditionExpression: 'purgeAt = :p',
              ExpressionAttributeValues: marshall({ ':p': purgeAt }),
            },
          },
          { Delete: { TableName: db.table, Key: marshall(deletionKey(path, purgeAt)) } },
          // The copy of the current value goes with the head that vouched for it.
          { Delete: { TableName: db.table, Key: marshall(currentKey(path)) } },
        ],
      }),
    );
  } catch (err) {
    if (err instanceof TransactionCanceledException) {
      await dropDeletionEntry(db, path, purgeAt);
      return false;
    }
    throw mapStorageError(err);
  }
  return true;
}

async function dropDeletionEntry(db: TableClient, path: string, purgeAt: string): Promise<void> {
  await db.send(
    new BatchWriteItemCommand({
      RequestItems: {
        [db.table]: [{ DeleteRequest: { Key: marshall(deletionKey(path, purgeAt)) } }],
      },
    }),
  );
}
