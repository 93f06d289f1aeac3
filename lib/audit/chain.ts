import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import type { RootSigner } from '../keys/provider.js';
import {
  type AuditRecord,
  type ChainStartRecord,
  certificateMessage,
  RECORD_VERSION,
  type RequestRecord,
  recordHash,
  sealRecord,
  verifyRecordSignature,
} from './record.js';

/** How long a chain's key is used before a fresh chain takes over (see docs/audit.md). */
export const DEFAULT_CHAIN_LIFETIME_MS = 60 * 60_000;
/** A chain is retired this long before its `notAfter`, so an append in flight never passes it. */
const RETIRE_MARGIN_MS = 2 * 60_000;

/** `<UTC start, compact>-<96 random bits>`: sorts by start time, never collides. */
export function newChainId(now: Date): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(12).toString('hex')}`;
}

export type RequestBody = Omit<RequestRecord, 'v' | 'type' | 'chain' | 'seq' | 'prev' | 'hash' | 'sig'>;

/**
 * One writer's hash chain: an ephemeral Ed25519 key that never leaves the process, certified by
 * the root key in record 0, and the head (sequence and hash) of what is durably written.
 *
 * The head moves only when a write is known to be durable (`commit`). A write whose outcome is
 * unknown (a timeout, a 5xx) leaves the record `pending`: before the next append the writer reads
 * that sequence number back and adopts whatever record of this chain is there, so the chain stays
 * linear whether or not the uncertain write landed. Callers hold the chain exclusively (ChainPool)
 * while they seal and write, so two records never claim the same sequence number.
 */
export class WriterChain {
  readonly id: string;
  readonly startedAt: Date;
  readonly notAfter: Date;
  readonly publicKeyDer: string;
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  /** The certificate record, made once; written before any other record. */
  private genesis: ChainStartRecord | undefined;
  private started = false;
  private nextSeq = 0;
  private headHash = '';
  /** A record whose write may or may not have landed. */
  pending: AuditRecord | undefined;

  constructor(
    readonly writer: string,
    now: Date,
    lifetimeMs: number = DEFAULT_CHAIN_LIFETIME_MS,
  ) {
    this.id = newChainId(now);
    this.startedAt = now;
    this.notAfter = new Date(now.getTime() + lifetimeMs);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    this.privateKey = privateKey;
    this.publicKey = publicKey;
    this.publicKeyDer = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  }

  get isStarted(): boolean {
    return this.started;
  }

  get head(): { seq: number; hash: string } | undefined {
    return this.started ? { seq: this.nextSeq - 1, hash: this.headHash } : undefined;
  }

  /** True once appending would risk a record after `notAfter`: the pool replaces the chain. */
  retired(now: Date): boolean {
    return now.getTime() >= this.notAfter.getTime() - RETIRE_MARGIN_MS;
  }

  /** Record 0, with the root key's certificate over this chain's public key (made once). */
  async certificate(root: RootSigner): Promise<ChainStartRecord> {
    if (this.genesis) return this.genesis;
    const fields = {
      chain: this.id,
      time: this.startedAt.toISOString(),
      notAfter: this.notAfter.toISOString(),
      writer: this.writer,
      writerKey: this.publicKeyDer,
      writerAlg: 'Ed25519' as const,
      rootKeyId: root.keyId,
    };
    const certSig = Buffer.from(await root.sign(certificateMessage(fields))).toString('base64');
    this.genesis = sealRecord<ChainStartRecord>(
      {
        v: RECORD_VERSION,
        type: 'chain-start',
        seq: 0,
        prev: '',
        ...fields,
        rootAlg: root.algorithm,
        certSig,
      },
      this.privateKey,
    );
    return this.genesis;
  }

  /** Seals `body` as the next record of the chain, without moving the head. */
  seal(body: RequestBody): RequestRecord {
    if (!this.started) throw new Error('chain not started');
    return sealRecord<RequestRecord>(
      { v: RECORD_VERSION, type: 'request', chain: this.id, seq: this.nextSeq, prev: this.headHash, ...body },
      this.privateKey,
    );
  }

  /** The record is durably written: it becomes the head. */
  commit(record: AuditRecord): void {
    if (record.chain !== this.id || record.seq !== this.nextSeq || record.prev !== this.headHash) {
      throw new Error('record does not extend this chain');
    }
    this.started = true;
    this.nextSeq = record.seq + 1;
    this.headHash = record.hash;
    this.pending = undefined;
  }

  /**
   * Adopts a record found at the pending sequence number: it is this chain's own (signed with this
   * chain's key and linked to the head), written by a request whose outcome was unknown.
   */
  adopt(found: AuditRecord): boolean {
    if (
      found.chain !== this.id ||
      found.seq !== this.nextSeq ||
      found.prev !== this.headHash ||
      recordHash(found as unknown as Record<string, unknown>) !== found.hash ||
      !verifyRecordSignature(found.hash, found.sig, this.publicKey)
    ) {
      return false;
    }
    this.commit(found);
    return true;
  }

  /** The next sequence number a record of this chain will take. */
  get expectedSeq(): number {
    return this.nextSeq;
  }
}

/**
 * A fixed set of chains for one process. Each request takes a chain for the time it writes its
 * record (a change: for its whole transaction), so records of one chain are strictly sequential;
 * more chains let more requests write at once. Lambda serves one request at a time per execution
 * environment and needs one; the local server keeps a few.
 */
export class ChainPool {
  private readonly idle: WriterChain[] = [];
  private readonly waiters: ((chain: WriterChain) => void)[] = [];
  private created = 0;

  constructor(
    private readonly size: number,
    private readonly make: () => WriterChain,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new Error('a chain pool needs at least one chain');
  }

  /** Waits for a free chain (first come, first served). */
  acquire(): Promise<WriterChain> {
    const chain = this.idle.pop();
    if (chain) return Promise.resolve(chain);
    if (this.created < this.size) {
      this.created++;
      return Promise.resolve(this.make());
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Gives a chain back (or the fresh chain that took a retired one's slot). */
  release(chain: WriterChain): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(chain);
    else this.idle.push(chain);
  }

  /** Chains not in use right now (for checkpoints of a quiet server). */
  idleChains(): readonly WriterChain[] {
    return this.idle;
  }
}
