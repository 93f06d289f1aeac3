import { type CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IntegrityError } from '../errors.js';
import type { RootSigner } from '../keys/provider.js';
import { describeError, type Logger, silentLogger } from '../log.js';
import { asCheckpoint, Checkpointer, changedSince } from './checkpoint.js';
import { AuditReader } from './reader.js';
import type { Checkpoint } from './record.js';
import { AuditVerifier } from './verifier.js';
import type { Problem } from './verify-problems.js';

export const DEFAULT_METRIC_NAMESPACE = 'Coffer/Audit';

export interface CheckpointJobDeps {
  readonly dynamo: DynamoDBClient;
  /** The audit table. */
  readonly table: string;
  /** The root audit key (the KMS signer in AWS) that signs the checkpoint. */
  readonly root: RootSigner;
  /**
   * Root public keys (SPKI PEM) the verification trusts. Default: the root signer's own public key,
   * which the KMS signer fetches from KMS (GetPublicKey), never from the table. Pass older keys
   * here too after a root key rotation.
   */
  readonly trustedRootKeys?: readonly string[];
  /** Where the metrics go; without it, none are published. */
  readonly cloudwatch?: CloudWatchClient;
  /** Default `Coffer/Audit`. */
  readonly metricNamespace?: string;
  readonly logger?: Logger;
  /** Receives the checkpoint as one JSON line (stdout in the Lambda: the CloudWatch copy). */
  readonly sink?: (line: string) => void;
  readonly now?: () => Date;
  /** The secrets table's control records; without it, no generations are signed. */
  readonly storage?: CheckpointStorage;
}

/** What the job does with the secrets table's control records. */
export interface CheckpointStorage {
  /** The control records' current generations, each verified (ControlRecords.generations). */
  readonly generations: () => Promise<Record<string, number>>;
  /**
   * One-time upkeep (the legacy-head migration), run before the checkpoint is written and only
   * when the verification found no problem, given the generations the newest checkpoint signed —
   * verified by then, so a record it names is known to have existed.
   */
  readonly upkeep?: (signed: Readonly<Record<string, number>>) => Promise<void>;
}

/**
 * The generations to sign: the live ones, refused (IntegrityError) when one is lower than the
 * newest checkpoint signed, or gone. A fresh process has no memory of what it saw; the signed
 * checkpoint is that memory, so a record deleted or put back between two runs stops the
 * checkpoints (alarmed) instead of being signed over and forgotten.
 */
export function checkedGenerations(
  signed: Readonly<Record<string, number>>,
  live: Record<string, number>,
): Record<string, number> {
  for (const [key, generation] of Object.entries(signed)) {
    const now = live[key];
    if (now === undefined || now < generation) throw new IntegrityError();
  }
  return live;
}

export interface CheckpointJobResult {
  readonly checkpoint: { readonly seq: number; readonly time: string; readonly heads: number };
  readonly chainsVerified: number;
  readonly recordsVerified: number;
  readonly problemCount: number;
  /** The first problems found (see verify-problems.ts for the kinds). */
  readonly problems: readonly Problem[];
}

/**
 * The scheduled audit job (AWS: an EventBridge rule runs it every few minutes). It
 *
 * 1. verifies the newest checkpoint's signature and its link to the one before;
 * 2. verifies every chain that may have changed since that checkpoint, from the head the
 *    checkpoint signed (which must still be there: a removed tail is `truncated`) to its end —
 *    certificate, every signature, every link, every sequence number;
 * 3. writes the next checkpoint over the heads it just read (even when nothing happened);
 * 4. publishes `VerificationProblems`, `RecordsVerified`, `ChainsVerified` and
 *    `CheckpointsWritten` to CloudWatch, for an alarm on `VerificationProblems > 0`.
 *
 * A full verification of the whole table is `coffer audit verify`.
 */
export async function runCheckpointJob(deps: CheckpointJobDeps): Promise<CheckpointJobResult> {
  const logger = deps.logger ?? silentLogger;
  const now = deps.now ?? (() => new Date());
  const reader = new AuditReader(deps.dynamo, deps.table);
  const rootKeys = deps.trustedRootKeys ?? [await deps.root.publicKeyPem()];
  const verifier = new AuditVerifier({ rootKeys, indexComplete: false });

  const [latestItem, beforeItem] = await reader.latestCheckpoints(2);
  if (beforeItem) verifier.anchorCheckpoint(beforeItem.item);
  if (latestItem) verifier.addCheckpoint(latestItem.item, latestItem.keySeq);
  const latest: Checkpoint | undefined = latestItem ? asCheckpoint(latestItem.item) : undefined;

  // Chains that may have changed since the newest checkpoint, and the chains it signed (whose
  // signed heads must still be there).
  const anchors = new Map<string, { seq: number; hash: string }>();
  for (const head of latest?.heads ?? []) anchors.set(head.chain, { seq: head.seq, hash: head.hash });
  const active = new Set<string>();
  for await (const entry of reader.chainIndex(changedSince(latest))) {
    verifier.addIndexEntry(entry);
    active.add(entry.chain);
  }
  const chains = new Set(active);
  for (const chain of anchors.keys()) chains.add(chain);

  for (const chain of [...chains].sort()) {
    const genesis = await reader.getRecord(chain, 0);
    if (genesis) verifier.addRecord(genesis, chain, 0);
    const anchor = anchors.get(chain);
    if (anchor && anchor.seq > 0) verifier.resumeAt(chain, anchor.seq, anchor.hash);
    const from = anchor && anchor.seq > 0 ? anchor.seq : 1;
    for await (const { item, keySeq } of reader.records(chain, from)) verifier.addRecord(item, chain, keySeq);
    verifier.endChain(chain);
  }
  const report = verifier.finish();
  if (report.problemCount > 0) {
    logger.error('audit verification failed', {
      problemCount: report.problemCount,
      firstProblem: report.problems[0],
    });
  }

  const namespace = deps.metricNamespace ?? DEFAULT_METRIC_NAMESPACE;
  const publish = async (metrics: { name: string; value: number }[]) => {
    if (!deps.cloudwatch) return;
    try {
      await deps.cloudwatch.send(
        new PutMetricDataCommand({
          Namespace: namespace,
          MetricData: metrics.map((m) => ({
            MetricName: m.name,
            Value: m.value,
            Unit: 'Count',
            Timestamp: now(),
          })),
        }),
      );
    } catch (err) {
      // The checkpoint matters more than the metric; a missing datapoint alarms on its own
      // (treat missing data as breaching).
      logger.warn('publishing audit metrics failed', describeError(err));
    }
  };

  const storage = deps.storage;
  const signed: Readonly<Record<string, number>> = latest?.generations ?? {};
  const checkpointer = new Checkpointer({
    client: deps.dynamo,
    table: deps.table,
    root: deps.root,
    now,
    ...(deps.sink ? { sink: deps.sink } : {}),
    ...(storage ? { generations: async () => checkedGenerations(signed, await storage.generations()) } : {}),
  });
  let checkpoint: Checkpoint;
  try {
    if (storage?.upkeep) {
      // An unverified checkpoint is no evidence of what existed: no upkeep on its word.
      if (report.problemCount === 0) await storage.upkeep(signed);
      else logger.warn('storage upkeep skipped: the audit verification found problems');
    }
    // Only chains that may still change: a chain past its notAfter drops out of later checkpoints.
    checkpoint = await checkpointer.write(report.heads.filter((h) => active.has(h.chain)));
  } catch (err) {
    await publish([
      { name: 'VerificationProblems', value: report.problemCount },
      { name: 'CheckpointsWritten', value: 0 },
    ]);
    throw err;
  }
  await publish([
    { name: 'VerificationProblems', value: report.problemCount },
    { name: 'RecordsVerified', value: report.records },
    { name: 'ChainsVerified', value: report.chains },
    { name: 'CheckpointsWritten', value: 1 },
  ]);
  logger.info('audit checkpoint written', {
    checkpoint: checkpoint.seq,
    heads: checkpoint.heads.length,
    recordsVerified: report.records,
    problemCount: report.problemCount,
  });
  return {
    checkpoint: { seq: checkpoint.seq, time: checkpoint.time, heads: checkpoint.heads.length },
    chainsVerified: report.chains,
    recordsVerified: report.records,
    problemCount: report.problemCount,
    problems: report.problems,
  };
}
