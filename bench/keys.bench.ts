/**
 * Root key operations per 1,000 warm reads with the key hierarchy (target: at most 1), against a
 * KMS stub that counts calls and answers after a fixed delay (BENCH_KMS_MS, default 8 ms, about
 * a CloudHSM-backed Decrypt). Secrets are sealed in 10 folders; reads go through the envelope and
 * the branch key provider, on a fresh instance (a cold cache) and with the cache disabled.
 *
 *   npm run bench -- keys
 *   BENCH_READS=100000 npm run bench -- keys
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KMSClient } from '@aws-sdk/client-kms';
import { Envelope, type SealedValue, type SecretIdentity } from '../lib/crypto/envelope.js';
import { BranchKeyProvider } from '../lib/keys/branch-keys.js';
import type { KeyCacheSettings } from '../lib/keys/key-cache.js';
import { KmsRootKeys } from '../lib/keys/root-keys.js';
import { HmacStorageMacKey } from '../lib/keys/storage-mac.js';
import { startDynamoDbLocal } from '../lib/local/dynamodb-local.js';
import { ControlRecords } from '../lib/store/control-records.js';
import { localDynamoClient } from '../lib/store/dynamo-client.js';
import { ensureTables } from '../lib/store/tables.js';

export interface KeysBenchRow {
  readonly case: string;
  readonly reads: number;
  readonly kmsCalls: number;
  readonly kmsPer1000Reads: number;
  readonly readsPerSecond: number;
}

const ROOT = 'arn:aws:kms:eu-west-1:111122223333:key/0b7c1e0e-1111-4d6a-9c1e-000000000001';

/** A KMS stub: AES-GCM under one random key, the context as AAD, a fixed delay per call. */
function kmsStub(delayMs: number): { client: KMSClient; calls: () => number } {
  const key = randomBytes(32);
  let calls = 0;
  const aad = (ctx: Record<string, string> = {}) => Buffer.from(JSON.stringify(Object.entries(ctx).sort()));
  const client = {
    send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      calls++;
      await new Promise((r) => setTimeout(r, delayMs));
      const input = command.input;
      const ctx = input.EncryptionContext as Record<string, string>;
      if (command.constructor.name === 'GenerateDataKeyCommand') {
        const plaintext = randomBytes(32);
        const iv = randomBytes(12);
        const c = createCipheriv('aes-256-gcm', key, iv).setAAD(aad(ctx));
        const blob = Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()]);
        return { KeyId: ROOT, Plaintext: new Uint8Array(plaintext), CiphertextBlob: new Uint8Array(blob) };
      }
      if (command.constructor.name === 'DecryptCommand') {
        const blob = Buffer.from(input.CiphertextBlob as Uint8Array);
        const d = createDecipheriv('aes-256-gcm', key, blob.subarray(0, 12)).setAAD(aad(ctx));
        d.setAuthTag(blob.subarray(blob.length - 16));
        const plaintext = Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]);
        return { KeyId: ROOT, Plaintext: new Uint8Array(plaintext) };
      }
      throw new Error(`the stub does not answer ${command.constructor.name}`);
    },
  } as unknown as KMSClient;
  return { client, calls: () => calls };
}

export async function run(): Promise<KeysBenchRow[]> {
  const reads = Number(process.env.BENCH_READS ?? 20_000);
  const kmsMs = Number(process.env.BENCH_KMS_MS ?? 8);
  const ddb = await startDynamoDbLocal();
  try {
    const client = localDynamoClient(ddb.endpoint);
    const tables = { secrets: 'bench-keys-secrets', audit: 'bench-keys-audit' };
    await ensureTables(client, tables);
    const control = new ControlRecords({
      client,
      table: tables.secrets,
      key: new HmacStorageMacKey([{ id: 'storage-v1', key: randomBytes(32) }]),
      binding: tables.secrets,
    });
    const kms = kmsStub(kmsMs);
    const root = new KmsRootKeys({ client: kms.client, keyId: ROOT });
    const writer = new Envelope(new BranchKeyProvider({ root, control, binding: tables.secrets }));
    const sealed: [SealedValue, SecretIdentity][] = [];
    for (let i = 0; i < 100; i++) {
      const id = { table: tables.secrets, path: `folder-${i % 10}/secret-${i}`, version: 1 };
      sealed.push([await writer.seal(`value-${i}`, id), id]);
    }
    const rows: KeysBenchRow[] = [];
    const measure = async (label: string, cache: KeyCacheSettings | undefined, n: number) => {
      const reader = new Envelope(
        new BranchKeyProvider({ root, control, binding: tables.secrets, ...(cache ? { cache } : {}) }),
      );
      const before = kms.calls();
      const started = performance.now();
      for (let i = 0; i < n; i++) {
        const [s, id] = sealed[i % sealed.length] as [SealedValue, SecretIdentity];
        await reader.open(s, id);
      }
      const seconds = (performance.now() - started) / 1000;
      const calls = kms.calls() - before;
      rows.push({
        case: label,
        reads: n,
        kmsCalls: calls,
        kmsPer1000Reads: Math.round((calls / n) * 1000 * 100) / 100,
        readsPerSecond: Math.round(n / seconds),
      });
    };
    await measure('hierarchy, cache 300 s / 100,000 uses (cold instance, 10 folders)', undefined, reads);
    await measure('hierarchy, cache 300 s / 1,000 uses', { maxAgeSeconds: 300, maxUses: 1000 }, reads);
    await measure('cache disabled (one root Decrypt per read)', { maxAgeSeconds: 0, maxUses: 0 }, 500);
    const warm = rows[0] as KeysBenchRow;
    if (warm.kmsPer1000Reads > 1)
      throw new Error(`${warm.kmsPer1000Reads} root operations per 1,000 warm reads (target ≤ 1)`);
    return rows;
  } finally {
    await ddb.stop();
  }
}

export function markdown(rows: readonly KeysBenchRow[]): string {
  return [
    '| case | reads | KMS calls | per 1,000 reads | reads/s (one process) |',
    '|---|---:|---:|---:|---:|',
    ...rows.map(
      (r) => `| ${r.case} | ${r.reads} | ${r.kmsCalls} | ${r.kmsPer1000Reads} | ${r.readsPerSecond} |`,
    ),
  ].join('\n');
}
