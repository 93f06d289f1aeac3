import type { AuditReader } from './reader.js';
import { AuditVerifier, type VerifierOptions, type VerifyReport } from './verifier.js';

/* The sources a whole verification reads: an audit table, or a JSON-lines export of one. */

/** Verifies a whole audit table: every checkpoint, every chain in the index or named by one. */
export async function verifyTable(
  reader: AuditReader,
  options: VerifierOptions,
  /** Sees every stored record as it is verified (the comparison with the logs reads the table once). */
  onRecord?: (item: Record<string, unknown>, chain: string, keySeq: number | undefined) => void,
): Promise<VerifyReport> {
  const verifier = new AuditVerifier(options);
  for await (const { item, keySeq } of reader.checkpoints()) verifier.addCheckpoint(item, keySeq);
  const chains: string[] = [];
  for await (const entry of reader.chainIndex()) {
    verifier.addIndexEntry(entry);
    chains.push(entry.chain);
  }
  const listed = new Set(chains);
  // A chain a checkpoint names is read even if its index entry was removed.
  for (const chain of verifier.checkpointedChains().sort()) if (!listed.has(chain)) chains.push(chain);
  for (const chain of chains) {
    for await (const { item, keySeq } of reader.records(chain)) {
      verifier.addRecord(item, chain, keySeq);
      onRecord?.(item, chain, keySeq);
    }
    verifier.endChain(chain);
  }
  return verifier.finish();
}

/**
 * Verifies a JSON-lines export (`coffer audit export`). `lines` is called twice: checkpoints and
 * index entries are read first, records second, in file order (the order is part of what is checked).
 */
export async function verifyLines(
  lines: () => AsyncIterable<string>,
  options: VerifierOptions,
): Promise<VerifyReport> {
  const verifier = new AuditVerifier(options);
  let n = 0;
  const parse = (line: string): Record<string, unknown> | undefined => {
    try {
      const v = JSON.parse(line) as unknown;
      return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  };
  for await (const line of lines()) {
    n++;
    if (line.trim() === '') continue;
    const item = parse(line);
    if (item?.type === 'checkpoint') verifier.addCheckpoint(item);
    else if (
      item?.type === 'chain-index' &&
      typeof item.chain === 'string' &&
      typeof item.notAfter === 'string'
    ) {
      verifier.addIndexEntry({ chain: item.chain, notAfter: item.notAfter });
    }
  }
  n = 0;
  for await (const line of lines()) {
    n++;
    if (line.trim() === '') continue;
    const item = parse(line);
    if (!item) {
      verifier.addUnparsable(`line ${n}`);
      continue;
    }
    if (item.type === 'request' || item.type === 'chain-start') {
      verifier.addRecord(item, typeof item.chain === 'string' ? item.chain : '(none)');
    } else if (item.type !== 'checkpoint' && item.type !== 'chain-index') {
      verifier.addRecord(item, typeof item.chain === 'string' ? item.chain : '(none)');
    }
  }
  return verifier.finish();
}
