/** The kinds of problem the verifier names. Stable strings: scripts and alarms may match them. */
export type ProblemKind =
  /** An item is not a record or checkpoint this verifier knows. */
  | 'malformed'
  /** A record's fields do not hash to its `hash`: a field was changed. */
  | 'hash_mismatch'
  /** A record is not signed by its chain's certified key: forged, or re-hashed after a change. */
  | 'bad_signature'
  /** A chain's certificate is not signed by a trusted root key, or does not match its chain. */
  | 'bad_certificate'
  /** A chain has records but no certificate (record 0). */
  | 'missing_certificate'
  /** A record's `prev` is not the hash of the record before it. */
  | 'broken_link'
  /** A sequence number is missing inside a chain: a record was deleted. */
  | 'missing_record'
  /** Records are out of sequence order: swapped or moved. */
  | 'out_of_order'
  /** Two records claim one sequence number of a chain. */
  | 'duplicate_record'
  /** A chain ends before the head a checkpoint signed: its tail was removed. */
  | 'truncated'
  /** The record at a head a checkpoint signed has another hash: it was replaced. */
  | 'head_mismatch'
  /** A checkpoint names a chain that is not in the log at all. */
  | 'missing_chain'
  /** The chain index disagrees with a chain's certificate, or misses a chain. */
  | 'index_mismatch'
  /** A checkpoint is not signed by a trusted root key. */
  | 'bad_checkpoint_signature'
  /** A checkpoint does not carry the previous checkpoint's signature. */
  | 'checkpoint_link_broken'
  /** A checkpoint sequence number is missing: a checkpoint was deleted. */
  | 'missing_checkpoint'
  /** The newest checkpoint is older than allowed: checkpoints stopped, or the newest were removed. */
  | 'stale_checkpoint'
  /** A record in the CloudWatch Logs copy is not in the table (`--against-logs`): it was deleted. */
  | 'missing_from_table'
  /** A record has another hash in the table than in the CloudWatch Logs copy: it was replaced. */
  | 'differs_from_logs';

export interface Problem {
  readonly kind: ProblemKind;
  readonly chain?: string;
  readonly seq?: number;
  readonly checkpoint?: number;
  readonly requestId?: string;
  readonly message: string;
}

/** Where the parts of a verification report what they find. */
export type ReportProblem = (problem: Problem) => void;

/**
 * The problems of one verification: the first `max` are kept (the first is the one to look at),
 * all are counted, so that a badly damaged log does not fill memory.
 */
export class ProblemLog {
  private readonly kept: Problem[] = [];
  private total = 0;

  constructor(private readonly max: number) {}

  readonly report: ReportProblem = (problem) => {
    this.total++;
    if (this.kept.length < this.max) this.kept.push(problem);
  };

  get problems(): readonly Problem[] {
    return this.kept;
  }

  get count(): number {
    return this.total;
  }
}
