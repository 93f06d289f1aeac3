import type { DynamoDBClient, TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { AuditUnavailableError } from '../errors.js';
import type { RootSigner } from '../keys/provider.js';
import { ChainPool, DEFAULT_CHAIN_LIFETIME_MS, WriterChain } from './chain.js';
import { AuditReader } from './reader.js';
import { type AuditRecord, type CheckpointHead, type FieldHasher, logLine, requestFields } from './record.js';
import type { AuditContext, AuditOutcome, AuditTrail } from './trail.js';
import { AuditSlotTaken, AuditWriter } from './writer.js';

export interface DynamoAuditTrailOptions {
  readonly client: DynamoDBClient;
  /** The audit table. */
  readonly table: string;
  /** The root audit key that certifies each chain's key (local key, or KMS in AWS). */
  readonly root: RootSigner;
  /**
   * Keyed hash for sensitive request fields (query strings, client metadata). Without it those
   * fields are left out of records entirely, never stored raw.
   */
  readonly fieldHasher?: FieldHasher;
  /**
   * Receives each record as one JSON line once it is durable (stdout, for the CloudWatch copy).
   * Injected: lib never writes to stdout itself.
   */
  readonly sink?: (line: string) => void;
  /** Chains written in parallel by this process. Default 1 (Lambda); the local server uses a few. */
  readonly chains?: number;
  /** What kind of process writes (`local-server`, `lambda`), recorded in each certificate. */
  readonly writer?: string;
  /** How long one chain key is used. Default one hour. */
  readonly chainLifetimeMs?: number;
  readonly now?: () => Date;
}

/** The chain's state is not what this process wrote: it is abandoned for a fresh chain. */
class ChainDiverged extends Error {}

/**
 * The audit trail on DynamoDB: one signed, hash-chained record per request, written by an
 * append-only writer.
 *
 * - A change's record is one more Put in the change's own TransactWriteItems, so the change and
 *   its record commit together or not at all. The chain is held for the whole transaction: if it
 *   fails, the chain's head does not move, and `finish` writes the failure record with the same
 *   sequence number.
 * - Any other request's record is written by `finish` before the response leaves; if it cannot be
 *   written, `finish` throws and the app answers 503 `audit_unavailable` without the body.
 *
 * See docs/audit.md for the concurrency model and its cost under load.
 */
export class DynamoAuditTrail implements AuditTrail {
  private readonly writer: AuditWriter;
  private readonly reader: AuditReader;
  private readonly pool: ChainPool;
  private readonly now: () => Date;
  private readonly root: RootSigner;
  private readonly hasher: FieldHasher | undefined;
  private readonly sink: ((line: string) => void) | undefined;
  private readonly makeChain: () => WriterChain;
  /** Every chain this process started and has not yet seen sealed after it stopped taking records. */
  private readonly live = new Map<string, WriterChain>();
  /** Chains replaced (retired or abandoned): they take no more records. */
  private readonly replaced = new Set<string>();

  constructor(options: DynamoAuditTrailOptions) {
    this.writer = new AuditWriter(options.client, options.table);
    this.reader = new AuditReader(options.client, options.table);
    this.now = options.now ?? (() => new Date());
    this.root = options.root;
    this.hasher = options.fieldHasher;
    this.sink = options.sink;
    const writer = options.writer ?? 'coffer';
    const lifetime = options.chainLifetimeMs ?? DEFAULT_CHAIN_LIFETIME_MS;
    this.makeChain = () => {
      const chain = new WriterChain(writer, this.now(), lifetime);
      this.live.set(chain.id, chain);
      return chain;
    };
    this.pool = new ChainPool(options.chains ?? 1, this.makeChain);
  }

  async withChange<T>(ctx: AuditContext, run: (items: TransactWriteItem[]) => Promise<T>): Promise<T> {
    const chain = await this.take();
    try {
      // Written inside the change's transaction, so it can only ever describe a committed change.
      const record = chain.seal(requestFields(ctx, { status: 200 }, this.hasher));
      let result: T;
      try {
        result = await run([this.writer.recordPut(record)]);
      } catch (err) {
        // Most failures (a CAS conflict) cancel the whole transaction, but a timeout leaves its
        // outcome unknown: the next user of this chain reads the slot back before reusing it.
        chain.pending = record;
        throw err;
      }
      chain.commit(record);
      ctx.written = true;
      this.emit(record);
      return result;
    } finally {
      this.pool.release(chain);
    }
  }

  async finish(ctx: AuditContext, outcome: AuditOutcome): Promise<void> {
    if (ctx.written) return;
    const chain = await this.take();
    try {
      const fields = requestFields(ctx, outcome, this.hasher);
      for (let attempt = 1; ; attempt++) {
        const record = chain.seal(fields);
        try {
          await this.writer.append(record);
        } catch (err) {
          chain.pending = record;
          // The slot holds a record of this chain whose write seemed to fail: adopt it and retry.
          if (err instanceof AuditSlotTaken && attempt < 3) {
            await this.resync(chain);
            continue;
          }
          throw new AuditUnavailableError(err);
        }
        chain.commit(record);
        ctx.written = true;
        this.emit(record);
        return;
      }
    } catch (err) {
      if (err instanceof AuditUnavailableError) throw err;
      throw new AuditUnavailableError(err);
    } finally {
      this.pool.release(chain);
    }
  }

  /**
   * Starts a chain now (its certificate: one root signature and one write), so that the first
   * record does not wait for it. AuditUnavailableError when it cannot; the first record then tries again.
   */
  async prepare(): Promise<void> {
    this.pool.release(await this.take());
  }

  /** A chain ready to take the next record: started, current, not retired. */
  private async take(): Promise<WriterChain> {
    let chain = await this.pool.acquire();
    try {
      if (chain.retired(this.now())) {
        this.replaced.add(chain.id);
        chain = this.makeChain();
      }
      try {
        await this.ready(chain);
      } catch (err) {
        if (!(err instanceof ChainDiverged)) throw err;
        this.replaced.add(chain.id);
        chain = this.makeChain();
        await this.ready(chain);
      }
      return chain;
    } catch (err) {
      this.pool.release(chain);
      throw new AuditUnavailableError(err);
    }
  }

  /**
   * The head of each of this process's chains as this process wrote it: every record up to it is
   * known durable. A checkpoint that signs these catches a chain whose tail was removed from the
   * table after the previous checkpoint (the table's head is then behind).
   */
  writtenHeads(): CheckpointHead[] {
    const heads: CheckpointHead[] = [];
    for (const chain of this.live.values()) {
      const head = chain.head;
      if (head) heads.push({ chain: chain.id, seq: head.seq, hash: head.hash });
    }
    return heads;
  }

  /** A checkpoint signed these heads: replaced chains among them need not be remembered any more. */
  sealed(heads: readonly CheckpointHead[]): void {
    for (const head of heads) {
      const chain = this.live.get(head.chain);
      if (chain && this.replaced.has(head.chain) && chain.head?.seq === head.seq) {
        this.live.delete(head.chain);
        this.replaced.delete(head.chain);
      }
    }
  }

  private async ready(chain: WriterChain): Promise<void> {
    if (chain.pending) await this.resync(chain);
    if (chain.isStarted) return;
    const genesis = await chain.certificate(this.root);
    try {
      await this.writer.startChain(genesis);
    } catch (err) {
      chain.pending = genesis;
      if (err instanceof AuditSlotTaken) {
        await this.resync(chain);
        if (chain.isStarted) return;
      }
      throw err;
    }
    chain.commit(genesis);
    this.emit(genesis);
  }

  /**
   * Settles a write whose outcome was unknown: if its slot is empty, the sequence number is free
   * again; if it holds a record of this chain (signed by its key, linked to the head), that record
   * becomes the head. Anything else means the chain is not ours to continue.
   */
  private async resync(chain: WriterChain): Promise<void> {
    const pending = chain.pending;
    if (!pending) return;
    const found = await this.reader.getRecord(chain.id, pending.seq);
    if (!found) {
      chain.pending = undefined;
      return;
    }
    if (!chain.adopt(found as unknown as AuditRecord)) throw new ChainDiverged();
    this.emit(found as unknown as AuditRecord);
  }

  private emit(record: AuditRecord): void {
    if (!this.sink) return;
    try {
      this.sink(JSON.stringify(logLine(record)));
    } catch {
      // The stdout copy is best effort; the table holds the record of truth.
    }
  }
}
