import { asCheckpoint } from './checkpoint.js';
import type { AuditReader } from './reader.js';
import type { RequestRecord } from './record.js';

/**
 * Reading the audit log for people: export to JSON lines, the newest records, and simple queries.
 * (For large windows, CloudWatch Logs Insights over the stdout copy is the better tool; see
 * docs/audit.md.)
 */

/**
 * The whole log as JSON lines: checkpoints in order, then each chain's index entry and records in
 * sequence order. Items are written exactly as stored (without table keys), so that
 * `coffer audit verify --file` checks the same bytes.
 */
export async function* exportLines(reader: AuditReader): AsyncGenerator<string> {
  const named = new Set<string>();
  for await (const { item } of reader.checkpoints()) {
    for (const head of asCheckpoint(item)?.heads ?? []) named.add(head.chain);
    yield JSON.stringify(item);
  }
  const seen = new Set<string>();
  const chains: string[] = [];
  for await (const entry of reader.chainIndex()) {
    seen.add(entry.chain);
    chains.push(entry.chain);
    yield JSON.stringify({ type: 'chain-index', chain: entry.chain, notAfter: entry.notAfter });
  }
  for (const chain of [...named].sort()) if (!seen.has(chain)) chains.push(chain);
  for (const chain of chains) {
    for await (const { item } of reader.records(chain)) yield JSON.stringify(item);
  }
}

export interface RecordFilter {
  /** Only records at or after this time (ISO 8601). */
  readonly since: string;
  readonly until?: string;
  /** Exact principal id (`dev:alice`, a role ARN). */
  readonly principal?: string;
  /** Path prefix. */
  readonly path?: string;
  readonly decision?: 'allow' | 'deny';
  readonly action?: string;
  readonly limit: number;
}

const isRequest = (item: Record<string, unknown>): boolean =>
  item.type === 'request' && typeof item.time === 'string';

function matches(r: RequestRecord, f: RecordFilter): boolean {
  if (r.time < f.since || (f.until !== undefined && r.time > f.until)) return false;
  if (f.principal !== undefined && r.principal?.id !== f.principal) return false;
  if (f.path !== undefined && !(r.path ?? '').startsWith(f.path)) return false;
  if (f.decision !== undefined && r.decision !== f.decision) return false;
  if (f.action !== undefined && r.action !== f.action) return false;
  return true;
}

const byTime = (a: RequestRecord, b: RequestRecord) =>
  a.time < b.time ? -1 : a.time > b.time ? 1 : a.requestId < b.requestId ? -1 : 1;

/**
 * Request records matching `filter`, oldest first, at most `limit` (the newest ones when there
 * are more). Reads the chains that were valid at or after `since` (the chain index, no scan).
 */
export async function queryRecords(reader: AuditReader, filter: RecordFilter): Promise<RequestRecord[]> {
  const found: RequestRecord[] = [];
  for await (const entry of reader.chainIndex(filter.since)) {
    for await (const { item } of reader.records(entry.chain, 1)) {
      if (!isRequest(item)) continue;
      const record = item as unknown as RequestRecord;
      if (matches(record, filter)) found.push(record);
    }
    // Keep memory bounded on long windows: only the newest `limit` can be returned.
    if (found.length > filter.limit * 4) found.sort(byTime).splice(0, found.length - filter.limit);
  }
  found.sort(byTime);
  return found.slice(Math.max(0, found.length - filter.limit));
}

/**
 * The newest `count` request records across all chains, oldest first. Walks chains from the
 * newest `notAfter` back and stops once a chain's validity ends before every record already held.
 */
export async function tailRecords(reader: AuditReader, count: number): Promise<RequestRecord[]> {
  const found: RequestRecord[] = [];
  for await (const entry of reader.chainIndex(undefined, { descending: true })) {
    if (found.length >= count) {
      found.sort(byTime);
      const oldestKept = found[found.length - count] as RequestRecord;
      // A chain takes no records after its notAfter: it cannot hold anything newer.
      if (entry.notAfter < oldestKept.time) break;
    }
    for await (const { item } of reader.latestRecords(entry.chain, count)) {
      if (isRequest(item)) found.push(item as unknown as RequestRecord);
    }
  }
  found.sort(byTime);
  return found.slice(Math.max(0, found.length - count));
}
