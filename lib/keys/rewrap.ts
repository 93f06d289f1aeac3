import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  QueryCommand,
  type QueryCommandOutput,
  ScanCommand,
  type ScanCommandOutput,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { encryptionContextFor } from '../crypto/envelope.js';
import { ControlRecordConflict, type ControlRecords } from '../store/control-records.js';
import { CURRENT_SK, firstSegment } from '../store/keys.js';
import { mapStorageError } from '../store/storage-errors.js';
import {
  BRANCH_PROVIDER,
  type BranchKeyProvider,
  branchContext,
  folderRecordId,
  KEYRING_KIND,
  parseBranchKeyId,
} from './branch-keys.js';

/*
 * The re-wrap job: every secret version's data key ends up wrapped by its folder's active branch
 * key, without a secret value ever being decrypted (only the 32-byte data key is, in memory, for
 * the moment it takes). It walks the table with a paged Scan — an admin job, never a request —
 * and keeps its place in an authenticated control record (kind `rewrap`), saved after each page:
 * a run killed anywhere resumes from the last saved page, and redoing part of a page is harmless
 * because an item already under the active key is left alone.
 *
 * Each item is updated with a condition on the wrapped key and key id it was read with:
 *
 *   t0  job reads item (wk = A, kid = bk:f:1)
 *   t1  a destroy removes wk (or a prune deletes the item)
 *   t2  job writes wk = B  IF wk = A AND kid = bk:f:1   → fails, nothing is written
 *
 * so the job never brings back a destroyed value and never overwrites anything it did not read.
 * New versions are written under the active key already, and version items are otherwise
 * immutable. A secret's current item (a copy of one version) is re-wrapped the same way.
 */

export const REWRAP_KIND = 'rewrap';
export const SCAN_KIND = 'key-scan';
export const SCAN_ID = 'all';

/** An in-progress or finished pass, as its control record keeps it. */
export interface RewrapCursor {
  readonly pass: string;
  readonly folder?: string;
  readonly startedAt: string;
  /** The Scan's next start key (pk, sk); absent before the first page and once done. */
  readonly start?: { readonly pk: string; readonly sk: string };
  readonly scanned: number;
  readonly rewrapped: number;
  /** Items that changed between the read and the conditional update (left as the writer left them). */
  readonly skipped: number;
  readonly done: boolean;
  readonly finishedAt?: string;
  /** Secret versions per folder and key id, as this pass left them. */
  readonly counts: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** Per folder, per key id: how many secret versions the key wraps, from the last finished scan. */
export interface ScanCounts {
  readonly at: string;
  readonly counts: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

export interface RewrapOptions {
  readonly client: DynamoDBClient;
  readonly table: string;
  readonly control: ControlRecords;
  readonly keys: BranchKeyProvider;
  readonly binding: string;
  /** Items re-wrapped per second at most, so the job cannot starve the API. Default 50. */
  readonly itemsPerSecond?: number;
  /** Items per Scan page. Default 100. */
  readonly pageSize?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

export interface RewrapRunOptions {
  /** One folder only. Default: every folder. */
  readonly folder?: string;
  /** Stop (saving the cursor) once this many ms have passed; the next run continues. Default: no limit. */
  readonly budgetMs?: number;
  /** Only continue an unfinished pass; never start a new one (the frequent "continue" schedule). */
  readonly resumeOnly?: boolean;
  /** Called after each saved page. */
  readonly onProgress?: (cursor: RewrapCursor) => void;
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const rewrapRecordId = (folder: string | undefined): string =>
  folder === undefined ? 'all' : folderRecordId(folder);

export class RewrapJob {
  private readonly itemsPerSecond: number;
  private readonly pageSize: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(private readonly options: RewrapOptions) {
    this.itemsPerSecond = options.itemsPerSecond ?? 50;
    this.pageSize = options.pageSize ?? 100;
    this.sleep = options.sleep ?? realSleep;
    this.now = options.now ?? Date.now;
  }

  /** The pass of a scope as stored (undefined if none ever ran). */
  async cursor(folder?: string): Promise<RewrapCursor | undefined> {
    return (await this.options.control.get<RewrapCursor>(REWRAP_KIND, rewrapRecordId(folder)))?.payload;
  }

  /**
   * Runs (or continues) a pass until it is done or the budget is spent. Returns the cursor as
   * saved. A concurrent runner of the same scope makes this one stop at its next save
   * (ControlRecordConflict): the other carries on.
   */
  async run(options: RewrapRunOptions = {}): Promise<RewrapCursor | undefined> {
    const started = this.now();
    const { control } = this.options;
    const id = rewrapRecordId(options.folder);
    const record = await control.get<RewrapCursor>(REWRAP_KIND, id);
    let generation = record?.generation ?? 0;
    let cursor = record?.payload;
    if (!cursor || cursor.done) {
      if (options.resumeOnly) return cursor;
      await this.rewrapBranchKeys(options.folder);
      cursor = {
        pass: new Date(this.now()).toISOString(),
        ...(options.folder !== undefined ? { folder: options.folder } : {}),
        startedAt: new Date(this.now()).toISOString(),
        scanned: 0,
        rewrapped: 0,
        skipped: 0,
        done: false,
        counts: {},
      };
      generation = (await control.put(REWRAP_KIND, id, cursor, generation)).generation;
    }
    const targets = new Map<string, { kid: string; key: Buffer }>();
    try {
      while (!cursor.done) {
        const page = await this.scanPage(options.folder, cursor.start);
        const counts = cloneCounts(cursor.counts);
        let rewrapped = 0;
        let skipped = 0;
        let versions = 0;
        for (const item of page.items) {
          const outcome = await this.rewrapItem(item, targets);
          // A current item is a copy of a version counted on its own: re-wrapped, never counted,
          // so the pass reports secret versions as `keys status` and the progress bar count them.
          const copy = item.sk?.S === CURRENT_SK;
          if (!copy) versions += 1;
          if (outcome.kind === 'skipped') skipped += copy ? 0 : 1;
          else if (!copy) {
            if (outcome.kind === 'rewrapped') rewrapped += 1;
            const folderCounts = counts[outcome.folder] ?? {};
            folderCounts[outcome.kid] = (folderCounts[outcome.kid] ?? 0) + 1;
            counts[outcome.folder] = folderCounts;
          }
          if (outcome.kind === 'rewrapped') await this.sleep(1000 / this.itemsPerSecond);
        }
        const { start: _s, ...rest } = cursor;
        const done = page.next === undefined;
        cursor = {
          ...rest,
          ...(page.next ? { start: page.next } : {}),
          scanned: cursor.scanned + versions,
          rewrapped: cursor.rewrapped + rewrapped,
          skipped: cursor.skipped + skipped,
          counts,
          done,
          ...(done ? { finishedAt: new Date(this.now()).toISOString() } : {}),
        };
        generation = (await control.put(REWRAP_KIND, id, cursor, generation)).generation;
        options.onProgress?.(cursor);
        // After a page, not before: every run makes progress, however small its budget.
        if (options.budgetMs !== undefined && this.now() - started >= options.budgetMs) break;
      }
    } finally {
      for (const t of targets.values()) t.key.fill(0);
    }
    if (cursor.done) await this.saveCounts(cursor);
    return cursor;
  }

  /** Branch keys whose root is not the active root are re-wrapped under it (a root rotation's tail). */
  async rewrapBranchKeys(folder?: string): Promise<number> {
    const { keys, control } = this.options;
    const { keyId: rootId } = await keys.activeRoot();
    const folders = folder !== undefined ? [folder] : await listKeyringFolders(this.options);
    let moved = 0;
    for (const f of folders) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const ring = await keys.readKeyring(f);
        if (!ring) break;
        const stale = ring.payload.versions.filter((x) => x.wrapped && x.root !== rootId);
        if (stale.length === 0) break;
        const versions = [];
        for (const x of ring.payload.versions) {
          if (!x.wrapped || x.root === rootId) {
            versions.push(x);
            continue;
          }
          keys.rootOps.reEncrypt += 1;
          const next = await keys.root.reEncrypt(
            { wrapped: Buffer.from(x.wrapped, 'base64'), keyId: x.root },
            branchContext(this.options.binding, f, x.v),
            rootId,
          );
          versions.push({ ...x, root: next.keyId, wrapped: Buffer.from(next.wrapped).toString('base64') });
        }
        try {
          await control.put(KEYRING_KIND, folderRecordId(f), { ...ring.payload, versions }, ring.generation);
          moved += stale.length;
          break;
        } catch (err) {
          if (!(err instanceof ControlRecordConflict)) throw err;
        }
      }
    }
    return moved;
  }

  private async rewrapItem(
    item: Record<string, AttributeValue>,
    targets: Map<string, { kid: string; key: Buffer }>,
  ): Promise<{ kind: 'skipped' } | { kind: 'rewrapped' | 'current'; folder: string; kid: string }> {
    const path = item.path?.S;
    const version = Number(item.version?.N);
    const kid = item.kid?.S;
    const wk = item.wk?.B;
    if (path === undefined || !Number.isInteger(version) || kid === undefined || !wk)
      return { kind: 'skipped' };
    const folder = firstSegment(path);
    let target = targets.get(folder);
    if (!target) {
      const active = await this.options.keys.activeBranch(folder);
      target = { kid: active.kid, key: active.key };
      targets.set(folder, target);
    }
    if (kid === target.kid) return { kind: 'current', folder, kid };
    const branch = parseBranchKeyId(kid);
    if (branch && branch.folder !== folder) return { kind: 'skipped' };
    const context = encryptionContextFor({ table: this.options.binding, path, version });
    const next = await this.options.keys.rewrapUnder(target, { wrapped: wk, keyId: kid }, context);
    try {
      await this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.table,
          Key: { pk: item.pk as AttributeValue, sk: item.sk as AttributeValue },
          UpdateExpression: 'SET wk = :nw, kid = :nk, kp = :kp',
          // Only the wrapped key this job read: a destroy or prune in between wins.
          ConditionExpression: 'wk = :ow AND kid = :ok',
          ExpressionAttributeValues: {
            ':nw': { B: next.wrapped },
            ':nk': { S: next.keyId },
            ':kp': { S: BRANCH_PROVIDER },
            ':ow': { B: wk },
            ':ok': { S: kid },
          },
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return { kind: 'skipped' };
      throw mapStorageError(err);
    }
    return { kind: 'rewrapped', folder, kid: next.keyId };
  }

  private async scanPage(
    folder: string | undefined,
    start: RewrapCursor['start'],
  ): Promise<{ items: Record<string, AttributeValue>[]; next?: { pk: string; sk: string } }> {
    // Version items and current items (copies of a version, lib/store/current-copy.ts): a copy
    // wraps the same data key under the same context, and is re-wrapped on its own, with the same
    // condition, so that no copy keeps a branch key alive that its version no longer needs.
    const values: Record<string, AttributeValue> = { ':v': { S: 'V#' }, ':c': { S: CURRENT_SK } };
    let filter = '(begins_with(sk, :v) OR sk = :c) AND attribute_exists(wk)';
    if (folder !== undefined) {
      filter += ' AND (pk = :exact OR begins_with(pk, :under))';
      values[':exact'] = { S: `S#${folder}` };
      values[':under'] = { S: `S#${folder}/` };
    }
    let out: ScanCommandOutput;
    try {
      out = await this.options.client.send(
        new ScanCommand({
          TableName: this.options.table,
          FilterExpression: filter,
          ExpressionAttributeValues: values,
          ProjectionExpression: 'pk, sk, #p, version, kid, wk',
          ExpressionAttributeNames: { '#p': 'path' },
          Limit: this.pageSize,
          ConsistentRead: true,
          ...(start ? { ExclusiveStartKey: { pk: { S: start.pk }, sk: { S: start.sk } } } : {}),
        }),
      );
    } catch (err) {
      throw mapStorageError(err);
    }
    const last = out.LastEvaluatedKey;
    return {
      items: out.Items ?? [],
      ...(last?.pk?.S !== undefined && last.sk?.S !== undefined
        ? { next: { pk: last.pk.S, sk: last.sk.S } }
        : {}),
    };
  }

  /** A finished pass replaces the counts of what it covered (one folder, or all). */
  private async saveCounts(cursor: RewrapCursor): Promise<void> {
    const { control } = this.options;
    for (let attempt = 0; attempt < 5; attempt++) {
      const record = await control.get<ScanCounts>(SCAN_KIND, SCAN_ID);
      const counts = cursor.folder === undefined ? {} : cloneCounts(record?.payload.counts ?? {});
      if (cursor.folder !== undefined) delete counts[cursor.folder];
      for (const [f, c] of Object.entries(cursor.counts)) counts[f] = { ...c };
      try {
        await control.put<ScanCounts>(
          SCAN_KIND,
          SCAN_ID,
          { at: cursor.finishedAt ?? new Date(this.now()).toISOString(), counts },
          record?.generation ?? 0,
        );
        return;
      } catch (err) {
        if (!(err instanceof ControlRecordConflict)) throw err;
      }
    }
  }
}

function cloneCounts(counts: RewrapCursor['counts']): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [f, c] of Object.entries(counts)) out[f] = { ...c };
  return out;
}

/** Folders that have a keyring: the verified keyring records of the control partition. */
export async function listKeyringFolders(options: {
  readonly client: DynamoDBClient;
  readonly table: string;
  readonly control: ControlRecords;
}): Promise<string[]> {
  const folders: string[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    let out: QueryCommandOutput;
    try {
      out = await options.client.send(
        new QueryCommand({
          TableName: options.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :k)',
          ExpressionAttributeValues: { ':pk': { S: 'CTL' }, ':k': { S: 'keyring#' } },
          ProjectionExpression: 'id',
          ConsistentRead: true,
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
    } catch (err) {
      throw mapStorageError(err);
    }
    for (const item of out.Items ?? []) {
      const id = item.id?.S;
      if (id === undefined) continue;
      const record = await options.control.get<{ folder: string }>('keyring', id);
      if (record && folderRecordId(record.payload.folder) === id) folders.push(record.payload.folder);
    }
    start = out.LastEvaluatedKey;
  } while (start);
  return folders.sort();
}
