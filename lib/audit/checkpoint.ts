import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { RootSigner } from '../keys/provider.js';
import { AuditReader } from './reader.js';
import {
  type Checkpoint,
  type CheckpointHead,
  checkpointMessage,
  logLine,
  RECORD_VERSION,
} from './record.js';
import { AuditSlotTaken, AuditWriter } from './writer.js';

/**
 * How far before the previous checkpoint's time the next one looks for chains that may have
 * changed: covers clock skew between writers and the checkpoint writer.
 */
export const CHECKPOINT_SLACK_MS = 5 * 60_000;

export interface CheckpointerOptions {
  readonly client: DynamoDBClient;
  readonly table: string;
  readonly root: RootSigner;
  readonly now?: () => Date;
  /** Receives each checkpoint as one JSON line (the CloudWatch copy). */
  readonly sink?: (line: string) => void;
  /**
   * Heads the writers in this process know they wrote (the local server's chains). Where one is
   * ahead of the table, the table lost records: the checkpoint signs the written head, so the
   * verifier reports the chain `truncated`, and `onBehind` is told.
   */
  readonly writtenHeads?: () => readonly CheckpointHead[];
  readonly onBehind?: (head: CheckpointHead, tableSeq: number | undefined) => void;
  /**
   * The current generations of the control records (ControlRecords.generations), signed into each
   * checkpoint. A failure (a record that fails its MAC or went back) fails the checkpoint: it is
   * never written with generations left out. Default: none signed.
   */
  readonly generations?: () => Promise<Record<string, number>>;
}

/** Reads a stored checkpoint's fields loosely (the verifier is what checks them). */
export function asCheckpoint(item: Record<string, unknown>): Checkpoint | undefined {
  if (item.type !== 'checkpoint' || typeof item.seq !== 'number' || typeof item.time !== 'string')
    return undefined;
  if (typeof item.sig !== 'string' || typeof item.prevSig !== 'string' || !Array.isArray(item.heads))
    return undefined;
  return item as unknown as Checkpoint;
}

/** The time from which chains may have changed since `previous` was written. */
export function changedSince(previous: Checkpoint | undefined): string | undefined {
  if (!previous) return undefined;
  const t = Date.parse(previous.time);
  return Number.isFinite(t) ? new Date(t - CHECKPOINT_SLACK_MS).toISOString() : undefined;
}

/**
 * Writes checkpoints: the head of every chain that may have changed since the previous checkpoint
 * (every chain whose `notAfter` is later than the previous checkpoint's time, less a slack), and
 * the previous checkpoint's signature, signed by the root key. Written on schedule even when
 * nothing happened, so a quiet period is provable and a missing checkpoint is a visible gap.
 */
export class Checkpointer {
  private readonly reader: AuditReader;
  private readonly writer: AuditWriter;
  private readonly now: () => Date;

  constructor(private readonly options: CheckpointerOptions) {
    this.reader = new AuditReader(options.client, options.table);
    this.writer = new AuditWriter(options.client, options.table);
    this.now = options.now ?? (() => new Date());
  }

  async latest(): Promise<Checkpoint | undefined> {
    return (await this.newestSlot()).checkpoint;
  }

  /**
   * The newest checkpoint slot: numbering follows the slot, so that one unreadable (altered)
   * checkpoint cannot stop checkpoints; the verifier reports it.
   */
  private async newestSlot(): Promise<{ seq: number; checkpoint?: Checkpoint }> {
    const [newest] = await this.reader.latestCheckpoints(1);
    if (!newest) return { seq: 0 };
    const checkpoint = asCheckpoint(newest.item);
    const seq = newest.keySeq ?? checkpoint?.seq ?? 0;
    return checkpoint ? { seq, checkpoint } : { seq };
  }

  /** The current head of every chain that may have changed since `previous`. */
  async collectHeads(previous: Checkpoint | undefined): Promise<CheckpointHead[]> {
    const chains: string[] = [];
    for await (const entry of this.reader.chainIndex(changedSince(previous))) chains.push(entry.chain);
    const heads: CheckpointHead[] = [];
    // A few Queries at a time: enough to be quick, few enough not to throttle the table.
    for (let i = 0; i < chains.length; i += 8) {
      const batch = await Promise.all(
        chains.slice(i, i + 8).map(async (chain) => {
          const head = await this.reader.head(chain);
          if (!head || typeof head.item.hash !== 'string' || head.keySeq === undefined) return undefined;
          return { chain, seq: head.keySeq, hash: head.item.hash };
        }),
      );
      for (const h of batch) if (h) heads.push(h);
    }
    return heads;
  }

  /** The table's heads, with this process's written heads where the table is behind them. */
  private withWrittenHeads(
    fromTable: CheckpointHead[],
    written: readonly CheckpointHead[],
  ): CheckpointHead[] {
    if (written.length === 0) return fromTable;
    const byChain = new Map(fromTable.map((h) => [h.chain, h]));
    for (const head of written) {
      const stored = byChain.get(head.chain);
      if (!stored || stored.seq < head.seq) {
        this.options.onBehind?.(head, stored?.seq);
        byChain.set(head.chain, head);
      }
    }
    return [...byChain.values()];
  }

  /**
   * Writes the next checkpoint. With `heads`, those (the checkpoint job passes what it just
   * verified); otherwise the current heads read from the table. Retries if another writer took
   * the sequence number first.
   */
  async write(heads?: readonly CheckpointHead[]): Promise<Checkpoint> {
    for (let attempt = 1; ; attempt++) {
      const slot = await this.newestSlot();
      const previous = slot.checkpoint;
      // Written heads first: each is durable before it is known, so a table read after it that
      // shows a shorter chain means records were removed (not that a write was still in flight).
      const written = heads ? [] : (this.options.writtenHeads?.() ?? []);
      const collected = heads ?? this.withWrittenHeads(await this.collectHeads(previous), written);
      const generations = this.options.generations ? await this.options.generations() : undefined;
      const body: Omit<Checkpoint, 'sig'> = {
        v: RECORD_VERSION,
        type: 'checkpoint',
        seq: slot.seq + 1,
        time: this.now().toISOString(),
        prevSig: previous?.sig ?? '',
        heads: [...collected].sort((a, b) => (a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0)),
        rootKeyId: this.options.root.keyId,
        rootAlg: this.options.root.algorithm,
        ...(generations ? { generations } : {}),
      };
      const sig = Buffer.from(await this.options.root.sign(checkpointMessage(body))).toString('base64');
      const checkpoint: Checkpoint = { ...body, sig };
      try {
        await this.writer.putCheckpoint(checkpoint);
      } catch (err) {
        if (err instanceof AuditSlotTaken && attempt < 3) continue;
        throw err;
      }
      if (this.options.sink) {
        try {
          this.options.sink(JSON.stringify(logLine(checkpoint)));
        } catch {
          // Best effort, like records.
        }
      }
      return checkpoint;
    }
  }
}
