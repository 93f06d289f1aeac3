import { createPublicKey, type KeyObject } from 'node:crypto';
import { ChainVerifier } from './chain-verifier.js';
import { CheckpointVerifier } from './checkpoint-verifier.js';
import type { ChainIndexEntry } from './keys.js';
import type { CheckpointHead } from './record.js';
import { type Problem, ProblemLog } from './verify-problems.js';

export interface VerifyReport {
  readonly ok: boolean;
  readonly chains: number;
  readonly records: number;
  readonly checkpoints: number;
  readonly lastCheckpoint?: { readonly seq: number; readonly time: string };
  /** Records written after the newest checkpointed head of their chain (not yet sealed). */
  readonly unsealedRecords: number;
  /** The first problems found (at most `maxProblems`); the first one is the one to look at. */
  readonly problems: readonly Problem[];
  /** How many problems were found in all. */
  readonly problemCount: number;
  /** The head of each chain that was read (for the checkpoint job). */
  readonly heads: readonly CheckpointHead[];
}

export interface VerifierOptions {
  /** Root public keys given out of band (SPKI PEM or KeyObject). Never read from the table. */
  readonly rootKeys: readonly (KeyObject | string)[];
  readonly maxProblems?: number;
  /** Called every few hundred items with the number of items verified so far. */
  readonly onProgress?: (done: number) => void;
  /** With `now`, a newest checkpoint older than this is a `stale_checkpoint` problem. */
  readonly maxCheckpointAgeMs?: number;
  readonly now?: () => Date;
  /**
   * False when only part of the chain index is fed (incremental verification): a chain read but
   * absent from the fed entries is then not a problem. Default true.
   */
  readonly indexComplete?: boolean;
}

function toKey(k: KeyObject | string): KeyObject {
  return typeof k === 'string' ? createPublicKey(k) : k;
}

/**
 * Verifies an audit log against root public keys given out of band. Feed checkpoints first (in
 * order), then index entries and records (in sequence order within each chain; chains may
 * interleave), then call `finish`. Every signature, certificate, link, sequence number and
 * checkpoint is checked; problems are named with the chain and sequence number they concern.
 *
 * The checkpoint sequence is checked by CheckpointVerifier, each chain by its ChainVerifier;
 * this class routes items to them, checks the chain index against the chains, and reports.
 * The sources (an audit table, an export file) are in verify-sources.ts.
 */
export class AuditVerifier {
  private readonly rootKeys: KeyObject[];
  private readonly problems: ProblemLog;
  private readonly checkpoints: CheckpointVerifier;
  private readonly chains = new Map<string, ChainVerifier>();
  private readonly index = new Map<string, string>();
  private records = 0;
  private done = 0;

  constructor(private readonly options: VerifierOptions) {
    this.rootKeys = options.rootKeys.map(toKey);
    if (this.rootKeys.length === 0) throw new Error('the verifier needs at least one root public key');
    this.problems = new ProblemLog(options.maxProblems ?? 100);
    this.checkpoints = new CheckpointVerifier(this.rootKeys, this.problems.report);
  }

  private tick(): void {
    this.done++;
    if (this.done % 250 === 0) this.options.onProgress?.(this.done);
  }

  addCheckpoint(raw: Record<string, unknown>, keySeq?: number): void {
    this.tick();
    this.checkpoints.add(raw, keySeq);
  }

  /** An item that could not even be parsed (a line of an export). */
  addUnparsable(where: string): void {
    this.tick();
    this.problems.report({ kind: 'malformed', message: `${where} is not a JSON object` });
  }

  /**
   * Starts the checkpoint sequence at an already-written checkpoint (incremental verification):
   * its signature is checked, its own link and heads are not, and the next checkpoint must link to it.
   */
  anchorCheckpoint(raw: Record<string, unknown>): void {
    this.checkpoints.anchor(raw);
  }

  addIndexEntry(entry: ChainIndexEntry): void {
    if (this.index.has(entry.chain)) {
      this.problems.report({
        kind: 'index_mismatch',
        chain: entry.chain,
        message: 'chain listed twice in the index',
      });
    }
    this.index.set(entry.chain, entry.notAfter);
  }

  /** Chains the verified checkpoints name (so that a chain missing from the index is still read). */
  checkpointedChains(): string[] {
    return this.checkpoints.chains();
  }

  /**
   * Starts a chain at a head a verified checkpoint signed, instead of at record 1 (incremental
   * verification). Call after the chain's record 0.
   */
  resumeAt(chain: string, seq: number, hash: string): void {
    this.chain(chain).resumeAt(seq, hash);
  }

  private chain(id: string): ChainVerifier {
    let chain = this.chains.get(id);
    if (!chain) {
      chain = new ChainVerifier(id, {
        rootKeys: this.rootKeys,
        report: this.problems.report,
        signedHeads: () => this.checkpoints.signedHeads(id),
      });
      this.chains.set(id, chain);
    }
    return chain;
  }

  /**
   * One stored record. `chain` is the chain it is stored under (its partition key, or its own
   * field in an export); `keySeq` the sequence number its sort key claims, when there is one.
   */
  addRecord(raw: Record<string, unknown>, chain: string, keySeq?: number): void {
    this.tick();
    this.records++;
    this.chain(chain).add(raw, keySeq);
  }

  /** Call when a chain's records are all in (optional: `finish` ends every chain). */
  endChain(id: string): void {
    const chain = this.chains.get(id);
    if (!chain || chain.ended) return;
    chain.end();
    const indexed = this.index.get(id);
    if (this.index.size > 0 || indexed !== undefined) {
      if (indexed === undefined) {
        if (this.options.indexComplete !== false)
          this.problems.report({
            kind: 'index_mismatch',
            chain: id,
            message: `chain ${id} is not in the chain index`,
          });
      } else if (chain.notAfter !== undefined && indexed !== chain.notAfter) {
        this.problems.report({
          kind: 'index_mismatch',
          chain: id,
          message: `the chain index gives chain ${id} another validity than its certificate`,
        });
      }
    }
  }

  finish(): VerifyReport {
    for (const chain of this.chains.keys()) this.endChain(chain);
    for (const chain of this.checkpoints.chains()) {
      if (!this.chains.has(chain)) {
        this.problems.report({
          kind: 'missing_chain',
          chain,
          message: `a checkpoint names chain ${chain}, which is not in the log`,
        });
      }
    }
    for (const chain of this.index.keys()) {
      if (!this.chains.has(chain)) {
        this.problems.report({
          kind: 'missing_chain',
          chain,
          message: `the index names chain ${chain}, which has no records`,
        });
      }
    }
    const { maxCheckpointAgeMs, now } = this.options;
    if (maxCheckpointAgeMs !== undefined && now) this.checkpoints.checkFreshness(maxCheckpointAgeMs, now());
    let unsealed = 0;
    const heads: CheckpointHead[] = [];
    for (const chain of this.chains.values()) {
      unsealed += chain.unsealedRecords();
      const head = chain.head();
      if (head) heads.push(head);
    }
    this.options.onProgress?.(this.done);
    const newest = this.checkpoints.newest;
    return {
      ok: this.problems.count === 0,
      chains: this.chains.size,
      records: this.records,
      checkpoints: this.checkpoints.count,
      ...(newest ? { lastCheckpoint: newest } : {}),
      unsealedRecords: unsealed,
      problems: this.problems.problems,
      problemCount: this.problems.count,
      heads,
    };
  }
}
