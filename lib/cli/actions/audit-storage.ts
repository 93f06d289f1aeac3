import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { InvalidArgumentError } from 'commander';
import type { AuditReader } from '../../audit/reader.js';
import { type StorageProblem, type StorageReport, verifyStorage } from '../../audit/storage-verifier.js';
import { localSettings } from '../../config.js';
import { deriveKmsMacKey } from '../../keys/kms.js';
import {
  HmacStorageMacKey,
  openLocalStorageMacKey,
  STORAGE_MAC_KEY_V1,
  STORAGE_MAC_LABEL_V1,
  type StorageMacKey,
} from '../../keys/storage-mac.js';
import { ControlRecords } from '../../store/control-records.js';
import { SecretsStore } from '../../store/secrets-store.js';
import type { CliIo } from '../io.js';

/** `coffer audit verify --storage` and the options it reads. */
export interface StorageOptions {
  storage?: boolean;
  secretsTable?: string;
  storageMacKeyId?: string;
  installationId?: string;
  table?: string;
  region?: string;
}

export interface StorageResult extends StorageReport {
  readonly table: string;
  readonly key: string;
}

/**
 * The storage MAC key: derived in KMS from `--storage-mac-key-id` (kms:GenerateMac, the same
 * derivation as the API's), else the local data dir's. A data dir without keys is refused rather
 * than given a fresh root key: a key made here would fail every head and say nothing useful.
 */
async function macKey(io: CliIo, opts: StorageOptions): Promise<{ key: StorageMacKey; from: string }> {
  if (opts.storageMacKeyId) {
    const client = new KMSClient(opts.region ? { region: opts.region } : {});
    try {
      const material = await deriveKmsMacKey({
        client,
        keyId: opts.storageMacKeyId,
        label: STORAGE_MAC_LABEL_V1,
      });
      try {
        return {
          key: new HmacStorageMacKey([{ id: STORAGE_MAC_KEY_V1, key: material }]),
          from: `KMS ${opts.storageMacKeyId}`,
        };
      } finally {
        material.fill(0);
      }
    } finally {
      client.destroy();
    }
  }
  if (opts.table && !opts.secretsTable) {
    throw new InvalidArgumentError(
      '--storage with --table needs --secrets-table (and --storage-mac-key-id for AWS)',
    );
  }
  const { dataDir } = localSettings(io.env, io.cwd);
  try {
    await access(join(dataDir, 'keys'));
  } catch {
    throw new InvalidArgumentError(
      `--storage needs the storage MAC key: give --storage-mac-key-id ARN (AWS), or run where the data dir is (${dataDir} has no keys)`,
    );
  }
  return { key: await openLocalStorageMacKey(dataDir), from: join(dataDir, 'keys') };
}

/**
 * The installation id heads are bound to: `--installation-id`, else the local data dir's (when
 * the key is the data dir's), else the secrets table's name — the default of an installation
 * deployed without the `installationId` context.
 */
async function installation(io: CliIo, opts: StorageOptions, table: string): Promise<string> {
  if (opts.installationId) return opts.installationId;
  if (!opts.storageMacKeyId) {
    const { dataDir } = localSettings(io.env, io.cwd);
    try {
      const id = (await readFile(join(dataDir, 'installation-id'), 'utf8')).trim();
      if (id) return id;
    } catch {
      // A data dir from before installation ids: bound to its table's name.
    }
  }
  return table;
}

/**
 * Compares the live heads and control-record generations of the secrets table with the audit log
 * read through `reader`, on the same DynamoDB `client`. Never writes.
 */
export async function verifyLiveStorage(
  io: CliIo,
  client: DynamoDBClient,
  reader: AuditReader,
  opts: StorageOptions,
): Promise<StorageResult> {
  const table = opts.secretsTable ?? localSettings(io.env, io.cwd).tables?.secrets;
  if (!table) throw new InvalidArgumentError('--storage needs --secrets-table');
  const { key, from } = await macKey(io, opts);
  const binding = await installation(io, opts, table);
  const store = new SecretsStore(client, table, {}, { key, binding });
  const control = new ControlRecords({ client, table, key, binding: store.binding });
  const report = await verifyStorage(reader, store, control);
  return { ...report, table, key: from };
}

const MEANING: Record<StorageProblem['kind'], string> = {
  rolled_back: 'an older head was put back',
  mismatch: 'not the head the audited change wrote',
  unaudited: 'written without an audit record',
  invalid: 'fails its MAC',
  missing: 'gone, though never deleted',
  control_rolled_back: 'control record older than the newest checkpoint signed',
};

export function describeStorageProblem(p: StorageProblem): string {
  return `${p.kind} (${p.path}, audited ${p.auditedRev}, live ${p.liveRev ?? 'none'}): ${MEANING[p.kind]}`;
}

/** The lines `coffer audit verify --storage` adds to verify's summary. */
export function storageSummary(result: StorageResult): string {
  const lines = [
    `Storage:     secrets table ${result.table}, MAC key ${result.key}, ${result.checked} paths checked`,
  ];
  if (result.problems.length === 0) {
    lines.push('OK: every live head and control record is the one the log names.');
  } else {
    const n = result.problems.length;
    lines.push(`FAILED: ${n} storage problem${n === 1 ? '' : 's'}.`);
    for (const p of result.problems.slice(0, 20)) lines.push(`  ${describeStorageProblem(p)}`);
    if (n > 20) lines.push(`  … and ${n - 20} more`);
  }
  return `${lines.join('\n')}\n`;
}
