import { CofferError } from '../errors.js';
import type { ControlRecords } from '../store/control-records.js';
import type { SecretsStore } from '../store/secrets-store.js';
import type { AuditReader } from './reader.js';

/*
 * `coffer audit verify --storage`: compares the live heads with the audit log. Every committed
 * change's record names the head it wrote (revision and MAC, lib/audit/record.ts `head`), so a
 * head that a table writer replaced with an older, validly MAC'd copy — which the head MAC alone
 * cannot tell from the current one — shows as a revision lower than the audited one, or the same
 * revision with another MAC. Run it with the chain verification (`coffer audit verify`): it reads
 * records as they are and relies on that verification for their signatures.
 */

export type StorageProblemKind =
  /** The live head's revision is lower than the last audited one: an older head was put back. */
  | 'rolled_back'
  /** Same revision, another MAC: a different head than the one the change wrote. */
  | 'mismatch'
  /** The live head is ahead of every audited change: written without an audit record. */
  | 'unaudited'
  /** The live head fails its own MAC. */
  | 'invalid'
  /** No live head, though the last audited change did not delete the secret. */
  | 'missing'
  /** A control record's live generation is lower than the newest checkpoint signed (or it is gone). */
  | 'control_rolled_back';

export interface StorageProblem {
  /** The secret's path, or `<kind>/<id>` of a control record. */
  readonly path: string;
  readonly kind: StorageProblemKind;
  readonly auditedRev: number;
  readonly liveRev: number | null;
}

export interface StorageReport {
  /** Paths with at least one audited change that names its head. */
  readonly checked: number;
  readonly problems: StorageProblem[];
}

interface Audited {
  rev: number;
  mac: string;
  action: string;
}

/** The latest audited head (highest revision) per path, from every chain of the audit table. */
async function auditedHeads(reader: AuditReader): Promise<Map<string, Audited>> {
  const latest = new Map<string, Audited>();
  for await (const { chain } of reader.chainIndex()) {
    for await (const { item } of reader.records(chain)) {
      const head = item.head as { rev?: unknown; mac?: unknown } | null | undefined;
      if (item.type !== 'request' || item.status !== 200 || typeof item.path !== 'string' || !head) continue;
      if (typeof head.rev !== 'number' || typeof head.mac !== 'string') continue;
      const seen = latest.get(item.path);
      if (!seen || head.rev > seen.rev) {
        latest.set(item.path, { rev: head.rev, mac: head.mac, action: String(item.action) });
      }
    }
  }
  return latest;
}

/**
 * The control records' live generations against those the newest checkpoint signed. Reads the
 * records unverified, so that one failing its MAC is reported rather than stopping the pass (the
 * `integrity_error` of the API reports those).
 */
async function controlRollbacks(reader: AuditReader, control: ControlRecords): Promise<StorageProblem[]> {
  const [newest] = await reader.latestCheckpoints(1);
  const signed = newest?.item.generations as Record<string, unknown> | undefined;
  if (!signed || typeof signed !== 'object') return [];
  const live = await control.rawGenerations();
  const problems: StorageProblem[] = [];
  for (const [key, generation] of Object.entries(signed).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (typeof generation !== 'number') continue;
    const now = live[key];
    if (now === undefined || now < generation) {
      problems.push({ path: key, kind: 'control_rolled_back', auditedRev: generation, liveRev: now ?? null });
    }
  }
  return problems;
}

/**
 * Compares every audited path's live head with the head its last audited change wrote, and, with
 * `control`, every control record's generation with the newest checkpoint's.
 */
export async function verifyStorage(
  reader: AuditReader,
  store: SecretsStore,
  control?: ControlRecords,
): Promise<StorageReport> {
  const audited = await auditedHeads(reader);
  const problems: StorageProblem[] = control ? await controlRollbacks(reader, control) : [];
  for (const [path, last] of [...audited].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const raw = await store.getHeadItem(path);
    if (!raw) {
      // A soft-deleted secret is purged after its window without a request of its own.
      if (last.action !== 'delete')
        problems.push({ path, kind: 'missing', auditedRev: last.rev, liveRev: null });
      continue;
    }
    const liveRev = raw.rev?.N !== undefined ? Number(raw.rev.N) : null;
    try {
      store.openHead(raw, path);
    } catch (err) {
      if (!(err instanceof CofferError)) throw err;
      problems.push({ path, kind: 'invalid', auditedRev: last.rev, liveRev });
      continue;
    }
    const liveMac = raw.mac?.B ? Buffer.from(raw.mac.B).toString('base64') : '';
    if (liveRev === null || liveRev < last.rev) {
      problems.push({ path, kind: 'rolled_back', auditedRev: last.rev, liveRev });
    } else if (liveRev > last.rev) {
      problems.push({ path, kind: 'unaudited', auditedRev: last.rev, liveRev });
    } else if (liveMac !== last.mac) {
      problems.push({ path, kind: 'mismatch', auditedRev: last.rev, liveRev });
    }
  }
  return { checked: audited.size, problems };
}
