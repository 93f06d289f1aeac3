import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { Checkpointer } from '../../lib/audit/checkpoint.js';
import { DynamoAuditTrail, type DynamoAuditTrailOptions } from '../../lib/audit/dynamo-trail.js';
import { checkpointKey, recordKey } from '../../lib/audit/keys.js';
import { AuditReader } from '../../lib/audit/reader.js';
import { hmacFieldHasher } from '../../lib/audit/record.js';
import type { AuditContext } from '../../lib/audit/trail.js';
import { LocalRootSigner } from '../../lib/keys/local.js';
import type { RootSigner } from '../../lib/keys/provider.js';
import { freshTables } from './dynamo.js';

/**
 * A root signer that signs like the KMS adapter does (ECDSA P-256 over the message's SHA-256,
 * DER-encoded), with a key in memory: lets the verifier be tested for the AWS algorithm without KMS.
 */
export class KmsLikeRootSigner implements RootSigner {
  readonly algorithm = 'ECDSA_SHA_256';
  readonly keyId = `arn:aws:kms:eu-west-1:123456789012:key/${randomUUID()}`;
  private readonly keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  async sign(message: Uint8Array): Promise<Uint8Array> {
    // KMS receives the digest (MessageType DIGEST); signing the message with 'sha256' is the same.
    return sign('sha256', message, { key: this.keys.privateKey, dsaEncoding: 'der' });
  }

  async publicKeyPem(): Promise<string> {
    return this.keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  publicKeyDer(): Buffer {
    return this.keys.publicKey.export({ type: 'spki', format: 'der' });
  }
}

/** A fresh audit table with a local root key in a temp data dir. */
export async function auditFixture(label: string, root?: RootSigner) {
  const { client, tables } = await freshTables(label);
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-audit-'));
  const signer = root ?? (await LocalRootSigner.open(dataDir));
  const hasher = hmacFieldHasher(createHash('sha256').update(`hmac-${label}`).digest());
  const lines: string[] = [];
  const trail = (options: Partial<DynamoAuditTrailOptions> = {}) =>
    new DynamoAuditTrail({
      client,
      table: tables.audit,
      root: signer,
      fieldHasher: hasher,
      sink: (l) => lines.push(l),
      writer: 'test',
      ...options,
    });
  const checkpointer = new Checkpointer({
    client,
    table: tables.audit,
    root: signer,
    sink: (l) => lines.push(l),
  });
  return {
    client,
    tables,
    dataDir,
    root: signer,
    hasher,
    lines,
    trail,
    checkpointer,
    reader: new AuditReader(client, tables.audit),
    rootPem: await signer.publicKeyPem(),
  };
}

/** An AuditContext as the app makes it, for driving a trail without HTTP. */
export function context(n: number, overrides: Partial<AuditContext> = {}): AuditContext {
  return {
    requestId: randomUUID(),
    time: new Date().toISOString(),
    method: 'GET',
    route: `/v1/secrets/app/s${n % 50}`,
    sourceIp: '127.0.0.1',
    userAgent: 'audit-test',
    principal: { type: 'User', id: `dev:user${n % 7}`, groups: [], attributes: {}, authMethod: 'dev' },
    authMethod: 'dev',
    action: 'read',
    path: `app/s${n % 50}`,
    version: 1,
    decision: { allowed: n % 11 !== 0, policyIds: ['p1'], errors: [] },
    policySetHash: 'policy-hash',
    written: false,
    ...overrides,
  };
}

/** Raw access to audit items, for tampering in tests. */
export function tamper(client: DynamoDBClient, table: string) {
  return {
    async getRecord(chain: string, seq: number): Promise<Record<string, unknown>> {
      const out = await client.send(
        new GetItemCommand({ TableName: table, Key: marshall(recordKey(chain, seq)) }),
      );
      if (!out.Item) throw new Error(`no record ${chain}/${seq}`);
      return unmarshall(out.Item);
    },
    async getCheckpoint(seq: number): Promise<Record<string, unknown>> {
      const out = await client.send(
        new GetItemCommand({ TableName: table, Key: marshall(checkpointKey(seq)) }),
      );
      if (!out.Item) throw new Error(`no checkpoint ${seq}`);
      return unmarshall(out.Item);
    },
    /** Writes an item as is, overwriting: what someone with table rights could do. */
    async put(item: Record<string, unknown>): Promise<void> {
      await client.send(
        new PutItemCommand({ TableName: table, Item: marshall(item, { removeUndefinedValues: true }) }),
      );
    },
    async deleteRecord(chain: string, seq: number): Promise<void> {
      await client.send(new DeleteItemCommand({ TableName: table, Key: marshall(recordKey(chain, seq)) }));
    },
    async deleteCheckpoint(seq: number): Promise<void> {
      await client.send(new DeleteItemCommand({ TableName: table, Key: marshall(checkpointKey(seq)) }));
    },
  };
}
