import { QueryCommand, type QueryCommandInput, type QueryCommandOutput } from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { IntegrityError } from '../errors.js';
import { decodeCursor, encodeCursor, InvalidCursorError } from './cursor.js';
import {
  firstSegment,
  HIGH,
  headPartition,
  headSortKey,
  pathOfHeadSortKey,
  ROOTS_PK,
  rootSortKey,
  segmentOfRootSortKey,
} from './keys.js';
import type { ListEntry, ListPage, SecretHead } from './records.js';
import type { TableClient } from './table-client.js';

export interface ListOptions {
  /** '/' rolls deeper paths up into folders (like S3 common prefixes). */
  readonly delimiter?: string;
  /** Heads plus folders on the page. */
  readonly limit: number;
  readonly cursor?: string;
}

/** Opens a stored head item (verifying it): IntegrityError when it fails. */
export type HeadOpener = (raw: NonNullable<QueryCommandOutput['Items']>[number]) => SecretHead;

/**
 * Lists heads whose path starts with `prefix`, one page, with Query only (see keys.ts for the
 * layout). A prefix with `/` walks one head partition; a prefix inside the first segment walks
 * the ROOTS markers it matches and each of their partitions in order. Soft-deleted heads are
 * returned; the caller filters them.
 */
export async function listHeads(
  db: TableClient,
  prefix: string,
  options: ListOptions,
  openHead: HeadOpener,
): Promise<ListPage> {
  const cursor = decodeCursor(options.cursor);
  const entries: ListEntry[] = [];
  const { delimiter, limit } = options;
  const full = () => entries.length >= limit;

  // Walks one head partition after the sort key `after` ('' = from the start), filling the
  // page. Returns the sort key to resume after, or undefined when the partition is exhausted.
  const walk = async (root: string, after: string): Promise<string | undefined> => {
    let lower = after;
    // Sealed cursors are checked before they get here; a resume key outside the listing's range
    // would still be a DynamoDB ValidationException (BETWEEN with lo > hi), so refuse it here too.
    if (after !== '' && (after < headSortKey(prefix) || after > headSortKey(`${prefix}${HIGH}`))) {
      throw new InvalidCursorError('invalid cursor');
    }
    for (;;) {
      const out = await db.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: db.table,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
          ExpressionAttributeValues: marshall({
            ':pk': headPartition(root),
            ':lo': lower === '' ? headSortKey(prefix) : lower,
            ':hi': headSortKey(`${prefix}${HIGH}`),
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
        const path = pathOfHeadSortKey(sk);
        if (item.path !== path) throw new IntegrityError();
        // Every head the walk meets is verified, also one only rolled up into a folder: a forged
        // head must not make a folder appear.
        const head = openHead(raw);
        const cut = delimiter ? path.indexOf(delimiter, prefix.length) : -1;
        if (delimiter && cut !== -1) {
          const folder = path.slice(0, cut + delimiter.length);
          entries.push({ kind: 'folder', path: folder });
          // Jump past everything under the folder with the next query.
          lower = headSortKey(`${folder}${HIGH}`);
          rolledUp = true;
          break;
        }
        entries.push({ kind: 'head', head });
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
  if (fromRoot !== undefined && !fromRoot.startsWith(prefix)) throw new InvalidCursorError('invalid cursor');
  let startKey: QueryCommandInput['ExclusiveStartKey'];
  for (;;) {
    const out = await db.send<QueryCommandOutput>(
      new QueryCommand({
        TableName: db.table,
        KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
        ExpressionAttributeValues: marshall({
          ':pk': ROOTS_PK,
          ':lo': rootSortKey(fromRoot ?? prefix),
          ':hi': rootSortKey(`${prefix}${HIGH}`),
        }),
        ExclusiveStartKey: startKey,
        ConsistentRead: true,
      }),
    );
    for (const raw of out.Items ?? []) {
      const root = segmentOfRootSortKey(String(unmarshall(raw).sk));
      const after = root === fromRoot ? (cursor?.k ?? '') : '';
      if (full()) return { entries, cursor: encodeCursor({ r: root, k: after }) };
      const resume = await walk(root, after);
      if (resume !== undefined) return { entries, cursor: encodeCursor({ r: root, k: resume }) };
    }
    startKey = out.LastEvaluatedKey;
    if (!startKey) return { entries };
  }
}
