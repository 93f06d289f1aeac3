import type { KeyObject } from 'node:crypto';
import { asCheckpoint } from './checkpoint.js';
import { checkpointMessage, isSequenceNumber as isSeq, verifyRootSignature } from './record.js';
import type { ReportProblem } from './verify-problems.js';

/**
 * Checks the checkpoint sequence, fed in order: each checkpoint is signed by a trusted root key,
 * carries the previous one's signature, and no sequence number is missing. The heads of validly
 * signed checkpoints are collected for the chains to check their records against.
 */
export class CheckpointVerifier {
  /** chain -> seq -> hash, from every validly signed checkpoint. */
  private readonly signed = new Map<string, Map<number, string>>();
  private last: { seq: number; sig: string; time: string } | undefined;
  private verified = 0;

  constructor(
    private readonly rootKeys: readonly KeyObject[],
    private readonly report: ReportProblem,
  ) {}

  /** For the report: every well-formed checkpoint fed, and an anchor whose signature holds. */
  get count(): number {
    return this.verified;
  }

  /** The newest checkpoint fed; its time is '' when its signature failed. */
  get newest(): { readonly seq: number; readonly time: string } | undefined {
    return this.last ? { seq: this.last.seq, time: this.last.time } : undefined;
  }

  /** The heads of `chain` that verified checkpoints signed: seq -> hash. */
  signedHeads(chain: string): ReadonlyMap<number, string> | undefined {
    return this.signed.get(chain);
  }

  /** Chains the verified checkpoints name. */
  chains(): string[] {
    return [...this.signed.keys()];
  }

  add(raw: Record<string, unknown>, keySeq?: number): void {
    const cp = asCheckpoint(raw);
    if (
      !cp ||
      !isSeq(cp.seq) ||
      !cp.heads.every((h) => h && typeof h.chain === 'string' && isSeq(h.seq) && typeof h.hash === 'string')
    ) {
      this.report({
        kind: 'malformed',
        ...(keySeq !== undefined ? { checkpoint: keySeq } : {}),
        message: 'a checkpoint item is malformed',
      });
      return;
    }
    this.verified++;
    const at = { checkpoint: cp.seq };
    if (keySeq !== undefined && keySeq !== cp.seq) {
      this.report({
        kind: 'out_of_order',
        ...at,
        message: `checkpoint ${cp.seq} is stored in slot ${keySeq}`,
      });
    }
    const expected = (this.last?.seq ?? 0) + 1;
    let linked = true;
    if (cp.seq > expected) {
      this.report({
        kind: 'missing_checkpoint',
        ...at,
        message: `checkpoint ${expected}${cp.seq - 1 > expected ? `-${cp.seq - 1}` : ''} missing before checkpoint ${cp.seq}`,
      });
      linked = false;
    } else if (cp.seq < expected) {
      this.report({
        kind: 'out_of_order',
        ...at,
        message: `checkpoint ${cp.seq} follows checkpoint ${expected - 1}`,
      });
      return;
    }
    if (!verifyRootSignature(this.rootKeys, checkpointMessage(raw), cp.sig)) {
      this.report({
        kind: 'bad_checkpoint_signature',
        ...at,
        message: `checkpoint ${cp.seq} is not signed by a trusted root key`,
      });
      // Its heads and time are not trusted; it keeps its place so that one forgery is one problem.
      this.last = { seq: cp.seq, sig: cp.sig, time: this.last?.time ?? '' };
      return;
    }
    if (linked && cp.prevSig !== (this.last?.sig ?? '')) {
      this.report({
        kind: 'checkpoint_link_broken',
        ...at,
        message: `checkpoint ${cp.seq} does not carry the signature of checkpoint ${expected - 1}`,
      });
    }
    this.last = { seq: cp.seq, sig: cp.sig, time: cp.time };
    for (const head of cp.heads) {
      let seqs = this.signed.get(head.chain);
      if (!seqs) {
        seqs = new Map();
        this.signed.set(head.chain, seqs);
      }
      seqs.set(head.seq, head.hash);
    }
  }

  /**
   * Starts the sequence at an already-written checkpoint (incremental verification): its
   * signature is checked, its own link and heads are not, and the next checkpoint must link to it.
   */
  anchor(raw: Record<string, unknown>): void {
    const cp = asCheckpoint(raw);
    if (!cp || !isSeq(cp.seq)) {
      this.report({ kind: 'malformed', message: 'a checkpoint item is malformed' });
      return;
    }
    if (!verifyRootSignature(this.rootKeys, checkpointMessage(raw), cp.sig)) {
      this.report({
        kind: 'bad_checkpoint_signature',
        checkpoint: cp.seq,
        message: `checkpoint ${cp.seq} is not signed by a trusted root key`,
      });
      this.last = { seq: cp.seq, sig: cp.sig, time: '' };
      return;
    }
    this.verified++;
    this.last = { seq: cp.seq, sig: cp.sig, time: cp.time };
  }

  /** A newest checkpoint older than `maxAgeMs` (or none) means checkpoints stopped or were removed. */
  checkFreshness(maxAgeMs: number, now: Date): void {
    const newest = this.last ? Date.parse(this.last.time) : Number.NaN;
    if (!Number.isFinite(newest) || now.getTime() - newest > maxAgeMs) {
      this.report({
        kind: 'stale_checkpoint',
        ...(this.last ? { checkpoint: this.last.seq } : {}),
        message: this.last
          ? `the newest checkpoint (${this.last.seq}, ${this.last.time}) is older than allowed`
          : 'there is no checkpoint',
      });
    }
  }
}
