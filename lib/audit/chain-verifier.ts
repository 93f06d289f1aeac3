import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  type CheckpointHead,
  certificateMessage,
  isSequenceNumber as isSeq,
  recordHash,
  verifyRecordSignature,
  verifyRootSignature,
} from './record.js';
import type { ReportProblem } from './verify-problems.js';

interface Pending {
  readonly item: Record<string, unknown>;
  readonly seq: number;
}

/** What one chain's check needs from the whole verification. */
export interface ChainContext {
  /** Root public keys given out of band: they certify the chain's writer key. */
  readonly rootKeys: readonly KeyObject[];
  readonly report: ReportProblem;
  /** The chain's heads that verified checkpoints signed (seq -> hash), read as records arrive. */
  readonly signedHeads: () => ReadonlyMap<number, string> | undefined;
}

/**
 * The state machine of one chain, fed its records in sequence order: record 0 certifies the
 * writer key, every later record is hashed, signed by that key and linked to the one before.
 * One record is held back when a sequence number is skipped, to tell two swapped records (one
 * `out_of_order`) from a deleted one (`missing_record`).
 */
export class ChainVerifier {
  private key: KeyObject | undefined;
  /** The certificate failed: signatures cannot be checked, the first problem says why. */
  private certBad = false;
  private sawCertificate = false;
  private validUntil: string | undefined;
  private expected = 0;
  /** Hash of the record before `expected`; undefined when unknown (after a gap). */
  private prevHash: string | undefined = '';
  private last = -1;
  private held: Pending | undefined;
  /** An anchor from a verified checkpoint: the record at this seq must have this hash. */
  private anchor: { seq: number; hash: string } | undefined;
  private reportedMissingCert = false;
  /** Sequence ranges reported missing: a record that shows up later in one is out of order. */
  private readonly gaps: [number, number][] = [];
  private done = false;

  constructor(
    readonly id: string,
    private readonly ctx: ChainContext,
  ) {}

  /** The validity end its certificate gives the writer key, once record 0 was verified. */
  get notAfter(): string | undefined {
    return this.validUntil;
  }

  /** The last sequence number placed in the chain (-1 before any). */
  get lastSeq(): number {
    return this.last;
  }

  get ended(): boolean {
    return this.done;
  }

  /** The chain's head as read, when its hash is known (not right after a gap). */
  head(): CheckpointHead | undefined {
    return this.last >= 0 && this.prevHash !== undefined
      ? { chain: this.id, seq: this.last, hash: this.prevHash }
      : undefined;
  }

  /** Records after the newest head a checkpoint signed (not yet sealed by one). */
  unsealedRecords(): number {
    const signed = this.ctx.signedHeads();
    const sealedUpTo = signed ? Math.max(...signed.keys()) : -1;
    return this.last > sealedUpTo ? this.last - sealedUpTo : 0;
  }

  /**
   * Starts the chain at a head a verified checkpoint signed, instead of at record 1 (incremental
   * verification). Call after the chain's record 0.
   */
  resumeAt(seq: number, hash: string): void {
    if (seq <= this.last) return;
    this.expected = seq;
    this.prevHash = undefined;
    this.anchor = { seq, hash };
  }

  /** One stored record; `keySeq` is the sequence number its sort key claims, when there is one. */
  add(raw: Record<string, unknown>, keySeq?: number): void {
    const chain = this.id;
    const seq = raw.seq;
    const where = { chain, ...(isSeq(seq) ? { seq } : keySeq !== undefined ? { seq: keySeq } : {}) };
    if (
      !isSeq(seq) ||
      typeof raw.sig !== 'string' ||
      typeof raw.hash !== 'string' ||
      typeof raw.prev !== 'string' ||
      (raw.type !== 'request' && raw.type !== 'chain-start')
    ) {
      this.ctx.report({ kind: 'malformed', ...where, message: 'a record item is malformed' });
      return;
    }
    const requestId = typeof raw.requestId === 'string' ? { requestId: raw.requestId } : {};
    if (raw.chain !== chain) {
      this.ctx.report({
        kind: 'out_of_order',
        ...where,
        ...requestId,
        message: `a record of chain ${String(raw.chain).slice(0, 80)} is stored in chain ${chain}`,
      });
      return;
    }
    if (keySeq !== undefined && keySeq !== seq) {
      this.ctx.report({
        kind: 'out_of_order',
        chain,
        seq: keySeq,
        ...requestId,
        message: `record ${seq} is stored in slot ${keySeq}`,
      });
      return;
    }
    // Content first: a changed field, a forged record.
    const computed = recordHash(raw);
    if (computed !== raw.hash) {
      this.ctx.report({
        kind: 'hash_mismatch',
        ...where,
        ...requestId,
        message: `record ${seq} of chain ${chain} does not match its hash: a field was changed`,
      });
    }
    if (raw.type === 'chain-start' && seq !== 0) {
      // Only record 0 may be a certificate; anything else claiming to be one is not signed by the chain.
      this.ctx.report({
        kind: 'bad_certificate',
        chain,
        seq,
        message: `chain ${chain}: a certificate record appears at record ${seq}`,
      });
      return;
    }
    if (raw.type === 'chain-start') {
      // A second record 0 is reported as a duplicate by sequencing.
      if (!this.sawCertificate) this.certificate(raw, seq);
    } else if (this.key) {
      if (!verifyRecordSignature(String(raw.hash), raw.sig, this.key)) {
        this.ctx.report({
          kind: 'bad_signature',
          ...where,
          ...requestId,
          message: `record ${seq} of chain ${chain} is not signed by the chain's certified key`,
        });
        // A forged record takes no place in the chain.
        return;
      }
    } else if (!this.certBad && !this.reportedMissingCert) {
      this.reportedMissingCert = true;
      this.ctx.report({
        kind: 'missing_certificate',
        chain,
        seq: 0,
        message: `chain ${chain} has no certificate record`,
      });
    }
    this.sequence({ item: raw, seq });
  }

  /**
   * The chain's records are all in: a held record's predecessor is missing, and a chain that
   * ends before a head a checkpoint signed lost its tail. Once only.
   */
  end(): void {
    if (this.done) return;
    this.done = true;
    this.flushHeld();
    const signed = this.ctx.signedHeads();
    if (signed) {
      const beyond = [...signed.keys()].filter((s) => s > this.last).sort((a, b) => a - b);
      const last = beyond[beyond.length - 1];
      if (last !== undefined) {
        this.ctx.report({
          kind: 'truncated',
          chain: this.id,
          seq: this.last + 1,
          message: `chain ${this.id} ends at record ${this.last} but a checkpoint signed record ${last}`,
        });
      }
    }
    this.held = undefined;
  }

  private certificate(raw: Record<string, unknown>, seq: number): void {
    this.sawCertificate = true;
    const checked = this.checkCertificate(raw, seq);
    if (typeof checked === 'string') {
      this.certBad = true;
      this.key = undefined;
      this.ctx.report({
        kind: 'bad_certificate',
        chain: this.id,
        seq,
        message: `chain ${this.id}: ${checked}`,
      });
      return;
    }
    this.key = checked.key;
    this.validUntil = checked.notAfter;
  }

  /** The certified key, or why the certificate does not hold. */
  private checkCertificate(
    raw: Record<string, unknown>,
    seq: number,
  ): { key: KeyObject; notAfter: string } | string {
    if (seq !== 0 || raw.prev !== '') return 'the certificate record is not record 0';
    const fields = {
      chain: String(raw.chain),
      time: String(raw.time),
      notAfter: String(raw.notAfter),
      writer: String(raw.writer),
      writerKey: String(raw.writerKey),
      writerAlg: 'Ed25519' as const,
      rootKeyId: String(raw.rootKeyId),
    };
    if (raw.writerAlg !== 'Ed25519') return 'the certified key is not Ed25519';
    if (typeof raw.certSig !== 'string') return 'the certificate carries no root signature';
    if (!verifyRootSignature(this.ctx.rootKeys, certificateMessage(fields), raw.certSig)) {
      return 'the certificate is not signed by a trusted root key';
    }
    let key: KeyObject;
    try {
      key = createPublicKey({ key: Buffer.from(fields.writerKey, 'base64'), format: 'der', type: 'spki' });
    } catch {
      return 'the certified key does not parse';
    }
    if (key.asymmetricKeyType !== 'ed25519') return 'the certified key is not Ed25519';
    if (!verifyRecordSignature(String(raw.hash), String(raw.sig), key)) {
      return 'the certificate record is not signed by the certified key';
    }
    return { key, notAfter: fields.notAfter };
  }

  /** Places a content-checked record in the chain's order, holding one record to tell a swap from a gap. */
  private sequence(rec: Pending): void {
    if (this.held) {
      const held = this.held;
      if (rec.seq === this.expected) {
        // The record after the one held: two records were swapped.
        this.ctx.report({
          kind: 'out_of_order',
          chain: this.id,
          seq: rec.seq,
          message: `records ${rec.seq} and ${held.seq} of chain ${this.id} are out of order`,
        });
        this.held = undefined;
        this.link(rec);
        this.sequence(held);
        return;
      }
      this.flushHeld();
    }
    if (rec.seq === this.expected) {
      this.link(rec);
    } else if (rec.seq <= this.last) {
      const late = this.gaps.some(([from, to]) => rec.seq >= from && rec.seq <= to);
      this.ctx.report({
        kind: late ? 'out_of_order' : 'duplicate_record',
        chain: this.id,
        seq: rec.seq,
        message: late
          ? `record ${rec.seq} of chain ${this.id} comes after record ${this.last}`
          : `record ${rec.seq} of chain ${this.id} appears twice`,
      });
    } else {
      this.held = rec;
    }
  }

  /** The held record never got its predecessor: the sequence numbers in between are missing. */
  private flushHeld(): void {
    const held = this.held;
    if (!held) return;
    this.held = undefined;
    const from = this.expected;
    const to = held.seq - 1;
    if (this.gaps.length < 1000) this.gaps.push([from, to]);
    this.ctx.report({
      kind: 'missing_record',
      chain: this.id,
      seq: from,
      message: `record${from === to ? ` ${from}` : `s ${from}-${to}`} of chain ${this.id} missing before record ${held.seq}`,
    });
    this.expected = held.seq;
    this.prevHash = undefined;
    this.link(held);
  }

  private link(rec: Pending): void {
    const hash = String(rec.item.hash);
    const prev = String(rec.item.prev);
    if (this.anchor && rec.seq === this.anchor.seq) {
      if (hash !== this.anchor.hash) {
        this.ctx.report({
          kind: 'head_mismatch',
          chain: this.id,
          seq: rec.seq,
          message: `record ${rec.seq} of chain ${this.id} is not the one the last checkpoint signed`,
        });
      }
      this.anchor = undefined;
    } else if (this.prevHash !== undefined && prev !== this.prevHash) {
      this.ctx.report({
        kind: 'broken_link',
        chain: this.id,
        seq: rec.seq,
        message: `record ${rec.seq} of chain ${this.id} does not link to record ${rec.seq - 1}`,
      });
    }
    const signed = this.ctx.signedHeads()?.get(rec.seq);
    if (signed !== undefined && signed !== hash) {
      this.ctx.report({
        kind: 'head_mismatch',
        chain: this.id,
        seq: rec.seq,
        message: `record ${rec.seq} of chain ${this.id} differs from the head a checkpoint signed`,
      });
    }
    this.prevHash = hash;
    this.last = rec.seq;
    this.expected = rec.seq + 1;
  }
}
