/*
 * Key design of the audit table (pk/sk strings), shared by the append-only writer and the reader:
 *
 *   record      pk = C#<chain id>   sk = R#<12-digit seq>           record 0 is the chain's certificate
 *   chain index pk = CHAINS         sk = <notAfter ISO>#<chain id>  one per chain, written with record 0
 *   checkpoint  pk = CP             sk = <12-digit seq>             root-signed heads, linked in order
 *
 * The chain index is sorted by the time after which a chain takes no more records, so "the chains
 * that may have changed since T" is one Query (sk >= T) — that is how checkpoints find their heads
 * without a scan. Nothing in this table is ever updated or deleted by Coffer.
 */

export const CHAIN_INDEX_PK = 'CHAINS';
export const CHECKPOINT_PK = 'CP';

const pad = (n: number) => String(n).padStart(12, '0');

export const recordKey = (chain: string, seq: number) => ({ pk: `C#${chain}`, sk: `R#${pad(seq)}` });
export const chainIndexKey = (notAfter: string, chain: string) => ({
  pk: CHAIN_INDEX_PK,
  sk: `${notAfter}#${chain}`,
});
export const checkpointKey = (seq: number) => ({ pk: CHECKPOINT_PK, sk: pad(seq) });

/** The sequence number a record's sort key claims (the verifier checks it against the record's own). */
export function seqOfRecordKey(sk: string): number | undefined {
  const m = /^R#(\d{12})$/.exec(sk);
  return m ? Number(m[1]) : undefined;
}

export function seqOfCheckpointKey(sk: string): number | undefined {
  return /^\d{12}$/.test(sk) ? Number(sk) : undefined;
}

/** What the chain index says about one chain. */
export interface ChainIndexEntry {
  readonly chain: string;
  readonly notAfter: string;
}
