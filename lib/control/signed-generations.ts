import { createPublicKey } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { asCheckpoint } from '../audit/checkpoint.js';
import { AuditReader } from '../audit/reader.js';
import { checkpointMessage, verifyRootSignature } from '../audit/record.js';
import type { RootSigner } from '../keys/provider.js';
import type { Logger } from '../log.js';

/**
 * The control-record generations the newest audit checkpoint signed, when its signature verifies
 * with the root key. A fresh process (a Lambda cold start) has seen no record yet: without this,
 * a record deleted from the secrets table would read as "never written" there — a revocation
 * list gone, a pushed set replaced by the bundle. With it, the process refuses anything below
 * what was signed, as one that had been running would.
 *
 * A checkpoint that does not verify is no evidence and gives no floor (logged): an audit-table
 * writer could otherwise stop every instance with a forged one.
 */
export async function signedGenerations(
  client: DynamoDBClient,
  auditTable: string,
  root: RootSigner,
  logger: Logger,
): Promise<Record<string, number>> {
  const [newest] = await new AuditReader(client, auditTable).latestCheckpoints(1);
  if (!newest) return {};
  const checkpoint = asCheckpoint(newest.item);
  if (!checkpoint) {
    logger.warn('newest audit checkpoint is malformed; no generation floor from it');
    return {};
  }
  const key = createPublicKey(await root.publicKeyPem());
  if (!verifyRootSignature([key], checkpointMessage(newest.item), checkpoint.sig)) {
    logger.error('newest audit checkpoint does not verify; no generation floor from it', {
      checkpoint: checkpoint.seq,
    });
    return {};
  }
  return { ...(checkpoint.generations ?? {}) };
}
