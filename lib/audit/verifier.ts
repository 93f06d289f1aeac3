import { createPublicKey, type KeyObject } from 'node:crypto';
import { asCheckpoint } from './checkpoint.js';
import type { ChainIndexEntry } from './keys.js';
import type { AuditReader } from './reader.js';
import {
  type CheckpointHead,
  certificateMessage,
  checkpointMessage,
  recordHash,
  verifyRecordSignature,
  verifyRootSignature,
} from './record.js';

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
  | 'stale_checkpoint';

export interface Problem {
  readonly kind: ProblemKind;
  readonly chain?: string;
  readonly seq?: number;
  readonly checkpoint?: number;
  readonly requestId?: string;
  readonly message: string;
}

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

interface Pending {
  readonly item: Record<string, unknown>;
  readonly seq: number;
}

interface ChainState {
  readonly id: string;
  key: KeyObject | undefined;
  /** The certificate failed: signatures cannot be checked, the first problem says why. */
  certBad: boolean;
  sawCertificate: boolean;
  notAfter: string | undefined;
  expected: number;
  /** Hash of the record before `expected`; undefined when unknown (after a gap). */
  prevHash: string | undefined;
  lastSeq: number;
  held: Pending | undefined;
  /** An anchor from a verified checkpoint: the record at this seq must have this hash. */
  anchor: { seq: number; hash: string } | undefined;
  reportedMissingCert: boolean;
  /** Sequence ranges reported missing: a record that shows up later in one is out of order. */
  gaps: [number, number][];
  ended: boolean;
}

const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function toKey(k: KeyObject | string): KeyObject {
  return typeof k === 'string' ? createPublicKey(k) : k;
}

/**
 * Verifies an audit log against root public keys given out of band. Feed checkpoints first (in
 * order), then index entries and records (in sequence order within each chain; chains may
 * interleave), then call `finish`. Every signature, certificate, link, sequence number and
 * checkpoint is checked; problems are named with the chain and sequence number they concern.
 */
export class AuditVerifier {
  private readonly rootKeys: KeyObject[];
  private readonly maxProblems: number;
  private readonly problems: Problem[] = [];
  private problemCount = 0;
  private readonly chains = new Map<string, ChainState>();
  /** chain -> seq -> hash, from every validly signed checkpoint. */
  private readonly required = new Map<string, Map<number, string>>();
  private readonly index = new Map<string, string>();
  private lastCheckpoint: { seq: number; sig: string; time: string } | undefined;
  private checkpointCount = 0;
  private records = 0;
  private done = 0;

  constructor(private readonly options: VerifierOptions) {
    this.rootKeys = options.rootKeys.map(toKey);
    if (this.rootKeys.length === 0) throw new Error('the verifier needs at least one root public key');
    this.maxProblems = options.maxProblems ?? 100;
  }

  private report(problem: Problem): void {
    this.problemCount++;
    if (this.problems.length < this.maxProblems) this.problems.push(problem);
  }

  private tick(): void {
    this.done++;
    if (this.done % 250 === 0) this.options.onProgress?.(this.done);
  }

  addCheckpoint(raw: Record<string, unknown>, keySeq?: number): void {
    this.tick();
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
    this.checkpointCount++;
    const at = { checkpoint: cp.seq };
    if (keySeq !== undefined && keySeq !== cp.seq) {
      this.report({
        kind: 'out_of_order',
        ...at,
        message: `checkpoint ${cp.seq} is stored in slot ${keySeq}`,
      });
    }
    const expected = (this.lastCheckpoint?.seq ?? 0) + 1;
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
      this.lastCheckpoint = { seq: cp.seq, sig: cp.sig, time: this.lastCheckpoint?.time ?? '' };
      return;
    }
    if (linked && cp.prevSig !== (this.lastCheckpoint?.sig ?? '')) {
      this.report({
        kind: 'checkpoint_link_broken',
        ...at,
        message: `checkpoint ${cp.seq} does not carry the signature of checkpoint ${expected - 1}`,
      });
    }
    this.lastCheckpoint = { seq: cp.seq, sig: cp.sig, time: cp.time };
    for (const head of cp.heads) {
      let seqs = this.required.get(head.chain);
      if (!seqs) {
        seqs = new Map();
        this.required.set(head.chain, seqs);
      }
      seqs.set(head.seq, head.hash);
    }
  }

  /** An item that could not even be parsed (a line of an export). */
  addUnparsable(where: string): void {
    this.tick();
    this.report({ kind: 'malformed', message: `${where} is not a JSON object` });
  }

  /**
   * Starts the checkpoint sequence at an already-written checkpoint (incremental verification):
   * its signature is checked, its own link and heads are not, and the next checkpoint must link to it.
   */
  anchorCheckpoint(raw: Record<string, unknown>): void {
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
      this.lastCheckpoint = { seq: cp.seq, sig: cp.sig, time: '' };
      return;
    }
    this.checkpointCount++;
    this.lastCheckpoint = { seq: cp.seq, sig: cp.sig, time: cp.time };
  }

  addIndexEntry(entry: ChainIndexEntry): void {
    if (this.index.has(entry.chain)) {
      this.report({ kind: 'index_mismatch', chain: entry.chain, message: 'chain listed twice in the index' });
    }
    this.index.set(entry.chain, entry.notAfter);
  }

  /** Chains the verified checkpoints name (so that a chain missing from the index is still read). */
  checkpointedChains(): string[] {
    return [...this.required.keys()];
  }

  /**
   * Starts a chain at a head a verified checkpoint signed, instead of at record 1 (incremental
   * verification). Call after the chain's record 0.
   */
  resumeAt(chain: string, seq: number, hash: string): void {
    const state = this.state(chain);
    if (seq <= state.lastSeq) return;
    state.expected = seq;
    state.prevHash = undefined;
    state.anchor = { seq, hash };
  }

  private state(chain: string): ChainState {
    let state = this.chains.get(chain);
    if (!state) {
      state = {
        id: chain,
        key: undefined,
        certBad: false,
        sawCertificate: false,
        notAfter: undefined,
        expected: 0,
        prevHash: '',
        lastSeq: -1,
        held: undefined,
        anchor: undefined,
        reportedMissingCert: false,
        gaps: [],
        ended: false,
      };
      this.chains.set(chain, state);
    }
    return state;
  }

  /**
   * One stored record. `chain` is the chain it is stored under (its partition key, or its own
   * field in an export); `keySeq` the sequence number its sort key claims, when there is one.
   */
  addRecord(raw: Record<string, unknown>, chain: string, keySeq?: number): void {
    this.tick();
    this.records++;
    const state = this.state(chain);
    const seq = raw.seq;
    const where = { chain, ...(isSeq(seq) ? { seq } : keySeq !== undefined ? { seq: keySeq } : {}) };
    if (
      !isSeq(seq) ||
      typeof raw.sig !== 'string' ||
      typeof raw.hash !== 'string' ||
      typeof raw.prev !== 'string' ||
      (raw.type !== 'request' && raw.type !== 'chain-start')
    ) {
      this.report({ kind: 'malformed', ...where, message: 'a record item is malformed' });
      return;
    }
    const requestId = typeof raw.requestId === 'string' ? { requestId: raw.requestId } : {};
    if (raw.chain !== chain) {
      this.report({
        kind: 'out_of_order',
        ...where,
        ...requestId,
        message: `a record of chain ${String(raw.chain).slice(0, 80)} is stored in chain ${chain}`,
      });
      return;
    }
    if (keySeq !== undefined && keySeq !== seq) {
      this.report({
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
      this.report({
        kind: 'hash_mismatch',
        ...where,
        ...requestId,
        message: `record ${seq} of chain ${chain} does not match its hash: a field was changed`,
      });
    }
    if (raw.type === 'chain-start' && seq !== 0) {
      // Only record 0 may be a certificate; anything else claiming to be one is not signed by the chain.
      this.report({
        kind: 'bad_certificate',
        chain,
        seq,
        message: `chain ${chain}: a certificate record appears at record ${seq}`,
      });
      return;
    }
    if (raw.type === 'chain-start') {
      // A second record 0 is reported as a duplicate by sequencing.
      if (!state.sawCertificate) this.certificate(state, raw, seq);
    } else if (state.key) {
      if (!verifyRecordSignature(String(raw.hash), raw.sig, state.key)) {
        this.report({
          kind: 'bad_signature',
          ...where,
          ...requestId,
          message: `record ${seq} of chain ${chain} is not signed by the chain's certified key`,
        });
        // A forged record takes no place in the chain.
        return;
      }
    } else if (!state.certBad && !state.reportedMissingCert) {
      state.reportedMissingCert = true;
      this.report({
        kind: 'missing_certificate',
        chain,
        seq: 0,
        message: `chain ${chain} has no certificate record`,
      });
    }
    this.sequence(state, { item: raw, seq });
  }

  private certificate(state: ChainState, raw: Record<string, unknown>, seq: number): void {
    state.sawCertificate = true;
    const checked = this.checkCertificate(raw, seq);
    if (typeof checked === 'string') {
      state.certBad = true;
      state.key = undefined;
      this.report({
        kind: 'bad_certificate',
        chain: state.id,
        seq,
        message: `chain ${state.id}: ${checked}`,
      });
      return;
    }
    state.key = checked.key;
    state.notAfter = checked.notAfter;
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
    if (!verifyRootSignature(this.rootKeys, certificateMessage(fields), raw.certSig)) {
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

  /** Places a content-checked record in its chain's order, holding one record to tell a swap from a gap. */
  private sequence(state: ChainState, rec: Pending): void {
    if (state.held) {
      const held = state.held;
      if (rec.seq === state.expected) {
        // The record after the one held: two records were swapped.
        this.report({
          kind: 'out_of_order',
          chain: state.id,
          seq: rec.seq,
          message: `records ${rec.seq} and ${held.seq} of chain ${state.id} are out of order`,
        });
        state.held = undefined;
        this.link(state, rec);
        this.sequence(state, held);
        return;
      }
      this.flushHeld(state);
    }
    if (rec.seq === state.expected) {
      this.link(state, rec);
    } else if (rec.seq <= state.lastSeq) {
      const late = state.gaps.some(([from, to]) => rec.seq >= from && rec.seq <= to);
      this.report({
        kind: late ? 'out_of_order' : 'duplicate_record',
        chain: state.id,
        seq: rec.seq,
        message: late
          ? `record ${rec.seq} of chain ${state.id} comes after record ${state.lastSeq}`
          : `record ${rec.seq} of chain ${state.id} appears twice`,
      });
    } else {
      state.held = rec;
    }
  }

  /** The held record never got its predecessor: the sequence numbers in between are missing. */
  private flushHeld(state: ChainState): void {
    const held = state.held;
    if (!held) return;
    state.held = undefined;
    const from = state.expected;
    const to = held.seq - 1;
    if (state.gaps.length < 1000) state.gaps.push([from, to]);
    this.report({
      kind: 'missing_record',
      chain: state.id,
      seq: from,
      message: `record${from === to ? ` ${from}` : `s ${from}-${to}`} of chain ${state.id} missing before record ${held.seq}`,
    });
    state.expected = held.seq;
    state.prevHash = undefined;
    this.link(state, held);
  }

  private link(state: ChainState, rec: Pending): void {
    const hash = String(rec.item.hash);
    const prev = String(rec.item.prev);
    if (state.anchor && rec.seq === state.anchor.seq) {
      if (hash !== state.anchor.hash) {
        this.report({
          kind: 'head_mismatch',
          chain: state.id,
          seq: rec.seq,
          message: `record ${rec.seq} of chain ${state.id} is not the one the last checkpoint signed`,
        });
      }
      state.anchor = undefined;
    } else if (state.prevHash !== undefined && prev !== state.prevHash) {
      this.report({
        kind: 'broken_link',
        chain: state.id,
        seq: rec.seq,
        message: `record ${rec.seq} of chain ${state.id} does not link to record ${rec.seq - 1}`,
      });
    }
    const signed = this.required.get(state.id)?.get(rec.seq);
    if (signed !== undefined && signed !== hash) {
      this.report({
        kind: 'head_mismatch',
        chain: state.id,
        seq: rec.seq,
        message: `record ${rec.seq} of chain ${state.id} differs from the head a checkpoint signed`,
      });
    }
    state.prevHash = hash;
    state.lastSeq = rec.seq;
    state.expected = rec.seq + 1;
  }

  /** Call when a chain's records are all in (optional: `finish` ends every chain). */
  endChain(chain: string): void {
    const state = this.chains.get(chain);
    if (!state || state.ended) return;
    state.ended = true;
    this.flushHeld(state);
    const signed = this.required.get(chain);
    if (signed) {
      const beyond = [...signed.keys()].filter((s) => s > state.lastSeq).sort((a, b) => a - b);
      const last = beyond[beyond.length - 1];
      if (last !== undefined) {
        this.report({
          kind: 'truncated',
          chain,
          seq: state.lastSeq + 1,
          message: `chain ${chain} ends at record ${state.lastSeq} but a checkpoint signed record ${last}`,
        });
      }
    }
    const indexed = this.index.get(chain);
    if (this.index.size > 0 || indexed !== undefined) {
      if (indexed === undefined) {
        if (this.options.indexComplete !== false)
          this.report({ kind: 'index_mismatch', chain, message: `chain ${chain} is not in the chain index` });
      } else if (state.notAfter !== undefined && indexed !== state.notAfter) {
        this.report({
          kind: 'index_mismatch',
          chain,
          message: `the chain index gives chain ${chain} another validity than its certificate`,
        });
      }
    }
    state.held = undefined;
  }

  finish(): VerifyReport {
    for (const chain of this.chains.keys()) this.endChain(chain);
    for (const chain of this.required.keys()) {
      if (!this.chains.has(chain)) {
        this.report({
          kind: 'missing_chain',
          chain,
          message: `a checkpoint names chain ${chain}, which is not in the log`,
        });
      }
    }
    for (const chain of this.index.keys()) {
      if (!this.chains.has(chain)) {
        this.report({
          kind: 'missing_chain',
          chain,
          message: `the index names chain ${chain}, which has no records`,
        });
      }
    }
    const { maxCheckpointAgeMs, now } = this.options;
    if (maxCheckpointAgeMs !== undefined && now) {
      const newest = this.lastCheckpoint ? Date.parse(this.lastCheckpoint.time) : Number.NaN;
      if (!Number.isFinite(newest) || now().getTime() - newest > maxCheckpointAgeMs) {
        this.report({
          kind: 'stale_checkpoint',
          ...(this.lastCheckpoint ? { checkpoint: this.lastCheckpoint.seq } : {}),
          message: this.lastCheckpoint
            ? `the newest checkpoint (${this.lastCheckpoint.seq}, ${this.lastCheckpoint.time}) is older than allowed`
            : 'there is no checkpoint',
        });
      }
    }
    let unsealed = 0;
    const heads: CheckpointHead[] = [];
    for (const state of this.chains.values()) {
      const signed = this.required.get(state.id);
      const sealedUpTo = signed ? Math.max(...signed.keys()) : -1;
      if (state.lastSeq > sealedUpTo) unsealed += state.lastSeq - sealedUpTo;
      if (state.lastSeq >= 0 && state.prevHash !== undefined) {
        heads.push({ chain: state.id, seq: state.lastSeq, hash: state.prevHash });
      }
    }
    this.options.onProgress?.(this.done);
    return {
      ok: this.problemCount === 0,
      chains: this.chains.size,
      records: this.records,
      checkpoints: this.checkpointCount,
      ...(this.lastCheckpoint
        ? { lastCheckpoint: { seq: this.lastCheckpoint.seq, time: this.lastCheckpoint.time } }
        : {}),
      unsealedRecords: unsealed,
      problems: this.problems,
      problemCount: this.problemCount,
      heads,
    };
  }
}

/** Verifies a whole audit table: every checkpoint, every chain in the index or named by one. */
export async function verifyTable(reader: AuditReader, options: VerifierOptions): Promise<VerifyReport> {
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
    for await (const { item, keySeq } of reader.records(chain)) verifier.addRecord(item, chain, keySeq);
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
