import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ConditionalCheckFailedException,
  PutItemCommand,
  type ScanCommandInput,
} from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { IntegrityError } from '../errors.js';
import type { ControlRecords } from './control-records.js';
import { hasHeadMac } from './head-mac.js';
import { headFromItem } from './item-codec.js';
import { isHeadSortKey } from './keys.js';
import type { SecretsStore } from './secrets-store.js';
import { mapStorageError } from './storage-errors.js';

/*
 * Heads written before heads carried MACs. They are never trusted as they are: a reader refuses
 * every head without a valid MAC. Instead this one-time migration MACs every legacy head and then
 * records, in an authenticated control record, that all heads are MAC'd. It runs only where the
 * installation says so — the local server at start while its data dir has no migration marker
 * (the data dir, which holds the keys, is out of a table writer's reach), or the checkpoint
 * function in AWS while no signed audit checkpoint has ever named the HEADS_STATE record
 * (migrateLegacyHeadsUnlessSigned) — so a table writer who strips a MAC and deletes the record
 * cannot wait for a migration to bless their edit.
 */

/** The control record that says every head carries a MAC. */
export const HEADS_STATE = { kind: 'storage', id: 'heads' } as const;

export interface HeadsState {
  /** True once every head carries a MAC; heads without one are then refused everywhere. */
  readonly allHeadsMaced: boolean;
  readonly migratedAt: string;
  /** How many legacy heads the migration MAC'd. */
  readonly migrated: number;
}

export interface MigrationResult {
  /** Legacy heads MAC'd by this run. */
  readonly migrated: number;
  /** The control record already said every head is MAC'd: nothing was read. */
  readonly alreadyDone: boolean;
}

/**
 * MACs every head of the table that has none (each with a conditional put, so a head changed
 * meanwhile is left to the writer that changed it — which MACs it), then writes the HEADS_STATE
 * record. Idempotent and resumable: a run cut short is simply run again.
 */
export async function migrateLegacyHeads(
  store: SecretsStore,
  control: ControlRecords,
  now: () => Date = () => new Date(),
): Promise<MigrationResult> {
  const state = await control.get<HeadsState>(HEADS_STATE.kind, HEADS_STATE.id);
  if (state?.payload.allHeadsMaced) return { migrated: 0, alreadyDone: true };
  const migrated = await macLegacyHeads(store);
  await control.put<HeadsState>(
    HEADS_STATE.kind,
    HEADS_STATE.id,
    { allHeadsMaced: true, migratedAt: now().toISOString(), migrated },
    state?.generation ?? 0,
  );
  return { migrated, alreadyDone: false };
}

/**
 * The AWS trigger (the checkpoint function, every run): one verified control-record read once the
 * migration is done. Before, it migrates only if the newest signed checkpoint (`signed`, verified
 * by the caller) never named HEADS_STATE: once a checkpoint has signed it, the record existed, and
 * its absence is a rollback by a table writer — IntegrityError, never a migration that would MAC
 * heads the writer stripped or forged. Right after the upgrade no checkpoint has signed it yet,
 * and every head without a MAC was written by the version before, under the trust it had then.
 */
export async function migrateLegacyHeadsUnlessSigned(
  store: SecretsStore,
  control: ControlRecords,
  signed: Readonly<Record<string, number>>,
  now: () => Date = () => new Date(),
): Promise<MigrationResult> {
  const state = await control.get<HeadsState>(HEADS_STATE.kind, HEADS_STATE.id);
  if (state?.payload.allHeadsMaced) return { migrated: 0, alreadyDone: true };
  if (signed[`${HEADS_STATE.kind}/${HEADS_STATE.id}`] !== undefined) throw new IntegrityError();
  return migrateLegacyHeads(store, control, now);
}

/**
 * MACs every head of the table that has none, each with a conditional put (a head changed
 * meanwhile is left to the writer that changed it, which MACs it). Returns how many.
 */
async function macLegacyHeads(store: SecretsStore): Promise<number> {
  let migrated = 0;
  let start: ScanCommandInput['ExclusiveStartKey'];
  do {
    // A scan, once per installation: heads are spread over one partition per first segment.
    const page = await store.scanLegacyHeads(start);
    for (const raw of page.items) {
      if (hasHeadMac(raw) || !isHeadSortKey(String(raw.sk?.S))) continue;
      const head = headFromItem(unmarshall(raw));
      try {
        await store.client.send(
          new PutItemCommand({
            TableName: store.table,
            Item: store.sealHead(head, undefined),
            // Only the head as it was read, and still without a MAC.
            ConditionExpression: 'attribute_not_exists(mac) AND latest = :l AND updatedAt = :u',
            ExpressionAttributeValues: { ':l': { N: String(head.latest) }, ':u': { S: head.updatedAt } },
          }),
        );
        migrated++;
      } catch (err) {
        if (!(err instanceof ConditionalCheckFailedException)) throw mapStorageError(err);
      }
    }
    start = page.next;
  } while (start);
  return migrated;
}

/** The marker a local data dir keeps once its table's heads are all MAC'd. */
export const LOCAL_MIGRATION_MARKER = 'heads-maced.json';

/**
 * The local server's migration: run once per data dir, before anything is served. The marker in
 * `<dataDir>/keys/` (beside the keys, out of a table writer's reach) is the record that it ran —
 * not a control record in the table, which another data dir's key may have written when tables are
 * shared (tests): from then on a head without a MAC is refused, whatever the table says.
 */
export async function migrateDataDirHeads(store: SecretsStore, dataDir: string): Promise<MigrationResult> {
  const marker = join(dataDir, 'keys', LOCAL_MIGRATION_MARKER);
  try {
    await access(marker);
    return { migrated: 0, alreadyDone: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const migrated = await macLegacyHeads(store);
  await writeFile(
    marker,
    `${JSON.stringify({ table: store.table, migrated, at: new Date().toISOString() })}\n`,
    {
      mode: 0o600,
    },
  );
  return { migrated, alreadyDone: false };
}
