import { createHash } from 'node:crypto';
import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  type GetItemCommandOutput,
  PutItemCommand,
  QueryCommand,
  type QueryCommandInput,
  type QueryCommandOutput,
} from '@aws-sdk/client-dynamodb';
import { ownRecord } from '../../packages/client/src/contract.js';
import type { AuthMethod, Principal, PrincipalType, WorkloadKind } from '../authn/principal.js';
import { canonicalJson, encodeFields } from '../crypto/canonical.js';
import { IntegrityError } from '../errors.js';
import { requireMac, type StorageMacKey } from '../keys/storage-mac.js';
import { describeError, type Logger } from '../log.js';
import { TableClient } from '../store/table-client.js';

/*
 * The principal directory: what the server last saw of each principal (groups, tags, issuer, kind,
 * auth method, time), so that access reports can evaluate people who are not in front of it.
 *
 * Layout (secrets table): pk = DIR, sk = P#<sha256(type, id) hex>. One partition, so the whole
 * directory is one paginated Query; the id is hashed into the key because a certificate
 * workload's id (two DNs) can be longer than a sort key may be.
 *
 * Entries feed reports, never decisions, but a report must not be forgeable silently, so each
 * entry carries
 *
 *   mac = HMAC-SHA256(storage key `mk`, encodeFields('coffer/directory/v1', [binding, sk, entry]))
 *
 * An entry that fails it is left out of reports and counted in their warnings (a table writer can
 * delete entries anyway, which has the same effect); a report about that one principal fails with
 * integrity_error instead of guessing its groups.
 *
 * Writes: at most one per principal per hour. The request path only calls `seen`, which answers
 * from an in-memory "last written" map and, at most once an hour per principal, starts a PutItem
 * without waiting for it (fire and forget): a request never waits for, nor fails with, the
 * directory. The put is conditioned on the stored entry being an hour old, so several instances
 * (Lambda environments) write a principal once an hour between them, not once each.
 */

export const DIRECTORY_PK = 'DIR';
export const DIRECTORY_MAC_DOMAIN = 'coffer/directory/v1';
/** A principal's entry is written at most this often. */
export const DIRECTORY_WRITE_INTERVAL_MS = 3_600_000;
/** After a failed write, the next request of that principal may try again after this long. */
const RETRY_AFTER_FAILURE_MS = 60_000;
/** Principals remembered in memory per process; past it, the oldest are forgotten. */
const DEFAULT_MEMORY = 10_000;
/** At most one log line per this interval for failed writes (with the count left out). */
const LOG_INTERVAL_MS = 60_000;

/** A stored entry: the principal as last seen, without its credential. */
export interface DirectoryEntry {
  readonly type: PrincipalType;
  readonly id: string;
  readonly groups: readonly string[];
  readonly tags: Readonly<Record<string, string>>;
  readonly authMethod: AuthMethod;
  readonly issuer?: string;
  readonly kind?: WorkloadKind;
  /** ISO time of the request that wrote the entry. */
  readonly lastSeen: string;
}

/** Every verified entry, and how many stored entries failed verification (left out). */
export interface DirectoryListing {
  readonly entries: readonly DirectoryEntry[];
  readonly unverified: number;
}

export interface PrincipalDirectoryOptions {
  readonly client: DynamoDBClient;
  /** The secrets table. */
  readonly table: string;
  readonly key: StorageMacKey;
  /** The stable installation id (as for heads and control records). */
  readonly binding: string;
  readonly logger: Logger;
  readonly now?: () => Date;
  /** Principals remembered per process (default 10 000). */
  readonly memory?: number;
}

/** The sort key of a principal's entry. */
export function directorySortKey(type: PrincipalType, id: string): string {
  return `P#${createHash('sha256')
    .update(canonicalJson([type, id]))
    .digest('hex')}`;
}

/** The entry a principal makes: what reports need, never its credential or fingerprint. */
export function entryOf(p: Principal, lastSeen: Date): DirectoryEntry {
  return {
    type: p.type,
    id: p.id,
    groups: [...p.groups].sort(),
    tags: ownRecord(Object.entries(p.attributes)),
    authMethod: p.authMethod,
    ...(p.issuer !== undefined ? { issuer: p.issuer } : {}),
    ...(p.kind !== undefined ? { kind: p.kind } : {}),
    lastSeen: lastSeen.toISOString(),
  };
}

/** The principal an entry describes, for a decision in a report. */
export function principalOfEntry(e: DirectoryEntry): Principal {
  return {
    type: e.type,
    id: e.id,
    groups: e.groups,
    attributes: e.tags,
    authMethod: e.authMethod,
    ...(e.issuer !== undefined ? { issuer: e.issuer } : {}),
    ...(e.kind !== undefined ? { kind: e.kind } : {}),
  };
}

const PRINCIPAL_TYPES: ReadonlySet<string> = new Set(['User', 'Role', 'Workload']);

/**
 * The principal directory (see the comment above for layout, MAC and the write bound).
 *
 * @example
 * const directory = new PrincipalDirectory({ client, table, key, binding, logger });
 * directory.seen(principal); // on each authenticated request: no await, no storage call most times
 * const alice = await directory.get('User', 'corp:alice');
 */
export class PrincipalDirectory {
  private readonly db: TableClient;
  private readonly now: () => Date;
  private readonly memory: number;
  /** `type:id` → when this process last wrote (or tried to write) the entry, ms. */
  private readonly lastWritten = new Map<string, number>();
  private readonly pending = new Set<Promise<unknown>>();
  private failures = 0;
  private lastLogged = 0;

  constructor(private readonly options: PrincipalDirectoryOptions) {
    this.db = new TableClient(options.client, options.table);
    this.now = options.now ?? (() => new Date());
    this.memory = Math.max(1, options.memory ?? DEFAULT_MEMORY);
  }

  /**
   * Notes that a principal made a request. Returns at once; at most once an hour per principal it
   * starts a write that nobody waits for. Never throws.
   */
  seen(principal: Principal): void {
    try {
      const now = this.now();
      const t = now.getTime();
      const key = `${principal.type}:${principal.id}`;
      const last = this.lastWritten.get(key);
      if (last !== undefined && t - last < DIRECTORY_WRITE_INTERVAL_MS) return;
      this.remember(key, t);
      const write = this.write(entryOf(principal, now)).catch((err: unknown) => {
        // Let the next request try again soon, without every request of an outage trying.
        this.remember(key, t - DIRECTORY_WRITE_INTERVAL_MS + RETRY_AFTER_FAILURE_MS);
        this.logFailure(err);
      });
      this.pending.add(write);
      void write.finally(() => this.pending.delete(write));
    } catch (err) {
      this.logFailure(err);
    }
  }

  /** Resolves when every write started so far has settled (tests, and a host shutting down). */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /**
   * Writes an entry unless the stored one is younger than the write interval. Resolves to whether
   * it wrote.
   */
  async write(entry: DirectoryEntry): Promise<boolean> {
    const sk = directorySortKey(entry.type, entry.id);
    const json = canonicalJson(entry);
    const seenAt = Date.parse(entry.lastSeen);
    try {
      await this.db.client.send(
        new PutItemCommand({
          TableName: this.options.table,
          Item: {
            pk: { S: DIRECTORY_PK },
            sk: { S: sk },
            type: { S: 'directory' },
            entry: { S: json },
            // Outside the MAC: it only gates how often the entry is rewritten.
            seenAt: { N: String(seenAt) },
            mk: { S: this.options.key.keyId },
            mac: { B: this.options.key.mac(this.bytes(sk, json)) },
          },
          // Another instance wrote this principal within the interval: leave its entry.
          ConditionExpression: 'attribute_not_exists(pk) OR seenAt < :cutoff',
          ExpressionAttributeValues: { ':cutoff': { N: String(seenAt - DIRECTORY_WRITE_INTERVAL_MS) } },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** The verified entry of a principal; undefined if none; IntegrityError if it fails its MAC. */
  async get(type: PrincipalType, id: string): Promise<DirectoryEntry | undefined> {
    const out = await this.db.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.options.table,
        Key: { pk: { S: DIRECTORY_PK }, sk: { S: directorySortKey(type, id) } },
        ConsistentRead: true,
      }),
    );
    if (!out.Item) return undefined;
    const entry = this.open(out.Item);
    if (entry.type !== type || entry.id !== id) throw new IntegrityError();
    return entry;
  }

  /** Every verified entry (a paginated Query of one partition, never a Scan). */
  async list(): Promise<DirectoryListing> {
    const entries: DirectoryEntry[] = [];
    let unverified = 0;
    let start: QueryCommandInput['ExclusiveStartKey'];
    do {
      const page = await this.db.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.options.table,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: DIRECTORY_PK } },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of page.Items ?? []) {
        try {
          entries.push(this.open(item));
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw err;
          unverified++;
        }
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return { entries, unverified };
  }

  private open(item: NonNullable<GetItemCommandOutput['Item']>): DirectoryEntry {
    const sk = item.sk?.S;
    const json = item.entry?.S;
    if (item.pk?.S !== DIRECTORY_PK || sk === undefined || json === undefined) throw new IntegrityError();
    requireMac(this.options.key, item.mk?.S, this.bytes(sk, json), item.mac?.B);
    let entry: DirectoryEntry;
    try {
      entry = JSON.parse(json) as DirectoryEntry;
    } catch {
      throw new IntegrityError();
    }
    // The key must be the one the entry's principal hashes to: an entry moved to another slot fails.
    if (!PRINCIPAL_TYPES.has(entry.type) || directorySortKey(entry.type, entry.id) !== sk) {
      throw new IntegrityError();
    }
    return { ...entry, tags: ownRecord(Object.entries(entry.tags ?? {})) };
  }

  private bytes(sk: string, json: string): Buffer {
    return encodeFields(DIRECTORY_MAC_DOMAIN, [this.options.binding, sk, json]);
  }

  private remember(key: string, t: number): void {
    // Re-inserted, so that Map order is the order of writes and the first key is the oldest.
    this.lastWritten.delete(key);
    this.lastWritten.set(key, t);
    while (this.lastWritten.size > this.memory) {
      const oldest = this.lastWritten.keys().next().value as string;
      this.lastWritten.delete(oldest);
    }
  }

  private logFailure(err: unknown): void {
    this.failures++;
    const t = Date.now();
    if (t - this.lastLogged < LOG_INTERVAL_MS) return;
    this.lastLogged = t;
    this.options.logger.warn('principal directory write failed', {
      failures: this.failures,
      ...describeError(err),
    });
    this.failures = 0;
  }
}
